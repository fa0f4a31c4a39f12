//! `logtap agent` with the stdout output, fed by test clients that speak Contract 2 exactly
//! (frames and real rings): line assembly, partial lines, long lines, raw bytes, loss
//! accounting, bad peers, many peers, and the SIGTERM drain.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use logtap_protocol::tap::Stream;
use logtap_tests::agent_harness::{Agent, TapClient};
use serde_json::Value;

const FAST: &[&str] = &["--flush-interval", "50ms", "--partial-flush", "300ms"];
const T0: u64 = 1_700_000_000_000_000_000;

fn messages(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["message"].as_str().unwrap().to_owned())
        .collect()
}

/// The messages of each pid, in the order they arrived.
fn messages_by_pid(records: &[Value]) -> HashMap<u64, Vec<String>> {
    let mut per_pid: HashMap<u64, Vec<String>> = HashMap::new();
    for r in records {
        per_pid
            .entry(r["pid"].as_u64().unwrap())
            .or_default()
            .push(r["message"].as_str().unwrap().to_owned());
    }
    per_pid
}

/// A client for process `pid` that has said HELLO as `comm` with a 64 KiB ring.
fn ring_client(socket: &Path, pid: u32, comm: &str) -> TapClient {
    let mut c = TapClient::connect(socket, pid);
    c.hello(comm, Some(64 * 1024), &[]);
    c
}

/// Writes `line(i)` for i in 0..`n` into the ring at T0 + i, each waiting (at most `limit`)
/// for the agent to make room.
fn ring_lines(
    c: &mut TapClient,
    stream: Stream,
    n: u64,
    limit: Duration,
    line: impl Fn(u64) -> String,
) {
    for i in 0..n {
        c.ring_write_wait(stream, T0 + i, line(i).as_bytes(), limit);
    }
}

#[test]
fn data_frames_become_contract3_records() {
    let agent = Agent::start("data-frames", FAST);
    let mut c = TapClient::connect(&agent.socket, 4242);
    c.hello("myapp", None, &[]);
    c.data(Stream::Stdout, T0 + 123_456_789, b"first li", false);
    c.data(Stream::Stdout, T0 + 999, b"ne\nsecond\n", false);
    c.data(Stream::Stderr, T0 + 5, b"oops\n", false);
    let records = agent.wait_records(3, Duration::from_secs(10));
    let by_msg: HashMap<String, &Value> = records
        .iter()
        .map(|r| (r["message"].as_str().unwrap().to_owned(), r))
        .collect();
    let first = by_msg["first line"];
    assert_eq!(first["stream"], "stdout");
    assert_eq!(first["pid"], 4242);
    assert_eq!(first["comm"], "myapp");
    assert_eq!(first["host"], "test-host");
    assert_eq!(first["source"], "logtap");
    assert_eq!(first["tag"], "logtap.stdout");
    // The time of the write that brought the line's first byte, to the nanosecond.
    assert_eq!(first["timestamp"], "2023-11-14T22:13:20.123456789Z");
    assert!(first.get("partial").is_none());
    assert_eq!(
        by_msg["second"]["timestamp"],
        "2023-11-14T22:13:20.000000999Z"
    );
    assert_eq!(by_msg["oops"]["stream"], "stderr");
    assert_eq!(by_msg["oops"]["tag"], "logtap.stderr");
    let (status, all) = agent.terminate();
    assert!(status.success(), "{status}");
    assert_eq!(all.len(), 3, "nothing duplicated: {all:?}");
}

#[test]
fn ring_records_are_drained_even_after_the_process_left() {
    let agent = Agent::start("ring", FAST);
    let mut c = ring_client(&agent.socket, 777, "ringapp");
    ring_lines(&mut c, Stream::Stdout, 500, Duration::from_secs(5), |i| {
        format!("line {i}\n")
    });
    drop(c); // the process is gone; its ring still holds what it committed
    let records = agent.wait_records(500, Duration::from_secs(10));
    let msgs = messages(&records);
    let expected: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
    assert_eq!(msgs, expected, "all lines, in order");
    assert!(
        records
            .iter()
            .all(|r| r["pid"] == 777 && r["comm"] == "ringapp")
    );
    let (status, _) = agent.terminate();
    assert!(status.success());
}

