/* Fidelity corpus: a C program as coreutils are written, built with -O2 so that
 * putc_unlocked / putchar_unlocked / fputc_unlocked are inlined (they store into the FILE
 * buffer without a call, and call __overflow only when the buffer is full or, for a
 * line-buffered or unbuffered stream, on every character), mixed with printf and fputs.
 *
 * argv[1] selects stdout's buffering: "full" (the default for a pipe or a file), "line",
 * "none" (stderr stays unbuffered as always); or "redirect": a program that moves its own
 * stdout and stderr (dup2 onto a file and back, onto /dev/null and back, a forked child,
 * freopen onto a file at the end), flushing before each move as careful programs do.
 * The output is deterministic. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void put_str_unlocked(const char *s, FILE *f) {
    for (; *s; s++)
        putc_unlocked(*s, f);
}

static void must(int ok, const char *what) {
    if (!ok) {
        perror(what);
        exit(99);
    }
}

static int redirect_mode(void) {
    printf("before the redirection\n");
    fflush(stdout);
    int saved = dup(1);
    must(saved >= 0, "dup");
    int fd = open("c_redirect.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    must(fd >= 0, "open");
    must(dup2(fd, 1) == 1, "dup2");
    close(fd);
    printf("into the file via printf\n");
    put_str_unlocked("into the file via putc_unlocked\n", stdout);
    fflush(stdout);
    must(write(1, "into the file via write\n", 24) == 24, "write");
    must(dup2(saved, 1) == 1, "dup2 back");
    close(saved);
    printf("after the restore\n");
    put_str_unlocked("after the restore via putc_unlocked\n", stdout);
    fflush(stdout);

    pid_t child = fork();
    must(child >= 0, "fork");
    if (child == 0) {
        printf("from the forked child\n");
        put_str_unlocked("from the forked child via putc_unlocked\n", stdout);
        fflush(stdout);
        _exit(0);
    }
    must(waitpid(child, NULL, 0) == child, "waitpid");

    int saved_err = dup(2);
    int null = open("/dev/null", O_WRONLY);
    must(saved_err >= 0 && null >= 0, "dup/open /dev/null");
    must(dup2(null, 2) == 2, "dup2 /dev/null");
    close(null);
    fprintf(stderr, "hidden stderr via fprintf\n");
    put_str_unlocked("hidden stderr via putc_unlocked\n", stderr);
    must(dup2(saved_err, 2) == 2, "dup2 stderr back");
    close(saved_err);
    fprintf(stderr, "visible stderr\n");

    printf("last line on the real stdout\n");
    fflush(stdout);
    must(freopen("c_freopen.log", "w", stdout) != NULL, "freopen");
    printf("into the freopened file\n");
    put_str_unlocked("into the freopened file via putc_unlocked\n", stdout);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "full";
    if (strcmp(mode, "redirect") == 0)
        return redirect_mode();
    if (strcmp(mode, "line") == 0)
        setvbuf(stdout, NULL, _IOLBF, 0);
    else if (strcmp(mode, "none") == 0)
        setvbuf(stdout, NULL, _IONBF, 0);
    else if (strcmp(mode, "full") != 0) {
        fprintf(stderr, "usage: %s [full|line|none]\n", argv[0]);
        return 2;
    }

    /* A line begun by a stdio call and ended by an inlined macro, as `date`, `echo` and
     * `id` end theirs; first, so that the FILE has no buffer yet (on a terminal, glibc
     * learns there that the stream is line-buffered, and writes the line at once). */
    fputs("fputs, then an inlined newline", stdout);
    putchar_unlocked('\n');
    printf("printf %d %s\n", 1, mode);
    for (const char *p = "putchar_unlocked line\n"; *p; p++)
        putchar_unlocked(*p);
    put_str_unlocked("putc_unlocked line\n", stdout);
    for (const char *p = "fputc_unlocked line\n"; *p; p++)
        fputc_unlocked(*p, stdout);
    /* One line built by all of them, as `ls -l` builds its lines. */
    printf("mixed:");
    putchar_unlocked(' ');
    fputs("fputs", stdout);
    putc_unlocked(' ', stdout);
    printf("%s", "printf");
    fputc_unlocked(' ', stdout);
    put_str_unlocked("putc", stdout);
    putchar_unlocked('\n');

    /* stderr: unbuffered, each inlined character goes through __overflow. */
    put_str_unlocked("stderr putc_unlocked line\n", stderr);
    fprintf(stderr, "stderr fprintf %d\n", 2);
    for (const char *p = "stderr fputc_unlocked line\n"; *p; p++)
        fputc_unlocked(*p, stderr);

    /* More than a buffer (4 KiB for a pipe, st_blksize for a file) of inlined characters,
     * so that __overflow is reached from a full buffer in the middle of a line. */
    for (int line = 0; line < 300; line++) {
        char num[16];
        snprintf(num, sizeof num, "%03d ", line);
        put_str_unlocked(num, stdout);
        for (int i = 0; i < 60; i++)
            putchar_unlocked('a' + (line + i) % 26);
        putchar_unlocked('\n');
    }
    fflush(stdout);
    put_str_unlocked("after fflush, no newline at the end: ", stdout);
    printf("%d", 3);
    putchar_unlocked('!');
    /* Left in the buffer: written by exit's stdio flush. */
    return 0;
}
