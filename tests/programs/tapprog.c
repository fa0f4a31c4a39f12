/* Test program for the interceptor's end-to-end tests. argv[1] selects a scenario. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void must(int ok, const char *what) {
    if (!ok) { fprintf(stderr, "FAILED: %s: %s\n", what, strerror(errno)); exit(99); }
}

static void write_all(int fd, const char *buf, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR) continue;
        must(w > 0, "write");
        buf += w; n -= (size_t)w;
    }
}

/* printf / puts / fputs / fwrite / fprintf(stderr) / putchar / perror / dprintf. */
static int stdio_mode(void) {
    printf("printf %d %s\n", 42, "str");
    puts("puts line");
    fputs("fputs line\n", stdout);
    fwrite("fwrite line\n", 1, 12, stdout);
    putchar('c'); putchar('\n');
    fputc('d', stdout); putc('\n', stdout);
    printf("%s", "long:");
    for (int i = 0; i < 2000; i++) printf("%04d", i);  /* > 4 KiB in many calls */
    printf("\n");
    static char big[9000];
    memset(big, 'x', sizeof big - 1);
    printf("big %s end\n", big);                        /* one call > the shim's buffer */
    fflush(stdout);
    fprintf(stderr, "fprintf stderr %d\n", 7);
    fputs("fputs stderr\n", stderr);
    errno = ENOENT;
    perror("perror");
    dprintf(1, "dprintf %d\n", 1);
    return 0;
}

#define THREADS 8
#define LINES 10000
static void *thread_main(void *arg) {
    long t = (long)arg;
    char line[128];
    for (int i = 0; i < LINES; i++) {
        int n = snprintf(line, sizeof line, "thread %ld line %05d payload-%08x\n", t, i, i * 2654435761u);
        if (i % 2 == 0) {
            write_all(1, line, (size_t)n);
        } else {
            struct iovec iov[2] = {{line, 10}, {line + 10, (size_t)n - 10}};
            ssize_t w = writev(1, iov, 2);
            must(w == n, "writev");
        }
        /* Log-like pacing (16k lines/s at most in all, so that a loaded machine's reader keeps up with
         * the socket transport too): the test is about concurrency, not
         * about outrunning the reader. */
        if (i % 2 == 1) usleep(1000);
    }
    return NULL;
}
static int threads_mode(void) {
    pthread_t th[THREADS];
    for (long t = 0; t < THREADS; t++) must(pthread_create(&th[t], NULL, thread_main, (void *)t) == 0, "pthread_create");
    for (int t = 0; t < THREADS; t++) pthread_join(th[t], NULL);
    return 0;
}

static volatile sig_atomic_t signals;
static void on_signal(int sig) {
    (void)sig;
    int saved = errno;
    char line[64];
    int n = snprintf(line, sizeof line, "from signal handler %d\n", (int)signals);
    signals++;
    ssize_t r = write(1, line, (size_t)n);
    (void)r;
    errno = saved;
}
static int signal_mode(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGALRM, &sa, NULL);
    /* Let the library set up its ring and connection first: a handler that interrupts that
     * setup on the same thread is passed through untapped (the recursion guard). */
    write_all(1, "start\n", 6);
    usleep(100000);
    struct itimerval it = {{0, 200}, {0, 200}};
    setitimer(ITIMER_REAL, &it, NULL);
    char line[64];
    for (int i = 0; signals < 200; i++) {
        int n = snprintf(line, sizeof line, "main line %d\n", i);
        write_all(1, line, (size_t)n);
        usleep(50);
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    printf("signals %d\n", (int)signals);
    return 0;
}

