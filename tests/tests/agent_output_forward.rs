//! The forward output of the real `logtap agent` against a test Forward server: acks, resends
//! after hang-ups and restarts, the shared-key handshake, gzip, and the SIGTERM drain.

use std::collections::HashSet;
use std::time::Duration;

use logtap_protocol::tap::Stream;
use logtap_tests::agent_harness::fake_fluentd::{Behaviour, FakeFluentd};
use logtap_tests::agent_harness::{Agent, TapClient};

const T0: u64 = 1_700_000_000_000_000_000;

fn forward_agent(name: &str, port: u16, extra: &[&str]) -> Agent {
    let server = format!("127.0.0.1:{port}");
    let mut args = vec!["--forward", server.as_str(), "--flush-interval", "50ms"];
    args.extend_from_slice(extra);
    Agent::start(name, &args)
}

fn write_lines(agent: &Agent, pid: u32, range: std::ops::Range<u64>) {
    let mut c = TapClient::connect(&agent.socket, pid);
    c.hello("fwd", Some(256 * 1024), &[]);
    for i in range {
        c.ring_write_wait(Stream::Stdout, T0 + i, format!("seq {i}\n").as_bytes(), Duration::from_secs(10));
    }
}

fn seqs(events: &[logtap_tests::agent_harness::fake_fluentd::Received]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e.record["message"].as_str().unwrap().strip_prefix("seq ").unwrap().parse().unwrap())
        .collect()
}

#[test]
fn chunks_are_acked_and_records_keep_contract3_and_nanoseconds() {
    let fluentd = FakeFluentd::start(0, Behaviour::default());
    let agent = forward_agent("fwd-ack", fluentd.port, &[]);
    write_lines(&agent, 4321, 0..1000);
    let events = fluentd.wait_events(1000, Duration::from_secs(20));
    assert_eq!(seqs(&events), (0..1000).collect::<Vec<_>>(), "every line once, in order");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.tag, "logtap.stdout");
        assert_eq!(e.time_ns, T0 + i as u64, "EventTime nanoseconds preserved");
        assert_eq!(e.record["stream"], "stdout");
        assert_eq!(e.record["pid"], 4321);
        assert_eq!(e.record["comm"], "fwd");
        assert!(e.chunk.is_some(), "require_ack_response is on by default");
        assert!(!e.compressed);
    }
    let (status, stdout_records) = agent.terminate();
    assert!(status.success());
    assert!(stdout_records.is_empty(), "forward only: nothing on stdout");
    assert_eq!(fluentd.stop().len(), 1000, "no duplicates in steady state");
}

#[test]
fn unacked_chunks_are_resent_after_hang_ups() {
    let fluentd = FakeFluentd::start(0, Behaviour { hang_up_on_first: 2, ..Behaviour::default() });
    let agent = forward_agent("fwd-hangup", fluentd.port, &[]);
    write_lines(&agent, 1, 0..300);
    let events = fluentd.wait_events(300, Duration::from_secs(30));
    let got: HashSet<u64> = seqs(&events).into_iter().collect();
    assert_eq!(got, (0..300).collect::<HashSet<_>>(), "every line arrives despite two hang-ups");
    agent.terminate();
}

#[test]
fn a_restarted_receiver_gets_every_line() {
    let fluentd = FakeFluentd::start(0, Behaviour::default());
    let port = fluentd.port;
    let agent = forward_agent("fwd-restart", port, &[]);
    write_lines(&agent, 2, 0..200);
    fluentd.wait_events(200, Duration::from_secs(20));
    let first = fluentd.stop();
    // While the receiver is down, the agent keeps the lines (and retries with backoff).
    write_lines(&agent, 3, 200..400);
    std::thread::sleep(Duration::from_millis(700));
    let fluentd = FakeFluentd::start(port, Behaviour::default());
    let second = fluentd.wait_events(200, Duration::from_secs(30));
    let mut all: HashSet<u64> = seqs(&first).into_iter().collect();
    all.extend(seqs(&second));
    assert_eq!(all, (0..400).collect::<HashSet<_>>());
    agent.terminate();
}

#[test]
fn shared_key_handshake_right_and_wrong() {
    let key = Behaviour { shared_key: Some("s3cret".into()), ..Behaviour::default() };
    let fluentd = FakeFluentd::start(0, key.clone());
    let agent = forward_agent("fwd-key", fluentd.port, &["--shared-key", "s3cret", "--self-hostname", "agent-a"]);
    write_lines(&agent, 4, 0..10);
    assert_eq!(seqs(&fluentd.wait_events(10, Duration::from_secs(20))), (0..10).collect::<Vec<_>>());
    agent.terminate();

    let fluentd = FakeFluentd::start(0, key.clone());
    let agent = forward_agent("fwd-badkey", fluentd.port, &["--shared-key", "wrong", "--grace", "1s"]);
    write_lines(&agent, 5, 0..10);
    std::thread::sleep(Duration::from_secs(1));
    assert!(fluentd.events().is_empty(), "a wrong key delivers nothing");
    agent.terminate();

    let fluentd = FakeFluentd::start(0, key);
    let agent = forward_agent("fwd-nokey", fluentd.port, &["--grace", "1s"]);
    write_lines(&agent, 6, 0..10);
    std::thread::sleep(Duration::from_secs(1));
    assert!(fluentd.events().is_empty(), "a missing key delivers nothing");
    agent.terminate();
}

#[test]
fn gzip_compressed_packed_forward() {
    let fluentd = FakeFluentd::start(0, Behaviour::default());
    let agent = forward_agent("fwd-gzip", fluentd.port, &["--compress", "gzip"]);
    write_lines(&agent, 7, 0..100);
    let events = fluentd.wait_events(100, Duration::from_secs(20));
    assert!(events.iter().all(|e| e.compressed));
    assert_eq!(seqs(&events), (0..100).collect::<Vec<_>>());
    agent.terminate();
}

#[test]
fn sigterm_waits_for_acks() {
    let fluentd = FakeFluentd::start(0, Behaviour::default());
    // A long flush interval: the records leave only because of the drain.
    let server = format!("127.0.0.1:{}", fluentd.port);
    let agent = Agent::start("fwd-sigterm", &["--forward", &server, "--flush-interval", "60s"]);
    write_lines(&agent, 8, 0..50);
    std::thread::sleep(Duration::from_millis(300));
    assert!(fluentd.events().is_empty());
    let (status, _) = agent.terminate();
    assert!(status.success());
    assert_eq!(seqs(&fluentd.events()), (0..50).collect::<Vec<_>>(), "delivered before exit");
}
