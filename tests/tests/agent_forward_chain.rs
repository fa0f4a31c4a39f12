//! Two real agents in a chain: tapped lines → `logtap agent --output forward` → forward (ack) →
//! `logtap agent --forward-listen --output stdout`. Records per Contract 3 with their tag and
//! EventTime nanoseconds; the receiver killed (SIGKILL) and restarted mid-stream; the sender
//! killed -9 and restarted with `--storage-path`: every line arrives (counted by the sequence
//! numbers in the payloads; duplicates are allowed after a failure, loss is not).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use logtap_protocol::tap::Stream;
use logtap_tests::agent_harness::{Agent, TapClient};
use logtap_tests::artifacts::TempDir;
use logtap_tests::forward_support::{python, sender_args, start_receiver, wait_port};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(30);
const T0: u64 = 1_700_000_000_000_000_000;

/// The forward receiver, named `receiver` in the records it prints.
fn receiver(name: &str, port: u16, extra: &[&str]) -> Agent {
    let args = [&["--self-hostname", "receiver"], extra].concat();
    start_receiver(name, port, &args, LIMIT)
}

fn sender(name: &str, to: u16, extra: &[&str]) -> Agent {
    let server = format!("127.0.0.1:{to}");
    let mut args = sender_args(&server);
    args.extend_from_slice(extra);
    Agent::start(name, &args)
}

/// Sequence numbers in messages `seq <n>`.
fn seqs(records: &[Value]) -> BTreeSet<u64> {
    records
        .iter()
        .filter_map(|r| r["message"].as_str()?.strip_prefix("seq ")?.parse().ok())
        .collect()
}

fn wait_all(get: impl Fn() -> BTreeSet<u64>, n: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = get();
        if (0..n).all(|i| got.contains(&i)) {
            return;
        }
        let missing: Vec<u64> = (0..n).filter(|i| !got.contains(i)).take(10).collect();
        assert!(
            Instant::now() < deadline,
            "{} of {n} lines arrived; missing e.g. {missing:?}",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tapped_lines_cross_two_agents_with_tags_records_and_nanoseconds() {
    let recv = receiver("chain-recv", 0, &[]);
    let port = recv.forward_port();
    let send = sender("chain-send", port, &["--compress", "gzip"]);
    let mut c = TapClient::connect(&send.socket, 4321);
    c.hello("chainapp", None, &[]);
    c.data(
        Stream::Stdout,
        T0 + 123_456_789,
        b"first line\nsecond ",
        false,
    );
    c.data(Stream::Stdout, T0 + 999_999_999, b"line\n", false);
    c.data(Stream::Stderr, T0 + 1, b"an error\n", false);
    let records = recv.wait_records(3, LIMIT);
    let find = |m: &str| {
        records
            .iter()
            .find(|r| r["message"] == m)
            .unwrap_or_else(|| panic!("{m} missing: {records:?}"))
    };
    let first = find("first line");
    assert_eq!(first["tag"], "logtap.stdout");
    assert_eq!(
        first["timestamp"], "2023-11-14T22:13:20.123456789Z",
        "EventTime ns preserved across the hop"
    );
    assert_eq!(first["pid"], 4321);
    assert_eq!(first["comm"], "chainapp");
    assert_eq!(first["stream"], "stdout");
    assert_eq!(first["host"], "test-host");
    assert_eq!(
        find("second line")["timestamp"],
        "2023-11-14T22:13:20.123456789Z",
        "time of the line's first byte"
    );
    let err = find("an error");
    assert_eq!(
        (err["tag"].as_str(), err["stream"].as_str()),
        (Some("logtap.stderr"), Some("stderr"))
    );
    drop(c);
    let (status, _) = send.terminate();
    assert!(status.success());
    let (status, all) = recv.terminate();
    assert!(status.success());
    assert_eq!(all.len(), 3, "no duplicates in steady state: {all:?}");
}

#[test]
fn the_sender_logs_in_as_a_user_of_the_receiver() {
    let recv = receiver(
        "chain-users-recv",
        0,
        &[
            "--shared-key",
            "s3cret",
            "--forward-listen-user",
            "alice:wonder:land",
        ],
    );
    let port = recv.forward_port();
    // A wrong password is refused (and retried), the right one gets through.
    let wrong = sender(
        "chain-users-wrong",
        port,
        &[
            "--shared-key",
            "s3cret",
            "--username",
            "alice",
            "--password",
            "wonder",
            "--grace",
            "300ms",
        ],
    );
    let right = sender(
        "chain-users-right",
        port,
        &[
            "--shared-key",
            "s3cret",
            "--username",
            "alice",
            "--password",
            "wonder:land",
        ],
    );
    for (agent, text) in [
        (&wrong, b"from the wrong password\n"),
        (&right, b"from the right password\n"),
    ] {
        let mut c = TapClient::connect(&agent.socket, 77);
        c.hello("userapp", None, &[]);
        c.data(Stream::Stdout, T0, &text[..], false);
    }
    let records = recv.wait_records(1, LIMIT);
    assert_eq!(records[0]["message"], "from the right password");
    std::thread::sleep(Duration::from_millis(500));
    let (status, _) = wrong.terminate();
    assert!(status.success());
    let (status, _) = right.terminate();
    assert!(status.success());
    let (status, all) = recv.terminate();
    assert!(status.success());
    let messages: Vec<&str> = all.iter().filter_map(|r| r["message"].as_str()).collect();
    assert_eq!(messages, ["from the right password"], "{all:?}");
}

#[test]
fn receiver_killed_and_restarted_mid_stream_loses_nothing() {
    let spool = TempDir::new("chain-kill-recv-spool");
    let storage = spool.path().to_str().unwrap().to_owned();
    let mut recv = receiver("chain-kill-recv-1", 0, &["--storage-path", &storage]);
    // Restarted on the same port below.
    let port = recv.forward_port();
    let send = sender("chain-kill-send", port, &[]);
    let mut c = TapClient::connect(&send.socket, 77);
    c.hello("seqapp", None, &[]);
    const N: u64 = 3000;
    let mut before = Vec::new();
    for i in 0..N {
        c.data(
            Stream::Stdout,
            T0 + i,
            format!("seq {i}\n").as_bytes(),
            false,
        );
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(10));
        }
        if i == N / 2 {
            recv.child.kill().unwrap(); // SIGKILL
            recv.child.wait().unwrap();
            before = recv.records();
            drop(recv);
            std::thread::sleep(Duration::from_millis(300));
            recv = receiver("chain-kill-recv-2", port, &["--storage-path", &storage]);
        }
    }
    wait_all(|| &seqs(&before) | &seqs(&recv.records()), N, LIMIT);
    drop(c);
    let (status, _) = send.terminate();
    assert!(status.success());
}

