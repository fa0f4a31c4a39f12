//! The interceptor benchmark: what tapping costs a program, measured beside its untapped
//! baseline in the same run.
//!
//! A small C program (compiled here with `gcc -O2`) does 1,000,000 `write()`s of 64 bytes,
//! 1,000,000 `printf`s of 64-byte lines, or 1,000,000 64-byte lines put character by character
//! with `putchar_unlocked` (inlined: coreutils' way), to stdout, which is `/dev/null` or a pipe drained by a
//! reader thread; it times its own loop with `clock_gettime` and prints ns per call. Each
//! combination runs without the library, with the library loaded but tapping nothing, and
//! tapping stdout to a draining receiver (ring transport, `LLT_TRANSPORT=socket`, and the ring
//! with `LLT_SUPPRESS_STDOUT=true`; the program takes the line size as an optional third
//! argument, which `logtap-bench all` uses for its 1 KiB rows). The
//! receiver lives in this process and behaves like the agent: it sleeps on the ring's eventfd
//! when idle. Delivered % = bytes the receiver got / bytes written.
//!
//! The "real agent" rows (ring transport, `/dev/null` only) drain into the actual `logtap
//! agent` process instead (`--output null`, one fresh agent per run), so the producer meets
//! the agent's own polling rhythm (its 1 ms linger, then the eventfd) rather than this
//! receiver's 50 µs naps; delivered % there is the agent's `logtap_input_bytes_total` read
//! from its `/metrics` endpoint after the run.
//!
//! Run (release build, as the figures in bench/RESULTS.md):
//! `cargo build --release -p logtap-interceptor -p logtap-bench && target/release/interceptor_bench`
//! Options: `--calls N` (default 1,000,000), `--runs R` (default 3; the median is reported),
//! `--preload PATH` (default: `liblogtap.so` beside this binary), `--filter TEXT` (only the
//! rows whose "call sink mode" label contains TEXT, plus their baselines), `--agent PATH`
//! (default: `logtap` beside this binary), `--no-pin`.
//!
//! CPU pinning (unless `--no-pin`, and only with two CPUs or more): the program runs on the
//! first CPU this process may use, the receiver (or the agent) on the second, so that the
//! scheduler's placement does not add its own noise to the comparison.
//!
//! Delivered: the worst run's share of the written bytes that reached the receiver, and, when
//! short of 100 %, the share the producer reported dropped (ring counters, LOSS frames; the
//! agent's `logtap_dropped_bytes_total`): the two add up to 100 % when nothing was lost
//! uncounted. At full speed the default 1 MiB ring holds ≈ 1.5 ms of writes, so a consumer
//! stalled longer than that drops (see bench/RESULTS.md for what stalls it on our machine).
//!
//! The rows "app has a 2nd (idle) thread" (compared with their own untapped baseline, which
//! has the thread too) show what a multi-threaded program pays: glibc's stdio then locks for
//! real, and the library takes its locked `seq` path.

pub(crate) mod agent;
pub(crate) mod cpu;
pub(crate) mod receiver;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agent::AgentProc;
use cpu::{pin_to, two_cpus};
use receiver::Receiver;

pub(crate) const PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static void *idle(void *arg) { (void)arg; pause(); return NULL; }
int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) return 2;
    /* A second thread that only waits: the process is no longer single-threaded, so glibc's
     * stdio locks for real and liblogtap takes its locked paths. */
    pthread_t t;
    if (getenv("BENCH_IDLE_THREAD") && pthread_create(&t, NULL, idle, NULL) != 0) return 4;
    long n = atol(argv[2]);
    /* The line's size, newline included: 64 unless given (16 to 4096). */
    long size = argc == 4 ? atol(argv[3]) : 64;
    if (size < 16 || size > 4096) return 5;
    int use_printf = strcmp(argv[1], "printf") == 0;
    int use_putc = strcmp(argv[1], "putc") == 0;
    static char line[4096];
    memset(line, 'x', sizeof line);
    line[size - 1] = '\n';
    static char text[4096];
    for (long j = 0; j < (long)sizeof text; j++) text[j] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[j % 62];
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (use_printf) {
        /* size - 10 characters, a space, 8 digits and the newline: `size` bytes. */
        for (long i = 0; i < n; i++) printf("%.*s %08ld\n", (int)(size - 10), text, i);
        fflush(stdout);
    } else if (use_putc) {
        /* What coreutils do: putchar_unlocked, which -O2 inlines into a store in the FILE's
         * buffer (the library catches those bytes up from the buffer). */
        for (long i = 0; i < n; i++) {
            for (long j = 0; j < size - 1; j++) putchar_unlocked(text[j]);
            putchar_unlocked('\n');
        }
        fflush(stdout);
    } else {
        for (long i = 0; i < n; i++) {
            if (write(1, line, (size_t)size) != (ssize_t)size) return 3;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
    fprintf(stderr, "%.2f\n", ns / (double)n);
    return 0;
}
"#;

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    Untapped,
    LoadedIdle,
    Ring,
    Ring16M,
    Socket,
    /// Ring transport drained by the real `logtap agent` process.
    Agent,
    /// As `Untapped`, with a second (idle) thread in the program.
    UntappedThreaded,
    /// As `Ring`, with a second (idle) thread in the program.
    RingThreaded,
    /// As `Ring`, with `LLT_SUPPRESS_STDOUT=true`: the tap takes the bytes, the real `write`
    /// is skipped.
    Suppressed,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Untapped => "untapped (no library)",
            Mode::LoadedIdle => "library loaded, tapping nothing",
            Mode::Ring => "tapped, ring",
            Mode::Ring16M => "tapped, ring, LLT_RING_SIZE=16M",
            Mode::Socket => "tapped, LLT_TRANSPORT=socket",
            Mode::Agent => "tapped, ring, real `logtap agent`",
            Mode::UntappedThreaded => "untapped, app has a 2nd (idle) thread",
            Mode::RingThreaded => "tapped, ring, app has a 2nd (idle) thread",
            Mode::Suppressed => "tapped, ring, LLT_SUPPRESS_STDOUT=true",
        }
    }
}

