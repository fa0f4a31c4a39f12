//! What the real `logtap agent`'s forward output sends, as shipped — the bytes on the TCP
//! connection, gzip included — decoded by an independent implementation (Python `msgpack` and
//! `gzip`, through the protocol crate's `tests/python/read_ours.py`) and held against what
//! Fluentd's own `out_forward` sends (the captures in `protocol/tests/fixtures/forward/`).
//!
//! The receiver here only frames messages to acknowledge them (the agent waits for acks); the
//! judgement of the bytes is Python's. These tests FAIL (never skip) when python3 or `msgpack`
//! is missing: CI installs them (`.ci/requirements.txt`).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use logtap_protocol::forward::{ClientMessage, ServerDecoder};
use logtap_protocol::tap::Stream;
use logtap_tests::agent_harness::{Agent, TapClient};
use logtap_tests::artifacts::TempDir;
use serde_json::{Value as Json, json};

const T0: u64 = 1_700_000_000_123_456_789;
const LIMIT: Duration = Duration::from_secs(30);

/// A Forward server on an ephemeral loopback port that keeps every byte it receives and acks
/// each chunk (framed with our decoder only to find where a message ends).
struct Capture {
    port: u16,
    bytes: Arc<Mutex<Vec<u8>>>,
    records: Arc<Mutex<usize>>,
}

impl Capture {
    fn start() -> Capture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the capturing receiver");
        let port = listener.local_addr().expect("receiver address").port();
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let records = Arc::new(Mutex::new(0));
        let (b, r) = (Arc::clone(&bytes), Arc::clone(&records));
        std::thread::spawn(move || {
            // The agent keeps one connection; a reconnect would be captured the same way.
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                serve(conn, &b, &r);
            }
        });
        Capture {
            port,
            bytes,
            records,
        }
    }

    fn wait_records(&self, n: usize) -> Vec<u8> {
        let deadline = Instant::now() + LIMIT;
        while *self.records.lock().unwrap() < n {
            assert!(
                Instant::now() < deadline,
                "the receiver got {} of {n} records within {LIMIT:?}",
                self.records.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.bytes.lock().unwrap().clone()
    }
}

fn serve(mut conn: TcpStream, bytes: &Mutex<Vec<u8>>, records: &Mutex<usize>) {
    conn.set_read_timeout(Some(LIMIT)).ok();
    let mut decoder = ServerDecoder::default();
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        bytes.lock().unwrap().extend_from_slice(&chunk[..n]);
        buf.extend_from_slice(&chunk[..n]);
        while let Some(msg) = decoder.decode(&mut buf).expect("the agent sends Forward") {
            let ClientMessage::Events(batch) = msg else {
                panic!("the agent sent PING without a shared key")
            };
            if let Some(ack) = batch.ack() {
                conn.write_all(&ack.to_vec()).expect("ack");
            }
            *records.lock().unwrap() += batch.events.len();
        }
    }
}

