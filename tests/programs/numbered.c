/* The fault suite's program: writes numbered lines, one write(2) per line.
 *
 *   numbered COUNT RATE TARGET [START]
 *
 * COUNT lines "fault <n>\n" for n in START .. START+COUNT, at RATE lines per second (0: as fast
 * as it can), to stdout (TARGET "-") or appended to the file TARGET (opened once, O_APPEND).
 * Prints "done <COUNT>" on stderr at the end. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: numbered COUNT RATE TARGET [START]\n");
        return 2;
    }
    long count = atol(argv[1]);
    double rate = atof(argv[2]);
    long start = argc > 4 ? atol(argv[4]) : 0;
    int fd = 1;
    if (strcmp(argv[3], "-") != 0) {
        fd = open(argv[3], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) {
            fprintf(stderr, "open %s: %s\n", argv[3], strerror(errno));
            return 1;
        }
    }
    double t0 = now();
    char line[64];
    for (long i = 0; i < count; i++) {
        if (rate > 0) {
            double due = t0 + (double)i / rate;
            double wait = due - now();
            if (wait > 0) {
                struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
        int n = snprintf(line, sizeof line, "fault %ld\n", start + i);
        const char *p = line;
        while (n > 0) {
            ssize_t w = write(fd, p, (size_t)n);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                fprintf(stderr, "write: %s\n", strerror(errno));
                return 1;
            }
            p += w;
            n -= (int)w;
        }
    }
    fprintf(stderr, "done %ld\n", count);
    return 0;
}
