//! Issue 3, prove-it 5, against the real `logtap agent` process (the interceptor tests pause an
//! in-process receiver instead):
//! - the agent is frozen with SIGSTOP while a tapped C program writes 100,000 lines through a
//!   64 KiB ring (and with `LLT_TRANSPORT=socket`): the program is never held up by the frozen
//!   agent, and after SIGCONT the agent's `/metrics` account for every line and byte exactly —
//!   input + dropped (`ring_full` from the ring's counters, `interceptor_loss` from LOSS frames)
//!   = written, with drops and deliveries both non-zero; the delivered lines (stdout output)
//!   are whole, each once, in order. With the ring the program may even exit before SIGCONT:
//!   the ring's counters outlive it. With DATA frames it must outlive the freeze, since its
//!   drop counts can only leave in a LOSS frame, and its socket is full while the agent sleeps;
//! - the program writes 1,000 lines and kills itself with SIGKILL: every line arrives.
//!
//! The program is compiled here from [`APP_C`]; the test and the program step each other
//! through marker files in the agent's temporary directory, so no step depends on a sleep.

use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use logtap_tests::agent_harness::Agent;
use logtap_tests::artifacts;
use serde_json::Value;

/// Every wait of this file is bounded by this.
const LIMIT: Duration = Duration::from_secs(30);

/// The tapped program: `app N DIR exit|kill`.
///
/// Writes line 0, creates `DIR/started` and waits for `DIR/go` (the test freezes the agent
/// meanwhile), writes lines 1..N with one `write()` each (about 60 bytes), then either raises
/// SIGKILL on itself (`kill`) or creates `DIR/written` and waits for `DIR/exit` before exiting
/// 0 (`exit`), so the test decides whether it exits before or after the agent is resumed.
/// Exit codes 2..4 name what went wrong.
const APP_C: &str = r#"
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[4000];

static void mark(const char *name) {
    char path[4100];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) close(fd);
}

static int wait_for(const char *name) {
    char path[4100];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    for (int i = 0; i < 6000; i++) {
        if (access(path, F_OK) == 0) return 1;
        usleep(5000);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    long n = atol(argv[1]);
    snprintf(dir, sizeof dir, "%s", argv[2]);
    int kill_self = strcmp(argv[3], "kill") == 0;
    char line[128];
    for (long i = 0; i < n; i++) {
        int len = snprintf(line, sizeof line,
                           "line %06ld of the sigstop test, each line as long as the next\n", i);
        if (write(1, line, (size_t)len) != len) return 2;
        if (i == 0) {
            mark("started");
            if (!wait_for("go")) return 3;
        }
    }
    if (kill_self) raise(SIGKILL);
    mark("written");
    return wait_for("exit") ? 0 : 4;
}
"#;

/// The two ways a tapped process hands its writes to the agent.
#[derive(Clone, Copy, Debug)]
enum Transport {
    Ring,
    Socket,
}

/// When the program exits relative to SIGCONT.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Exit {
    /// While the agent is still frozen: only the ring's shared counters can report its drops.
    WhileStopped,
    /// Once the agent has resumed and read its backlog (a LOSS frame can then be sent at exit).
    AfterResume,
}

/// A child process killed (and reaped) when the test ends, however it ends.
struct Guard(Child);

impl Guard {
    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "pid {} still running after {limit:?}",
                self.0.id()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory effects; the pid is a child we have not reaped yet.
    let ret = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(ret, 0, "kill: {}", std::io::Error::last_os_error());
}

fn compile_app(dir: &Path) -> PathBuf {
    let src = dir.join("app.c");
    std::fs::write(&src, APP_C).unwrap();
    artifacts::gcc(&src, &dir.join("app"), &["-O2", "-Wall", "-Werror"])
}

fn wait_file(path: &Path, app: &mut Guard) {
    let deadline = Instant::now() + LIMIT;
    while !path.exists() {
        if let Some(status) = app.0.try_wait().unwrap() {
            panic!(
                "the app exited ({status}) before creating {}",
                path.display()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} not created within {LIMIT:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    logtap_tests::http::get_local(port, path).expect("an HTTP answer")
}

/// The counters this test reads from `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Counts {
    records_in: u64,
    ring_full: u64,
    interceptor_loss: u64,
    bytes_in: u64,
    dropped_bytes: u64,
    /// Every other drop reason (`ring_abandoned`, `bad_peer`, …): must stay 0.
    other_drops: u64,
    peers: u64,
}

impl Counts {
    fn dropped(&self) -> u64 {
        self.ring_full + self.interceptor_loss
    }
}

fn metrics(port: u16) -> (Counts, String) {
    let (status, body) = http_get(port, "/metrics");
    assert_eq!(status, 200, "{body}");
    let mut c = Counts::default();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "logtap_input_records_total" => c.records_in = v,
            "logtap_input_bytes_total" => c.bytes_in = v,
            "logtap_dropped_bytes_total{reason=\"ring_full\"}"
            | "logtap_dropped_bytes_total{reason=\"interceptor_loss\"}" => c.dropped_bytes += v,
            "logtap_tap_peers" => c.peers = v,
            "logtap_dropped_records_total{reason=\"ring_full\"}" => c.ring_full = v,
            "logtap_dropped_records_total{reason=\"interceptor_loss\"}" => c.interceptor_loss = v,
            k if k.starts_with("logtap_dropped_records_total") => c.other_drops += v,
            _ => {}
        }
    }
    (c, body)
}

