/*
 * liblogtap-musl.so: the hook layer of logtap's LD_PRELOAD library for dynamically linked musl
 * programs (Alpine images). The ring producer and the tap frames are the protocol crate's own
 * Rust code, compiled into the `no_std` core (`core/`, see build.rs) and called through the
 * `llt_*` functions declared below; this file holds what is specific to musl: the exported
 * hooks, the configuration (`LLT_*`, a port of interceptor/src/config.rs), the connection to
 * the agent and musl's stdio.
 *
 * Contract 1 on the hook path: no allocation, no locks, errno preserved, return values exactly
 * the real call's (or the full count when suppressed), a per-thread recursion guard, sends with
 * MSG_DONTWAIT | MSG_NOSIGNAL. Anything unexpected fails open: the real call runs untapped.
 *
 * musl's stdio does not call the exported `write`: each FILE has its own `write` function
 * pointer (`__stdio_write`, `__stdout_write`) that hands `[wbase, wpos)` plus the caller's
 * buffer to the kernel with a direct `writev` system call. So the library swaps that pointer
 * on stdout, stderr and every FILE opened on a tapped file, after validating the layout of
 * musl's `struct _IO_FILE` (src/internal/stdio_impl.h); if it looks wrong, stdio is left
 * untapped (one debug line) and the write family still works.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))
#define LLT_VERSION "0.1.0"

/* ---- the Rust core (core/adapter.rs) ---- */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} llt_bytes;
int llt_ring_create(size_t data_bytes, uint32_t creator_pid);
int llt_ring_map(int fd, int wake_fd);
void llt_ring_forget(void);
int llt_ring_push(uint8_t stream, uint8_t flags, uint16_t file_index, uint32_t pid, uint32_t seq,
                  uint64_t time_ns, const uint8_t *data, size_t len);
size_t llt_ring_max_payload(void);
uint64_t llt_ring_consumed(void);
void llt_ring_note_dropped(uint64_t records, uint64_t bytes);
void llt_ring_wake(void);
int llt_frame_header(uint8_t *out, uint8_t kind, uint8_t stream, uint16_t flags, uint32_t pid,
                     uint32_t seq, uint64_t time_ns, uint32_t file_index, uint32_t payload_len);
ssize_t llt_encode_hello(uint8_t *out, size_t cap, uint32_t pid, uint32_t ppid, llt_bytes comm,
                         llt_bytes exe, llt_bytes hostname, llt_bytes container_id,
                         llt_bytes version, const llt_bytes *files, size_t nfiles,
                         const llt_bytes *meta, size_t nmeta, bool ring);
ssize_t llt_encode_file(uint8_t *out, size_t cap, uint32_t index, llt_bytes path);
ssize_t llt_encode_loss(uint8_t *out, size_t cap, uint64_t frames, uint64_t bytes);

enum { KIND_HELLO = 1, KIND_DATA = 2, KIND_LOSS = 3, KIND_FILE = 4 };
enum { STREAM_STDOUT = 1, STREAM_STDERR = 2, STREAM_FILE = 3 };
enum { PUSH_OK = 0, PUSH_FULL = 1, PUSH_TOO_LARGE = 2, PUSH_ABANDONED = 3, PUSH_UNENCODABLE = 4, PUSH_NO_RING = -1 };
#define FRAME_HEADER 32
#define MAX_DATA_PAYLOAD (64 * 1024)
#define RECORD_CONTINUED 1

/* ---- raw system calls (the hooks must not call our own exports) ---- */
static ssize_t raw_write(int fd, const void *buf, size_t n) { return syscall(SYS_write, fd, buf, n); }
static int raw_close(int fd) { return (int)syscall(SYS_close, fd); }

static uint64_t now_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(long ns)
{
    struct timespec ts = {0, ns};
    syscall(SYS_nanosleep, &ts, NULL);
}

/* ---- configuration: a port of interceptor/src/config.rs (same names, values, defaults) ---- */
#define MAX_VALUE 4096
enum { TARGET_FILE = 0, TARGET_SOCKET = 1 };
static struct {
    bool tap_stdout, tap_stderr;
    bool suppress_stdout, suppress_stderr, suppress_tap_file;
    bool debug;
    int target_kind;
    char target_path[MAX_VALUE];
    uint64_t passive_ms, first_connect_s, reconnect_s;
    bool transport_socket;
    bool ring_full_drop;
    size_t ring_size;
    char tap_files[MAX_VALUE];
} cfg = {
    .target_kind = TARGET_FILE,
    .target_path = "/tmp/liblogtap.log",
    .first_connect_s = 5,
    .reconnect_s = 30,
    .ring_size = 1 << 20,
};
static bool enabled; /* the constructor ran and found something to tap */

static void debug_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void notice_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr with a raw write (never through stdio, never tapped). */
static void vline(const char *prefix, const char *fmt, va_list ap)
{
    char buf[512];
    int saved = errno;
    int n = snprintf(buf, sizeof buf, "[%s PID:%d] ", prefix, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof buf)
        n = 0;
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof buf - 2)
        len = sizeof buf - 2;
    buf[len++] = '\n';
    raw_write(2, buf, len);
    errno = saved;
}

static void debug_line(const char *fmt, ...)
{
    if (!cfg.debug)
        return;
    va_list ap;
    va_start(ap, fmt);
    vline("liblogtap-musl DEBUG", fmt, ap);
    va_end(ap);
}

static void notice_line(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline("liblogtap-musl", fmt, ap);
    va_end(ap);
}

static const char *trim(const char *v, size_t *len)
{
    while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')
        v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\n' || v[n - 1] == '\r'))
        n--;
    *len = n;
    return v;
}

static bool word_is(const char *v, size_t n, const char *w)
{
    return strlen(w) == n && strncasecmp(v, w, n) == 0;
}

/* Returns the trimmed, non-empty value of an LLT_ variable, or NULL. */
static const char *setting(const char *name, size_t *len)
{
    const char *v = getenv(name);
    if (!v)
        return NULL;
    v = trim(v, len);
    return *len ? v : NULL;
}

static void warn_value(const char *name, const char *expected)
{
    debug_line("%s: malformed value ignored (expected %s); using the default", name, expected);
}

static int parse_bool(const char *v, size_t n)
{
    static const char *yes[] = {"true", "1", "yes", "on", "y", "t"};
    static const char *no[] = {"false", "0", "no", "off", "n", "f"};
    for (size_t i = 0; i < 6; i++) {
        if (word_is(v, n, yes[i]))
            return 1;
        if (word_is(v, n, no[i]))
            return 0;
    }
    return -1;
}