#[test]
fn sender_killed_9_with_storage_path_loses_nothing_it_acked() {
    let recv = receiver("chain-spool-recv", 0, &[]);
    let p_recv = recv.forward_port();
    let spool = TempDir::new("chain-spool-send-spool");
    let storage = spool.path().to_str().unwrap().to_owned();
    let first = [
        "--forward-listen",
        "127.0.0.1:0",
        "--storage-path",
        storage.as_str(),
    ];
    let mut send = sender("chain-spool-send-1", p_recv, &first);
    // The restarted sender listens on the same port: the client reconnects to it.
    let p_send = send.forward_port();
    wait_port(p_send, LIMIT);
    let listen = format!("127.0.0.1:{p_send}");
    let args = [
        "--forward-listen",
        listen.as_str(),
        "--storage-path",
        storage.as_str(),
    ];
    // The client sends chunks of 10 records and moves on only once a chunk is acked; on any
    // failure it reconnects and resends the same chunk (what Fluent Bit and Fluentd do).
    const CHUNKS: u64 = 300;
    let script = r#"
port, chunks = int(sys.argv[1]), int(sys.argv[2])
s = None
i = 0
reconnects = 0
deadline = time.time() + 60
while i < chunks:
    assert time.time() < deadline, 'stuck at chunk %d' % i
    try:
        if s is None:
            s = connect(port, timeout=5); r = Reader(s)
        body = entries([(n, {'message': 'seq %d' % (i * 10 + n)}) for n in range(10)])
        s.sendall(packed('spool.tag', body, chunk='c%d' % i))
        assert r.next() == {'ack': 'c%d' % i}
        i += 1
        time.sleep(0.005)
    except (OSError, EOFError):
        s = None
        reconnects += 1
        time.sleep(0.1)
print('acked', i, 'reconnects', reconnects)
"#;
    let client = std::thread::spawn(move || {
        python(
            script,
            &[&p_send.to_string(), &CHUNKS.to_string()],
            Duration::from_secs(90),
        )
    });
    // Kill the sending agent -9 once part of the stream went through it, then restart it.
    let deadline = Instant::now() + LIMIT;
    while seqs(&recv.records()).len() < 500 {
        assert!(Instant::now() < deadline, "the chain did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    send.child.kill().unwrap();
    send.child.wait().unwrap();
    drop(send);
    let send = sender("chain-spool-send-2", p_recv, &args);
    let out = client.join().unwrap();
    assert!(
        out.success && out.stdout.contains(&format!("acked {CHUNKS} ")),
        "{out:?}"
    );
    assert!(
        !out.stdout.contains("reconnects 0"),
        "the kill happened mid-stream: {out:?}"
    );
    wait_all(|| seqs(&recv.records()), CHUNKS * 10, LIMIT);
    let (status, _) = send.terminate();
    assert!(status.success());
    let left: Vec<_> = std::fs::read_dir(spool.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert!(
        left.is_empty(),
        "the spool is empty once everything is acked: {left:?}"
    );
}

#[test]
fn a_real_program_under_the_interceptor_reaches_the_second_agent() {
    let recv = receiver("chain-real-recv", 0, &[]);
    let port = recv.forward_port();
    let server = format!("127.0.0.1:{port}");
    let args = sender_args(&server);
    let script = "for i in range(2000): print('seq', i)\nprint('no newline', end='')";
    let (status, _) = logtap_tests::agent_harness::run(&args, &["python3", "-c", script], &[]);
    assert!(status.success(), "{status}");
    wait_all(|| seqs(&recv.records()), 2000, LIMIT);
    let records = recv.wait_records(2001, LIMIT);
    let line = records.iter().find(|r| r["message"] == "seq 1999").unwrap();
    assert_eq!(
        (line["tag"].as_str(), line["stream"].as_str()),
        (Some("logtap.stdout"), Some("stdout"))
    );
    assert!(
        line["pid"].as_u64().is_some() && line["comm"].is_string(),
        "{line}"
    );
    let last = records
        .iter()
        .find(|r| r["message"] == "no newline")
        .unwrap();
    assert_eq!(last["partial"], true);
}
