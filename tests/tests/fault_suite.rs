//! The fault suite (issue 11): nothing is lost when an agent dies, a server fails, or the disk
//! fills up. Every scenario runs a real program under the real `liblogtap.so` → the real
//! `logtap agent` (the sender) → a receiving `logtap agent` with the forward input, on
//! loopback; every line is numbered, and at the end every number must have arrived at least
//! once (duplicates are counted, never an error). Each scenario stops by itself within its
//! bounds and saves its figures (written, delivered, duplicated, lost, peak RSS of the sender)
//! under `target/<profile>/fault-suite/` — `RELIABILITY.md` quotes the last run.
//!
//! Reproduce one: `cargo build --workspace && cargo nextest run -p logtap-tests --test
//! fault_suite <name>` (`LOGTAP_FAULT_SEED=<n>` replays the kill moments a run printed).

use std::time::{Duration, Instant};

use logtap_tests::fault::{
    Counts, FaultProxy, Figures, Moments, Program, ProxyMode, Receiver, Sender,
};

/// What one scenario may take at most, from start to the last number counted.
const LIMIT: Duration = Duration::from_secs(120);

fn forward_to(port: u16) -> Vec<String> {
    vec!["--forward".into(), format!("127.0.0.1:{port}")]
}

fn assert_none_lost(f: &Figures, counts: &Counts) {
    f.report();
    assert_eq!(
        f.lost,
        0,
        "{}: {} of {} lines lost, e.g. {:?}",
        f.scenario,
        f.lost,
        f.written,
        counts.missing(f.written)
    );
}

/// Scenario 1: the sending agent is `kill -9`'d 5 times at random moments and restarted at once,
/// with `--storage-path`; stdout tapped, not suppressed.
#[test]
fn s1_sender_killed_9_five_times_with_a_spool() {
    const N: u64 = 40_000;
    let started = Instant::now();
    let mut receiver = Receiver::start("s1-recv", 0, &[]);
    let port = receiver.port;
    let spool = logtap_tests::artifacts::TempDir::new("s1-spool");
    let mut args = forward_to(port);
    args.extend(["--storage-path".into(), spool.path().display().to_string()]);
    let mut sender = Sender::start("s1-send", &args);
    let program = Program::start(
        sender.dir.path(),
        &sender.socket,
        N,
        4_000,
        "-",
        &[("LLT_TAP_INTO", "1"), ("LLT_RING_SIZE", "16M")],
    );
    let mut moments = Moments::new("s1");
    for _ in 0..5 {
        std::thread::sleep(
            moments.between(Duration::from_millis(500), Duration::from_millis(2_000)),
        );
        sender.restart();
    }
    program.wait(LIMIT);
    let counts = receiver.wait_all(
        N,
        &Counts::default(),
        LIMIT.saturating_sub(started.elapsed()),
    );
    let mut f = Figures::of("s1", N, &counts, sender.peak_rss_kib(), started);
    f.note = format!("{} sender incarnations", sender.incarnations);
    let _ = sender.terminate();
    drop(receiver.terminate());
    assert_none_lost(&f, &counts);
}

/// Scenario 2: the same with a suppressed tap file: what the agents did not deliver must be in the
/// file (fail-open), so receiver ∪ file holds every number.
#[test]
fn s2_sender_killed_9_five_times_suppressed_tap_file() {
    const N: u64 = 20_000;
    let started = Instant::now();
    let mut receiver = Receiver::start("s2-recv", 0, &[]);
    let port = receiver.port;
    let spool = logtap_tests::artifacts::TempDir::new("s2-spool");
    let mut args = forward_to(port);
    args.extend(["--storage-path".into(), spool.path().display().to_string()]);
    let mut sender = Sender::start("s2-send", &args);
    let file = sender.dir.path().join("app.log");
    let file_env = file.display().to_string();
    let program = Program::start(
        sender.dir.path(),
        &sender.socket,
        N,
        2_000,
        &file_env,
        &[
            ("LLT_TAP_INTO", "0"),
            ("LLT_TAP_FILE", &file_env),
            ("LLT_SUPPRESS_TAP_FILE", "true"),
        ],
    );
    let mut moments = Moments::new("s2");
    for _ in 0..5 {
        std::thread::sleep(
            moments.between(Duration::from_millis(500), Duration::from_millis(1_800)),
        );
        sender.restart();
    }
    program.wait(LIMIT);
    let in_file = Counts::of_file(&file);
    let counts = receiver.wait_all(N, &in_file, LIMIT.saturating_sub(started.elapsed()));
    let mut f = Figures::of("s2", N, &counts, sender.peak_rss_kib(), started);
    f.note = format!(
        "{} sender incarnations; {} lines written to the file (fail-open)",
        sender.incarnations, in_file.total
    );
    let _ = sender.terminate();
    drop(receiver.terminate());
    assert_none_lost(&f, &counts);
}