static bool parse_u64(const char *v, size_t n, uint64_t *out)
{
    if (n == 0)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        uint64_t d = (uint64_t)(v[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *out = x;
    return true;
}

static bool parse_size(const char *v, size_t n, size_t *out)
{
    size_t digits = 0;
    while (digits < n && v[digits] >= '0' && v[digits] <= '9')
        digits++;
    uint64_t x;
    if (!parse_u64(v, digits, &x))
        return false;
    const char *s = v + digits;
    size_t sn = n - digits;
    unsigned shift;
    if (sn == 0 || word_is(s, sn, "b"))
        shift = 0;
    else if (word_is(s, sn, "k") || word_is(s, sn, "kb") || word_is(s, sn, "kib"))
        shift = 10;
    else if (word_is(s, sn, "m") || word_is(s, sn, "mb") || word_is(s, sn, "mib"))
        shift = 20;
    else if (word_is(s, sn, "g") || word_is(s, sn, "gb") || word_is(s, sn, "gib"))
        shift = 30;
    else
        return false;
    if (x > (UINT64_MAX >> shift))
        return false;
    *out = (size_t)(x << shift);
    return true;
}

static void flag(const char *name, bool *field)
{
    size_t n;
    const char *v = setting(name, &n);
    if (!v)
        return;
    int b = parse_bool(v, n);
    if (b < 0)
        warn_value(name, "true or false");
    else
        *field = b;
}

static void number(const char *name, uint64_t *field, const char *what)
{
    size_t n;
    const char *v = setting(name, &n);
    uint64_t x;
    if (!v)
        return;
    if (parse_u64(v, n, &x))
        *field = x;
    else
        warn_value(name, what);
}

static void parse_config(void)
{
    size_t n;
    const char *v;
    flag("LLT_DEBUG_MODE", &cfg.debug);
    flag("LLT_SUPPRESS_STDOUT", &cfg.suppress_stdout);
    flag("LLT_SUPPRESS_STDERR", &cfg.suppress_stderr);
    flag("LLT_SUPPRESS_TAP_FILE", &cfg.suppress_tap_file);
    if ((v = setting("LLT_TAP_INTO", &n))) {
        uint64_t x = 99;
        if (word_is(v, n, "none"))
            x = 0;
        else if (word_is(v, n, "stdout"))
            x = 1;
        else if (word_is(v, n, "stderr"))
            x = 2;
        else if (word_is(v, n, "both"))
            x = 3;
        else if (!parse_u64(v, n, &x))
            x = 99;
        if (x <= 3) {
            cfg.tap_stdout = x & 1;
            cfg.tap_stderr = x & 2;
        } else {
            /* Reported whatever the mode: it silently turns the tap off (as liblogtap.so). */
            notice_line("LLT_TAP_INTO: malformed value ignored (expected 0/none, 1/stdout, "
                        "2/stderr or 3/both); stdout and stderr are not tapped");
        }
    }
    number("LLT_PASSIV_ON_START", &cfg.passive_ms, "milliseconds (an integer)");
    number("LLT_TARGET_1STCONNECT", &cfg.first_connect_s, "seconds (an integer)");
    number("LLT_TARGET_RECONNECT", &cfg.reconnect_s, "seconds (an integer)");
    if ((v = setting("LLT_TARGET", &n))) {
        int kind = -1;
        const char *p = NULL;
        if (n > 5 && strncmp(v, "file:", 5) == 0)
            kind = TARGET_FILE, p = v + 5;
        else if (n > 7 && strncmp(v, "socket:", 7) == 0)
            kind = TARGET_SOCKET, p = v + 7;
        size_t pn = p ? n - (size_t)(p - v) : 0;
        if (kind < 0 || pn == 0 || pn >= MAX_VALUE || (kind == TARGET_SOCKET && pn > 107)) {
            warn_value("LLT_TARGET", "file:PATH or socket:PATH (socket path <= 107 bytes)");
        } else {
            cfg.target_kind = kind;
            memcpy(cfg.target_path, p, pn);
            cfg.target_path[pn] = 0;
        }
    }
    if ((v = setting("LLT_CLOCK", &n)) && !word_is(v, n, "auto") && !word_is(v, n, "realtime"))
        warn_value("LLT_CLOCK", "auto or realtime");
    if ((v = setting("LLT_TRANSPORT", &n))) {
        if (word_is(v, n, "ring"))
            cfg.transport_socket = false;
        else if (word_is(v, n, "socket"))
            cfg.transport_socket = true;
        else
            warn_value("LLT_TRANSPORT", "ring or socket");
    }
    if ((v = setting("LLT_RING_FULL", &n))) {
        if (word_is(v, n, "block"))
            cfg.ring_full_drop = false;
        else if (word_is(v, n, "drop"))
            cfg.ring_full_drop = true;
        else
            warn_value("LLT_RING_FULL", "block or drop");
    }
    if ((v = setting("LLT_RING_SIZE", &n))) {
        size_t size;
        if (parse_size(v, n, &size) && size >= (64u << 10) && size <= (256u << 20))
            cfg.ring_size = size;
        else
            warn_value("LLT_RING_SIZE", "a size from 64K to 256M, e.g. 1M");
    }
    if ((v = setting("LLT_TAP_FILE", &n))) {
        if (n < MAX_VALUE) {
            memcpy(cfg.tap_files, v, n);
            cfg.tap_files[n] = 0;
        } else {
            warn_value("LLT_TAP_FILE", "a ':'-list of paths shorter than 4096 bytes");
        }
    }
}

/* ---- per-thread recursion guard ---- */
static __thread int in_hook;

/* ---- process state ---- */
static _Atomic uint32_t cached_pid;
static _Atomic uint32_t seq_counter;
static uint64_t load_mono_ns;

static uint32_t my_pid(void)
{
    uint32_t p = atomic_load_explicit(&cached_pid, memory_order_relaxed);
    if (!p) {
        p = (uint32_t)syscall(SYS_getpid);
        atomic_store_explicit(&cached_pid, p, memory_order_relaxed);
    }
    return p;
}

static uint32_t next_seq(void) { return atomic_fetch_add_explicit(&seq_counter, 1, memory_order_relaxed); }

/* ---- tap files: LLT_TAP_FILE paths/globs, their indices, and the fds that name them ---- */
#define MAX_TAP_FILES 16
#define MAX_PATH_LEN 1024
#define MAX_FDS 4096
static char file_paths[MAX_TAP_FILES][MAX_PATH_LEN];
static _Atomic int file_count;
static _Atomic uint8_t file_announced[MAX_TAP_FILES];
/* fd → file index + 1 (0: not a tap file). */
static _Atomic uint8_t fd_file[MAX_FDS];

static int fd_file_index(int fd)
{
    if (fd < 0 || fd >= MAX_FDS)
        return -1;
    return (int)atomic_load_explicit(&fd_file[fd], memory_order_relaxed) - 1;
}

static void fd_set_file(int fd, int index)
{
    if (fd >= 0 && fd < MAX_FDS)
        atomic_store_explicit(&fd_file[fd], (uint8_t)(index + 1), memory_order_relaxed);
}

/* Absolute, lexically unchanged path of `path` (relative ones joined to the cwd). */
static bool absolute(const char *path, char *out, size_t cap)
{
    if (!path)
        return false;
    if (path[0] == '/') {
        size_t n = strlen(path);
        if (n >= cap)
            return false;
        memcpy(out, path, n + 1);
        return true;
    }
    char cwd[MAX_PATH_LEN];
    if (syscall(SYS_getcwd, cwd, sizeof cwd) < 0)
        return false;
    int n = snprintf(out, cap, "%s/%s", cwd, path[0] == '.' && path[1] == '/' ? path + 2 : path);
    return n > 0 && (size_t)n < cap;
}

/* Whether `path` matches an LLT_TAP_FILE entry (exact path or glob). */
static bool matches_tap_file(const char *path)
{
    const char *list = cfg.tap_files;
    while (*list) {
        const char *end = strchr(list, ':');
        size_t n = end ? (size_t)(end - list) : strlen(list);
        char pattern[MAX_PATH_LEN];
        if (n > 0 && n < sizeof pattern) {
            memcpy(pattern, list, n);
            pattern[n] = 0;
            if (fnmatch(pattern, path, FNM_PATHNAME) == 0)
                return true;
        }
        if (!end)
            break;
        list = end + 1;
    }
    return false;
}

static void announce_file(int index);

/* The index of the tap file `path` (registered on first sight), or -1. */
static int tap_file_index(const char *path)
{
    char abs[MAX_PATH_LEN];
    if (!cfg.tap_files[0] || !absolute(path, abs, sizeof abs) || !matches_tap_file(abs))
        return -1;
    int count = atomic_load(&file_count);
    for (int i = 0; i < count; i++)
        if (strcmp(file_paths[i], abs) == 0)
            return i;
    if (count >= MAX_TAP_FILES) {
        debug_line("tap file %s not tapped: at most %d tap files", abs, MAX_TAP_FILES);
        return -1;
    }
    /* Opening files is not a hot path; a lost race only costs a duplicate index. */
    int i = atomic_fetch_add(&file_count, 1);
    if (i >= MAX_TAP_FILES)
        return -1;
    memcpy(file_paths[i], abs, strlen(abs) + 1);
    debug_line("tapping file %s (index %d)", abs, i);
    announce_file(i);
    return i;
}

/*
 * ---- stream identity (interceptor/src/streams.rs, same variable and format) ----
 * fd 1 / fd 2 are tapped only while they are *the* stdout / stderr of the first tapped process
 * of the tree: `(st_dev, st_ino)` recorded in LLT_STREAM_IDS (`<dev>:<ino>,<dev>:<ino>`, `-`
 * for a stream that was not open), inherited by descendants. A command substitution's pipe,
 * /dev/null, a pipeline's inner stage are not that stream: untapped, never suppressed.
 * Re-evaluated when a hooked call changes fd 1 or 2; one fstat per change, none per write.
 */
static struct {
    bool known;
    uint64_t dev, ino;
} stream_ids[2];
static _Atomic uint8_t fd_stream[3];

static bool dev_ino(int fd, uint64_t *dev, uint64_t *ino)
{
    struct stat st;
    if (syscall(SYS_fstat, fd, &st) != 0)
        return false;
    *dev = (uint64_t)st.st_dev;
    *ino = (uint64_t)st.st_ino;
    return true;
}

static void evaluate_fd(int fd)
{
    if (fd != 1 && fd != 2)
        return;
    int saved = errno;
    uint64_t dev, ino;
    uint8_t stream = 0;
    if (dev_ino(fd, &dev, &ino)) {
        int own = fd - 1, other = 2 - fd;
        if (stream_ids[own].known && stream_ids[own].dev == dev && stream_ids[own].ino == ino)
            stream = (uint8_t)fd;
        else if (stream_ids[other].known && stream_ids[other].dev == dev &&
                 stream_ids[other].ino == ino)
            stream = (uint8_t)(other + 1);
    }
    atomic_store_explicit(&fd_stream[fd], stream, memory_order_relaxed);
    errno = saved;
}

static bool parse_id(const char *s, size_t n, int which)
{
    if (n == 1 && s[0] == '-')
        return true;
    const char *colon = memchr(s, ':', n);
    uint64_t dev, ino;
    if (!colon || !parse_u64(s, (size_t)(colon - s), &dev) ||
        !parse_u64(colon + 1, n - (size_t)(colon - s) - 1, &ino))
        return false;
    stream_ids[which].known = true;
    stream_ids[which].dev = dev;
    stream_ids[which].ino = ino;
    return true;
}

static void init_streams(void)
{
    const char *v = getenv("LLT_STREAM_IDS");
    const char *comma = v ? strchr(v, ',') : NULL;
    if (!comma || !parse_id(v, (size_t)(comma - v), 0) || !parse_id(comma + 1, strlen(comma + 1), 1)) {
        /* The first tapped process of the tree: its own fd 1 and fd 2 are the streams. */
        char buf[96];
        size_t at = 0;
        for (int i = 0; i < 2; i++) {
            stream_ids[i].known = dev_ino(i + 1, &stream_ids[i].dev, &stream_ids[i].ino);
            int n = stream_ids[i].known
                        ? snprintf(buf + at, sizeof buf - at, "%s%llu:%llu", i ? "," : "",
                                   (unsigned long long)stream_ids[i].dev,
                                   (unsigned long long)stream_ids[i].ino)
                        : snprintf(buf + at, sizeof buf - at, "%s-", i ? "," : "");
            if (n > 0 && (size_t)n < sizeof buf - at)
                at += (size_t)n;
        }
        setenv("LLT_STREAM_IDS", buf, 1);
    }
    evaluate_fd(1);
    evaluate_fd(2);
}

/* ---- classification ---- */
static int stream_of(int fd, int *file_index)
{
    *file_index = 0;
    if (!enabled)
        return 0;
    if (fd == 1 || fd == 2) {
        int s = atomic_load_explicit(&fd_stream[fd], memory_order_relaxed);
        if ((s == STREAM_STDOUT && cfg.tap_stdout) || (s == STREAM_STDERR && cfg.tap_stderr))
            return s;
    }
    int i = fd_file_index(fd);
    if (i >= 0) {
        *file_index = i;
        return STREAM_FILE;
    }
    return 0;
}

static bool suppressed(int stream)
{
    return (stream == STREAM_STDOUT && cfg.suppress_stdout) ||
           (stream == STREAM_STDERR && cfg.suppress_stderr) ||
           (stream == STREAM_FILE && cfg.suppress_tap_file);
}

/* ---- the connection to the agent ---- */
static _Atomic int control_fd = -1;
static _Atomic int connecting;
static _Atomic uint64_t next_attempt_ns;
static _Atomic uint64_t next_check_ns;
static int ring_fd = -1, wake_fd = -1;
/* Copies dropped per stream (index 1..3) since the last LOSS frame. */
static _Atomic uint64_t lost_frames[4], lost_bytes[4];
static _Atomic int file_target_fd = -1;

static int send_frame(int sock, const uint8_t *header, const void *payload, size_t len,
                      const int *fds, int nfds)
{
    struct iovec iov[2] = {{(void *)header, FRAME_HEADER}, {(void *)payload, len}};
    struct msghdr msg = {0};
    union {
        char buf[CMSG_SPACE(2 * sizeof(int))];
        struct cmsghdr align;
    } control;
    msg.msg_iov = iov;
    msg.msg_iovlen = len ? 2 : 1;
    if (nfds > 0) {
        memset(&control, 0, sizeof control);
        msg.msg_control = control.buf;
        msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    ssize_t r = syscall(SYS_sendmsg, sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    return r == (ssize_t)(FRAME_HEADER + len) ? 0 : -1;
}

static size_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = syscall(SYS_read, fd, buf, cap);
    raw_close(fd);
    return n > 0 ? (size_t)n : 0;
}

static void announce_file(int index)
{
    int sock = atomic_load(&control_fd);
    if (sock < 0 || atomic_load(&file_announced[index]))
        return;
    uint8_t payload[MAX_PATH_LEN + 64], header[FRAME_HEADER];
    llt_bytes path = {(const uint8_t *)file_paths[index], strlen(file_paths[index])};
    ssize_t n = llt_encode_file(payload, sizeof payload, (uint32_t)index, path);
    if (n < 0 || llt_frame_header(header, KIND_FILE, 0, 0, my_pid(), next_seq(), now_ns(), 0,
                                  (uint32_t)n) != 0)
        return;
    if (send_frame(sock, header, payload, (size_t)n, NULL, 0) == 0)
        atomic_store(&file_announced[index], 1);
}

/*
 * HELLO's `meta` and `container_id`, as liblogtap.so sends them (interceptor/src/sender/
 * hello.rs): POD_NAME, POD_NAMESPACE, CONTAINER_NAME, NODE_NAME and every LLT_META_<KEY>
 * (key lower-cased), captured by the constructor; the last run of 64 hex digits in
 * /proc/self/cgroup.
 */
#define META_PAIRS 16
static char meta_buf[2048];
static llt_bytes meta_pairs[2 * META_PAIRS];
static size_t meta_count;

static void capture_meta(void)
{
    extern char **environ;
    size_t at = 0;
    for (char **e = environ; e && *e && meta_count < META_PAIRS; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        size_t name_len = (size_t)(eq - *e);
        const char *key = *e;
        size_t key_len = name_len;
        if (name_len > 9 && strncmp(*e, "LLT_META_", 9) == 0) {
            key += 9, key_len -= 9;
        } else if (!((name_len == 8 && strncmp(*e, "POD_NAME", 8) == 0) ||
                     (name_len == 13 && strncmp(*e, "POD_NAMESPACE", 13) == 0) ||
                     (name_len == 14 && strncmp(*e, "CONTAINER_NAME", 14) == 0) ||
                     (name_len == 9 && strncmp(*e, "NODE_NAME", 9) == 0))) {
            continue;
        }
        size_t value_len = strlen(eq + 1);
        if (key_len > 64 || at + key_len + value_len > sizeof meta_buf)
            continue;
        char *k = meta_buf + at;
        for (size_t i = 0; i < key_len; i++)
            k[i] = (char)((key[i] >= 'A' && key[i] <= 'Z') ? key[i] - 'A' + 'a' : key[i]);
        memcpy(k + key_len, eq + 1, value_len);
        meta_pairs[2 * meta_count] = (llt_bytes){(const uint8_t *)k, key_len};
        meta_pairs[2 * meta_count + 1] = (llt_bytes){(const uint8_t *)k + key_len, value_len};
        meta_count++;
        at += key_len + value_len;
    }
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static llt_bytes container_id(const char *cgroup, size_t n)
{
    llt_bytes best = {NULL, 0};
    size_t start = 0;
    bool in_run = false;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && is_hex(cgroup[i])) {
            if (!in_run)
                start = i, in_run = true;
        } else if (in_run) {
            in_run = false;
            if (i - start == 64)
                best = (llt_bytes){(const uint8_t *)cgroup + start, 64};
        }
    }
    return best;
}

static bool send_hello(int sock, bool ring)
{
    static uint8_t payload[16 * 1024];
    char comm[64], exe[MAX_PATH_LEN];
    struct utsname uts;
    size_t comm_len = read_small("/proc/self/comm", comm, sizeof comm);
    while (comm_len > 0 && comm[comm_len - 1] == '\n')
        comm_len--;
    ssize_t exe_len = syscall(SYS_readlink, "/proc/self/exe", exe, sizeof exe);
    if (exe_len < 0)
        exe_len = 0;
    if (syscall(SYS_uname, &uts) != 0)
        uts.nodename[0] = 0;
    llt_bytes files[MAX_TAP_FILES];
    int nfiles = atomic_load(&file_count);
    if (nfiles > MAX_TAP_FILES)
        nfiles = MAX_TAP_FILES;
    for (int i = 0; i < nfiles; i++) {
        files[i].ptr = (const uint8_t *)file_paths[i];
        files[i].len = strlen(file_paths[i]);
    }
    llt_bytes b_comm = {(const uint8_t *)comm, comm_len};
    llt_bytes b_exe = {(const uint8_t *)exe, (size_t)exe_len};
    llt_bytes b_host = {(const uint8_t *)uts.nodename, strnlen(uts.nodename, sizeof uts.nodename)};
    static char cgroup[4096];
    llt_bytes b_cid = container_id(cgroup, read_small("/proc/self/cgroup", cgroup, sizeof cgroup));
    llt_bytes b_version = {(const uint8_t *)LLT_VERSION, strlen(LLT_VERSION)};
    uint32_t ppid = (uint32_t)syscall(SYS_getppid);
    ssize_t n = llt_encode_hello(payload, sizeof payload, my_pid(), ppid, b_comm, b_exe, b_host,
                                 b_cid, b_version, files, (size_t)nfiles, meta_pairs,
                                 meta_count, ring);
    uint8_t header[FRAME_HEADER];
    if (n < 0 || llt_frame_header(header, KIND_HELLO, 0, 0, my_pid(), next_seq(), now_ns(), 0,
                                  (uint32_t)n) != 0)
        return false;
    int fds[2] = {ring_fd, wake_fd};
    if (send_frame(sock, header, payload, (size_t)n, fds, ring ? 2 : 0) != 0)
        return false;
    for (int i = 0; i < nfiles; i++)
        atomic_store(&file_announced[i], 1);
    return true;
}

static void report_loss(int sock)
{
    for (int stream = 1; stream <= 3; stream++) {
        uint64_t frames = atomic_exchange(&lost_frames[stream], 0);
        uint64_t bytes = atomic_exchange(&lost_bytes[stream], 0);
        if (!frames && !bytes)
            continue;
        uint8_t payload[64], header[FRAME_HEADER];
        ssize_t n = llt_encode_loss(payload, sizeof payload, frames, bytes);
        if (n < 0 ||
            llt_frame_header(header, KIND_LOSS, (uint8_t)stream, 0, my_pid(), next_seq(), now_ns(),
                             0, (uint32_t)n) != 0 ||
            send_frame(sock, header, payload, (size_t)n, NULL, 0) != 0) {
            atomic_fetch_add(&lost_frames[stream], frames);
            atomic_fetch_add(&lost_bytes[stream], bytes);
        }
    }
}

/*
 * Moves a descriptor of ours out of the way, close-on-exec: to 900 or above (as liblogtap.so:
 * ¾ of a small RLIMIT_NOFILE of 1024), else anywhere above 2 — never 0, 1, 2, and rarely a
 * number the program picks for its own dup2.
 */
static int high_fd(int fd)
{
    if (fd < 0)
        return fd;
    int moved = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 900);
    if (moved < 0) {
        if (fd > 2)
            return fd;
        moved = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 3);
    }
    raw_close(fd);
    return moved;
}

