/*
 * The C-variadic entry points of the open/fcntl hooks: open, open64, openat, openat64, fcntl,
 * fcntl64. Rust 1.95 cannot define a C-variadic function, so each one here only reads its
 * optional argument and calls the Rust function that does the rest (the real call, then the
 * tap-file bookkeeping): interceptor/src/hooks/open.rs, where every other open/dup/close hook
 * is too.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdarg.h>
#include <sys/types.h>

extern int logtap_hook_open(const char *path, int flags, mode_t mode);
extern int logtap_hook_open64(const char *path, int flags, mode_t mode);
extern int logtap_hook_openat(int dirfd, const char *path, int flags, mode_t mode);
extern int logtap_hook_openat64(int dirfd, const char *path, int flags, mode_t mode);
extern int logtap_hook_fcntl(int fd, int cmd, void *arg);
extern int logtap_hook_fcntl64(int fd, int cmd, void *arg);

/* The mode argument exists only when the flags create a file. */
static int needs_mode(int flags) {
    return (flags & O_CREAT) || ((flags & O_TMPFILE) == O_TMPFILE);
}

#define MODE_ARG(last)                                                                     \
    mode_t mode = 0;                                                                       \
    if (needs_mode(flags)) {                                                               \
        va_list ap;                                                                        \
        va_start(ap, last);                                                                \
        mode = (mode_t)va_arg(ap, int);                                                    \
        va_end(ap);                                                                        \
    }

int open(const char *path, int flags, ...) {
    MODE_ARG(flags)
    return logtap_hook_open(path, flags, mode);
}
int open64(const char *path, int flags, ...) {
    MODE_ARG(flags)
    return logtap_hook_open64(path, flags, mode);
}
int openat(int dirfd, const char *path, int flags, ...) {
    MODE_ARG(flags)
    return logtap_hook_openat(dirfd, path, flags, mode);
}
int openat64(int dirfd, const char *path, int flags, ...) {
    MODE_ARG(flags)
    return logtap_hook_openat64(dirfd, path, flags, mode);
}

/* Like glibc, the optional argument is read as a pointer-sized value whatever cmd is. */
int fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return logtap_hook_fcntl(fd, cmd, arg);
}
int fcntl64(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return logtap_hook_fcntl64(fd, cmd, arg);
}