/// Scenario 3: the receiver is killed (-9) and restarted 10 times while 200,000 lines go through.
/// The receiver keeps a spool (it acknowledges only what is on its disk); the sender has none: its
/// chunks wait in memory, their records in the program's (default, 1 MiB) ring, until
/// acknowledged; while the receiver is away the program's writes wait for room.
#[test]
fn s3_receiver_killed_10_times_during_200k_lines() {
    const N: u64 = 200_000;
    let started = Instant::now();
    let spool = logtap_tests::artifacts::TempDir::new("s3-recv-spool");
    let recv_args = vec!["--storage-path".into(), spool.path().display().to_string()];
    let mut receiver = Receiver::start("s3-recv", 0, &recv_args);
    let port = receiver.port;
    let mut sender = Sender::start("s3-send", &forward_to(port));
    let program = Program::start(
        sender.dir.path(),
        &sender.socket,
        N,
        10_000,
        "-",
        &[("LLT_TAP_INTO", "1")],
    );
    let mut moments = Moments::new("s3");
    for _ in 0..10 {
        std::thread::sleep(
            moments.between(Duration::from_millis(800), Duration::from_millis(2_000)),
        );
        receiver.restart();
        sender.sample_rss();
    }
    program.wait(LIMIT);
    let counts = receiver.wait_all(
        N,
        &Counts::default(),
        LIMIT.saturating_sub(started.elapsed()),
    );
    let f = Figures::of("s3", N, &counts, sender.peak_rss_kib(), started);
    let _ = sender.terminate();
    drop(receiver.terminate());
    assert_none_lost(&f, &counts);
}

/// Scenario 4: the only active server is a black hole (accepts, reads, never acknowledges): chunks
/// time out (`--ack-response-timeout 2s`) and go to the `standby` server.
#[test]
fn s4_black_holed_receiver_fails_over_to_standby() {
    const N: u64 = 20_000;
    let started = Instant::now();
    let mut receiver = Receiver::start("s4-recv", 0, &[]);
    let port = receiver.port;
    let hole = FaultProxy::start(port, ProxyMode::BlackHole);
    let dir = logtap_tests::artifacts::TempDir::new("s4-config");
    let config = dir.path().join("sender.toml");
    std::fs::write(
        &config,
        format!(
            "ack_response_timeout = \"2s\"\nforward = [\n  {{ host = \"127.0.0.1\", port = {} }},\n  {{ host = \"127.0.0.1\", port = {port}, standby = true }},\n]\n",
            hole.port
        ),
    )
    .unwrap();
    let mut sender = Sender::start(
        "s4-send",
        &["--config".into(), config.display().to_string()],
    );
    let program = Program::start(
        sender.dir.path(),
        &sender.socket,
        N,
        2_000,
        "-",
        &[("LLT_TAP_INTO", "1")],
    );
    program.wait(LIMIT);
    let counts = receiver.wait_all(
        N,
        &Counts::default(),
        LIMIT.saturating_sub(started.elapsed()),
    );
    let f = Figures::of("s4", N, &counts, sender.peak_rss_kib(), started);
    let log = sender.log();
    let _ = sender.terminate();
    drop(receiver.terminate());
    assert_none_lost(&f, &counts);
    assert!(
        log.contains("acknowledge a chunk"),
        "the black hole's chunks timed out: {log}"
    );
}

/// The agent's memory beyond `mem_buf_limit` that the memory scenarios allow (anonymous RSS,
/// debug build): the runtime, the batch stage's open chunks and channel, the peers' buffers and
/// allocator slack. RELIABILITY.md documents it.
const MEMORY_CONSTANT_KIB: u64 = 24 * 1024;
const MEM_BUF_LIMIT_KIB: u64 = 4 * 1024;

