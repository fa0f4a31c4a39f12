/*
 * liblogtap's C shim: the entry points Rust 1.95 cannot define because they are C-variadic
 * (printf(fmt, ...), open(path, flags, ...), fcntl(fd, cmd, ...)), plus the rest of the stdio
 * family so that all of stdio is handled in one place.
 *
 * Why stdio needs its own hooks: glibc's stdio reaches the kernel through an internal alias of
 * write() that LD_PRELOAD cannot interpose, so a preloaded write() never sees printf's bytes.
 * So, for a FILE whose descriptor is tapped (stdout, stderr, a tap file), the shim
 *   1. formats with vsnprintf into a per-thread buffer (an anonymous mmap when the output is
 *      longer: never malloc),
 *   2. under flockfile(stream) writes the bytes into the FILE with the real fwrite and hands
 *      the bytes the FILE accepted to Rust (logtap_stdio_deliver) -- the lock keeps the tapped
 *      order equal to the order of the bytes in the FILE when threads print concurrently,
 *   3. returns what the real function would have returned.
 * The printf family on a fully buffered FILE that is not suppressed (stdout into a pipe or a
 * file: the container case) skips steps 1-2: under the lock, the real vfprintf formats straight
 * into the FILE's buffer and the new bytes are tapped from there (see in_place/tap_in_place),
 * which makes a tapped printf cost one formatting pass instead of two.
 * A suppressed stream skips the fwrite unless Rust could not deliver the copy (no agent, ring
 * full): then the undelivered bytes go to the FILE after all (fail open, nothing lost).
 * For every other FILE the shim calls the real function at once: one fileno() and one relaxed
 * table lookup of cost.
 *
 * stdio is not async-signal-safe itself, so these hooks may use a per-thread buffer; a nested
 * call on the same thread (a printf from a custom printf specifier, or from a signal handler,
 * which POSIX forbids anyway) finds the buffer busy and is passed through untapped.
 *
 * Real functions are resolved once with dlsym(RTLD_NEXT) (logtap_shim_init, called from the
 * library constructor; lazily as a fallback) and cached in atomics.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* With optimisation glibc turns some stdio names into macros (bits/stdio.h); this file defines
 * the functions themselves. (The extern-inline ones may be redefined as they are gnu_inline.) */
#undef fwrite_unlocked
#undef putc
#undef putchar
#undef fputc_unlocked
#undef putc_unlocked
#undef putchar_unlocked

/* ---- the Rust side (interceptor/src/hooks/stdio.rs and hooks/open.rs) ---- */
/* 0: not tapped now; else a route code for logtap_stdio_deliver. Preserves errno. */
extern int logtap_stdio_route(int fd);
/* Taps bytes the FILE accepted; returns how many a suppressed route delivered. Preserves errno. */
extern size_t logtap_stdio_deliver(int route, const char *buf, size_t len);
/* The write() hook's logic (tap, suppress, real write) for dprintf. */
extern ssize_t logtap_fd_write(int fd, const void *buf, size_t len);
/* A descriptor was opened (path relative to dirfd) / duplicated. Preserve errno. */
extern void logtap_on_open(int fd, int dirfd, const char *path, int flags);
extern void logtap_on_dup(int oldfd, int newfd);
/* The program is about to change whether rdtsc may fault (PR_SET_TSC): stamp records with
 * clock_gettime from now on (interceptor/src/clock.rs). */
extern void logtap_clock_tsc_off(void);

#define ROUTE_SUPPRESSED 4

/* glibc's FORTIFY formatter; declared here because no public header does. */
extern int __vsnprintf_chk(char *s, size_t maxlen, int flag, size_t slen, const char *format,
                           va_list ap);

