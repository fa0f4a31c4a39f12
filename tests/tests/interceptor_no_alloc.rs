//! Contract 1, "no heap allocation on the hook path", checked on a real program: a C program
//! runs under the real `liblogtap.so` (ring transport, a real `logtap agent`) plus a small
//! allocation-counting preload whose `malloc`, `calloc`, `realloc`, `free`, `posix_memalign`,
//! `aligned_alloc`, `memalign`, `valloc` and `pvalloc` count their calls while a window is
//! open. After a warm-up (the ring made, the agent connected, stdout's FILE buffer allocated by
//! glibc), the program opens the window, makes tapped `write`, `writev`, `printf`, `puts`,
//! `fputs`, `fwrite`, `fprintf(stderr)` and `fflush` calls for more than a second (so the
//! library's once-a-second connection check falls inside), closes it and reports the counts.
//!
//! The counter is shown to count: the same program with `control` allocates once inside its
//! window, and that one `malloc` (and its `free`) must be seen.

mod interceptor_support;

use std::process::Command;
use std::time::{Duration, Instant};

use interceptor_support::run;
use logtap_tests::agent_harness::Agent;
use logtap_tests::artifacts::{self, TempDir};

/// The counting preload. Its functions resolve the next definition with
/// `dlsym(RTLD_NEXT)`; `dlsym` may itself call `calloc` before that is known, which is served
/// from a static arena (never freed, never counted).
const COUNTER_C: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

enum { MALLOC, CALLOC, REALLOC, FREE, POSIX_MEMALIGN, ALIGNED_ALLOC, MEMALIGN, VALLOC,
       PVALLOC, KINDS };
static const char *const NAMES[KINDS] = { "malloc", "calloc", "realloc", "free",
    "posix_memalign", "aligned_alloc", "memalign", "valloc", "pvalloc" };

static atomic_int counting;
static atomic_long counts[KINDS];
static void *_Atomic first_caller;
static atomic_int first_kind = -1;

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void *(*real_valloc)(size_t);
static void *(*real_pvalloc)(size_t);

static _Alignas(64) char arena[65536];
static atomic_size_t arena_used;

static int in_arena(const void *p) {
    return (const char *)p >= arena && (const char *)p < arena + sizeof arena;
}

static void *arena_alloc(size_t n) {
    n = (n + 63) & ~(size_t)63;
    size_t at = atomic_fetch_add(&arena_used, n);
    return at + n <= sizeof arena ? arena + at : NULL;
}

static atomic_int resolving;

static void resolve(void) {
    if (real_free || atomic_exchange(&resolving, 1)) return;
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = dlsym(RTLD_NEXT, "memalign");
    real_valloc = dlsym(RTLD_NEXT, "valloc");
    real_pvalloc = dlsym(RTLD_NEXT, "pvalloc");
    real_free = dlsym(RTLD_NEXT, "free");
}

static void note(int kind, void *caller) {
    if (!atomic_load(&counting)) return;
    atomic_fetch_add(&counts[kind], 1);
    void *none = NULL;
    if (atomic_compare_exchange_strong(&first_caller, &none, caller))
        atomic_store(&first_kind, kind);
}

void *malloc(size_t n) {
    resolve();
    if (!real_malloc) return arena_alloc(n);
    note(MALLOC, __builtin_return_address(0));
    return real_malloc(n);
}

void *calloc(size_t k, size_t n) {
    resolve();
    if (!real_calloc) return arena_alloc(k * n);
    note(CALLOC, __builtin_return_address(0));
    return real_calloc(k, n);
}

void *realloc(void *p, size_t n) {
    resolve();
    if (in_arena(p) || !real_realloc) {
        void *q = arena_alloc(n);
        if (q && p) memcpy(q, p, n < (size_t)(arena + sizeof arena - (char *)q) ? n : 0);
        return q;
    }
    note(REALLOC, __builtin_return_address(0));
    return real_realloc(p, n);
}

void free(void *p) {
    if (!p || in_arena(p)) return;
    resolve();
    note(FREE, __builtin_return_address(0));
    if (real_free) real_free(p);
}

int posix_memalign(void **out, size_t align, size_t n) {
    resolve();
    note(POSIX_MEMALIGN, __builtin_return_address(0));
    return real_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n) {
    resolve();
    note(ALIGNED_ALLOC, __builtin_return_address(0));
    return real_aligned_alloc(align, n);
}

