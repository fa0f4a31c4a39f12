//! The forward input (`logtap agent --forward-listen`) against independent clients: PyPI
//! `fluent-logger` (Message mode, no ack — it has no ack support), and a Python `msgpack`
//! client for PackedForward with `chunk` (the ack's exact bytes and type), multi-member gzip,
//! the shared_key handshake (right / wrong / missing key), TLS with a test CA (and a wrong CA),
//! the UDP heartbeat, and an oversized message that must cost only its own connection.

use std::time::Duration;

use logtap_tests::agent_harness::Agent;
use logtap_tests::artifacts::TempDir;
use logtap_tests::forward_support::{TestCa, python, start_receiver, start_receiver_env};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(20);

fn receiver(name: &str, port: u16, extra: &[&str]) -> Agent {
    start_receiver(name, port, extra, LIMIT)
}

fn messages(records: &[Value]) -> Vec<String> {
    let mut m: Vec<String> = records
        .iter()
        .map(|r| r["message"].as_str().unwrap_or("").to_owned())
        .collect();
    m.sort();
    m
}

#[test]
fn fluent_logger_events_arrive_without_ack() {
    let agent = receiver("fwd-in-fluent-logger", 0, &[]);
    let port = agent.forward_port();
    let out = python(
        r#"
from fluent import sender
s = sender.FluentSender('app', host='127.0.0.1', port=int(sys.argv[1]), nanosecond_precision=True)
for i in range(3):
    assert s.emit('web', {'message': 'hello %d' % i, 'n': i}), s.last_error
s.close()
"#,
        &[&port.to_string()],
        LIMIT,
    );
    assert!(out.success, "{out:?}");
    let records = agent.wait_records(3, LIMIT);
    assert_eq!(messages(&records), ["hello 0", "hello 1", "hello 2"]);
    assert!(records.iter().all(|r| r["tag"] == "app.web"), "{records:?}");
    assert!(records.iter().any(|r| r["n"] == 2));
    let (status, all) = agent.terminate();
    assert!(status.success());
    assert_eq!(all.len(), 3);
}

#[test]
fn packed_forward_with_chunk_is_acked_with_the_same_bytes_and_type() {
    let agent = receiver("fwd-in-ack", 0, &[]);
    let port = agent.forward_port();
    let out = python(
        r#"
port = int(sys.argv[1])
s = connect(port); r = Reader(s)
body = entries([(123456789, {'message': 'packed a'}), (5, {'message': 'packed b'})])
# Fluentd's ids end in a newline; Fluent Bit's are str. Both must come back unchanged.
s.sendall(packed('relay.x', body, chunk='Zm9vYmFy\n'))
a = r.next(); assert a == {'ack': 'Zm9vYmFy\n'}, a
s.sendall(packed('relay.x', entries([(7, {'message': 'packed c'})]), chunk=b'\x01bin-id'))
u = msgpack.Unpacker(raw=True)
raw = s.recv(100)
assert raw == msgpack.packb({'ack': b'\x01bin-id'}, use_bin_type=True), raw
print('ok')
"#,
        &[&port.to_string()],
        LIMIT,
    );
    assert!(out.success && out.stdout.contains("ok"), "{out:?}");
    let records = agent.wait_records(3, LIMIT);
    assert_eq!(messages(&records), ["packed a", "packed b", "packed c"]);
    let a = records.iter().find(|r| r["message"] == "packed a").unwrap();
    assert_eq!(
        a["timestamp"], "2023-11-14T22:13:20.123456789Z",
        "EventTime nanoseconds kept"
    );
    assert_eq!(a["tag"], "relay.x");
}

#[test]
fn gzip_compressed_packed_forward_with_several_members() {
    let agent = receiver("fwd-in-gzip", 0, &[]);
    let port = agent.forward_port();
    let out = python(
        r#"
s = connect(int(sys.argv[1])); r = Reader(s)
# Fluentd appends one gzip member per write: the body is several concatenated members.
body = gzip.compress(entries([(1, {'message': 'gz 1'})])) + gzip.compress(entries([(2, {'message': 'gz 2'}), (3, {'message': 'gz 3'})]))
s.sendall(packed('gz.tag', body, chunk='gzchunk', compressed='gzip'))
assert r.next() == {'ack': 'gzchunk'}
# `compressed: text` means uncompressed; a str32 body as Fluentd writes it.
s.sendall(packed('gz.tag', entries([(4, {'message': 'text 4'})]), chunk='t', compressed='text', as_str=True))
assert r.next() == {'ack': 't'}
print('ok')
"#,
        &[&port.to_string()],
        LIMIT,
    );
    assert!(out.success, "{out:?}");
    let records = agent.wait_records(4, LIMIT);
    assert_eq!(messages(&records), ["gz 1", "gz 2", "gz 3", "text 4"]);
}