/* ---- real functions ---- */
#define REAL_FN(ret, name, params)                                                         \
    typedef ret(*name##_fn) params;                                                        \
    static name##_fn real_##name##_ptr;                                                    \
    static name##_fn real_##name(void) {                                                   \
        name##_fn f = __atomic_load_n(&real_##name##_ptr, __ATOMIC_ACQUIRE);               \
        if (!f) {                                                                          \
            f = (name##_fn)dlsym(RTLD_NEXT, #name);                                        \
            __atomic_store_n(&real_##name##_ptr, f, __ATOMIC_RELEASE);                     \
        }                                                                                  \
        return f;                                                                          \
    }

REAL_FN(int, vfprintf, (FILE *, const char *, va_list))
REAL_FN(int, __vfprintf_chk, (FILE *, int, const char *, va_list))
REAL_FN(int, vdprintf, (int, const char *, va_list))
REAL_FN(int, __vdprintf_chk, (int, int, const char *, va_list))
REAL_FN(size_t, fwrite, (const void *, size_t, size_t, FILE *))
REAL_FN(size_t, fwrite_unlocked, (const void *, size_t, size_t, FILE *))
REAL_FN(int, puts, (const char *))
REAL_FN(int, fputs, (const char *, FILE *))
REAL_FN(int, fputs_unlocked, (const char *, FILE *))
REAL_FN(int, fputc, (int, FILE *))
REAL_FN(int, putc, (int, FILE *))
REAL_FN(int, _IO_putc, (int, FILE *))
REAL_FN(int, putchar, (int))
REAL_FN(int, fputc_unlocked, (int, FILE *))
REAL_FN(int, putc_unlocked, (int, FILE *))
REAL_FN(int, putchar_unlocked, (int))
REAL_FN(void, perror, (const char *))
REAL_FN(int, open, (const char *, int, ...))
REAL_FN(int, open64, (const char *, int, ...))
REAL_FN(int, openat, (int, const char *, int, ...))
REAL_FN(int, openat64, (int, const char *, int, ...))
REAL_FN(int, __open_2, (const char *, int))
REAL_FN(int, __open64_2, (const char *, int))
REAL_FN(int, __openat_2, (int, const char *, int))
REAL_FN(int, __openat64_2, (int, const char *, int))
REAL_FN(int, fcntl, (int, int, ...))
REAL_FN(int, fcntl64, (int, int, ...))
REAL_FN(int, prctl, (int, unsigned long, unsigned long, unsigned long, unsigned long))

/* Resolves every real function now (from the library constructor), so that no hook calls
 * dlsym later, possibly from a signal handler. */
void logtap_shim_init(void) {
    (void)real_vfprintf(); (void)real___vfprintf_chk(); (void)real_vdprintf();
    (void)real___vdprintf_chk(); (void)real_fwrite(); (void)real_fwrite_unlocked();
    (void)real_puts(); (void)real_fputs(); (void)real_fputs_unlocked(); (void)real_fputc();
    (void)real_putc(); (void)real__IO_putc(); (void)real_putchar(); (void)real_fputc_unlocked();
    (void)real_putc_unlocked(); (void)real_putchar_unlocked(); (void)real_perror();
    (void)real_open(); (void)real_open64(); (void)real_openat(); (void)real_openat64();
    (void)real___open_2(); (void)real___open64_2(); (void)real___openat_2();
    (void)real___openat64_2(); (void)real_fcntl(); (void)real_fcntl64(); (void)real_prctl();
}

/* ---- routing and emitting ---- */
static int route_of(FILE *f) {
    if (!f) return 0;
    int fd = fileno_unlocked(f);
    if (fd < 0) return 0;
    return logtap_stdio_route(fd);
}

/* Writes n bytes into the FILE (unless suppressed and delivered) and taps them, under the
 * FILE's lock. Returns 1 when all n bytes were accepted (or delivered), else 0. */
static int emit(FILE *f, int route, const char *buf, size_t n) {
    size_t (*fw)(const void *, size_t, size_t, FILE *) = real_fwrite();
    int ok;
    if (!fw) { errno = ENOSYS; return 0; }
    if (n == 0) return 1;
    flockfile(f);
    if (route & ROUTE_SUPPRESSED) {
        size_t d = logtap_stdio_deliver(route, buf, n);
        ok = d >= n || fw(buf + d, 1, n - d, f) == n - d;
    } else {
        size_t w = fw(buf, 1, n, f);
        if (w > 0) (void)logtap_stdio_deliver(route, buf, w);
        ok = w == n;
    }
    funlockfile(f);
    return ok;
}

/* The per-thread formatting buffer. */
#define TLS_BUF 4096
static __thread char tls_buf[TLS_BUF];
/* tls_busy is read on every tapped stdio call: initial-exec, so that reading it is one
 * %fs-relative load instead of a call to __tls_get_addr (a preloaded library's TLS is part of
 * the static TLS block; glibc keeps a surplus for the 4 bytes should the library ever be
 * dlopen()ed instead). The 4 KiB buffer, only touched when the output is formatted here,
 * keeps the default model. */
static __thread int tls_busy __attribute__((tls_model("initial-exec")));

static int untapped_vfprintf(FILE *f, int chk, const char *fmt, va_list ap) {
    if (chk >= 0 && real___vfprintf_chk()) return real___vfprintf_chk()(f, chk, fmt, ap);
    if (!real_vfprintf()) { errno = ENOSYS; return -1; }
    return real_vfprintf()(f, fmt, ap);
}

static int format_into(char *buf, size_t size, int chk, const char *fmt, va_list ap) {
    if (chk >= 0) return __vsnprintf_chk(buf, size, chk, size, fmt, ap);
    return vsnprintf(buf, size, fmt, ap);
}

/* A formatted output: in tls_buf, or in an anonymous mapping when longer. */
struct formatted {
    char *p;
    int n;          /* length, or < 0 on a formatting error */
    size_t mapped;  /* bytes to munmap, 0 when p is tls_buf */
};

/* Formats fmt/ap; `again` is a copy of ap for a second pass. Needs tls_busy held. */
static struct formatted format_out(int chk, const char *fmt, va_list ap, va_list again) {
    struct formatted out = {tls_buf, 0, 0};
    out.n = format_into(tls_buf, TLS_BUF, chk, fmt, ap);
    if (out.n >= TLS_BUF) {
        size_t len = ((size_t)out.n + 1 + 4095) & ~(size_t)4095;
        void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) {
            out.n = -1;
            return out;
        }
        out.p = m;
        out.mapped = len;
        out.n = format_into(out.p, len, chk, fmt, again);
    }
    return out;
}

static void release(struct formatted *o) {
    if (o->mapped) munmap(o->p, o->mapped);
    tls_busy = 0;
}

/* glibc's FILE flags (libio.h; their values have not changed since glibc 2.0). */
#define LIBIO_UNBUFFERED 0x0002
#define LIBIO_LINE_BUF 0x0200
#define LIBIO_CURRENTLY_PUTTING 0x0800

/* Whether the real vfprintf will format straight into f's buffer, where the new bytes can be
 * tapped without formatting them a second time: a fully buffered FILE in output mode that
 * already has its buffer. (Unbuffered stderr formats into a helper buffer on the stack; a
 * line-buffered FILE flushes at every newline; neither leaves the bytes in the FILE.) */
static int in_place(FILE *f, int route) {
    return !(route & ROUTE_SUPPRESSED) &&
           (f->_flags & (LIBIO_UNBUFFERED | LIBIO_LINE_BUF | LIBIO_CURRENTLY_PUTTING)) ==
               LIBIO_CURRENTLY_PUTTING &&
           f->_IO_write_base != NULL;
}

/* Taps what an in-place vfprintf added to f's buffer. Under the FILE's lock, with the buffer
 * pointers as they were before the call: if the buffer is the same one and its write pointer
 * moved by exactly the count vfprintf returned, the bytes [before, after) are this call's (a
 * flush in the middle resets the pointer to the base, and the arithmetic then cannot come out
 * equal). Otherwise -- the buffer filled up during the call -- the output is formatted again
 * from `again` for the tap (a custom printf specifier then runs twice; %n stores the same). */
static void tap_in_place(FILE *f, int route, int chk, const char *base, const char *before,
                         int r, const char *fmt, va_list again) {
    const char *after = f->_IO_write_ptr;
    if (f->_IO_write_base == base && before >= base && after >= before &&
        (size_t)(after - before) == (size_t)r) {
        (void)logtap_stdio_deliver(route, before, (size_t)r);
        return;
    }
    int saved = errno;
    va_list again2;
    va_copy(again2, again);
    struct formatted o = format_out(chk, fmt, again, again2);
    va_end(again2);
    if (o.n > 0) (void)logtap_stdio_deliver(route, o.p, (size_t)(o.n < r ? o.n : r));
    /* Only the mapping: tls_busy stays with the caller, which clears it when it is done. */
    if (o.mapped) munmap(o.p, o.mapped);
    errno = saved;
}

/* vfprintf on a tapped FILE. chk < 0: plain, else the FORTIFY flag. */
static int tapped_vfprintf(FILE *f, int route, int chk, const char *fmt, va_list ap) {
    if (tls_busy) return untapped_vfprintf(f, chk, fmt, ap);
    tls_busy = 1;
    /* The flags read without the lock are only a hint (as fileno_unlocked is): a FILE that is
     * not fully buffered (stderr, a terminal) goes to the path below without locking twice;
     * under the lock the check is made again before the pointers are trusted. */
    if (in_place(f, route)) {
        flockfile(f);
        if (in_place(f, route)) {
            va_list again;
            va_copy(again, ap);
            const char *base = f->_IO_write_base, *before = f->_IO_write_ptr;
            int r = untapped_vfprintf(f, chk, fmt, ap);
            if (r > 0) tap_in_place(f, route, chk, base, before, r, fmt, again);
            va_end(again);
            funlockfile(f);
            tls_busy = 0;
            return r;
        }
        funlockfile(f);
    }
    va_list again, fallback;
    va_copy(again, ap);
    va_copy(fallback, ap);
    struct formatted o = format_out(chk, fmt, ap, again);
    va_end(again);
    int r;
    if (o.n < 0) {
        /* Let the real function report the formatting error (or print, if only the mmap
         * failed) exactly as it would have: nothing is tapped. */
        release(&o);
        r = untapped_vfprintf(f, chk, fmt, fallback);
    } else {
        r = emit(f, route, o.p, (size_t)o.n) ? o.n : -1;
        release(&o);
    }
    va_end(fallback);
    return r;
}

static int vfprintf_common(FILE *f, int chk, const char *fmt, va_list ap) {
    int route = route_of(f);
    if (!route) return untapped_vfprintf(f, chk, fmt, ap);
    return tapped_vfprintf(f, route, chk, fmt, ap);
}

int vfprintf(FILE *f, const char *fmt, va_list ap) { return vfprintf_common(f, -1, fmt, ap); }
int vprintf(const char *fmt, va_list ap) { return vfprintf_common(stdout, -1, fmt, ap); }
int __vfprintf_chk(FILE *f, int flag, const char *fmt, va_list ap) {
    return vfprintf_common(f, flag, fmt, ap);
}
int __vprintf_chk(int flag, const char *fmt, va_list ap) {
    return vfprintf_common(stdout, flag, fmt, ap);
}

int printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf_common(stdout, -1, fmt, ap);
    va_end(ap);
    return r;
}

