//! Interop with independent implementations, through `python3`:
//! - PyPI `fluent-logger` (Message mode, `nanosecond_precision=True`) sends to a TCP listener
//!   here and our decoder reads its events;
//! - Python `msgpack` builds Forward, PackedForward (bin and str32) and CompressedPackedForward
//!   (several gzip members) frames that we decode to what the script says it built;
//! - what we encode, Python `msgpack` decodes to the expected structure (EventTime as ext 0 with
//!   the right seconds and nanoseconds);
//! - our handshake digests equal Python `hashlib`'s.
//!
//! These tests FAIL (never skip) when python3 or its modules are missing: CI installs them with
//! `python3 -m pip install msgpack fluent-logger`.

#![cfg(feature = "forward")]

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use logtap_protocol::forward::{
    Ack, ChunkId, ClientMessage, Compression, Event, EventTime, Helo, Mode, Options,
    PackedForwardBuilder, Ping, Pong, RawKind, ServerDecoder, Value, encode_forward,
    encode_message, password_digest, shared_key_digest,
};
use serde_json::{Value as Json, json};

mod forward_support;

use forward_support::{TIMEOUT, require_python, run_python, script, wait};

fn decode_all(bytes: &[u8]) -> Vec<ClientMessage> {
    let mut out = Vec::new();
    let mut dec = ServerDecoder::default();
    let mut buf = BytesMut::new();
    // One byte at a time: the split that stresses the streaming decoder most.
    for b in bytes {
        buf.extend_from_slice(&[*b]);
        while let Some(m) = dec.decode(&mut buf).expect("interop bytes decode") {
            out.push(m);
        }
    }
    assert!(buf.is_empty(), "{} bytes left", buf.len());
    out
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::F32(f) => json!(f),
        Value::F64(f) => json!(f),
        Value::Str(b) => json!(String::from_utf8_lossy(b)),
        Value::Bin(b) => json!({"bytes": String::from_utf8_lossy(b)}),
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Map(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k.as_raw().unwrap_or(b"?")).into_owned(),
                        to_json(v),
                    )
                })
                .collect(),
        ),
        Value::Ext(t, d) => json!({"ext": t, "len": d.len()}),
    }
}

fn batch(m: &ClientMessage) -> &logtap_protocol::forward::EventBatch {
    match m {
        ClientMessage::Events(b) => b,
        ClientMessage::Ping(_) => panic!("expected events, got PING"),
    }
}

#[test]
fn fluent_logger_message_mode_with_event_time() {
    require_python();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port().to_string();
    listener.set_nonblocking(true).expect("nonblocking");
    let mut child = Command::new("python3")
        .arg(script("fluent_logger_send.py"))
        .arg(&port)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let deadline = Instant::now() + TIMEOUT;
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                if let Ok(Some(status)) = child.try_wait() {
                    let mut err = String::new();
                    child
                        .stderr
                        .take()
                        .expect("stderr")
                        .read_to_string(&mut err)
                        .ok();
                    panic!("fluent-logger exited ({status}) before connecting: {err}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("no connection from fluent-logger: {e}"),
        }
    };
    stream.set_nonblocking(false).expect("blocking");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let mut bytes = Vec::new();
    stream
        .read_to_end(&mut bytes)
        .expect("read fluent-logger stream");
    assert!(wait(&mut child).success(), "fluent-logger script failed");

    let msgs = decode_all(&bytes);
    assert_eq!(msgs.len(), 3);
    let tags: Vec<_> = msgs.iter().map(|m| batch(m).tag.as_str()).collect();
    assert_eq!(tags, ["interop.one", "interop.two", "interop.three"]);
    for m in &msgs {
        assert_eq!(batch(m).mode, Mode::Message);
        assert_eq!(batch(m).events.len(), 1);
    }
    let e0 = &batch(&msgs[0]).events[0];
    assert_eq!(e0.time, EventTime::new(1_700_000_000, 123_456_789));
    assert_eq!(to_json(&e0.record), json!({"message": "hello", "n": 1}));
    let e1 = &batch(&msgs[1]).events[0];
    assert_eq!(e1.time, EventTime::new(1_700_000_001, 1));
    assert_eq!(
        to_json(&e1.record),
        json!({"message": "héllo", "list": [1, 2]})
    );
    let e2 = &batch(&msgs[2]).events[0];
    assert!(e2.time.secs > 1_700_000_000, "emit() uses the current time");
    assert_eq!(
        e2.record.get("bin"),
        Some(&Value::Bin(Bytes::from_static(b"\xff\x00")))
    );
}