const HANDSHAKE_CLIENT: &str = r#"
port, key = int(sys.argv[1]), sys.argv[2]
s = connect(port); r = Reader(s)
if key == '-':
    # No handshake at all: events straight away.
    r.next()  # HELO
    s.sendall(packed('sk.tag', entries([(1, {'message': 'sneaky'})]), chunk='c1'))
    pong = r.next()
    print('PONG', pong[1], pong[2])
else:
    pong = handshake(s, r, key, 'client-host')
    print('PONG', pong[1], pong[2])
    if pong[1]:
        s.sendall(packed('sk.tag', entries([(1, {'message': 'with key'})]), chunk='c1'))
        assert r.next() == {'ack': 'c1'}
        print('acked')
"#;

#[test]
fn shared_key_right_wrong_and_missing() {
    let agent = receiver(
        "fwd-in-sharedkey",
        0,
        &["--shared-key", "s3cret", "--self-hostname", "server-host"],
    );
    let port = agent.forward_port();
    let right = python(HANDSHAKE_CLIENT, &[&port.to_string(), "s3cret"], LIMIT);
    assert!(
        right.success && right.stdout.contains("PONG True") && right.stdout.contains("acked"),
        "{right:?}"
    );
    let wrong = python(HANDSHAKE_CLIENT, &[&port.to_string(), "guess"], LIMIT);
    assert!(
        wrong.stdout.contains("PONG False shared_key mismatch"),
        "{wrong:?}"
    );
    let missing = python(HANDSHAKE_CLIENT, &[&port.to_string(), "-"], LIMIT);
    assert!(
        missing
            .stdout
            .contains("PONG False shared_key handshake required"),
        "{missing:?}"
    );
    let records = agent.wait_records(1, LIMIT);
    std::thread::sleep(Duration::from_millis(300));
    let (status, all) = agent.terminate();
    assert!(status.success());
    assert_eq!(
        messages(&all),
        ["with key"],
        "only the authenticated client's event: {records:?}"
    );
}

const LOGIN_CLIENT: &str = r#"
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = connect(port); r = Reader(s)
pong = handshake(s, r, 's3cret', 'client-host', user, password)
print('PONG', pong[1], pong[2])
if pong[1]:
    s.sendall(packed('user.tag', entries([(1, {'message': 'from ' + user})]), chunk='c1'))
    assert r.next() == {'ack': 'c1'}
    print('acked')
"#;

#[test]
fn users_log_in_and_strangers_are_refused() {
    // Users from the environment, as a Kubernetes Secret would give them; a password may hold ':'.
    let agent = start_receiver_env(
        "fwd-in-users",
        0,
        &["--shared-key", "s3cret", "--self-hostname", "server-host"],
        &[("LOGTAP_FORWARD_LISTEN_USERS", "alice:wonder:land,bob:b0b")],
        LIMIT,
    );
    let port = agent.forward_port();
    for (user, password) in [("alice", "wonder:land"), ("bob", "b0b")] {
        let ok = python(LOGIN_CLIENT, &[&port.to_string(), user, password], LIMIT);
        assert!(
            ok.success && ok.stdout.contains("PONG True") && ok.stdout.contains("acked"),
            "{user}: {ok:?}"
        );
    }
    for (user, password) in [("alice", "wonder"), ("mallory", "b0b"), ("", "")] {
        let refused = python(LOGIN_CLIENT, &[&port.to_string(), user, password], LIMIT);
        assert!(
            refused
                .stdout
                .contains("PONG False username/password mismatch"),
            "{user:?}: {refused:?}"
        );
    }
    agent.wait_records(2, LIMIT);
    std::thread::sleep(Duration::from_millis(300));
    let (status, all) = agent.terminate();
    assert!(status.success());
    assert_eq!(messages(&all), ["from alice", "from bob"]);
}

const TLS_CLIENT: &str = r#"
port, ca = int(sys.argv[1]), sys.argv[2]
try:
    s = connect(port, ca=ca); r = Reader(s)
except ssl.SSLError as e:
    print('TLS-FAILED', e); sys.exit(3)
s.sendall(packed('tls.tag', entries([(9, {'message': 'over tls'})]), chunk='tls1'))
assert r.next() == {'ack': 'tls1'}
print('acked')
"#;