void *memalign(size_t align, size_t n) {
    resolve();
    note(MEMALIGN, __builtin_return_address(0));
    return real_memalign(align, n);
}

void *valloc(size_t n) {
    resolve();
    note(VALLOC, __builtin_return_address(0));
    return real_valloc(n);
}

void *pvalloc(size_t n) {
    resolve();
    note(PVALLOC, __builtin_return_address(0));
    return real_pvalloc(n);
}

void count_begin(void) {
    for (int k = 0; k < KINDS; k++) atomic_store(&counts[k], 0);
    atomic_store(&first_caller, NULL);
    atomic_store(&first_kind, -1);
    atomic_store(&counting, 1);
}

void count_end(void) { atomic_store(&counting, 0); }

int count_kinds(void) { return KINDS; }
const char *count_name(int k) { return k >= 0 && k < KINDS ? NAMES[k] : "?"; }
long count_of(int k) { return k >= 0 && k < KINDS ? atomic_load(&counts[k]) : -1; }
void *count_first_caller(void) { return atomic_load(&first_caller); }
int count_first_kind(void) { return atomic_load(&first_kind); }
"#;

/// The tapped program: `prog tapped|control`. Prints on stderr, after its window,
/// `counted rounds=N <name>=<count>… first=<kind>@<symbol>`.
const PROGRAM_C: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static void *need(const char *name) {
    void *f = dlsym(RTLD_DEFAULT, name);
    if (!f) {
        fprintf(stderr, "the counting preload is not loaded: no %s\n", name);
        exit(2);
    }
    return f;
}

static void round_of_writes(long i) {
    if (write(1, "write line\n", 11) != 11) exit(3);
    struct iovec iov[2] = { { "writev ", 7 }, { "line\n", 5 } };
    if (writev(1, iov, 2) != 12) exit(3);
    printf("printf line %ld\n", i);
    puts("puts line");
    fputs("fputs line\n", stdout);
    fwrite("fwrite line\n", 1, 12, stdout);
    fprintf(stderr, "stderr line %ld\n", i);
    fputs("stderr fputs line\n", stderr);
    if (i % 16 == 0) fflush(stdout);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    int control = argc > 1 && strcmp(argv[1], "control") == 0;
    void (*begin)(void) = need("count_begin");
    void (*end)(void) = need("count_end");
    int (*kinds)(void) = need("count_kinds");
    const char *(*name)(int) = need("count_name");
    long (*count_of)(int) = need("count_of");
    void *(*first_caller)(void) = need("count_first_caller");
    int (*first_kind)(void) = need("count_first_kind");

    /* Warm-up: ring, connection, stdout's buffer, the lazily resolved functions. */
    for (long i = 0; i < 64; i++) round_of_writes(i);
    fflush(stdout);
    struct timespec pause = { 0, 1000000 };
    nanosleep(&pause, NULL);

    long rounds = 0;
    begin();
    double t0 = now_s();
    while (now_s() - t0 < 1.3) {
        round_of_writes(rounds++);
        nanosleep(&pause, NULL);
    }
    fflush(stdout);
    if (control) {
        void *volatile p = malloc(48);
        free(p);
    }
    end();

    char line[1024];
    int at = snprintf(line, sizeof line, "counted rounds=%ld", rounds);
    for (int k = 0; k < kinds(); k++)
        at += snprintf(line + at, sizeof line - at, " %s=%ld", name(k), count_of(k));
    void *caller = first_caller();
    Dl_info info;
    const char *where = caller && dladdr(caller, &info) ?
        (info.dli_sname ? info.dli_sname : info.dli_fname) : "-";
    snprintf(line + at, sizeof line - at, " first=%s@%s\n",
             first_kind() >= 0 ? name(first_kind()) : "-", where ? where : "?");
    fputs(line, stderr);
    /* The window's last lines, so the test can see the agent got the window's records. */
    printf("last round %ld\n", rounds - 1);
    fprintf(stderr, "last round %ld\n", rounds - 1);
    return 0;
}
"#;

struct Built {
    _dir: TempDir,
    counter: std::path::PathBuf,
    program: std::path::PathBuf,
}

