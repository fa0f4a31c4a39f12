/* Tap-file scenarios for the interceptor's end-to-end tests. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static void must(int ok, const char *what) {
    if (!ok) { fprintf(stderr, "FAILED: %s: %s\n", what, strerror(errno)); exit(99); }
}

static void line(int fd, const char *what, int i) {
    char buf[128];
    int n = snprintf(buf, sizeof buf, "%s %d\n", what, i);
    must(write(fd, buf, (size_t)n) == n, "write");
}

/* open → write; dup2 → write; close original → write via dup; close; rename; reopen;
 * fopen + fprintf; openat with a relative path. */
static int sequence(const char *path, const char *relative) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    must(fd >= 0, "open");
    for (int i = 0; i < 10; i++) line(fd, "open line", i);
    must(dup2(fd, 42) == 42, "dup2");
    for (int i = 0; i < 10; i++) line(42, "dup2 line", i);
    close(fd);
    for (int i = 0; i < 10; i++) line(42, "after close line", i);
    close(42);
    char rotated[4096];
    snprintf(rotated, sizeof rotated, "%s.1", path);
    must(rename(path, rotated) == 0, "rename");
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    must(fd >= 0, "reopen");
    for (int i = 0; i < 10; i++) line(fd, "reopened line", i);
    close(fd);
    FILE *f = fopen(path, "a");
    must(f != NULL, "fopen");
    for (int i = 0; i < 10; i++) fprintf(f, "fopen line %d\n", i);
    fclose(f);
    fd = openat(AT_FDCWD, relative, O_WRONLY | O_CREAT | O_APPEND, 0644);
    must(fd >= 0, "openat");
    for (int i = 0; i < 10; i++) line(fd, "relative line", i);
    close(fd);
    return 0;
}

/* fclose of the tap file, then an unrelated fopen that gets the same descriptor number. */
static int fclose_reuse(const char *tapped, const char *other) {
    FILE *f = fopen(tapped, "a");
    must(f != NULL, "fopen tapped");
    int n1 = fileno(f);
    fprintf(f, "tapped line\n");
    fclose(f);
    FILE *g = fopen(other, "w");
    must(g != NULL, "fopen other");
    if (fileno(g) != n1) { fprintf(stderr, "fd numbers differ: %d %d\n", n1, fileno(g)); return 3; }
    fprintf(g, "untapped line\n");
    fflush(g);
    must(write(fileno(g), "untapped write\n", 15) == 15, "write other");
    fclose(g);
    return 0;
}

/* creat + pwrite + pwritev + pwritev2 + writev + fcntl(F_DUPFD_CLOEXEC) on a tap file. */
static int positional(const char *path) {
    int fd = creat(path, 0644);
    must(fd >= 0, "creat");
    must(pwrite(fd, "pwrite line\n", 12, 0) == 12, "pwrite");
    struct iovec v[2] = {{"pwritev ", 8}, {"line\n", 5}};
    must(pwritev(fd, v, 2, 12) == 13, "pwritev");
    struct iovec w[1] = {{"pwritev2 line\n", 14}};
    must(pwritev2(fd, w, 1, 25, 0) == 14, "pwritev2");
    must(lseek(fd, 39, SEEK_SET) == 39, "lseek");
    struct iovec x[3] = {{"writev", 6}, {" ", 1}, {"line\n", 5}};
    must(writev(fd, x, 3) == 12, "writev");
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 50);
    must(d >= 50, "fcntl");
    close(fd);
    must(write(d, "fcntl dup line\n", 15) == 15, "write dup");
    close(d);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "positional")) return positional(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "sequence")) return sequence(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "fclose-reuse")) return fclose_reuse(argv[2], argv[3]);
    fprintf(stderr, "usage: tapfile sequence PATH RELATIVE | fclose-reuse TAPPED OTHER\n");
    return 2;
}
