/* Multi-line events for tests/tests/agent_multiline.rs.
 *
 *   multiline panic N       N filler lines, then a Go-style panic, line by line with printf
 *                           through stdout's FILE (fully buffered on a pipe: the panic reaches
 *                           the kernel inside 4 KiB flushes, cut anywhere).
 *   multiline concurrent N  fork: 2 processes × 2 threads, each writing N multi-line events,
 *                           each event with one write(2) to stdout, all at once.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int events;
static char proc_name;

static void *writer(void *arg) {
    long thread = (long)arg;
    char buf[512];
    for (int i = 0; i < events; i++) {
        int n = snprintf(buf, sizeof buf,
                         "%c%ld-%d java.lang.IllegalStateException: boom %c%ld-%d\n"
                         "\tat app.Worker.step(Worker.java:%d)\n"
                         "\tat app.Worker.run(Worker.java:7)\n"
                         "Caused by: java.io.IOException: disk %c%ld-%d\n"
                         "\tat app.Disk.read(Disk.java:3)\n"
                         "\t... 2 more\n",
                         proc_name, thread, i, proc_name, thread, i, i, proc_name, thread, i);
        if (write(1, buf, (size_t)n) != n) {
            exit(3);
        }
    }
    return NULL;
}

static void two_threads(void) {
    pthread_t t[2];
    for (long i = 0; i < 2; i++) {
        pthread_create(&t[i], NULL, writer, (void *)i);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: multiline panic|concurrent N\n");
        return 2;
    }
    int n = atoi(argv[2]);
    if (strcmp(argv[1], "panic") == 0) {
        for (int i = 0; i < n; i++) {
            printf("2026/12/04 15:00:%02d worker %03d handled a request\n", i % 60, i);
        }
        printf("panic: runtime error: index out of range [5] with length 3\n");
        printf("\n");
        printf("goroutine 1 [running]:\n");
        printf("main.lookup(...)\n");
        printf("\t/app/main.go:12\n");
        printf("main.main()\n");
        printf("\t/app/main.go:20 +0x1d\n");
        printf("exit status 2\n");
        return 0;
    }
    if (strcmp(argv[1], "concurrent") == 0) {
        events = n;
        pid_t child = fork();
        proc_name = child == 0 ? 'B' : 'A';
        two_threads();
        if (child > 0) {
            int status = 0;
            waitpid(child, &status, 0);
            return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
        }
        return 0;
    }
    return 2;
}
