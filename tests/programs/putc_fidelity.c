/* Fidelity corpus: a C program as coreutils are written, built with -O2 so that
 * putc_unlocked / putchar_unlocked / fputc_unlocked are inlined (they store into the FILE
 * buffer without a call, and call __overflow only when the buffer is full or, for a
 * line-buffered or unbuffered stream, on every character), mixed with printf and fputs.
 *
 * argv[1] selects stdout's buffering: "full" (the default for a pipe or a file), "line",
 * "none". stderr stays unbuffered as always. The output is deterministic. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put_str_unlocked(const char *s, FILE *f) {
    for (; *s; s++)
        putc_unlocked(*s, f);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "full";
    if (strcmp(mode, "line") == 0)
        setvbuf(stdout, NULL, _IOLBF, 0);
    else if (strcmp(mode, "none") == 0)
        setvbuf(stdout, NULL, _IONBF, 0);
    else if (strcmp(mode, "full") != 0) {
        fprintf(stderr, "usage: %s [full|line|none]\n", argv[0]);
        return 2;
    }

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