int fprintf(FILE *f, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf_common(f, -1, fmt, ap);
    va_end(ap);
    return r;
}

int __printf_chk(int flag, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf_common(stdout, flag, fmt, ap);
    va_end(ap);
    return r;
}

int __fprintf_chk(FILE *f, int flag, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vfprintf_common(f, flag, fmt, ap);
    va_end(ap);
    return r;
}

/* dprintf family: glibc formats into a temporary FILE that writes with the internal write, so
 * these are formatted here and written through the write() hook's logic. */
static int vdprintf_common(int fd, int chk, const char *fmt, va_list ap) {
    if (!logtap_stdio_route(fd) || tls_busy) {
        if (chk >= 0 && real___vdprintf_chk()) return real___vdprintf_chk()(fd, chk, fmt, ap);
        if (!real_vdprintf()) { errno = ENOSYS; return -1; }
        return real_vdprintf()(fd, fmt, ap);
    }
    tls_busy = 1;
    va_list again, fallback;
    va_copy(again, ap);
    va_copy(fallback, ap);
    struct formatted o = format_out(chk, fmt, ap, again);
    va_end(again);
    int r;
    if (o.n < 0) {
        release(&o);
        r = chk >= 0 && real___vdprintf_chk() ? real___vdprintf_chk()(fd, chk, fmt, fallback)
                                               : real_vdprintf()(fd, fmt, fallback);
    } else {
        size_t done = 0;
        r = o.n;
        while (done < (size_t)o.n) {
            ssize_t w = logtap_fd_write(fd, o.p + done, (size_t)o.n - done);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { r = -1; break; }
            done += (size_t)w;
        }
        release(&o);
    }
    va_end(fallback);
    return r;
}

