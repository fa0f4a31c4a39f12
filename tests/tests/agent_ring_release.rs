//! The agent gives a tapped process's ring space back only when the records in it are safe:
//! acknowledged by every output without `--storage-path`, written in a chunk file with it. An
//! agent killed before that leaves the records in the ring, and the next agent delivers them.

use std::time::{Duration, Instant};

use logtap_protocol::tap::Stream;
use logtap_tests::agent_harness::{Agent, TapClient};
use logtap_tests::artifacts::TempDir;
use logtap_tests::fault::{Counts, FaultProxy, ProxyMode, Receiver};
use logtap_tests::forward_support::ClosedPort;

const T0: u64 = 1_700_000_000_000_000_000;
const LIMIT: Duration = Duration::from_secs(30);

fn write_lines(c: &mut TapClient, from: u64, n: u64) {
    for i in from..from + n {
        c.ring_write_wait(
            Stream::Stdout,
            T0 + i,
            format!("fault {i}\n").as_bytes(),
            LIMIT,
        );
    }
}

/// Ring words (8 bytes each) the records of `write_lines(_, from, n)` take.
fn words_of_lines(from: u64, n: u64) -> u64 {
    (from..from + n)
        .map(|i| logtap_protocol::ring::layout::words_for(format!("fault {i}\n").len()))
        .sum()
}

/// Waits until `cond` holds (at most `limit`).
fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unacknowledged_records_stay_in_the_ring_and_survive_the_agent() {
    const N: u64 = 300;
    let mut receiver = Receiver::start("release-recv", 0, &[]);
    let port = receiver.port;
    let hole = FaultProxy::start(port, ProxyMode::BlackHole);
    let first = Agent::start(
        "release-hole",
        &[
            "--forward",
            &format!("127.0.0.1:{}", hole.port),
            "--flush-interval",
            "100ms",
        ],
    );
    let mut c = TapClient::connect(&first.socket, 4242);
    c.hello("release", Some(64 * 1024), &[]);
    write_lines(&mut c, 0, N);
    // The agent reads them, sends them to the black hole, and holds them: the ring keeps them.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        c.ring_backlog(),
        words_of_lines(0, N),
        "read and sent, but not acknowledged: not released"
    );
    // The agent dies; a new one with a working server gets the same ring.
    drop(first); // SIGKILL
    let second = Agent::start(
        "release-second",
        &[
            "--forward",
            &format!("127.0.0.1:{port}"),
            "--http-listen",
            "127.0.0.1:0",
        ],
    );
    let http = second.http_port();
    let c = c.reconnect(&second.socket);
    let counts = receiver.wait_all(N, &Counts::default(), LIMIT);
    assert_eq!(counts.distinct(N), N, "missing {:?}", counts.missing(N));
    wait_until(LIMIT, "released once acknowledged", || {
        c.ring_backlog() == 0
    });
    // Read a second time (they had reached the black hole): counted as possible duplicates.
    let (_, metrics) = logtap_tests::http::get_local(http, "/metrics").expect("metrics");
    assert!(
        metrics.contains(&format!("logtap_ring_records_reread_total {N}")),
        "{metrics}"
    );
    drop(second);
    drop(receiver.terminate());
}

#[test]
fn with_a_spool_records_are_released_once_written() {
    const N: u64 = 300;
    // The black hole never passes anything on: its upstream is a port that refuses.
    let closed = ClosedPort::new();
    let hole = FaultProxy::start(closed.port, ProxyMode::BlackHole);
    let spool = TempDir::new("release-spool");
    let agent = Agent::start(
        "release-spooled",
        &[
            "--forward",
            &format!("127.0.0.1:{}", hole.port),
            "--storage-path",
            spool.path().to_str().unwrap(),
            "--flush-interval",
            "100ms",
        ],
    );
    let mut c = TapClient::connect(&agent.socket, 4343);
    c.hello("release", Some(64 * 1024), &[]);
    write_lines(&mut c, 0, N);
    wait_until(LIMIT, "released once on disk", || c.ring_backlog() == 0);
    let files = std::fs::read_dir(spool.path()).unwrap().count();
    assert!(files > 0, "the chunk waits on disk for its ack");
}

/// The agent's side of a suppressed stream's exit path: when a process goes, its last records
/// are made safe at once (its chunks do not wait for `flush_interval`), so that a process
/// waiting at exit for its ring to be released waits one acknowledgement, not a minute.
#[test]
fn a_process_that_exits_has_its_records_made_safe_at_once() {
    const N: u64 = 50;
    let mut receiver = Receiver::start("release-exit-recv", 0, &[]);
    let port = receiver.port;
    let agent = Agent::start(
        "release-exit",
        &[
            "--forward",
            &format!("127.0.0.1:{port}"),
            "--flush-interval",
            "60s",
        ],
    );
    let mut c = TapClient::connect(&agent.socket, 4444);
    c.hello("exiting", Some(64 * 1024), &[]);
    write_lines(&mut c, 0, N);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        c.ring_backlog(),
        words_of_lines(0, N),
        "held: the chunk waits for flush_interval"
    );
    let exited = Instant::now();
    c.hang_up();
    wait_until(
        Duration::from_secs(5),
        "released after the process left",
        || c.ring_backlog() == 0,
    );
    assert!(exited.elapsed() < Duration::from_secs(5));
    let counts = receiver.wait_all(N, &Counts::default(), LIMIT);
    assert_eq!(counts.distinct(N), N);
    drop(agent);
    drop(receiver.terminate());
}

/// A line waiting for its newline holds the ring from its first byte on. When it holds more
/// than half of the ring while another stream floods it, it goes out as `partial` at once
/// instead of after `partial_flush` (60 s here): the flood never waits for it.
#[test]
fn a_pending_line_that_holds_a_full_ring_goes_out_as_partial() {
    let agent = Agent::start(
        "release-partial",
        &["--partial-flush", "60s", "--flush-interval", "50ms"],
    );
    let mut c = TapClient::connect(&agent.socket, 4545);
    c.hello("partial", Some(64 * 1024), &[]); // 8,192 words
    c.ring_write(Stream::Stderr, T0, b"progress: ");
    for i in 0..2_000u64 {
        c.ring_write_wait(
            Stream::Stdout,
            T0 + 1 + i,
            format!("line {i}\n").as_bytes(),
            Duration::from_secs(10),
        );
    }
    let records = agent.wait_records(2_001, LIMIT);
    let progress = records
        .iter()
        .find(|r| r["stream"] == "stderr")
        .expect("the pending stderr line");
    assert_eq!(progress["message"], "progress: ");
    assert_eq!(progress["partial"], true);
    drop(c);
}