/// `read_ours.py`'s view of a stream of Forward messages: one JSON object per message (`args`:
/// `["peer"]` for another sender's PackedForward).
fn python_reads(stream: &Path, args: &[&str]) -> Vec<Json> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/tests/python/read_ours.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .args(args)
        .stdin(File::open(stream).expect("captured bytes"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 is required for this test and could not run: {e}"));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait python3") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("python3 read_ours.py did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        status.success(),
        "python3 msgpack could not read the bytes ({status}): {err}\n\
         (missing module? run `python3 -m pip install -r .ci/requirements.txt`)"
    );
    out.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Runs an agent with a forward output (ack on, `extra` flags), writes four lines — one of
/// them not UTF-8 — on stdout and one on stderr, and returns the bytes the receiver got.
fn capture_agent(name: &str, extra: &[&str]) -> (Vec<u8>, TempDir) {
    let capture = Capture::start();
    let server = format!("127.0.0.1:{}", capture.port);
    let mut args = vec![
        "--forward",
        server.as_str(),
        "--require-ack-response",
        "true",
        "--flush-interval",
        "50ms",
    ];
    args.extend_from_slice(extra);
    let agent = Agent::start(name, &args);
    let mut c = TapClient::connect(&agent.socket, 4242);
    c.hello("wireapp", Some(256 * 1024), &[]);
    for (i, line) in [&b"first line\n"[..], b"second\n", b"\xff\xfe raw\n"]
        .into_iter()
        .enumerate()
    {
        c.ring_write_wait(Stream::Stdout, T0 + i as u64, line, LIMIT);
    }
    c.ring_write_wait(Stream::Stderr, T0 + 10, b"to stderr\n", LIMIT);
    let bytes = capture.wait_records(4);
    drop(c);
    let _ = agent.terminate();
    let dir = TempDir::new(name);
    (bytes, dir)
}

fn save(dir: &TempDir, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join("captured.bin");
    std::fs::write(&path, bytes).expect("save the captured bytes");
    path
}

/// Every entry of one decoded message is `[time, {record}]`; ours always carry EventTime as
/// ext type 0 of 8 bytes, the form Fluentd's `out_forward` uses for its EventTime entries (it
/// also relays integer times its own clients sent: `fluentd` allows those).
fn assert_entry_shapes(msg: &Json, what: &str, fluentd: bool) {
    let entries = msg["entries"].as_array().expect("entries");
    assert!(!entries.is_empty(), "{what}: no entries");
    for e in entries {
        let event_time = e[0]["ext"] == 0 && e[0]["len"] == 8;
        let int_time = fluentd && e[0]["int"].is_u64();
        assert!(
            event_time || int_time,
            "{what}: time is EventTime (ext type 0, 8 bytes): {e}"
        );
        assert!(e[1].is_object(), "{what}: the record is a map: {e}");
    }
}

/// The messages of the agent's stream and of a Fluentd capture share the shape: PackedForward,
/// `size` equal to the number of entries, a `str` chunk id (asked for an ack), the same
/// `compressed` value.
fn assert_same_shape(ours: &[Json], fluentd: &[Json], compressed: &str) {
    let event_times = |msgs: &[Json]| {
        msgs.iter()
            .flat_map(|m| m["entries"].as_array().cloned().unwrap_or_default())
            .filter(|e| e[0]["ext"] == 0)
            .count()
    };
    assert!(
        event_times(fluentd) > 0,
        "the Fluentd capture holds EventTime entries to compare with"
    );
    for (what, msgs, is_fluentd) in [("logtap", ours, false), ("Fluentd 1.18", fluentd, true)] {
        assert!(!msgs.is_empty(), "{what}: no message");
        for m in msgs {
            assert_eq!(m["kind"], "PackedForward", "{what}: {m}");
            assert_entry_shapes(m, what, is_fluentd);
            let n = m["entries"].as_array().map_or(0, Vec::len);
            assert_eq!(m["options"]["size"], json!(n), "{what}: size option: {m}");
            assert!(
                m["options"]["chunk"].is_string(),
                "{what}: chunk id as str: {m}"
            );
            assert_eq!(
                m["options"]["compressed"].as_str().unwrap_or("text"),
                compressed,
                "{what}: compressed option: {m}"
            );
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/tests/fixtures/forward")
        .join(name)
}

/// The records as Python sees them, by message text (entries of every message, in order).
fn records(msgs: &[Json]) -> Vec<(String, Json, Json)> {
    let mut out = Vec::new();
    for m in msgs {
        let tag = m["tag"].as_str().expect("tag").to_owned();
        for e in m["entries"].as_array().expect("entries") {
            out.push((tag.clone(), e[0].clone(), e[1].clone()));
        }
    }
    out
}

fn check_our_records(msgs: &[Json]) {
    let recs = records(msgs);
    assert_eq!(recs.len(), 4, "{msgs:?}");
    let find = |text: &Json| {
        recs.iter()
            .find(|(_, _, r)| &r["message"] == text)
            .unwrap_or_else(|| panic!("no record with message {text} in {recs:?}"))
            .clone()
    };
    let (tag, time, rec) = find(&json!("first line"));
    assert_eq!(tag, "logtap.stdout");
    assert_eq!(
        time,
        json!({"ext": 0, "len": 8, "secs": 1_700_000_000u32, "nanos": 123_456_789u32})
    );
    assert_eq!(rec["stream"], "stdout");
    assert_eq!(rec["pid"], 4242);
    assert_eq!(rec["comm"], "wireapp");
    assert!(rec["host"].is_string(), "{rec}");
    assert!(rec.get("partial").is_none(), "{rec}");
    // Bytes that are not UTF-8 travel as `bin`, never rewritten.
    let (_, _, raw) = find(&json!({"bytes": "\u{fffd}\u{fffd} raw"}));
    assert_eq!(raw["stream"], "stdout");
    let (tag, time, rec) = find(&json!("to stderr"));
    assert_eq!(tag, "logtap.stderr");
    assert_eq!(time["nanos"], 123_456_799u32);
    assert_eq!(rec["stream"], "stderr");
}

#[test]
fn python_msgpack_reads_the_agents_packed_forward_like_fluentds() {
    let (bytes, dir) = capture_agent("wire-plain", &[]);
    let ours = python_reads(&save(&dir, &bytes), &[]);
    check_our_records(&ours);
    let fluentd = python_reads(&fixture("fluentd-1.18-packedforward-ack.bin"), &["peer"]);
    assert_same_shape(&ours, &fluentd, "text");
}

#[test]
fn python_msgpack_and_gzip_read_the_agents_compressed_packed_forward_like_fluentds() {
    let (bytes, dir) = capture_agent("wire-gzip", &["--compress", "gzip"]);
    let ours = python_reads(&save(&dir, &bytes), &[]);
    check_our_records(&ours);
    let fluentd = python_reads(&fixture("fluentd-1.18-compressed-gzip-ack.bin"), &["peer"]);
    assert_same_shape(&ours, &fluentd, "gzip");
    // Compressed on the wire: the message text is not visible in the captured bytes.
    assert!(
        !bytes.windows(10).any(|w| w == b"first line"),
        "gzip was asked for, the entries went out plain"
    );
}