fn build() -> Built {
    let dir = TempDir::new("no-alloc");
    let counter_src = dir.path().join("alloc_count.c");
    let program_src = dir.path().join("prog.c");
    std::fs::write(&counter_src, COUNTER_C).unwrap();
    std::fs::write(&program_src, PROGRAM_C).unwrap();
    let counter = artifacts::gcc(
        &counter_src,
        &dir.path().join("alloc_count.so"),
        &["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-ldl"],
    );
    let program = artifacts::gcc(
        &program_src,
        &dir.path().join("prog"),
        &["-O2", "-Wall", "-Werror", "-ldl"],
    );
    Built {
        _dir: dir,
        counter,
        program,
    }
}

/// The counts the program reported: (rounds, [(function, count)], first allocation).
fn counted(stderr: &[u8]) -> (u64, Vec<(String, u64)>, String) {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .find(|l| l.starts_with("counted "))
        .unwrap_or_else(|| panic!("the program did not report its counts; stderr:\n{text}"));
    let mut rounds = 0;
    let mut counts = Vec::new();
    let mut first = String::new();
    for field in line.split_whitespace().skip(1) {
        let (k, v) = field.split_once('=').unwrap();
        match k {
            "rounds" => rounds = v.parse().unwrap(),
            "first" => first = v.to_owned(),
            _ => counts.push((k.to_owned(), v.parse().unwrap())),
        }
    }
    (rounds, counts, first)
}

/// Runs the program under liblogtap.so + the counter with a real agent; returns its counts
/// after checking that the agent received the window's last lines on both streams.
fn run_counted(mode: &str) -> (u64, Vec<(String, u64)>, String) {
    let built = build();
    let agent = Agent::start(
        &format!("no-alloc-{mode}"),
        &["--flush-interval", "50ms", "--partial-flush", "300ms"],
    );
    let preload = format!(
        "{}:{}",
        artifacts::liblogtap().display(),
        built.counter.display()
    );
    let mut cmd = Command::new(&built.program);
    cmd.arg(mode)
        .env("LD_PRELOAD", preload)
        .env("LLT_TARGET", format!("socket:{}", agent.socket.display()))
        .env("LLT_TRANSPORT", "ring")
        .env("LLT_RING_SIZE", "4M")
        .env("LLT_TAP_INTO", "both");
    let out = run(cmd, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "the program failed ({}); stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let (rounds, counts, first) = counted(&out.stderr);
    assert!(rounds >= 10, "only {rounds} rounds in the window");
    let last = format!("last round {}", rounds - 1);
    wait_for_messages(&agent, &last, 2, Duration::from_secs(30));
    let (status, records) = agent.terminate();
    assert!(status.success(), "agent: {status}");
    for stream in ["stdout", "stderr"] {
        assert!(
            records
                .iter()
                .any(|r| r["stream"] == stream && r["message"] == last.as_str()),
            "the agent got no {stream} record {last:?}: the window's writes were not tapped"
        );
    }
    (rounds, counts, first)
}

fn wait_for_messages(agent: &Agent, message: &str, n: usize, limit: Duration) {
    let end = Instant::now() + limit;
    loop {
        let seen = agent
            .records()
            .iter()
            .filter(|r| r["message"] == message)
            .count();
        if seen >= n {
            return;
        }
        assert!(
            Instant::now() < end,
            "the agent got {seen} of {n} records {message:?} within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tapped_write_and_stdio_calls_allocate_nothing() {
    let (rounds, counts, first) = run_counted("tapped");
    let nonzero: Vec<_> = counts.iter().filter(|(_, n)| *n != 0).collect();
    assert!(
        nonzero.is_empty(),
        "Contract 1: {rounds} rounds of tapped writes allocated: {nonzero:?}, the first from \
         {first} — find that call on the hook path and take the allocation out"
    );
    assert_eq!(
        counts.len(),
        9,
        "every allocation function counted: {counts:?}"
    );
}

#[test]
fn the_counter_sees_an_allocation_inside_the_window() {
    let (_, counts, first) = run_counted("control");
    let get = |name: &str| counts.iter().find(|(k, _)| k == name).map(|(_, n)| *n);
    assert_eq!(get("malloc"), Some(1), "{counts:?}");
    assert_eq!(get("free"), Some(1), "{counts:?}");
    assert!(first.starts_with("malloc@"), "first allocation: {first}");
}
