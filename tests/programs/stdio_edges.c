/* Edge cases of "exactly what reached the stream" (tests/tests/interceptor_stdio_edges.rs).
 * Usage: stdio_edges MODE [ARG]
 *   efault FILE  writes from invalid buffers to fd 1; the results (return value, errno) go to
 *                FILE, so that the tapped and suppressed runs can be compared with the untapped
 *   diag         glibc's error(), error_at_line(), warn(), warnx(); then error(3, ...) exits 3
 *   fork         buffered output inherited by a forked child that exits (writes it out too)
 *   copy FILE    copy_file_range and sendfile of FILE onto stdout
 *   putc         inlined putchar_unlocked/fputc_unlocked mixed with printf, fputs, fwrite
 *   daemon       daemon(3): fd 1/2 move to /dev/null; what is written after is not tapped */
#define _GNU_SOURCE
#include <err.h>
#include <errno.h>
#include <error.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static int efault(const char *out) {
    char *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (two == MAP_FAILED || mprotect(two + 4096, 4096, PROT_NONE) != 0) return 9;
    memset(two, 'a', 4096);
    two[4095] = '\n';
    /* volatile: hidden from the compiler's own checks */
    volatile uintptr_t bad = 16, null = 0;
    ssize_t r[5];
    int e[5];
    errno = 0; r[0] = write(1, (void *)null, 10); e[0] = errno;
    errno = 0; r[1] = write(1, (void *)bad, 10); e[1] = errno;
    errno = 0; r[2] = write(1, two + 4090, 10); e[2] = errno; /* 6 readable bytes, then none */
    struct iovec v[2] = {{"ok\n", 3}, {(void *)bad, 5}};
    errno = 0; r[3] = writev(1, v, 2); e[3] = errno;
    errno = 0; r[4] = writev(1, (struct iovec *)bad, 2); e[4] = errno;
    FILE *f = fopen(out, "w");
    if (!f) return 8;
    for (int i = 0; i < 5; i++) fprintf(f, "%zd %d\n", r[i], e[i]);
    return fclose(f) == 0 ? 0 : 7;
}

static int diag(void) {
    printf("stdout before the diagnostics ");
    error(0, ENOENT, "cannot open %s", "x.conf");
    error_at_line(0, 0, "parse.c", 12, "unexpected %c", '}');
    errno = EACCES;
    warn("reading %s", "y");
    warnx("plain %d", 7);
    error(0, 0, "a long one: %0700d", 1);
    error(3, EPERM, "giving up");
    return 0; /* not reached */
}

static int forked(void) {
    printf("inherited by both, ");
    fputs_unlocked("and inlined: ", stdout);
    putchar_unlocked('!');
    pid_t p = fork();
    if (p < 0) return 9;
    if (p == 0) {
        printf(" child\n");
        exit(0); /* writes out what it inherited, as the parent will */
    }
    int st;
    waitpid(p, &st, 0);
    printf(" parent\n");
    return 0;
}

static int copy(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 9;
    struct stat st;
    if (fstat(fd, &st) != 0) return 8;
    ssize_t n = copy_file_range(fd, NULL, 1, NULL, (size_t)st.st_size, 0);
    if (n != st.st_size) return 7;
    off_t off = 0;
    ssize_t m = sendfile(1, fd, &off, (size_t)st.st_size);
    if (m != st.st_size || off != st.st_size) return 6;
    /* and after both, the position of fd is where copy_file_range left it */
    if (lseek(fd, 0, SEEK_CUR) != st.st_size) return 5;
    return 0;
}

static int putc_mix(void) {
    for (int i = 0; i < 300; i++) {
        printf("line %d:", i);
        for (int j = 0; j < 20 + i % 50; j++) putchar_unlocked('a' + (j % 26));
        fputc_unlocked(' ', stdout);
        fputs("end", stdout);
        fwrite("!", 1, 1, stdout);
        putchar_unlocked('\n');
        if (i % 97 == 0) fflush(stdout);
    }
    fputc_unlocked('e', stderr);
    fputc_unlocked('\n', stderr);
    putchar_unlocked('n');
    putchar_unlocked('o');
    putchar_unlocked(' ');
    putchar_unlocked('n');
    putchar_unlocked('l');
    return 0; /* exit() writes the last 5 bytes out */
}

static int daemonize(void) {
    printf("before daemon\n");
    fflush(stdout);
    if (daemon(1, 0) != 0) return 9;
    printf("after daemon: /dev/null\n");
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *m = argv[1];
    if (!strcmp(m, "efault") && argc > 2) return efault(argv[2]);
    if (!strcmp(m, "diag")) return diag();
    if (!strcmp(m, "fork")) return forked();
    if (!strcmp(m, "copy") && argc > 2) return copy(argv[2]);
    if (!strcmp(m, "putc")) return putc_mix();
    if (!strcmp(m, "daemon")) return daemonize();
    return 2;
}