/// Polls `/metrics` until `done` holds, then until the counters stayed the same for half a
/// second; panics with the last exposition after [`LIMIT`].
fn settle(port: u16, what: &str, done: impl Fn(&Counts) -> bool) -> Counts {
    let deadline = Instant::now() + LIMIT;
    let mut last: Option<(Counts, Instant)> = None;
    loop {
        let (c, body) = metrics(port);
        match last {
            Some((prev, since)) if prev == c && done(&c) => {
                if since.elapsed() >= Duration::from_millis(500) {
                    return c;
                }
            }
            _ => last = Some((c, Instant::now())),
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not settled within {LIMIT:?}: {c:?}\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The agent with the stdout output (so the delivered lines can be checked too) and its HTTP
/// endpoint on a free port; returns once `/readyz` answers 200.
fn start_agent(name: &str) -> (Agent, u16) {
    let agent = Agent::start(
        name,
        &[
            "--output",
            "stdout",
            "--http-listen",
            "127.0.0.1:0",
            "--flush-interval",
            "50ms",
        ],
    );
    let port = agent.http_port();
    let deadline = Instant::now() + LIMIT;
    loop {
        let ready = TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http_get(port, "/readyz") == (200, "ready\n".to_owned());
        if ready {
            return (agent, port);
        }
        assert!(
            Instant::now() < deadline,
            "/readyz not 200 within {LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the app under the library, tapping stdout to `agent`, stdout itself to /dev/null.
fn start_app(agent: &Agent, transport: Transport, ring: &str, lines: u64, mode: &str) -> Guard {
    let dir = agent.dir.path();
    let exe = compile_app(dir);
    let mut cmd = Command::new(exe);
    cmd.arg(lines.to_string())
        .arg(dir)
        .arg(mode)
        .env("LD_PRELOAD", artifacts::liblogtap())
        .env("LLT_TARGET", format!("socket:{}", agent.socket.display()))
        .env("LLT_TAP_INTO", "1")
        .env("LLT_TARGET_1STCONNECT", "0")
        .env("LLT_RING_SIZE", ring)
        .env(
            "LLT_TRANSPORT",
            match transport {
                Transport::Ring => "ring",
                Transport::Socket => "socket",
            },
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    Guard(cmd.spawn().expect("start the app"))
}

/// Line `i` as the app writes it with one `write()`; every line has the same length.
fn line(i: u64) -> String {
    format!("line {i:06} of the sigstop test, each line as long as the next\n")
}

fn line_len() -> u64 {
    line(0).len() as u64
}

/// The line numbers of the delivered records, checking each is one of the app's lines.
fn line_numbers(records: &[Value]) -> Vec<u64> {
    records
        .iter()
        .map(|r| {
            let msg = r["message"].as_str().unwrap();
            let rest = msg.strip_prefix("line ").unwrap_or_else(|| panic!("{msg}"));
            assert_eq!(
                format!("{msg}\n"),
                line(rest[..6].parse().unwrap()),
                "whole"
            );
            assert!(r.get("partial").is_none(), "{r}");
            rest[..6].parse().unwrap()
        })
        .collect()
}

/// Lets the app connect and hand over its ring, freezes the agent, lets the app write the
/// rest; returns when it was let go.
fn run_while_stopped(agent: &Agent, port: u16, app: &mut Guard) -> Instant {
    let dir = agent.dir.path();
    wait_file(&dir.join("started"), app);
    // Line 0 counted: the agent took the HELLO (and the ring) before it is frozen.
    settle(port, "line 0", |c| c.records_in == 1 && c.peers == 1);
    signal(&agent.child, libc::SIGSTOP);
    std::fs::write(dir.join("go"), "").unwrap();
    Instant::now()
}

const N: u64 = 100_000;

fn sigstop(transport: Transport, exit: Exit) {
    let (agent, port) = start_agent("sigstop");
    let dir = agent.dir.path().to_owned();
    let mut app = start_app(&agent, transport, "64K", N, "exit");
    let t0 = run_while_stopped(&agent, port, &mut app);
    // The app is never held up by the frozen agent: all N lines go out while it sleeps.
    wait_file(&dir.join("written"), &mut app);
    let took = t0.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "{N} writes took {took:?} with the agent frozen"
    );
    if exit == Exit::WhileStopped {
        std::fs::write(dir.join("exit"), "").unwrap();
        let status = app.wait_exit(LIMIT);
        assert!(status.success(), "app: {status}");
    }
    signal(&agent.child, libc::SIGCONT);
    if exit == Exit::AfterResume {
        // Let the agent read what waited for it (the records stop growing), then let the app
        // exit: its LOSS frame (socket transport) goes out at exit.
        settle(port, "backlog", |c| c.records_in > 1);
        std::fs::write(dir.join("exit"), "").unwrap();
        let status = app.wait_exit(LIMIT);
        assert!(status.success(), "app: {status}");
    }
    let c = settle(port, "accounting", |c| {
        c.peers == 0 && c.records_in + c.dropped() >= N
    });
    assert_eq!(
        c.records_in + c.dropped(),
        N,
        "{transport:?}/{exit:?}: records in + dropped = lines written: {c:?}"
    );
    assert_eq!(
        c.bytes_in + c.dropped_bytes,
        N * line_len(),
        "bytes in + dropped = bytes written: {c:?}"
    );
    assert!(c.records_in > 1, "lines delivered after SIGCONT: {c:?}");
    assert!(
        c.dropped() > 0,
        "a 64 KiB ring cannot hold {N} lines: {c:?}"
    );
    assert_eq!(c.other_drops, 0, "{c:?}");
    match transport {
        Transport::Ring => assert_eq!(c.interceptor_loss, 0, "{c:?}"),
        Transport::Socket => assert_eq!(c.ring_full, 0, "{c:?}"),
    }
    let (status, records) = agent.terminate();
    assert!(status.success(), "agent: {status}");
    let numbers = line_numbers(&records);
    assert_eq!(numbers.len() as u64, c.records_in, "one record per line in");
    assert_eq!(numbers[0], 0);
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "each delivered line once, in write order"
    );
}

#[test]
fn sigstop_ring_app_exits_while_the_agent_is_stopped() {
    sigstop(Transport::Ring, Exit::WhileStopped);
}

#[test]
fn sigstop_ring_app_exits_after_sigcont() {
    sigstop(Transport::Ring, Exit::AfterResume);
}

#[test]
fn sigstop_socket_app_exits_after_sigcont() {
    sigstop(Transport::Socket, Exit::AfterResume);
}

const KILLED_LINES: u64 = 1_000;

/// The app writes [`KILLED_LINES`] lines and raises SIGKILL: no exit handler runs, yet every
/// line arrives. With the ring the agent is frozen the whole time, so the lines can only come
/// from the ring the dead process left behind. DATA frames already queued on the socket are
/// read after the sender died too, but a frozen agent's socket holds far fewer than 1,000
/// frames and a killed process cannot report its drops, so there the agent keeps running.
fn sigkill(transport: Transport) {
    let (agent, port) = start_agent("sigkill");
    let mut app = start_app(&agent, transport, "1M", KILLED_LINES, "kill");
    match transport {
        Transport::Ring => {
            run_while_stopped(&agent, port, &mut app);
        }
        Transport::Socket => {
            wait_file(&agent.dir.path().join("started"), &mut app);
            settle(port, "line 0", |c| c.records_in == 1 && c.peers == 1);
            std::fs::write(agent.dir.path().join("go"), "").unwrap();
        }
    }
    let status = app.wait_exit(LIMIT);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "app: {status}");
    if let Transport::Ring = transport {
        signal(&agent.child, libc::SIGCONT);
    }
    let c = settle(port, "sigkill", |c| {
        c.peers == 0 && c.records_in >= KILLED_LINES
    });
    assert_eq!(c.records_in, KILLED_LINES, "{c:?}");
    assert_eq!(c.bytes_in, KILLED_LINES * line_len(), "{c:?}");
    assert_eq!(c.dropped() + c.other_drops, 0, "{c:?}");
    let (status, records) = agent.terminate();
    assert!(status.success(), "agent: {status}");
    let expected: Vec<u64> = (0..KILLED_LINES).collect();
    assert_eq!(
        line_numbers(&records),
        expected,
        "every line, once, in order"
    );
}

#[test]
fn sigkill_ring_last_lines_arrive() {
    sigkill(Transport::Ring);
}

#[test]
fn sigkill_socket_last_lines_arrive() {
    sigkill(Transport::Socket);
}