#[test]
fn tls_with_the_test_ca_and_failure_with_a_wrong_ca() {
    let dir = TempDir::new("fwd-in-tls-certs");
    let good = TestCa::create(dir.path(), "good");
    let other = TestCa::create(dir.path(), "other");
    let agent = receiver(
        "fwd-in-tls",
        0,
        &[
            "--forward-listen-tls-cert",
            good.cert_pem.to_str().unwrap(),
            "--forward-listen-tls-key",
            good.key_pem.to_str().unwrap(),
        ],
    );
    let port = agent.forward_port();
    let ok = python(
        TLS_CLIENT,
        &[&port.to_string(), good.ca_pem.to_str().unwrap()],
        LIMIT,
    );
    assert!(ok.success && ok.stdout.contains("acked"), "{ok:?}");
    let bad = python(
        TLS_CLIENT,
        &[&port.to_string(), other.ca_pem.to_str().unwrap()],
        LIMIT,
    );
    assert!(!bad.success && bad.stdout.contains("TLS-FAILED"), "{bad:?}");
    let records = agent.wait_records(1, LIMIT);
    assert_eq!(records[0]["message"], "over tls");
}

#[test]
fn udp_heartbeat_is_answered_and_oversized_messages_drop_only_their_connection() {
    let agent = receiver("fwd-in-heartbeat", 0, &[]);
    let port = agent.forward_port();
    let out = python(
        r#"
port = int(sys.argv[1])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
u.sendto(b'', ('127.0.0.1', port))
data, _ = u.recvfrom(16); assert data == b'\x00', data
good = connect(port); gr = Reader(good)
bad = connect(port)
# A declared bin32 body of 1 GiB: refused from its header, without waiting for the bytes.
bad.sendall(b'\x93\xa3big\xc6\x40\x00\x00\x00')
try:
    assert bad.recv(10) == b''
except ConnectionResetError:
    pass
good.sendall(packed('hb.tag', entries([(1, {'message': 'still served'})]), chunk='g'))
assert gr.next() == {'ack': 'g'}
print('ok')
"#,
        &[&port.to_string()],
        LIMIT,
    );
    assert!(out.success && out.stdout.contains("ok"), "{out:?}");
    let records = agent.wait_records(1, LIMIT);
    assert_eq!(records[0]["message"], "still served");
}

/// The golden byte streams recorded from real Fluentd 1.18 and Fluent Bit 5.1 senders
/// (`protocol/tests/fixtures/forward/`), replayed to our input: every chunk acked with its exact
/// id, every event received with its tag and EventTime. (The handshake captures are bound to
/// the nonce of their recording and cannot be replayed.)
#[test]
fn real_fluentd_and_fluent_bit_streams_are_acked_and_received() {
    use bytes::BytesMut;
    use logtap_protocol::forward::{ClientDecoder, ServerMessage};
    use std::io::{Read, Write};

    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/tests/fixtures/forward");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("EXPECTED.json")).unwrap()).unwrap();
    let agent = receiver("fwd-in-golden", 0, &[]);
    let port = agent.forward_port();
    let mut total = 0;
    let mut firsts = Vec::new();
    for (name, messages) in expected.as_object().unwrap() {
        if name.contains("handshake") {
            continue;
        }
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        conn.set_read_timeout(Some(LIMIT)).unwrap();
        conn.write_all(&std::fs::read(dir.join(name)).unwrap())
            .unwrap();
        let mut dec = ClientDecoder::default();
        let mut buf = BytesMut::new();
        for m in messages.as_array().unwrap() {
            total += m["events"].as_u64().unwrap() as usize;
            firsts.push((
                m["tag"].as_str().unwrap().to_owned(),
                m["first_event"].clone(),
            ));
            let Some(chunk) = m["options"]["chunk"].as_str() else {
                continue;
            };
            let ack = loop {
                if let Some(reply) = dec.decode(&mut buf).unwrap() {
                    break reply;
                }
                let mut part = [0u8; 4096];
                let n = conn.read(&mut part).unwrap();
                assert!(
                    n > 0,
                    "{name}: connection closed before the ack of {chunk:?}"
                );
                buf.extend_from_slice(&part[..n]);
            };
            let ServerMessage::Ack(ack) = ack else {
                panic!("{name}: not an ack: {ack:?}")
            };
            assert_eq!(
                ack.chunk.bytes,
                chunk.as_bytes(),
                "{name}: the ack echoes the id byte for byte"
            );
        }
    }
    let records = agent.wait_records(total, LIMIT);
    for (tag, first) in firsts {
        let [secs, nanos] = [0, 1].map(|i| first[0]["EventTime"][i].as_u64().unwrap());
        let message = first[1]["message"].as_str().unwrap();
        let found = records.iter().any(|r| {
            r["tag"] == tag.as_str()
                && r["message"] == message
                && r["timestamp"]
                    .as_str()
                    .is_some_and(|t| t.ends_with(&format!(".{nanos:09}Z")))
        });
        assert!(
            found,
            "{tag} {message} at {secs}.{nanos:09} missing: {records:?}"
        );
    }
    let (status, all) = agent.terminate();
    assert!(status.success());
    assert_eq!(all.len(), total, "each event exactly once");
}