pub(crate) struct Opts {
    /// (the app's CPU, the consumer's CPU), unless `--no-pin` or fewer than two CPUs.
    pub(crate) pin: Option<(usize, usize)>,
    pub(crate) filter: Option<String>,
    pub(crate) agent: PathBuf,
    pub(crate) calls: u64,
    pub(crate) runs: usize,
    pub(crate) preload: PathBuf,
    /// Bytes per line, newline included (64 here; `logtap-bench all` also runs 1 KiB).
    pub(crate) size: u64,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        pin: two_cpus(),
        filter: None,
        calls: 1_000_000,
        runs: 3,
        size: 64,
        agent: std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("logtap")))
            .unwrap_or_default(),
        preload: std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("liblogtap.so")))
            .unwrap_or_default(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--calls" => o.calls = v.parse().unwrap_or(o.calls),
            "--runs" => o.runs = v.parse().unwrap_or(o.runs).max(1),
            "--preload" => o.preload = PathBuf::from(v),
            "--filter" => o.filter = Some(v),
            "--agent" => o.agent = PathBuf::from(v),
            "--no-pin" => {
                o.pin = None;
                i += 1;
                continue;
            }
            other => {
                eprintln!("interceptor_bench: unknown option {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    if !o.preload.exists() {
        eprintln!(
            "interceptor_bench: {} not found: cargo build --release -p logtap-interceptor",
            o.preload.display()
        );
        std::process::exit(1);
    }
    o
}

/// One run: ns per call, and when tapped the fractions of the bytes written that were
/// delivered and that the producer reported dropped (counted loss).
pub(crate) fn run_once(
    exe: &Path,
    dir: &Path,
    o: &Opts,
    op: &str,
    pipe: bool,
    mode: Mode,
) -> (f64, Option<(f64, f64)>) {
    let receiver = matches!(
        mode,
        Mode::Ring | Mode::Ring16M | Mode::Socket | Mode::RingThreaded | Mode::Suppressed
    )
    .then(|| Receiver::start(&dir.join("bench.sock"), o.pin.map(|p| p.1)));
    let agent = (mode == Mode::Agent).then(|| AgentProc::start(&o.agent, dir, o.pin.map(|p| p.1)));
    let mut cmd = Command::new(exe);
    if let Some((app_cpu, _)) = o.pin {
        // SAFETY: the closure only makes one async-signal-safe system call.
        unsafe {
            cmd.pre_exec(move || {
                pin_to(app_cpu);
                Ok(())
            })
        };
    }
    cmd.args([op, &o.calls.to_string(), &o.size.to_string()]);
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    if pipe {
        cmd.stdout(Stdio::piped());
    } else {
        cmd.stdout(Stdio::from(
            std::fs::File::create("/dev/null").expect("/dev/null"),
        ));
    }
    if !matches!(mode, Mode::Untapped | Mode::UntappedThreaded) {
        cmd.env("LD_PRELOAD", &o.preload);
    }
    if matches!(mode, Mode::UntappedThreaded | Mode::RingThreaded) {
        cmd.env("BENCH_IDLE_THREAD", "1");
    }
    if let Some(r) = &receiver {
        cmd.env("LLT_TAP_INTO", "1")
            .env("LLT_TARGET", r.target())
            .env("LLT_TARGET_1STCONNECT", "0")
            .env(
                "LLT_TRANSPORT",
                if mode == Mode::Socket {
                    "socket"
                } else {
                    "ring"
                },
            )
            .env(
                "LLT_RING_SIZE",
                if mode == Mode::Ring16M { "16M" } else { "1M" },
            );
        if mode == Mode::Suppressed {
            cmd.env("LLT_SUPPRESS_STDOUT", "true");
        }
    } else if let Some(a) = &agent {
        // `drop`: these rows measure what the tap costs the program, not how long the
        // default `block` mode waits for an agent slower than the program (agent_bench and
        // tests/tests/agent_burst.rs measure that).
        cmd.env("LLT_TAP_INTO", "1")
            .env("LLT_TARGET", a.target())
            .env("LLT_TARGET_1STCONNECT", "0")
            .env("LLT_TRANSPORT", "ring")
            .env("LLT_RING_FULL", "drop")
            .env("LLT_RING_SIZE", "1M");
    } else {
        cmd.env("LLT_TAP_INTO", "0");
    }
    let mut child = cmd.spawn().expect("spawn the bench program");
    let reader = child.stdout.take().map(|mut out| {
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        })
    });
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = child.wait().expect("wait");
    if let Some(r) = reader {
        let _ = r.join();
    }
    if !status.success() {
        eprintln!("interceptor_bench: {op} failed: {status} {err}");
        std::process::exit(1);
    }
    let ns: f64 = err.trim().parse().unwrap_or(f64::NAN);
    // (delivered bytes, dropped bytes) as the receiver or the agent counts them.
    type Count<'a> = Box<dyn Fn() -> (u64, u64) + 'a>;
    let count: Option<Count<'_>> = match (&receiver, &agent) {
        (Some(r), _) => Some(Box::new(|| {
            (
                r.counts.bytes.load(Ordering::Relaxed),
                r.counts.lost.load(Ordering::Relaxed),
            )
        })),
        (_, Some(a)) => Some(Box::new(|| {
            (a.bytes_in().unwrap_or(0), a.bytes_dropped().unwrap_or(0))
        })),
        _ => None,
    };
    let delivered = count.map(|count| {
        let want = o.calls * o.size;
        let end = Instant::now() + Duration::from_secs(3);
        let mut last = (u64::MAX, u64::MAX);
        loop {
            let now = count();
            // Done when every byte is accounted for, or when nothing moves any more.
            if now.0 + now.1 >= want || (now == last && Instant::now() > end) {
                break (now.0 as f64 / want as f64, now.1 as f64 / want as f64);
            }
            last = now;
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    (ns, delivered)
}

/// Compiles [`PROGRAM`] into `dir/bench` and returns its path.
pub(crate) fn compile(dir: &Path) -> PathBuf {
    let src = dir.join("bench.c");
    let exe = dir.join("bench");
    std::fs::write(&src, PROGRAM).expect("write bench.c");
    let st = Command::new("gcc")
        .args(["-O2", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("gcc (apt-get install gcc)");
    assert!(st.success(), "gcc failed on {}", src.display());
    exe
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let o = parse_opts();
    let dir = std::env::temp_dir().join(format!("logtap-interceptor-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let exe = compile(&dir);

    println!(
        "interceptor_bench: {} calls of 64 bytes per run, median of {} runs",
        o.calls, o.runs
    );
    println!();
    println!(
        "| call | sink | mode | ns/call | × untapped | delivered (worst run; + dropped and counted) |"
    );
    println!("|---|---|---|---:|---:|---:|");
    for op in ["write", "printf", "putc"] {
        for pipe in [false, true] {
            let sink = if pipe { "pipe (drained)" } else { "/dev/null" };
            let mut base = f64::NAN;
            let mut base_threaded = f64::NAN;
            for mode in [
                Mode::Untapped,
                Mode::LoadedIdle,
                Mode::Ring,
                Mode::Ring16M,
                Mode::Socket,
                Mode::Agent,
                Mode::UntappedThreaded,
                Mode::RingThreaded,
                Mode::Suppressed,
            ] {
                // The real-agent rows answer "what does a deployed tap cost", the threaded
                // ones "what does a multi-threaded program pay": /dev/null only.
                if pipe
                    && matches!(
                        mode,
                        Mode::Agent | Mode::UntappedThreaded | Mode::RingThreaded
                    )
                {
                    continue;
                }
                let label = format!("{op} {sink} {}", mode.name());
                let baseline = matches!(mode, Mode::Untapped | Mode::UntappedThreaded);
                if !baseline
                    && o.filter
                        .as_ref()
                        .is_some_and(|f| !label.contains(f.as_str()))
                {
                    continue;
                }
                let mut ns = Vec::new();
                let mut del = Vec::new();
                for _ in 0..o.runs {
                    let (n, d) = run_once(&exe, &dir, &o, op, pipe, mode);
                    ns.push(n);
                    if let Some(d) = d {
                        del.push(d);
                    }
                }
                let ns = median(ns);
                match mode {
                    Mode::Untapped => base = ns,
                    Mode::UntappedThreaded => base_threaded = ns,
                    _ => {}
                }
                let base = if matches!(mode, Mode::UntappedThreaded | Mode::RingThreaded) {
                    base_threaded
                } else {
                    base
                };
                // The worst run's delivered share, and what its producer counted as dropped.
                let delivered = match del
                    .iter()
                    .copied()
                    .min_by(|a: &(f64, f64), b| a.0.total_cmp(&b.0))
                {
                    None => "—".to_string(),
                    Some((d, _)) if d >= 1.0 => "100.00 %".to_string(),
                    Some((d, lost)) => {
                        format!("{:.2} % (+{:.2} % counted)", 100.0 * d, 100.0 * lost)
                    }
                };
                println!(
                    "| `{op}` | {sink} | {} | {ns:.1} | {:.2}× | {delivered} |",
                    mode.name(),
                    ns / base
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
