/* The per-call cost of a tapped 64-byte write(1, …) and of a printf line, for
 * musl/bench/tap_cost.sh: one warm-up write (the library connects and makes its ring), a
 * pause, then N calls of each, timed with CLOCK_MONOTONIC. Prints one line on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 5000;
    char line[64];
    memset(line, 'x', 63);
    line[63] = '\n';
    write(1, line, 64);
    usleep(100000);
    double t0 = now();
    for (int i = 0; i < n; i++)
        write(1, line, 64);
    double t1 = now();
    for (int i = 0; i < n; i++)
        printf("%.63s\n", line);
    fflush(stdout);
    double t2 = now();
    fprintf(stderr, "write64 %.0f ns/call  printf %.0f ns/line\n", (t1 - t0) / n * 1e9,
            (t2 - t1) / n * 1e9);
    return 0;
}