int vdprintf(int fd, const char *fmt, va_list ap) { return vdprintf_common(fd, -1, fmt, ap); }
int __vdprintf_chk(int fd, int flag, const char *fmt, va_list ap) {
    return vdprintf_common(fd, flag, fmt, ap);
}
int dprintf(int fd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vdprintf_common(fd, -1, fmt, ap);
    va_end(ap);
    return r;
}
int __dprintf_chk(int fd, int flag, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int r = vdprintf_common(fd, flag, fmt, ap);
    va_end(ap);
    return r;
}

/* ---- unformatted output ---- */
int puts(const char *s) {
    int route = route_of(stdout);
    if (!route || tls_busy) return real_puts() ? real_puts()(s) : EOF;
    size_t n = strlen(s);
    int ok;
    if (n < TLS_BUF) {
        /* One tap record for the line and its newline. */
        tls_busy = 1;
        memcpy(tls_buf, s, n);
        tls_buf[n] = '\n';
        ok = emit(stdout, route, tls_buf, n + 1);
        tls_busy = 0;
    } else {
        flockfile(stdout);
        ok = emit(stdout, route, s, n) && emit(stdout, route, "\n", 1);
        funlockfile(stdout);
    }
    if (!ok) return EOF;
    return n + 1 > (size_t)INT32_MAX ? INT32_MAX : (int)(n + 1);
}

