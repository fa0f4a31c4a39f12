/* A daemon-style program: writes to stdout (so the library sets up its descriptors), closes
 * every descriptor above 2 (a close loop and close_range), then opens its own file, a
 * socketpair and 1000 duplicates, and checks that none of them ever receives a foreign byte
 * while it keeps writing tapped stdout lines. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void must(int ok, const char *what) {
    if (!ok) { fprintf(stderr, "FAILED: %s: %s\n", what, strerror(errno)); exit(99); }
}

static void out(const char *what, int i) {
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%s %d\n", what, i);
    must(write(1, buf, (size_t)n) == n, "write stdout");
}

int main(int argc, char **argv) {
    must(argc == 2, "usage: daemon OWN_FILE");
    for (int i = 0; i < 10; i++) out("before close", i);
    for (int fd = 3; fd < 4096; fd++) close(fd);
    must(close_range(3, ~0U, 0) == 0, "close_range");
    int own = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
    must(own >= 0, "open own file");
    int sv[2];
    must(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    int dups = 0;
    for (int i = 0; i < 1000; i++) {
        if (dup(own) >= 0) dups++;
    }
    for (int i = 0; i < 200; i++) {
        out("after close", i);
        must(write(own, "own data\n", 9) == 9, "write own");
        must(write(sv[0], "S", 1) == 1, "write socket");
    }
    /* The socket must hold exactly our 200 bytes. */
    char buf[4096];
    int got = 0;
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    for (;;) {
        ssize_t n = read(sv[1], buf, sizeof buf);
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++) if (buf[i] != 'S') { fprintf(stderr, "foreign byte on socket\n"); return 4; }
        got += (int)n;
    }
    if (got != 200) { fprintf(stderr, "socket got %d bytes\n", got); return 5; }
    fprintf(stderr, "dups %d\n", dups);
    return 0;
}