static bool ensure_ring(void)
{
    if (ring_fd >= 0)
        return true;
    int fd = high_fd(llt_ring_create(cfg.ring_size, my_pid()));
    if (fd < 0) {
        debug_line("cannot create the ring memfd (errno %d); using DATA frames", errno);
        return false;
    }
    int efd = high_fd((int)syscall(SYS_eventfd2, 0, O_CLOEXEC | O_NONBLOCK));
    if (efd < 0 || llt_ring_map(fd, efd) != 0) {
        raw_close(fd);
        if (efd >= 0)
            raw_close(efd);
        debug_line("cannot map the ring; using DATA frames");
        return false;
    }
    ring_fd = fd;
    wake_fd = efd;
    return true;
}

static bool connect_now(void)
{
    bool ring = !cfg.transport_socket && ensure_ring();
    int sock = high_fd((int)syscall(SYS_socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (sock < 0)
        return false;
    int sndbuf = 1 << 20;
    syscall(SYS_setsockopt, sock, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t n = strlen(cfg.target_path);
    memcpy(addr.sun_path, cfg.target_path, n);
    if (syscall(SYS_connect, sock, &addr, sizeof addr) != 0) {
        debug_line("cannot connect to target socket %s (errno %d)", cfg.target_path, errno);
        raw_close(sock);
        return false;
    }
    if (!send_hello(sock, ring)) {
        debug_line("cannot send HELLO (errno %d)", errno);
        raw_close(sock);
        return false;
    }
    report_loss(sock);
    atomic_store(&control_fd, sock);
    int count = atomic_load(&file_count);
    for (int i = 0; i < count && i < MAX_TAP_FILES; i++)
        announce_file(i);
    debug_line("Successfully connected to target socket%s.", ring ? " (ring)" : " (DATA frames)");
    return true;
}

static void hang_up(void)
{
    int fd = atomic_exchange(&control_fd, -1);
    if (fd >= 0)
        raw_close(fd);
    for (int i = 0; i < MAX_TAP_FILES; i++)
        atomic_store(&file_announced[i], 0);
}

/* Keeps the connection up: connects when due, notices a hung-up agent at most once a second. */
static bool maintain(void)
{
    uint64_t now = mono_ns();
    int sock = atomic_load(&control_fd);
    if (sock >= 0) {
        if (now < atomic_load_explicit(&next_check_ns, memory_order_relaxed))
            return true;
        atomic_store(&next_check_ns, now + 1000000000ull);
        char b;
        ssize_t r = syscall(SYS_recvfrom, sock, &b, 1, MSG_DONTWAIT | MSG_PEEK, NULL, NULL);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            debug_line("the agent hung up; reconnecting");
            hang_up();
        } else {
            return true;
        }
    }
    int expected = 0;
    if (atomic_load(&connecting) ||
        (now >= atomic_load(&next_attempt_ns) &&
         !atomic_compare_exchange_strong(&connecting, &expected, 1))) {
        /* Another thread is connecting (this thread is not: it would hold the guard): wait
         * for it, bounded, rather than drop the copy or un-suppress the write. */
        for (int i = 0; i < 2000 && atomic_load(&connecting); i++)
            sleep_ns(100000);
        return atomic_load(&control_fd) >= 0;
    }
    if (now < atomic_load(&next_attempt_ns))
        return false;
    bool early = now - load_mono_ns < cfg.first_connect_s * 1000000000ull;
    atomic_store(&next_attempt_ns, now + (early ? 100000000ull : cfg.reconnect_s * 1000000000ull));
    bool ok = connect_now();
    atomic_store(&connecting, 0);
    return ok;
}

/* ---- copying tapped bytes ---- */
/* The consumer's progress counter when a wait for room last gave up (see push_wait). */
static _Atomic bool stalled;
static _Atomic uint64_t stalled_at;

static bool push_wait(uint8_t stream, uint8_t flags, uint16_t index, uint32_t seq, uint64_t t,
                      const uint8_t *data, size_t len)
{
    int r = llt_ring_push(stream, flags, index, my_pid(), seq, t, data, len);
    if (r != PUSH_FULL || cfg.ring_full_drop)
        return r == PUSH_OK;
    /* Full: wait while a live agent drains (bounded), as liblogtap.so does — but only once
     * for a stalled agent: until the consumer moves again, later writes drop at once. */
    uint64_t seen = llt_ring_consumed();
    if (atomic_load_explicit(&stalled, memory_order_relaxed) &&
        atomic_load_explicit(&stalled_at, memory_order_relaxed) == seen)
        return false;
    atomic_store_explicit(&stalled, false, memory_order_relaxed);
    uint64_t start = mono_ns(), last_move = start;
    for (;;) {
        llt_ring_wake();
        sleep_ns(50000);
        r = llt_ring_push(stream, flags, index, my_pid(), seq, t, data, len);
        if (r != PUSH_FULL)
            return r == PUSH_OK;
        uint64_t now = mono_ns(), c = llt_ring_consumed();
        if (c != seen)
            seen = c, last_move = now;
        if (now - last_move > 200000000ull || now - start > 1000000000ull) {
            atomic_store_explicit(&stalled_at, c, memory_order_relaxed);
            atomic_store_explicit(&stalled, true, memory_order_relaxed);
            debug_line("the ring is full and the agent makes no progress: copies are dropped "
                       "(suppressed streams written for real) until it moves again");
            return false;
        }
    }
}

/* Copies `len` bytes of `stream` to the agent (or the file target). True if every byte went. */
static bool tap_bytes(int stream, int file_index, const void *buf, size_t len)
{
    if (len == 0)
        return true;
    if (cfg.passive_ms && mono_ns() - load_mono_ns < cfg.passive_ms * 1000000ull)
        return false;
    if (cfg.target_kind == TARGET_FILE) {
        int fd = atomic_load(&file_target_fd);
        if (fd < 0) {
            fd = high_fd((int)syscall(SYS_openat, AT_FDCWD, cfg.target_path,
                                      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
            int none = -1;
            if (fd >= 0 && !atomic_compare_exchange_strong(&file_target_fd, &none, fd)) {
                raw_close(fd); /* another thread opened it first */
                fd = none;
            }
        }
        return fd >= 0 && raw_write(fd, buf, len) == (ssize_t)len;
    }
    if (!maintain())
        goto lost;
    const uint8_t *p = buf;
    size_t max = llt_ring_max_payload();
    uint64_t t = now_ns();
    if (max > 0) {
        while (len > 0) {
            size_t n = len < max ? len : max;
            uint8_t flags = n < len ? RECORD_CONTINUED : 0;
            if (!push_wait((uint8_t)stream, flags, (uint16_t)file_index, next_seq(), t, p, n)) {
                llt_ring_note_dropped(1, len);
                return false;
            }
            p += n, len -= n;
        }
        return true;
    }
    int sock = atomic_load(&control_fd);
    while (len > 0) {
        size_t n = len < MAX_DATA_PAYLOAD ? len : MAX_DATA_PAYLOAD;
        uint8_t header[FRAME_HEADER];
        llt_frame_header(header, KIND_DATA, (uint8_t)stream, n < len ? 1 : 0, my_pid(),
                         next_seq(), t, (uint32_t)(stream == STREAM_FILE ? file_index : 0),
                         (uint32_t)n);
        if (send_frame(sock, header, p, n, NULL, 0) != 0)
            goto lost;
        p += n, len -= n;
    }
    return true;
lost:
    atomic_fetch_add(&lost_frames[stream & 3], 1);
    atomic_fetch_add(&lost_bytes[stream & 3], len);
    return false;
}

/*
 * Taps what one FILE flush hands to the kernel in one writev — the buffered bytes, then the
 * caller's — as one record when it fits a stack copy, so that another thread's write cannot
 * land between the two halves of a line (the kernel got them in one system call too).
 */
#define JOIN_MAX 4096
static bool tap_joined(int stream, int index, const unsigned char *a, size_t na,
                       const unsigned char *b, size_t nb)
{
    if (na == 0 || nb == 0 || na + nb > JOIN_MAX) {
        bool ok = tap_bytes(stream, index, a, na);
        return tap_bytes(stream, index, b, nb) && ok;
    }
    unsigned char joined[JOIN_MAX];
    memcpy(joined, a, na);
    memcpy(joined + na, b, nb);
    return tap_bytes(stream, index, joined, na + nb);
}

/* Taps the first `accepted` bytes of an iovec array. */
/* Copies the first `n` (≤ JOIN_MAX) bytes of an iovec array into `out`. */
static void gather(const struct iovec *iov, int cnt, size_t n, unsigned char *out)
{
    for (int i = 0; i < cnt && n > 0; i++) {
        size_t k = iov[i].iov_len < n ? iov[i].iov_len : n;
        memcpy(out, iov[i].iov_base, k);
        out += k, n -= k;
    }
}

static void tap_iov(int stream, int index, const struct iovec *iov, int cnt, size_t accepted)
{
    if (cnt > 1 && accepted <= JOIN_MAX) { /* one system call, one record */
        unsigned char joined[JOIN_MAX];
        gather(iov, cnt, accepted, joined);
        tap_bytes(stream, index, joined, accepted);
        return;
    }
    for (int i = 0; i < cnt && accepted > 0; i++) {
        size_t n = iov[i].iov_len < accepted ? iov[i].iov_len : accepted;
        tap_bytes(stream, index, iov[i].iov_base, n);
        accepted -= n;
    }
}

/* ---- the write family ---- */
EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
    int index, stream = in_hook ? 0 : stream_of(fd, &index);
    if (!stream)
        return raw_write(fd, buf, n);
    int saved = errno;
    in_hook = 1;
    if (suppressed(stream) && tap_bytes(stream, index, buf, n)) {
        in_hook = 0;
        errno = saved;
        return (ssize_t)n;
    }
    ssize_t r = raw_write(fd, buf, n);
    saved = errno;
    if (r > 0 && !suppressed(stream))
        tap_bytes(stream, index, buf, (size_t)r);
    in_hook = 0;
    errno = saved;
    return r;
}

static size_t iov_total(const struct iovec *iov, int cnt)
{
    size_t total = 0;
    for (int i = 0; i < cnt && iov; i++)
        total += iov[i].iov_len;
    return total;
}

/* Taps a whole iovec as one suppressed write: all or nothing. */
static bool tap_iov_suppressed(int stream, int index, const struct iovec *iov, int cnt)
{
    size_t total = iov_total(iov, cnt);
    if (cnt > 1 && total <= JOIN_MAX) {
        unsigned char joined[JOIN_MAX];
        gather(iov, cnt, total, joined);
        return tap_bytes(stream, index, joined, total);
    }
    for (int i = 0; i < cnt; i++)
        if (!tap_bytes(stream, index, iov[i].iov_base, iov[i].iov_len))
            return false;
    return true;
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
    int index, stream = in_hook ? 0 : stream_of(fd, &index);
    if (!stream || cnt < 0)
        return syscall(SYS_writev, fd, iov, cnt);
    int saved = errno;
    in_hook = 1;
    if (suppressed(stream) && tap_iov_suppressed(stream, index, iov, cnt)) {
        in_hook = 0;
        errno = saved;
        return (ssize_t)iov_total(iov, cnt);
    }
    ssize_t r = syscall(SYS_writev, fd, iov, cnt);
    saved = errno;
    if (r > 0 && !suppressed(stream))
        tap_iov(stream, index, iov, cnt, (size_t)r);
    in_hook = 0;
    errno = saved;
    return r;
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
    int index, stream = in_hook ? 0 : stream_of(fd, &index);
    if (!stream)
        return syscall(SYS_pwrite64, fd, buf, n, off);
    int saved = errno;
    in_hook = 1;
    if (suppressed(stream) && tap_bytes(stream, index, buf, n)) {
        in_hook = 0;
        errno = saved;
        return (ssize_t)n;
    }
    ssize_t r = syscall(SYS_pwrite64, fd, buf, n, off);
    saved = errno;
    if (r > 0 && !suppressed(stream))
        tap_bytes(stream, index, buf, (size_t)r);
    in_hook = 0;
    errno = saved;
    return r;
}

EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
    int index, stream = in_hook ? 0 : stream_of(fd, &index);
    if (!stream || cnt < 0)
        return syscall(SYS_pwritev, fd, iov, cnt, (long)off, (long)((uint64_t)off >> 32));
    int saved = errno;
    in_hook = 1;
    if (suppressed(stream) && tap_iov_suppressed(stream, index, iov, cnt)) {
        in_hook = 0;
        errno = saved;
        return (ssize_t)iov_total(iov, cnt);
    }
    ssize_t r = syscall(SYS_pwritev, fd, iov, cnt, (long)off, (long)((uint64_t)off >> 32));
    saved = errno;
    if (r > 0 && !suppressed(stream))
        tap_iov(stream, index, iov, cnt, (size_t)r);
    in_hook = 0;
    errno = saved;
    return r;
}

/* ---- musl stdio: the FILE's own write function ---- */

/* The head of musl's `struct _IO_FILE` (src/internal/stdio_impl.h), x86_64. */
struct musl_file {
    unsigned flags;
    unsigned char *rpos, *rend;
    int (*close)(FILE *);
    unsigned char *wend, *wpos;
    unsigned char *mustbezero_1;
    unsigned char *wbase;
    size_t (*read)(FILE *, unsigned char *, size_t);
    size_t (*write)(FILE *, const unsigned char *, size_t);
    off_t (*seek)(FILE *, off_t, int);
    unsigned char *buf;
    size_t buf_size;
    FILE *prev, *next;
    int fd;
    int pipe_pid;
    long lockcount;
    int mode;
    volatile int lock;
    int lbf;
};
_Static_assert(offsetof(struct musl_file, write) == 72, "musl FILE layout");
_Static_assert(offsetof(struct musl_file, fd) == 120, "musl FILE layout");
_Static_assert(offsetof(struct musl_file, lbf) == 144, "musl FILE layout");
#define F_ERR 32
#define F_SVB 64

typedef size_t (*file_write_fn)(FILE *, const unsigned char *, size_t);
#define MAX_HOOKED_FILES 64
static struct {
    _Atomic(struct musl_file *) file;
    _Atomic(file_write_fn) orig;
} hooked[MAX_HOOKED_FILES];
static bool stdio_ok;
static uintptr_t libc_base;
/* musl's `__stdio_write` (stderr's write function) and `__stdout_write` (stdout's until its
 * first call, when it decides line or full buffering and hands over to `__stdio_write`). */
static file_write_fn stdio_write_fn, stdout_write_fn;

static bool in_libc(const void *p)
{
    Dl_info info;
    return p && dladdr(p, &info) && (uintptr_t)info.dli_fbase == libc_base;
}

static size_t hooked_write(FILE *f, const unsigned char *buf, size_t len);

static file_write_fn orig_of(struct musl_file *f)
{
    for (int i = 0; i < MAX_HOOKED_FILES; i++)
        if (atomic_load(&hooked[i].file) == f)
            return atomic_load(&hooked[i].orig);
    return NULL;
}

/* Checks the fields we rely on; true if `f` looks like a musl FILE we may hook. */
static bool plausible(struct musl_file *f, int fd)
{
    if (!f || f->fd != fd || !in_libc((const void *)f->write))
        return false;
    if (f->buf_size > (1u << 24) || (f->buf_size && !f->buf))
        return false;
    if (f->wbase && (f->wpos < f->wbase || (f->wend && f->wpos > f->wend)))
        return false;
    return true;
}

static bool hook_file(struct musl_file *f)
{
    if (!stdio_ok || !f || (file_write_fn)f->write == hooked_write)
        return f && (file_write_fn)f->write == hooked_write;
    if (!plausible(f, f->fd))
        return false;
    int free_slot = -1;
    for (int i = 0; i < MAX_HOOKED_FILES; i++) {
        struct musl_file *g = atomic_load(&hooked[i].file);
        if (g == f) {
            free_slot = i;
            break;
        }
        if (!g && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0)
        return false;
    atomic_store(&hooked[free_slot].orig, f->write);
    atomic_store(&hooked[free_slot].file, f);
    f->write = hooked_write;
    return true;
}

/*
 * Called by musl with the FILE locked, exactly where it would hand [wbase, wpos) and `buf` to
 * the kernel. Taps those bytes (once the original wrote them, or instead of it when the stream
 * is suppressed and the copy was taken) and keeps the hook in place (`__stdout_write` replaces
 * itself with `__stdio_write` on its first call).
 */
static size_t hooked_write(FILE *file, const unsigned char *buf, size_t len)
{
    struct musl_file *f = (struct musl_file *)file;
    file_write_fn orig = orig_of(f);
    if (!orig) /* cannot happen: only registered FILEs carry the hook */
        return 0;
    int index, stream = in_hook ? 0 : stream_of(f->fd, &index);
    if (!stream)
        goto plain;
    unsigned char *pending = f->wbase;
    size_t npending = (f->wbase && f->wpos > f->wbase) ? (size_t)(f->wpos - f->wbase) : 0;
    int saved = errno;
    in_hook = 1;
    if (suppressed(stream)) {
        if (orig == stdout_write_fn && stdout_write_fn != stdio_write_fn && stdio_write_fn) {
            /* What __stdout_write does before its first write: full buffering unless the
             * stream is a terminal (or setvbuf chose) — then it is __stdio_write for good. */
            struct winsize wsz;
            if (!(f->flags & F_SVB) && syscall(SYS_ioctl, f->fd, TIOCGWINSZ, &wsz) != 0)
                f->lbf = EOF;
            for (int i = 0; i < MAX_HOOKED_FILES; i++)
                if (atomic_load(&hooked[i].file) == f)
                    atomic_store(&hooked[i].orig, stdio_write_fn);
        }
        if (tap_joined(stream, index, pending, npending, buf, len)) {
            /* What __stdio_write does after the kernel took everything. */
            f->wend = f->buf + f->buf_size;
            f->wpos = f->wbase = f->buf;
            in_hook = 0;
            errno = saved;
            return len;
        }
    }
    in_hook = 0;
    size_t r = orig(file, buf, len);
    saved = errno;
    if (!(f->flags & F_ERR) && r == len && !suppressed(stream)) {
        in_hook = 1;
        tap_joined(stream, index, pending, npending, buf, len);
        in_hook = 0;
    }
    if ((file_write_fn)f->write != hooked_write && in_libc((const void *)f->write)) {
        for (int i = 0; i < MAX_HOOKED_FILES; i++)
            if (atomic_load(&hooked[i].file) == f)
                atomic_store(&hooked[i].orig, f->write);
        f->write = hooked_write;
    }
    errno = saved;
    return r;
plain:;
    size_t out = orig(file, buf, len);
    if ((file_write_fn)f->write != hooked_write && in_libc((const void *)f->write)) {
        for (int i = 0; i < MAX_HOOKED_FILES; i++)
            if (atomic_load(&hooked[i].file) == f)
                atomic_store(&hooked[i].orig, f->write);
        f->write = hooked_write;
    }
    return out;
}

static void setup_stdio(void)
{
    Dl_info info;
    if (!dladdr((const void *)fputs, &info)) {
        debug_line("stdio not tapped: cannot locate libc (dladdr)");
        return;
    }
    libc_base = (uintptr_t)info.dli_fbase;
    struct musl_file *out = (struct musl_file *)stdout, *err = (struct musl_file *)stderr;
    if (!plausible(out, 1) || !plausible(err, 2) || !in_libc((const void *)out)) {
        debug_line("stdio not tapped: libc's FILE layout is not musl's (stdout fd %d)",
                   out ? out->fd : -1);
        return;
    }
    stdio_ok = true;
    stdout_write_fn = out->write;
    stdio_write_fn = err->write;
    hook_file(out);
    hook_file(err);
}

/* ---- tap files: open & co. ---- */
static int track_open(const char *path, int fd)
{
    evaluate_fd(fd);
    if (fd >= 0 && enabled && !in_hook) {
        int saved = errno;
        in_hook = 1;
        fd_set_file(fd, tap_file_index(path));
        in_hook = 0;
        errno = saved;
    } else if (fd >= 0) {
        fd_set_file(fd, -1);
    }
    return fd;
}

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

EXPORT int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return track_open(path, (int)syscall(SYS_openat, AT_FDCWD, path, flags | O_LARGEFILE, mode));
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    int fd = (int)syscall(SYS_openat, dirfd, path, flags | O_LARGEFILE, mode);
    /* Relative to another directory: tracked only when the path is absolute. */
    return dirfd == AT_FDCWD || (path && path[0] == '/') ? track_open(path, fd) : fd;
}

EXPORT int creat(const char *path, mode_t mode)
{
    return open(path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

/* The libc function `name` behind our export. */
static void *next_symbol(const char *name)
{
    return dlsym(RTLD_NEXT, name);
}

static FILE *track_file(const char *path, FILE *f)
{
    if (!f)
        return f;
    int fd = fileno(f);
    if (path)
        track_open(path, fd);
    if (fd_file_index(fd) >= 0 && !hook_file((struct musl_file *)f))
        debug_line("tap file fd %d: its FILE is not tapped through stdio", fd);
    return f;
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
    static FILE *(*real)(const char *, const char *);
    if (!real)
        real = (FILE * (*)(const char *, const char *)) next_symbol("fopen");
    if (!real) {
        errno = ENOSYS;
        return NULL;
    }
    return track_file(path, real(path, mode));
}

EXPORT FILE *freopen(const char *path, const char *mode, FILE *f)
{
    static FILE *(*real)(const char *, const char *, FILE *);
    if (!real)
        real = (FILE * (*)(const char *, const char *, FILE *)) next_symbol("freopen");
    if (!real) {
        errno = ENOSYS;
        return NULL;
    }
    return track_file(path, real(path, mode, f));
}

EXPORT FILE *fdopen(int fd, const char *mode)
{
    static FILE *(*real)(int, const char *);
    if (!real)
        real = (FILE * (*)(int, const char *)) next_symbol("fdopen");
    if (!real) {
        errno = ENOSYS;
        return NULL;
    }
    return track_file(NULL, real(fd, mode));
}

/* musl's fclose closes its fd and frees the FILE internally (not through our close): forget
 * both first, so that neither a later descriptor of that number nor a later FILE at that
 * address is taken for a tap file. */
EXPORT int fclose(FILE *f)
{
    static int (*real)(FILE *);
    if (!real)
        real = (int (*)(FILE *))next_symbol("fclose");
    if (!real) {
        errno = ENOSYS;
        return EOF;
    }
    if (f) {
        struct musl_file *m = (struct musl_file *)f;
        /* Its last buffered bytes leave through the hook, tapped (or suppressed). */
        if (orig_of(m))
            fflush(f);
        for (int i = 0; i < MAX_HOOKED_FILES; i++) {
            if (atomic_load(&hooked[i].file) == m) {
                /* Hand the FILE back to musl's own write before it flushes and frees it. */
                if ((file_write_fn)m->write == hooked_write)
                    m->write = atomic_load(&hooked[i].orig);
                atomic_store(&hooked[i].file, NULL);
            }
        }
        fd_set_file(fileno(f), -1);
        return real(f);
    }
    return real(f);
}

/* ---- stream identity through dup and close ---- */
static int track_dup(int from, int to)
{
    if (to >= 0 && to != from)
        fd_set_file(to, fd_file_index(from));
    evaluate_fd(to);
    return to;
}

EXPORT int dup(int fd) { return track_dup(fd, (int)syscall(SYS_dup, fd)); }

EXPORT int dup2(int from, int to)
{
    if (from == to) /* dup2 of an fd onto itself only checks it is open */
        return syscall(SYS_fcntl, from, F_GETFD) < 0 ? -1 : to;
    return track_dup(from, (int)syscall(SYS_dup2, from, to));
}

EXPORT int dup3(int from, int to, int flags) { return track_dup(from, (int)syscall(SYS_dup3, from, to, flags)); }

EXPORT int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    unsigned long arg = va_arg(ap, unsigned long);
    va_end(ap);
    static int (*real)(int, int, ...);
    if (!real)
        real = (int (*)(int, int, ...))next_symbol("fcntl");
    int r = real ? real(fd, cmd, arg) : (int)syscall(SYS_fcntl, fd, cmd, arg);
    if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
        track_dup(fd, r);
    return r;
}

EXPORT int close(int fd)
{
    /* Never let the program close our own descriptors under us (a close-all loop): skipped
     * and reported as success, as liblogtap.so does. */
    if (fd >= 3 && (fd == ring_fd || fd == wake_fd || fd == atomic_load(&control_fd) ||
                    fd == atomic_load(&file_target_fd)))
        return 0;
    fd_set_file(fd, -1);
    int r = (int)syscall(SYS_close, fd);
    evaluate_fd(fd);
    return r;
}

/* ---- fork and load ---- */
static void in_child(void)
{
    atomic_store(&cached_pid, 0);
    int fd = atomic_exchange(&control_fd, -1);
    if (fd >= 0)
        raw_close(fd);
    /* The parent's ring is the parent's: the child makes its own at its first tapped write. */
    llt_ring_forget();
    atomic_store(&stalled, false);
    if (ring_fd >= 0)
        raw_close(ring_fd);
    if (wake_fd >= 0)
        raw_close(wake_fd);
    ring_fd = wake_fd = -1;
    atomic_store(&next_attempt_ns, 0);
    atomic_store(&connecting, 0);
    for (int i = 0; i < MAX_TAP_FILES; i++)
        atomic_store(&file_announced[i], 0);
}

/* LLT_TAP_CHILDREN=false: programs this one execs do not load the library — it leaves
 * LD_PRELOAD (every entry with its file name), as liblogtap.so does (config::preload_without). */
static void remove_self_from_preload(void)
{
    Dl_info info;
    const char *list = getenv("LD_PRELOAD");
    if (!list || !dladdr((const void *)remove_self_from_preload, &info) || !info.dli_fname)
        return;
    const char *mine = strrchr(info.dli_fname, '/');
    mine = mine ? mine + 1 : info.dli_fname;
    char out[MAX_VALUE];
    size_t at = 0;
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ": ");
        const char *base = p;
        for (size_t i = 0; i < n; i++)
            if (p[i] == '/')
                base = p + i + 1;
        size_t bn = n - (size_t)(base - p);
        if (n > 0 && !(bn == strlen(mine) && strncmp(base, mine, bn) == 0)) {
            if (at + n + 2 > sizeof out)
                return; /* too long to rewrite: leave it */
            if (at)
                out[at++] = ':';
            memcpy(out + at, p, n);
            at += n;
        }
        p += n;
        while (*p == ':' || *p == ' ')
            p++;
    }
    out[at] = 0;
    setenv("LD_PRELOAD", out, 1);
    debug_line("LLT_TAP_CHILDREN=false: LD_PRELOAD for children is now \"%s\"", out);
}

__attribute__((constructor)) static void logtap_musl_init(void)
{
    int saved = errno;
    load_mono_ns = mono_ns();
    parse_config();
    enabled = cfg.tap_stdout || cfg.tap_stderr || cfg.tap_files[0];
    if (!enabled) {
        debug_line("nothing to tap (LLT_TAP_INTO and LLT_TAP_FILE unset)");
        errno = saved;
        return;
    }
    pthread_atfork(NULL, NULL, in_child);
    capture_meta();
    bool tap_children = true;
    flag("LLT_TAP_CHILDREN", &tap_children);
    if (!tap_children)
        remove_self_from_preload();
    init_streams();
    bool python_unbuffered = true;
    flag("LLT_PYTHONUNBUFFERED", &python_unbuffered);
    /* As the seed and liblogtap.so: Python's own buffer would otherwise hold its lines. */
    if (python_unbuffered && (cfg.tap_stdout || cfg.tap_stderr))
        setenv("PYTHONUNBUFFERED", "1", 0);
    setup_stdio();
    debug_line("liblogtap-musl %s loaded: stdout %d, stderr %d, stdio %s, target %s:%s",
               LLT_VERSION, cfg.tap_stdout, cfg.tap_stderr, stdio_ok ? "tapped" : "not tapped",
               cfg.target_kind == TARGET_SOCKET ? "socket" : "file", cfg.target_path);
    errno = saved;
}