static int fputs_common(const char *s, FILE *f, int unlocked) {
    int route = route_of(f);
    if (!route) {
        fputs_fn real = unlocked ? (fputs_fn)real_fputs_unlocked() : real_fputs();
        return real ? real(s, f) : EOF;
    }
    return emit(f, route, s, strlen(s)) ? 1 : EOF;
}
int fputs(const char *s, FILE *f) { return fputs_common(s, f, 0); }
int fputs_unlocked(const char *s, FILE *f) { return fputs_common(s, f, 1); }

static int putc_common(int c, FILE *f, fputc_fn real) {
    int route = route_of(f);
    if (!route) return real ? real(c, f) : EOF;
    unsigned char ch = (unsigned char)c;
    return emit(f, route, (const char *)&ch, 1) ? (int)ch : EOF;
}
int fputc(int c, FILE *f) { return putc_common(c, f, real_fputc()); }
int putc(int c, FILE *f) { return putc_common(c, f, (fputc_fn)real_putc()); }
int _IO_putc(int c, FILE *f) { return putc_common(c, f, (fputc_fn)real__IO_putc()); }
int fputc_unlocked(int c, FILE *f) { return putc_common(c, f, (fputc_fn)real_fputc_unlocked()); }
int putc_unlocked(int c, FILE *f) { return putc_common(c, f, (fputc_fn)real_putc_unlocked()); }
int putchar(int c) {
    if (!route_of(stdout)) return real_putchar() ? real_putchar()(c) : EOF;
    return putc_common(c, stdout, real_fputc());
}
int putchar_unlocked(int c) {
    if (!route_of(stdout)) return real_putchar_unlocked() ? real_putchar_unlocked()(c) : EOF;
    return putc_common(c, stdout, real_fputc());
}

static size_t fwrite_common(const void *p, size_t size, size_t nmemb, FILE *f, fwrite_fn real) {
    int route = route_of(f);
    if (!real) { errno = ENOSYS; return 0; }
    if (!route || size == 0 || nmemb == 0 || nmemb > SIZE_MAX / size)
        return real(p, size, nmemb, f);
    size_t total = size * nmemb;
    if (route & ROUTE_SUPPRESSED) {
        flockfile(f);
        size_t d = logtap_stdio_deliver(route, p, total);
        size_t w = d < total ? real((const char *)p + d, 1, total - d, f) : 0;
        funlockfile(f);
        return (d + w) / size;
    }
    flockfile(f);
    size_t items = real(p, size, nmemb, f);
    if (items > 0) (void)logtap_stdio_deliver(route, p, items * size);
    funlockfile(f);
    return items;
}
size_t fwrite(const void *p, size_t size, size_t nmemb, FILE *f) {
    return fwrite_common(p, size, nmemb, f, real_fwrite());
}
size_t fwrite_unlocked(const void *p, size_t size, size_t nmemb, FILE *f) {
    return fwrite_common(p, size, nmemb, f, (fwrite_fn)real_fwrite_unlocked());
}

/* perror(s) prints "s: <strerror(errno)>\n" (or just the message) on stderr. */
static int perror_format(const char *s, ...) {
    va_list ap;
    va_start(ap, s);
    int r = vfprintf_common(stderr, -1, (s && *s) ? "%s: %m\n" : "%m\n", ap);
    va_end(ap);
    return r;
}
void perror(const char *s) {
    if (!route_of(stderr)) {
        if (real_perror()) real_perror()(s);
        return;
    }
    (void)perror_format(s, s);
}