#[test]
fn python_msgpack_frames_decode() {
    let path =
        std::env::temp_dir().join(format!("logtap-forward-frames-{}.bin", std::process::id()));
    let path_s = path.to_str().expect("utf8 temp path").to_owned();
    let out = run_python(
        &[script("build_frames.py").to_str().expect("path"), &path_s],
        b"",
    );
    let expected: Json = serde_json::from_slice(&out).expect("script prints JSON");
    let bytes = std::fs::read(&path).expect("frames file");
    std::fs::remove_file(&path).ok();

    let msgs = decode_all(&bytes);
    let expected = expected.as_array().expect("array");
    assert_eq!(msgs.len(), expected.len());
    for (m, want) in msgs.iter().zip(expected) {
        let b = batch(m);
        let mode = format!("{:?}", b.mode);
        assert_eq!(json!(mode), want["mode"], "{want}");
        assert_eq!(json!(b.tag), want["tag"]);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let events: Vec<Json> = b
            .events
            .iter()
            .zip(want["events"].as_array().expect("events"))
            .map(|(e, w)| {
                if w[0] == json!(-1) {
                    // "now": stamped when decoded.
                    assert!(
                        u64::from(e.time.secs).abs_diff(now) < 60,
                        "{}: time {:?} is not the time of decoding",
                        b.tag,
                        e.time
                    );
                    json!([-1, -1, to_json(&e.record)])
                } else {
                    json!([e.time.secs, e.time.nanos, to_json(&e.record)])
                }
            })
            .collect();
        assert_eq!(Json::Array(events), want["events"], "{}", b.tag);
        let chunk = b
            .options
            .chunk
            .as_ref()
            .map(|c| String::from_utf8_lossy(&c.bytes).into_owned());
        assert_eq!(json!(chunk), want["chunk"], "{}", b.tag);
        let compressed = match (b.options.compressed, b.options.compressed_present) {
            (Compression::Gzip, _) => Some("gzip"),
            (Compression::None, true) => Some("text"),
            (Compression::None, false) => None,
        };
        assert_eq!(json!(compressed), want["compressed"], "{}", b.tag);
    }
    // The chunk ids kept their MessagePack type: str for py.forward, bin for py.packed.
    assert_eq!(
        batch(&msgs[0]).options.chunk.as_ref().map(|c| c.kind),
        Some(RawKind::Str)
    );
    assert_eq!(
        batch(&msgs[1]).options.chunk.as_ref().map(|c| c.kind),
        Some(RawKind::Bin)
    );
    assert!(
        batch(&msgs[5]).events[0].metadata.is_some(),
        "v1.5 metadata kept"
    );
}

fn record(msg: &str, n: u64) -> Value {
    Value::Map(vec![
        (Value::str("message"), Value::str(msg)),
        (Value::str("n"), Value::UInt(n)),
    ])
}