static int fork_mode(void) {
    char line[64];
    int n = snprintf(line, sizeof line, "parent before fork %d\n", (int)getpid());
    write_all(1, line, (size_t)n);
    pid_t child = fork();
    must(child >= 0, "fork");
    for (int i = 0; i < 100; i++) {
        n = snprintf(line, sizeof line, "%s %d line %d\n", child ? "parent" : "child", (int)getpid(), i);
        write_all(1, line, (size_t)n);
    }
    if (child == 0) _exit(0);
    int st;
    waitpid(child, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

static int exec_mode(const char *self) {
    char line[64];
    int n = snprintf(line, sizeof line, "before exec %d\n", (int)getpid());
    write_all(1, line, (size_t)n);
    pid_t child = fork();
    must(child >= 0, "fork");
    if (child == 0) {
        char *args[] = {(char *)self, "exec-child", NULL};
        extern char **environ;
        execve(self, args, environ);
        _exit(98);
    }
    int st;
    waitpid(child, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

static int exec_child_mode(void) {
    printf("exec child %d says hello\n", (int)getpid());
    return 0;
}

/* N lines, then "done" file, then wait for the "go" file, then END. */
static int flood_mode(int n, const char *done, const char *go) {
    char line[64];
    for (int i = 0; i < n; i++) {
        int k = snprintf(line, sizeof line, "flood %06d\n", i);
        write_all(1, line, (size_t)k);
    }
    if (done) { int fd = open(done, O_WRONLY | O_CREAT, 0644); must(fd >= 0, "done"); close(fd); }
    if (go) {
        for (int i = 0; i < 3000 && access(go, F_OK) != 0; i++) usleep(10000);
        usleep(1100000); /* past the library's liveness check */
        write_all(1, "END\n", 4);
    }
    return 0;
}

/* One line every `ms` ms for `n` lines. */
static int slow_mode(int n, int ms) {
    char line[64];
    for (int i = 0; i < n; i++) {
        int k = snprintf(line, sizeof line, "slow %05d\n", i);
        write_all(1, line, (size_t)k);
        usleep((useconds_t)ms * 1000);
    }
    return 0;
}

static int sigkill_mode(void) {
    char line[64];
    for (int i = 0; i < 1000; i++) {
        int k = snprintf(line, sizeof line, "last words %04d\n", i);
        write_all(1, line, (size_t)k);
    }
    kill(getpid(), SIGKILL);
    return 1;
}

static int bigwrite_mode(void) {
    size_t n = 1 << 20;
    char *buf = malloc(n);
    must(buf != NULL, "malloc");
    for (size_t i = 0; i < n; i++) buf[i] = (char)('a' + (i * 7 + i / 1000) % 26);
    buf[n - 1] = '\n';
    write_all(1, buf, n);
    return 0;
}

static int errno_mode(void) {
    for (int i = 0; i < 50; i++) {
        errno = EXDEV;
        ssize_t w = write(1, "errno line\n", 11);
        if (w != 11 || errno != EXDEV) { fprintf(stderr, "errno changed: %d (w=%zd)\n", errno, w); return 1; }
        errno = ENOTTY;
        if (printf("errno printf\n") < 0 || errno != ENOTTY) { fprintf(stderr, "printf errno %d\n", errno); return 1; }
        fflush(stdout);
        usleep(1000);
    }
    return 0;
}

/* Writes forever-ish (bounded) while the agent dies: must not die of SIGPIPE. */
static int keep_writing_mode(int ms_total) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char line[64];
    for (int i = 0;; i++) {
        int k = snprintf(line, sizeof line, "keep %06d\n", i);
        write_all(1, line, (size_t)k);
        usleep(200);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > ms_total) break;
    }
    write_all(2, "survived\n", 9);
    return 0;
}

/* printf in every buffering mode, lines of every length: the shim taps a fully buffered FILE
 * from its own buffer, and must fall back cleanly when the buffer fills in mid-call. */
static void vprint(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
}
static int printf_modes_mode(const char *mode) {
    if (!strcmp(mode, "line")) setvbuf(stdout, NULL, _IOLBF, 0);
    else if (!strcmp(mode, "none")) setvbuf(stdout, NULL, _IONBF, 0);
    else if (!strcmp(mode, "small")) { static char b[100]; setvbuf(stdout, b, _IOFBF, sizeof b); }
    static char pad[6001];
    memset(pad, 'p', sizeof pad - 1);
    for (int i = 0; i < 3000; i++) {
        int len = (i * 37) % 300;
        switch (i % 5) {
        case 0: printf("%05d %.*s\n", i, len, pad); break;
        case 1: fprintf(stdout, "%05d fprintf %d|", i, len); break;   /* no newline */
        case 2: vprint("%05d vprintf %.*s\n", i, len, pad); break;
        case 3: printf("%05d long %s\n", i, i % 500 == 3 ? pad : "-"); break;
        default: printf("%05d %c%c\n", i, 'a' + i % 26, 'A' + i % 26);
        }
    }
    printf("end\n");
    return 0;
}

/* 4 threads printf to one FILE: the tap must see the FILE's bytes in the FILE's order. */
static void *printf_thread(void *arg) {
    long t = (long)arg;
    for (int i = 0; i < 2000; i++) printf("thread %ld line %04d %s\n", t, i, i % 7 ? "x" : "a longer line of text");
    return NULL;
}
static int printf_threads_mode(void) {
    pthread_t th[4];
    for (long t = 0; t < 4; t++) must(pthread_create(&th[t], NULL, printf_thread, (void *)t) == 0, "pthread_create");
    for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
    return 0;
}

/* Record timestamps: each write of line i is bracketed by CLOCK_REALTIME reads, reported on
 * stderr at the end as "i before after"; sleeps of 0-3 ms cross the library's re-anchoring. */
static int clock_mode(int n) {
    struct timespec *a = calloc((size_t)n, sizeof *a), *b = calloc((size_t)n, sizeof *b);
    must(a && b, "calloc");
    char line[32];
    for (int i = 0; i < n; i++) {
        int k = snprintf(line, sizeof line, "tick %d\n", i);
        clock_gettime(CLOCK_REALTIME, &a[i]);
        write_all(1, line, (size_t)k);
        clock_gettime(CLOCK_REALTIME, &b[i]);
        if (i % 3 == 0) usleep((useconds_t)((i * 7919) % 3000));
    }
    for (int i = 0; i < n; i++)
        fprintf(stderr, "%d %lld %lld\n", i, (long long)a[i].tv_sec * 1000000000LL + a[i].tv_nsec,
                (long long)b[i].tv_sec * 1000000000LL + b[i].tv_nsec);
    return 0;
}

/* A program that forbids itself rdtsc (PR_SET_TSC, as sandboxes do) between tapped writes. */
static int notsc_mode(void) {
    write_all(1, "before prctl\n", 13);
    must(prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0) == 0, "prctl(PR_SET_TSC)");
    for (int i = 0; i < 100; i++) {
        char line[32];
        int k = snprintf(line, sizeof line, "after prctl %d\n", i);
        write_all(1, line, (size_t)k);
        printf("printf after prctl %d\n", i);
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *m = argc > 1 ? argv[1] : "";
    if (!strcmp(m, "notsc")) return notsc_mode();
    if (!strcmp(m, "printf-modes")) return printf_modes_mode(argc > 2 ? argv[2] : "full");
    if (!strcmp(m, "printf-threads")) return printf_threads_mode();
    if (!strcmp(m, "clock")) return clock_mode(atoi(argv[2]));
    if (!strcmp(m, "stdio")) return stdio_mode();
    if (!strcmp(m, "threads")) return threads_mode();
    if (!strcmp(m, "signal")) return signal_mode();
    if (!strcmp(m, "fork")) return fork_mode();
    if (!strcmp(m, "exec")) return exec_mode(argv[0]);
    if (!strcmp(m, "exec-child")) return exec_child_mode();
    if (!strcmp(m, "flood")) return flood_mode(atoi(argv[2]), argc > 3 ? argv[3] : NULL, argc > 4 ? argv[4] : NULL);
    if (!strcmp(m, "slow")) return slow_mode(atoi(argv[2]), atoi(argv[3]));
    if (!strcmp(m, "sigkill")) return sigkill_mode();
    if (!strcmp(m, "bigwrite")) return bigwrite_mode();
    if (!strcmp(m, "errno")) return errno_mode();
    if (!strcmp(m, "keep-writing")) return keep_writing_mode(atoi(argv[2]));
    fprintf(stderr, "unknown mode %s\n", m);
    return 2;
}