/* ---- opening and duplicating descriptors ---- */
static int needs_mode(int flags) {
    return (flags & O_CREAT) || ((flags & O_TMPFILE) == O_TMPFILE);
}

static int opened(int fd, int dirfd, const char *path, int flags) {
    if (fd >= 0) {
        int e = errno;
        logtap_on_open(fd, dirfd, path, flags);
        errno = e;
    }
    return fd;
}

#define MODE_ARG(last)                                                                     \
    mode_t mode = 0;                                                                       \
    if (needs_mode(flags)) {                                                               \
        va_list ap;                                                                        \
        va_start(ap, last);                                                                \
        mode = (mode_t)va_arg(ap, int);                                                    \
        va_end(ap);                                                                        \
    }

static int raw_openat(int dirfd, const char *path, int flags, mode_t mode) {
    return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

int open(const char *path, int flags, ...) {
    MODE_ARG(flags)
    int fd = real_open() ? real_open()(path, flags, mode) : raw_openat(AT_FDCWD, path, flags, mode);
    return opened(fd, AT_FDCWD, path, flags);
}
int open64(const char *path, int flags, ...) {
    MODE_ARG(flags)
    int fd = real_open64() ? real_open64()(path, flags, mode)
                           : raw_openat(AT_FDCWD, path, flags, mode);
    return opened(fd, AT_FDCWD, path, flags);
}
int openat(int dirfd, const char *path, int flags, ...) {
    MODE_ARG(flags)
    int fd = real_openat() ? real_openat()(dirfd, path, flags, mode)
                           : raw_openat(dirfd, path, flags, mode);
    return opened(fd, dirfd, path, flags);
}
int openat64(int dirfd, const char *path, int flags, ...) {
    MODE_ARG(flags)
    int fd = real_openat64() ? real_openat64()(dirfd, path, flags, mode)
                             : raw_openat(dirfd, path, flags, mode);
    return opened(fd, dirfd, path, flags);
}
int __open_2(const char *path, int flags) {
    int fd = real___open_2() ? real___open_2()(path, flags) : raw_openat(AT_FDCWD, path, flags, 0);
    return opened(fd, AT_FDCWD, path, flags);
}
int __open64_2(const char *path, int flags) {
    int fd = real___open64_2() ? real___open64_2()(path, flags)
                               : raw_openat(AT_FDCWD, path, flags, 0);
    return opened(fd, AT_FDCWD, path, flags);
}
int __openat_2(int dirfd, const char *path, int flags) {
    int fd = real___openat_2() ? real___openat_2()(dirfd, path, flags)
                               : raw_openat(dirfd, path, flags, 0);
    return opened(fd, dirfd, path, flags);
}
int __openat64_2(int dirfd, const char *path, int flags) {
    int fd = real___openat64_2() ? real___openat64_2()(dirfd, path, flags)
                                 : raw_openat(dirfd, path, flags, 0);
    return opened(fd, dirfd, path, flags);
}

static int fcntl_common(fcntl_fn real, int fd, int cmd, void *arg) {
    if (!real) { errno = ENOSYS; return -1; }
    int r = real(fd, cmd, arg);
    if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)) {
        int e = errno;
        logtap_on_dup(fd, r);
        errno = e;
    }
    return r;
}
/* Like glibc, the optional argument is read as a pointer-sized value whatever cmd is. */
int fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common(real_fcntl(), fd, cmd, arg);
}
int fcntl64(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl_common((fcntl_fn)real_fcntl64(), fd, cmd, arg);
}

/* prctl: PR_SET_TSC can make rdtsc raise SIGSEGV; the library stops reading the TSC first
 * (before the call: a write tapped by another thread meanwhile must not fault), then makes the
 * real call with the caller's arguments. */
int prctl(int option, ...) {
    va_list ap;
    va_start(ap, option);
    unsigned long a2 = va_arg(ap, unsigned long), a3 = va_arg(ap, unsigned long);
    unsigned long a4 = va_arg(ap, unsigned long), a5 = va_arg(ap, unsigned long);
    va_end(ap);
    if (option == PR_SET_TSC) logtap_clock_tsc_off();
    int (*real)(int, unsigned long, unsigned long, unsigned long, unsigned long) = real_prctl();
    if (!real) return (int)syscall(SYS_prctl, option, a2, a3, a4, a5);
    return real(option, a2, a3, a4, a5);
}
