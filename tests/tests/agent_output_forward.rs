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

/// Writes the lines as a tapped process; returns it (still connected until dropped).
fn write_lines(agent: &Agent, pid: u32, range: std::ops::Range<u64>) -> TapClient {
    let mut c = TapClient::connect(&agent.socket, pid);
    c.hello("fwd", Some(256 * 1024), &[]);
    for i in range {
        c.ring_write_wait(
            Stream::Stdout,
            T0 + i,
            format!("seq {i}\n").as_bytes(),
            Duration::from_secs(10),
        );
    }
    c
}

fn seqs(events: &[logtap_tests::agent_harness::fake_fluentd::Received]) -> Vec<u64> {
    events
        .iter()
        .map(|e| {
            e.record["message"]
                .as_str()
                .unwrap()
                .strip_prefix("seq ")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

#[test]
fn chunks_are_acked_and_records_keep_contract3_and_nanoseconds() {
    let fluentd = FakeFluentd::start(0, Behaviour::default());
    let agent = forward_agent("fwd-ack", fluentd.port, &[]);
    write_lines(&agent, 4321, 0..1000);
    let events = fluentd.wait_events(1000, Duration::from_secs(20));
    assert_eq!(
        seqs(&events),
        (0..1000).collect::<Vec<_>>(),
        "every line once, in order"
    );
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
    let fluentd = FakeFluentd::start(
        0,
        Behaviour {
            hang_up_on_first: 2,
            ..Behaviour::default()
        },
    );
    let agent = forward_agent("fwd-hangup", fluentd.port, &[]);
    write_lines(&agent, 1, 0..300);
    let events = fluentd.wait_events(300, Duration::from_secs(30));
    let got: HashSet<u64> = seqs(&events).into_iter().collect();
    assert_eq!(
        got,
        (0..300).collect::<HashSet<_>>(),
        "every line arrives despite two hang-ups"
    );
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
    let key = Behaviour {
        shared_key: Some("s3cret".into()),
        ..Behaviour::default()
    };
    let fluentd = FakeFluentd::start(0, key.clone());
    let agent = forward_agent(
        "fwd-key",
        fluentd.port,
        &["--shared-key", "s3cret", "--self-hostname", "agent-a"],
    );
    write_lines(&agent, 4, 0..10);
    assert_eq!(
        seqs(&fluentd.wait_events(10, Duration::from_secs(20))),
        (0..10).collect::<Vec<_>>()
    );
    agent.terminate();

    let fluentd = FakeFluentd::start(0, key.clone());
    let agent = forward_agent(
        "fwd-badkey",
        fluentd.port,
        &["--shared-key", "wrong", "--grace", "1s"],
    );
    write_lines(&agent, 5, 0..10);
    std::thread::sleep(Duration::from_secs(1));
    assert!(fluentd.events().is_empty(), "a wrong key delivers nothing");
    agent.terminate();

    let fluentd = FakeFluentd::start(0, key);
    let agent = forward_agent("fwd-nokey", fluentd.port, &["--grace", "1s"]);
    write_lines(&agent, 6, 0..10);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        fluentd.events().is_empty(),
        "a missing key delivers nothing"
    );
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
    let agent = Agent::start(
        "fwd-sigterm",
        &["--forward", &server, "--flush-interval", "60s"],
    );
    // Still connected: a process that is gone has its records sent at once.
    let process = write_lines(&agent, 8, 0..50);
    std::thread::sleep(Duration::from_millis(300));
    assert!(fluentd.events().is_empty());
    let (status, _) = agent.terminate();
    drop(process);
    assert!(status.success());
    assert_eq!(
        seqs(&fluentd.events()),
        (0..50).collect::<Vec<_>>(),
        "delivered before exit"
    );
}

#[test]
fn a_dead_server_fails_over_to_the_next_and_standby_is_used_last() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let live = FakeFluentd::start(0, Behaviour::default());
    let standby = FakeFluentd::start(0, Behaviour::default());
    let dir = logtap_tests::artifacts::TempDir::new("fwd-failover");
    let config = dir.path().join("logtap.toml");
    std::fs::write(
        &config,
        format!(
            "forward = [\"127.0.0.1:{dead}\", \"127.0.0.1:{}\", {{ host = \"127.0.0.1\", port = {}, standby = true }}]\n\
             flush_interval = \"50ms\"\n",
            live.port, standby.port
        ),
    )
    .unwrap();
    let agent = Agent::start("fwd-failover", &["--config", config.to_str().unwrap()]);
    write_lines(&agent, 9, 0..200);
    let got = live.wait_events(200, Duration::from_secs(30));
    assert_eq!(
        seqs(&got).into_iter().collect::<HashSet<_>>(),
        (0..200).collect::<HashSet<_>>()
    );
    assert!(
        standby.events().is_empty(),
        "standby unused while an active server works"
    );
    // The live one goes away too: the standby takes over.
    live.stop();
    write_lines(&agent, 10, 200..300);
    let got = standby.wait_events(100, Duration::from_secs(30));
    let got: HashSet<u64> = seqs(&got).into_iter().collect();
    assert!((200..300).all(|s| got.contains(&s)), "{got:?}");
    agent.terminate();
}

#[test]
fn tls_to_a_logtap_receiver_verified_by_ca_and_refused_with_another_ca() {
    use logtap_tests::forward_support::TestCa;
    let dir = logtap_tests::artifacts::TempDir::new("fwd-out-tls");
    let good = TestCa::create(dir.path(), "good");
    let other = TestCa::create(dir.path(), "other");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let receiver = Agent::start(
        "fwd-out-tls-rx",
        &[
            "--forward-listen",
            &listen,
            "--forward-listen-tls-cert",
            good.cert_pem.to_str().unwrap(),
            "--forward-listen-tls-key",
            good.key_pem.to_str().unwrap(),
            "--flush-interval",
            "50ms",
        ],
    );
    let sender = forward_agent(
        "fwd-out-tls",
        port,
        &["--tls", "--tls-ca-file", good.ca_pem.to_str().unwrap()],
    );
    write_lines(&sender, 11, 0..20);
    let records = receiver.wait_records(20, Duration::from_secs(20));
    let got: Vec<u64> = records
        .iter()
        .map(|r| {
            r["message"]
                .as_str()
                .unwrap()
                .strip_prefix("seq ")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    sender.terminate();

    let wrong = forward_agent(
        "fwd-out-tls-wrong",
        port,
        &[
            "--tls",
            "--tls-ca-file",
            other.ca_pem.to_str().unwrap(),
            "--grace",
            "1s",
        ],
    );
    write_lines(&wrong, 12, 100..110);
    std::thread::sleep(Duration::from_secs(1));
    let (_, all) = receiver.terminate();
    assert_eq!(
        all.len(),
        20,
        "a server the CA does not vouch for gets nothing"
    );
    wrong.terminate();
}

#[test]
fn chunks_are_shared_among_active_servers_by_weight() {
    let a = FakeFluentd::start(0, Behaviour::default());
    let b = FakeFluentd::start(0, Behaviour::default());
    let (sa, sb) = (
        format!("127.0.0.1:{}", a.port),
        format!("127.0.0.1:{}", b.port),
    );
    let agent = Agent::start(
        "fwd-balance",
        &[
            "--forward",
            &sa,
            "--forward",
            &sb,
            "--flush-interval",
            "20ms",
        ],
    );
    let mut c = TapClient::connect(&agent.socket, 13);
    c.hello("balanced", Some(256 * 1024), &[]);
    for batch in 0..40u64 {
        for i in 0..25 {
            let n = batch * 25 + i;
            c.ring_write_wait(
                Stream::Stdout,
                T0 + n,
                format!("seq {n}\n").as_bytes(),
                Duration::from_secs(5),
            );
        }
        std::thread::sleep(Duration::from_millis(60));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while a.events().len() + b.events().len() < 1000 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ea, eb) = (a.events(), b.events());
    assert!(
        !ea.is_empty() && !eb.is_empty(),
        "both servers get chunks: {} / {}",
        ea.len(),
        eb.len()
    );
    let mut all: Vec<u64> = seqs(&ea);
    all.extend(seqs(&eb));
    all.sort_unstable();
    assert_eq!(
        all,
        (0..1000).collect::<Vec<_>>(),
        "every line exactly once"
    );
    agent.terminate();
}