#[test]
fn python_msgpack_reads_what_we_encode() {
    let mut wire = Vec::new();
    // 1, 2: builder output, plain and gzip, with a str chunk id.
    let id = ChunkId::from_random_bytes([0xab; 16]);
    for compression in [Compression::None, Compression::Gzip] {
        let mut b = PackedForwardBuilder::new("ours.packed");
        b.record(EventTime::new(1_700_000_100, 123_456_789))
            .str("message", b"first")
            .uint("pid", 42);
        b.record(EventTime::new(u32::MAX, 999_999_999))
            .text_or_bin("message", b"\xffraw")
            .bool("partial", true);
        wire.extend_from_slice(&b.finish(Some(&id), compression).expect("finish"));
    }
    // 3, 4: Message and Forward modes from the generic encoders.
    let e = |s, ns, m, n| Event {
        time: EventTime::new(s, ns),
        record: record(m, n),
        metadata: None,
    };
    encode_message(
        &mut wire,
        "ours.message",
        &e(1, 2, "m", 3),
        &Options::default(),
    );
    let opts = Options {
        size: Some(2),
        ..Options::default()
    };
    encode_forward(
        &mut wire,
        "ours.forward",
        &[e(10, 20, "a", 1), e(11, 21, "b", 2)],
        &opts,
    )
    .expect("forward");
    // 5..8: an ack with a bin id, and the handshake messages.
    Ack {
        chunk: ChunkId {
            kind: RawKind::Bin,
            bytes: Bytes::from_static(b"id\n"),
        },
    }
    .encode(&mut wire);
    let helo = Helo {
        nonce: Bytes::from_static(&[1, 2, 3]),
        auth: Bytes::new(),
        keepalive: true,
    };
    helo.encode(&mut wire);
    let ping = Ping::new(&helo, "client", b"key", b"salt", None);
    ping.encode(&mut wire);
    Pong::answer(&ping, &helo, "server", b"key", Ok(())).encode(&mut wire);

    let out = run_python(&[script("read_ours.py").to_str().expect("path")], &wire);
    let lines: Vec<Json> = String::from_utf8(out)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 8, "{lines:?}");
    let time = |s: u32, ns: u32| json!({"ext": 0, "len": 8, "secs": s, "nanos": ns});
    let id_text = String::from_utf8(id.bytes.to_vec()).expect("base64 is text");
    for (i, compressed) in [(0, None), (1, Some("gzip"))] {
        let l = &lines[i];
        assert_eq!(l["kind"], "PackedForward");
        assert_eq!(l["tag"], "ours.packed");
        assert_eq!(l["entries"][0][0], time(1_700_000_100, 123_456_789));
        assert_eq!(l["entries"][0][1], json!({"message": "first", "pid": 42}));
        assert_eq!(l["entries"][1][0], time(u32::MAX, 999_999_999));
        assert_eq!(
            l["entries"][1][1],
            json!({"message": {"bytes": "\u{fffd}raw"}, "partial": true})
        );
        let mut opts = json!({"size": 2, "chunk": id_text});
        if let Some(c) = compressed {
            opts["compressed"] = json!(c);
        }
        assert_eq!(l["options"], opts);
    }
    assert_eq!(lines[2]["kind"], "Message");
    assert_eq!(
        lines[2]["entries"],
        json!([[time(1, 2), {"message": "m", "n": 3}]])
    );
    assert_eq!(lines[3]["kind"], "Forward");
    assert_eq!(
        lines[3]["entries"][1],
        json!([time(11, 21), {"message": "b", "n": 2}])
    );
    assert_eq!(lines[3]["options"], json!({"size": 2}));
    assert_eq!(lines[4]["value"], json!({"ack": {"bytes": "id\n"}}));
    assert_eq!(lines[4]["ack_is_bin"], true);
    assert_eq!(
        lines[5]["value"],
        json!([{"nonce": {"bytes": "\u{1}\u{2}\u{3}"}, "auth": {"bytes": ""}, "keepalive": true}])
    );
    assert_eq!(lines[6]["value"][0], "client");
    assert_eq!(lines[6]["value"][2], json!(ping.shared_key_hexdigest));
    assert_eq!(lines[7]["value"][0], true);
    assert_eq!(lines[7]["value"][2], "server");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn handshake_digests_match_python_hashlib() {
    /// (salt or auth, hostname or user, nonce, shared key or password)
    type Case = (Vec<u8>, &'static str, Vec<u8>, Vec<u8>);
    let cases: Vec<Case> = vec![
        (
            b"0123456789abcdef0123456789abcdef".to_vec(),
            "client.example.com",
            (0..16).collect(),
            b"secret_shared_key".to_vec(),
        ),
        (vec![], "", vec![], vec![]),
        (
            (0..=255).collect(),
            "hôte-ünicode",
            vec![0xff; 40],
            b"k\x00ey".to_vec(),
        ),
    ];
    let mut requests = String::new();
    let mut ours = Vec::new();
    for (salt, host, nonce, key) in &cases {
        let parts = [hex(salt), hex(host.as_bytes()), hex(nonce), hex(key)];
        requests.push_str(&json!({"parts": parts}).to_string());
        requests.push('\n');
        ours.push(shared_key_digest(salt, host, nonce, key));
        let parts = [hex(nonce), hex(host.as_bytes()), hex(key)];
        requests.push_str(&json!({"parts": parts}).to_string());
        requests.push('\n');
        ours.push(password_digest(nonce, host, key));
    }
    let out = run_python(
        &[script("read_ours.py").to_str().expect("path"), "digests"],
        requests.as_bytes(),
    );
    let theirs: Vec<String> = String::from_utf8(out)
        .expect("utf8")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ours, theirs);
}