/// Scenario 5: the receiver is down for 20 s (the 60 s, shortened to keep the suite short;
/// the outage still outlasts the memory buffer several times over, and the sender's reconnect
/// backoff grows to 8 s) with a spool large enough: everything arrives after it returns, and the
/// sender's memory stays under `mem_buf_limit` plus a constant (chunks beyond it wait on disk).
#[test]
fn s5_receiver_down_20s_with_a_spool() {
    const RATE: u64 = 5_000;
    const N: u64 = 30 * RATE;
    let started = Instant::now();
    let mut receiver = Receiver::start("s5-recv", 0, &[]);
    let port = receiver.port;
    let spool = logtap_tests::artifacts::TempDir::new("s5-spool");
    let mut args = forward_to(port);
    // 4 MiB (the default was until issue 14): the outage outlasts the memory several times.
    args.extend([
        "--storage-path".into(),
        spool.path().display().to_string(),
        "--mem-buf-limit".into(),
        "4MB".into(),
    ]);
    let mut sender = Sender::start("s5-send", &args);
    let program = Program::start(
        sender.dir.path(),
        &sender.socket,
        N,
        RATE,
        "-",
        &[("LLT_TAP_INTO", "1")],
    );
    std::thread::sleep(Duration::from_secs(2));
    receiver.kill9();
    let down = Instant::now();
    let mut spooled_peak = 0u64;
    while down.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
        sender.sample_rss();
        spooled_peak = spooled_peak.max(dir_bytes(spool.path()));
    }
    receiver.restart();
    while program_running_sampling(&mut sender) {}
    program.wait(LIMIT);
    let counts = receiver.wait_all(
        N,
        &Counts::default(),
        LIMIT.saturating_sub(started.elapsed()),
    );
    let mut f = Figures::of("s5", N, &counts, sender.peak_rss_kib(), started);
    f.peak_anon_kib = sender.peak_anon_kib();
    f.note = format!(
        "receiver down 20 s; up to {:.1} MiB spooled; mem_buf_limit 4 MiB",
        spooled_peak as f64 / 1048576.0
    );
    let _ = sender.terminate();
    drop(receiver.terminate());
    assert_none_lost(&f, &counts);
    assert!(
        spooled_peak > 2 * MEM_BUF_LIMIT_KIB * 1024,
        "the outage must outlast the memory buffer: {spooled_peak} bytes spooled"
    );
    assert!(
        f.peak_anon_kib < MEM_BUF_LIMIT_KIB + MEMORY_CONSTANT_KIB,
        "sender memory {} KiB",
        f.peak_anon_kib
    );
}

/// Samples the sender's memory for a while; `false` once a few seconds passed (the caller
/// then waits for the program).
fn program_running_sampling(sender: &mut Sender) -> bool {
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        sender.sample_rss();
    }
    false
}