#[test]
fn partial_lines_are_flushed_after_partial_flush_and_marked() {
    let agent = Agent::start("partial", FAST);
    let mut c = TapClient::connect(&agent.socket, 1);
    c.hello("prompt", None, &[]);
    c.data(Stream::Stdout, T0, b"Password: ", false);
    let records = agent.wait_records(1, Duration::from_secs(5));
    assert_eq!(records[0]["message"], "Password: ");
    assert_eq!(records[0]["partial"], true);
    c.data(Stream::Stdout, T0 + 1, b"done\n", false);
    c.data(Stream::Stdout, T0 + 2, b"no newline at exit", false);
    drop(c);
    let records = agent.wait_records(3, Duration::from_secs(5));
    assert_eq!(records[1]["message"], "done");
    assert!(records[1].get("partial").is_none());
    assert_eq!(records[2]["message"], "no newline at exit");
    assert_eq!(records[2]["partial"], true);
    agent.terminate();
}

#[test]
fn a_one_mebibyte_line_arrives_whole_in_pieces() {
    let agent = Agent::start("long-line", FAST);
    let mut c = TapClient::connect(&agent.socket, 2);
    c.hello("big", None, &[]);
    let line: Vec<u8> = (0..1 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let mut framed = line.clone();
    framed.push(b'\n');
    let pieces: Vec<&[u8]> = framed.chunks(64 * 1024).collect();
    for (i, piece) in pieces.iter().enumerate() {
        c.data(Stream::Stdout, T0, piece, i + 1 < pieces.len());
    }
    // 1 MiB + newline, cut at the default max_line_bytes of 64 KiB: 16 records, 15 partial.
    let records = agent.wait_records(16, Duration::from_secs(10));
    let mut joined = String::new();
    for (i, r) in records.iter().enumerate() {
        joined.push_str(r["message"].as_str().unwrap());
        assert_eq!(r.get("partial").is_some(), i < 15, "record {i}");
        assert_eq!(r["timestamp"], "2023-11-14T22:13:20.000000000Z");
    }
    assert_eq!(joined.as_bytes(), &line[..]);
    agent.terminate();

    let agent = Agent::start(
        "long-line-whole",
        &["--flush-interval", "50ms", "--max-line-bytes", "2MB"],
    );
    let mut c = TapClient::connect(&agent.socket, 3);
    c.hello("big", None, &[]);
    for (i, piece) in pieces.iter().enumerate() {
        c.data(Stream::Stdout, T0, piece, i + 1 < pieces.len());
    }
    let records = agent.wait_records(1, Duration::from_secs(10));
    assert_eq!(
        records[0]["message"].as_str().unwrap().as_bytes(),
        &line[..]
    );
    let (_, all) = agent.terminate();
    assert_eq!(all.len(), 1);
}

#[test]
fn non_utf8_bytes_are_kept_exactly() {
    let agent = Agent::start("raw-bytes", FAST);
    let mut c = TapClient::connect(&agent.socket, 5);
    c.hello("bin", None, &[]);
    c.data(Stream::Stdout, T0, b"caf\xe9 \xff\x00end\n", false);
    let records = agent.wait_records(1, Duration::from_secs(5));
    assert_eq!(records[0]["message"], "caf\u{fffd} \u{fffd}\u{0}end");
    assert_eq!(records[0]["message_base64"], "Y2Fm6SD/AGVuZA==");
    agent.terminate();
}

#[test]
fn a_bad_peer_is_dropped_and_the_others_go_on() {
    let agent = Agent::start("bad-peer", FAST);
    let mut good = TapClient::connect(&agent.socket, 10);
    good.hello("good", None, &[]);
    let mut bad = TapClient::connect(&agent.socket, 11);
    bad.raw(b"definitely not a control frame, 40 bytes");
    let mut early = TapClient::connect(&agent.socket, 12);
    early.data(Stream::Stdout, T0, b"data before hello\n", false);
    good.data(Stream::Stdout, T0, b"still here\n", false);
    let records = agent.wait_records(1, Duration::from_secs(5));
    assert_eq!(messages(&records), ["still here"]);
    let (status, all) = agent.terminate();
    assert!(status.success());
    assert_eq!(all.len(), 1, "nothing from the bad peers: {all:?}");
}

#[test]
fn garbage_lying_and_over_cap_peers_are_dropped_counted_and_the_others_go_on() {
    use logtap_protocol::tap::MAX_FRAME_LEN;
    let mut args = FAST.to_vec();
    args.extend(["--http-listen", "127.0.0.1:0"]);
    // Pids as the kernel says: the fake peers below must claim the test's own.
    let agent = Agent::start_with_env("bad-peers", &args, &[("LOGTAP_PEER_PID", "kernel")]);
    let port = agent.http_port();
    let me = std::process::id();
    let mut good = TapClient::connect(&agent.socket, me);
    good.hello("good", None, &[]);
    good.data(Stream::Stdout, T0, b"before\n", false);
    let mut garbage = TapClient::connect(&agent.socket, me);
    garbage.raw(b"definitely not a control frame, 40 bytes");
    let mut oversized = TapClient::connect(&agent.socket, me);
    oversized.raw(&vec![0u8; MAX_FRAME_LEN + 1]);
    let mut liar = TapClient::connect(&agent.socket, 1);
    liar.hello("liar", None, &[]);
    liar.data(Stream::Stdout, T0, b"I am init\n", false);
    // Over its cap: more (pid, stream, file) streams than one connection may open.
    let mut greedy = TapClient::connect(&agent.socket, me);
    greedy.hello("greedy", None, &[]);
    for p in 0..1025u32 {
        greedy.pid = 100_000 + p;
        greedy.data(Stream::Stdout, T0, b"x", false);
    }
    good.data(Stream::Stdout, T0 + 1, b"after\n", false);
    agent.wait_records(2, Duration::from_secs(10));
    let metric = |name: &str| {
        let (_, body) = logtap_tests::http::get_local(port, "/metrics").unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {body}"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric("logtap_tap_peers_rejected_total") < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "4 bad peers not counted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(metric("logtap_tap_peers_rejected_total"), 4);
    assert_eq!(metric("logtap_tap_peers_pid_mismatch_total"), 1);
    assert_eq!(
        metric("logtap_tap_peers"),
        1,
        "the good peer is still served"
    );
    good.data(Stream::Stdout, T0 + 2, b"still here\n", false);
    agent.wait_records(3, Duration::from_secs(10));
    let (status, all) = agent.terminate();
    assert!(status.success());
    let of = |comm: &str| -> Vec<String> {
        all.iter()
            .filter(|r| r["comm"] == comm)
            .map(|r| r["message"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(of("good"), ["before", "after", "still here"]);
    assert!(of("liar").is_empty(), "{all:?}");
    // What the greedy peer wrote before its cap is delivered, under the kernel's pid.
    assert!(
        all.iter()
            .filter(|r| r["comm"] == "greedy")
            .all(|r| r["pid"] == u64::from(me))
    );
}

#[test]
fn a_hundred_processes_at_once() {
    let agent = Agent::start("hundred", FAST);
    let socket = agent.socket.clone();
    let threads: Vec<_> = (0..100u32)
        .map(|p| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut c = ring_client(&socket, 1000 + p, "worker");
                ring_lines(&mut c, Stream::Stdout, 100, Duration::from_secs(10), |i| {
                    format!("p{p} l{i}\n")
                });
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let records = agent.wait_records(10_000, Duration::from_secs(30));
    let per_pid = messages_by_pid(&records);
    assert_eq!(per_pid.len(), 100);
    for (pid, msgs) in per_pid {
        let p = pid - 1000;
        let expected: Vec<String> = (0..100).map(|i| format!("p{p} l{i}")).collect();
        assert_eq!(msgs, expected, "pid {pid}: every line once, in order");
    }
    let (status, all) = agent.terminate();
    assert!(status.success());
    assert_eq!(all.len(), 10_000);
}

#[test]
fn sigterm_drains_rings_of_connected_processes() {
    // A long flush interval: only the drain can deliver these in time.
    let agent = Agent::start(
        "sigterm",
        &["--flush-interval", "60s", "--partial-flush", "60s"],
    );
    let mut c = ring_client(&agent.socket, 99, "steady");
    // Less than half of the 64 KiB ring: a ring held more than half full would have its
    // chunks sealed at once (ring pressure) instead of waiting for flush_interval.
    ring_lines(&mut c, Stream::Stderr, 200, Duration::from_secs(5), |i| {
        format!("e{i}\n")
    });
    c.ring_write(Stream::Stderr, T0 + 200, b"unterminated");
    std::thread::sleep(Duration::from_millis(300));
    assert!(agent.records().is_empty(), "held until flush_interval");
    let (status, records) = agent.terminate();
    assert!(status.success(), "{status}");
    assert_eq!(records.len(), 201);
    assert_eq!(records[199]["message"], "e199");
    assert_eq!(records[200]["message"], "unterminated");
    assert_eq!(records[200]["partial"], true);
    drop(c);
}

#[test]
fn a_peers_own_pod_metadata_wins_and_feeds_the_tag() {
    let agent = Agent::start(
        "pod-meta",
        &[
            "--flush-interval",
            "50ms",
            "--tag",
            "k8s.{namespace}.{pod_name}.{stream}",
        ],
    );
    let mut a = TapClient::connect(&agent.socket, 21);
    a.hello_meta(
        "app",
        None,
        &[],
        &[
            ("POD_NAME", "web-1"),
            ("POD_NAMESPACE", "shop"),
            ("NODE_NAME", "n1"),
        ],
    );
    a.data(Stream::Stdout, T0, b"from web\n", false);
    let records = agent.wait_records(1, Duration::from_secs(5));
    assert_eq!(records[0]["pod_name"], "web-1");
    assert_eq!(records[0]["namespace"], "shop");
    assert_eq!(records[0]["node_name"], "n1");
    assert_eq!(records[0]["tag"], "k8s.shop.web-1.stdout");
    agent.terminate();
}

#[test]
fn an_unsealed_or_missing_ring_is_refused_and_others_go_on() {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let agent = Agent::start("hostile-ring", FAST);
    // A plain memfd of the right size, but growable: the agent must not map it.
    // SAFETY: plain syscalls; results checked.
    let memfd = unsafe { libc::memfd_create(c"not-sealed".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(memfd >= 0);
    // SAFETY: memfd is new and ours.
    let memfd = unsafe { OwnedFd::from_raw_fd(memfd) };
    // SAFETY: plain syscall on our fd.
    let ret = unsafe { libc::ftruncate(memfd.as_raw_fd(), 4096 + (1 << 20)) };
    assert_eq!(ret, 0);
    // SAFETY: plain syscall; checked.
    let ev = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(ev >= 0);
    // SAFETY: ev is new and ours.
    let ev = unsafe { OwnedFd::from_raw_fd(ev) };
    let mut unsealed = TapClient::connect(&agent.socket, 30);
    unsealed.hello_with_fds("evil", &[memfd.as_raw_fd(), ev.as_raw_fd()]);
    let mut missing = TapClient::connect(&agent.socket, 31);
    missing.hello_with_fds("evil", &[]);
    let mut good = ring_client(&agent.socket, 32, "good");
    good.ring_write(Stream::Stdout, T0, b"fine\n");
    let records = agent.wait_records(1, Duration::from_secs(5));
    assert_eq!(messages(&records), ["fine"]);
    let (status, all) = agent.terminate();
    assert!(status.success());
    assert_eq!(all.len(), 1, "{all:?}");
}

/// Contract 2's ring layout is versioned (header offset 4): a library of another release
/// passes a ring whose version this agent does not read. The agent refuses it with an error
/// that says so and what to do, and serves the other processes.
#[test]
fn a_ring_of_another_layout_version_is_refused_by_name() {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::fs::FileExt;
    let agent = Agent::start("ring-version", FAST);
    let current = logtap_protocol::ring::layout::VERSION;
    // Versions 1 and 2: libraries from before issue 14's changes to the ring (version 2: 128-byte
    // slots, the layout of the release before this one); and a later one's.
    for (pid, other) in [(40u32, 1u32), (43, 2), (42, current + 1)] {
        // A well-formed, sealed ring, as that library creates it, but for its version: the
        // same file size (64 KiB of data), its version, and for version 2 its slot geometry.
        let memfd = logtap_protocol::ring::create_ring_memfd(64 * 1024, pid).unwrap();
        let file = std::fs::File::from(memfd);
        file.write_all_at(&other.to_le_bytes(), 4).unwrap();
        if other == 2 {
            file.write_all_at(&128u32.to_le_bytes(), 8).unwrap();
            file.write_all_at(&512u32.to_le_bytes(), 12).unwrap();
        }
        // SAFETY: plain syscall; checked.
        let ev = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(ev >= 0);
        // SAFETY: ev is new and ours.
        let ev = unsafe { OwnedFd::from_raw_fd(ev) };
        let mut old = TapClient::connect(&agent.socket, pid);
        old.hello_with_fds("other-release", &[file.as_raw_fd(), ev.as_raw_fd()]);
        agent.wait_log_line(
            &[
                "dropping tap peer",
                &format!("pid={pid} "),
                &format!("ring layout version {other}, this build reads version {current} only"),
                "different releases",
                "LLT_TRANSPORT=socket",
            ],
            Duration::from_secs(10),
        );
    }
    let mut good = ring_client(&agent.socket, 41, "good");
    good.ring_write(Stream::Stdout, T0, b"fine\n");
    let records = agent.wait_records(1, Duration::from_secs(5));
    assert_eq!(messages(&records), ["fine"]);
    let (status, all) = agent.terminate();
    assert!(status.success());
    assert_eq!(all.len(), 1, "{all:?}");
}

/// Layout version 3 keeps no pid in a record and packs stream, CONTINUED, file index and seq
/// into its control word beside a full time word: the agent makes of ring records, field for
/// field, the records it makes of DATA frames (which carry every field in full) — time to the
/// nanosecond, stream, tapped file, a write continued over two records, the process's pid.
#[test]
fn ring_records_become_the_same_records_as_data_frames() {
    let agent = Agent::start("ring-vs-data", FAST);
    let mut ring = ring_client(&agent.socket, 6001, "same");
    let mut data = TapClient::connect(&agent.socket, 6002);
    data.hello("same", None, &[]);
    let writes: [(Stream, u16, bool, u64, &[u8]); 6] = [
        (Stream::Stdout, 0, false, T0 + 123_456_789, b"first li"),
        (Stream::Stdout, 0, false, T0 + 999, b"ne\nsecond\n"),
        (Stream::Stderr, 0, false, T0 + 5, b"oops\n"),
        (Stream::File, 1, true, T0 + 7, b"a write in "),
        (Stream::File, 1, false, T0 + 8, b"two records\n"),
        (Stream::File, 0, false, u64::MAX / 2 + 1, b"far future\n"),
    ];
    for c in [&mut ring, &mut data] {
        c.file(0, "/var/log/zero.log");
        c.file(1, "/var/log/one.log");
    }
    for (stream, file, continued, time, bytes) in writes {
        ring.ring_write_to(stream, file, continued, time, bytes);
        data.data_to(stream, file, continued, time, bytes);
    }
    let records = agent.wait_records(10, Duration::from_secs(10));
    let by_pid = |pid: u64| {
        let mut of: Vec<Value> = records
            .iter()
            .filter(|r| r["pid"] == pid)
            .map(|r| {
                let mut r = r.clone();
                r.as_object_mut()
                    .expect("a record is an object")
                    .remove("pid");
                r
            })
            .collect();
        of.sort_by_key(|r| r.to_string());
        of
    };
    let (from_ring, from_data) = (by_pid(6001), by_pid(6002));
    assert_eq!(from_ring.len(), 5, "{records:?}");
    assert_eq!(from_ring, from_data);
    let two = from_ring
        .iter()
        .find(|r| r["message"] == "a write in two records")
        .expect("the continued write, joined");
    assert_eq!(two["timestamp"], "2023-11-14T22:13:20.000000007Z");
    drop((ring, data));
    agent.terminate();
}

#[test]
fn ring_records_and_data_frames_keep_write_order() {
    let agent = Agent::start("order", FAST);
    for round in 0..20u32 {
        let mut c = ring_client(&agent.socket, 500 + round, "mixed");
        // The ring holds writes 1 and 3; write 2 (too large for the ring, say) goes as a DATA
        // frame. Whichever path the agent reads first, `seq` puts them back in order.
        c.ring_write(Stream::Stdout, T0, b"first ");
        c.data(Stream::Stdout, T0 + 1, b"second\n", false);
        c.ring_write(Stream::Stdout, T0 + 2, b"third\n");
    }
    let records = agent.wait_records(40, Duration::from_secs(10));
    let per_pid = messages_by_pid(&records);
    for (pid, msgs) in per_pid {
        assert_eq!(msgs, ["first second", "third"], "pid {pid}");
    }
    agent.terminate();
}

#[test]
fn a_ring_outlives_the_agent_and_the_next_agent_resumes_at_its_tail() {
    let first = Agent::start("resume-a", FAST);
    let mut c = ring_client(&first.socket, 77, "survivor");
    ring_lines(&mut c, Stream::Stdout, 100, Duration::from_secs(5), |i| {
        format!("before {i}\n")
    });
    first.wait_records(100, Duration::from_secs(10));
    let (status, got) = first.terminate();
    assert!(status.success());
    assert_eq!(got.len(), 100);
    // No agent now: the process keeps writing into its ring.
    for i in 0..50 {
        c.ring_write(
            Stream::Stdout,
            T0 + 100 + i,
            format!("while away {i}\n").as_bytes(),
        );
    }
    let second = Agent::start("resume-b", FAST);
    let mut c = c.reconnect(&second.socket);
    c.ring_write(Stream::Stdout, T0 + 150, b"after\n");
    let records = second.wait_records(51, Duration::from_secs(10));
    let mut expected: Vec<String> = (0..50).map(|i| format!("while away {i}")).collect();
    expected.push("after".into());
    assert_eq!(
        messages(&records),
        expected,
        "nothing lost, nothing read twice"
    );
    let (_, all) = second.terminate();
    assert_eq!(all.len(), 51);
}