/// Bytes of the files in `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Scenario 6: a slow receiver: its acks reach the sender 500 ms late (a delaying proxy). The
/// program writes as fast as it can into the default 1 MiB ring; the sender has no spool, so the
/// ring holds every record until it is acknowledged, and the program's writes wait for room
/// (the agent's heartbeat tells them it makes progress). Throughput falls to what the ring holds
/// per 500 ms, the sender's memory stays bounded, nothing is lost.
#[test]
fn s6_slow_receiver_acks_after_500ms() {
    const N: u64 = 100_000;
    let started = Instant::now();
    let mut receiver = Receiver::start("s6-recv", 0, &[]);
    let port = receiver.port;
    let proxy = FaultProxy::start(port, ProxyMode::Pass);
    proxy.set_reply_delay(Duration::from_millis(500));
    let mut sender = Sender::start("s6-send", &forward_to(proxy.port));
    let mut program = Program::start(
        sender.dir.path(),
        &sender.socket,
        N,
        0,
        "-",
        &[("LLT_TAP_INTO", "1")],
    );
    let deadline = Instant::now() + LIMIT;
    loop {
        sender.sample_rss();
        let got = receiver.counts().distinct(N);
        if got == N && !program.running() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let delivery = started.elapsed();
    program.wait(LIMIT);
    let counts = receiver.wait_all(N, &Counts::default(), Duration::from_secs(5));
    let mut f = Figures::of("s6", N, &counts, sender.peak_rss_kib(), started);
    f.peak_anon_kib = sender.peak_anon_kib();
    f.note = format!(
        "acks 500 ms late: {:.0} lines/s delivered",
        N as f64 / delivery.as_secs_f64()
    );
    let _ = sender.terminate();
    drop(receiver.terminate());
    assert_none_lost(&f, &counts);
    assert!(
        f.peak_anon_kib < MEM_BUF_LIMIT_KIB + MEMORY_CONSTANT_KIB,
        "sender memory {} KiB",
        f.peak_anon_kib
    );
}

/// A small tmpfs to fill up (needs CAP_SYS_ADMIN); unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system of `dir` with `path` until it is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 64 * 1024];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

/// Scenario 7: the disk under `--storage-path` is full (a 4 MiB tmpfs filled up) when the program
/// starts; space returns 4 s later. One clear log line, no corrupt or partial chunk file, and
/// nothing lost: chunks that cannot be written stay in memory with their records held in the
/// ring until acknowledged; once space is back, chunks are written again.
#[test]
fn s7_disk_full_under_storage_path() {
    const N: u64 = 20_000;
    let started = Instant::now();
    let base = logtap_tests::artifacts::TempDir::new("s7-disk");
    let mount = base.path().join("spool");
    let Some(tmpfs) = Tmpfs::mount(&mount, "4m") else {
        eprintln!("s7: SKIPPED — cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)");
        return;
    };
    let filler = mount.join("filler");
    fill(&filler);
    let mut receiver = Receiver::start("s7-recv", 0, &[]);
    let port = receiver.port;
    let mut args = forward_to(port);
    args.extend(["--storage-path".into(), mount.display().to_string()]);
    let mut sender = Sender::start("s7-send", &args);
    let program = Program::start(
        sender.dir.path(),
        &sender.socket,
        N,
        2_500,
        "-",
        &[("LLT_TAP_INTO", "1")],
    );
    std::thread::sleep(Duration::from_secs(4));
    std::fs::remove_file(&filler).unwrap();
    program.wait(LIMIT);
    let counts = receiver.wait_all(
        N,
        &Counts::default(),
        LIMIT.saturating_sub(started.elapsed()),
    );
    let mut f = Figures::of("s7", N, &counts, sender.peak_rss_kib(), started);
    let _ = sender.terminate();
    drop(receiver.terminate());
    let log = sender.log();
    let full = log.matches("cannot write chunks to storage_path").count();
    let back = log.matches("storage_path writable again").count();
    let leftovers: Vec<String> = std::fs::read_dir(&mount)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    f.note = format!(
        "4 MiB tmpfs full for 4 s; log lines: {full} \"cannot write\", {back} \"writable again\""
    );
    drop(tmpfs);
    assert_none_lost(&f, &counts);
    assert_eq!(full, 1, "one clear line while the disk is full:\n{log}");
    assert_eq!(back, 1, "and one when it works again:\n{log}");
    assert!(
        leftovers.is_empty(),
        "no chunk (partial or not) left once all is delivered: {leftovers:?}"
    );
}

/// Scenario 8: a second agent started on the socket of a live one is refused (exit code 2, a clear
/// message) and the first keeps serving: a program started afterwards reaches it. Stopping the
/// refused agent leaves the socket alone; a stale socket (its agent killed) is replaced.
#[test]
fn s8_second_agent_on_a_live_socket_is_refused() {
    const N: u64 = 2_000;
    let started = Instant::now();
    let mut receiver = Receiver::start("s8-recv", 0, &[]);
    let port = receiver.port;
    let mut first = Sender::start("s8-send", &forward_to(port));
    let before = std::fs::symlink_metadata(&first.socket).unwrap();
    let second = std::process::Command::new(logtap_tests::artifacts::logtap_bin())
        .arg("agent")
        .arg("--socket")
        .arg(&first.socket)
        .args(["--http-listen", "off", "--output", "null"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "refused with exit 2: {err}");
    assert!(err.contains("in use"), "a clear error: {err}");
    let after = std::fs::symlink_metadata(&first.socket).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (before.ino(), before.dev()),
        (after.ino(), after.dev()),
        "the first agent's socket is untouched"
    );
    // The first agent still serves new programs.
    let program = Program::start(
        first.dir.path(),
        &first.socket,
        N,
        0,
        "-",
        &[("LLT_TAP_INTO", "1")],
    );
    program.wait(LIMIT);
    let counts = receiver.wait_all(N, &Counts::default(), Duration::from_secs(30));
    let f = Figures::of("s8", N, &counts, first.peak_rss_kib(), started);
    // Killed: its socket is stale, and a new agent takes the path over.
    first.restart();
    assert!(logtap_tests::fault::tap_socket_accepts(&first.socket));
    assert!(first.terminate().is_some_and(|s| s.success()));
    assert!(
        !first.socket.exists(),
        "a stopped agent removes its own socket"
    );
    drop(receiver.terminate());
    assert_none_lost(&f, &counts);
}
