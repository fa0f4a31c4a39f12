//! The HELO → PING → PONG handshake: digests equal the independently computed values in
//! `tests/fixtures/forward/README.md` (Ruby `Digest::SHA512` and Python `hashlib`), and a full
//! exchange through both decoders succeeds or fails for the right reason.

#![cfg(feature = "forward")]

use bytes::{Bytes, BytesMut};
use logtap_protocol::forward::{
    AuthFailure, ClientDecoder, ClientMessage, DecodeError, Helo, Ping, Pong, ServerDecoder,
    ServerMessage, password_digest, shared_key_digest,
};

const SALT: &[u8] = b"0123456789abcdef0123456789abcdef";
const KEY: &[u8] = b"secret_shared_key";

fn nonce() -> Vec<u8> {
    (0u8..16).collect()
}

fn auth() -> Vec<u8> {
    (0x10u8..0x20).collect()
}

#[test]
fn digests_match_the_fixture_readme() {
    assert_eq!(
        shared_key_digest(SALT, "client.example.com", &nonce(), KEY),
        "daf26c631c55e3ab96874bcb127ff2b2cc025a052fde10a73fbd52ce4318a35e3179b83f97862b40ebc69d183399bb51f1ce4b3427d7e872c2e5e646a3e8ca47"
    );
    assert_eq!(
        shared_key_digest(SALT, "server.example.com", &nonce(), KEY),
        "1b242dc056a125567b5dc3c7e3584f2fea37e5cf6a43318b638ec00a923b72fdf649e171684f32b41e974ba23677bb65ab65817d0f3d5a19a9ad1727417527f3"
    );
    assert_eq!(
        password_digest(&auth(), "alice", b"s3cret"),
        "cef17dab8e5e3a2cc7e2bc1c1934b9173adcd454c8a2d519bbadbb972df7f3c96e1a1cf97a4351aee11fffb364e31dd2ba639625018c76d99dff188aa5c4dd4c"
    );
}

fn to_server(bytes: &[u8]) -> Result<Option<ClientMessage>, DecodeError> {
    ServerDecoder::default().decode(&mut BytesMut::from(bytes))
}

fn to_client(bytes: &[u8]) -> Result<Option<ServerMessage>, DecodeError> {
    ClientDecoder::default().decode(&mut BytesMut::from(bytes))
}

fn helo(with_users: bool) -> Helo {
    Helo {
        nonce: Bytes::from(nonce()),
        auth: if with_users {
            Bytes::from(auth())
        } else {
            Bytes::new()
        },
        keepalive: true,
    }
}

/// Runs the whole exchange over the wire encodings; returns the server's verdict and the
/// client's check of the PONG.
fn exchange(
    client_key: &[u8],
    client_host: &str,
    user: Option<(&str, &[u8])>,
) -> (Result<(), AuthFailure>, Result<(), AuthFailure>) {
    let server_helo = helo(true);
    let mut wire = Vec::new();
    server_helo.encode(&mut wire);
    let Ok(Some(ServerMessage::Helo(got_helo))) = to_client(&wire) else {
        panic!("HELO decodes")
    };
    assert_eq!(got_helo, server_helo);

    let ping = Ping::new(&got_helo, client_host, client_key, SALT, user);
    let mut wire = Vec::new();
    ping.encode(&mut wire);
    let Ok(Some(ClientMessage::Ping(got_ping))) = to_server(&wire) else {
        panic!("PING decodes")
    };
    assert_eq!(got_ping, ping);

    let users = |name: &str| (name == "alice").then(|| b"s3cret".to_vec());
    let verdict = got_ping.verify(&server_helo, "server.example.com", KEY, users);
    let pong = Pong::answer(&got_ping, &server_helo, "server.example.com", KEY, verdict);
    let mut wire = Vec::new();
    pong.encode(&mut wire);
    let Ok(Some(ServerMessage::Pong(got_pong))) = to_client(&wire) else {
        panic!("PONG decodes")
    };
    assert_eq!(got_pong, pong);
    (verdict, got_pong.verify(&ping, &got_helo, client_key))
}

#[test]
fn full_exchange_succeeds_with_the_readme_values() {
    let (verdict, client) = exchange(KEY, "client.example.com", Some(("alice", b"s3cret")));
    assert_eq!(verdict, Ok(()));
    assert_eq!(client, Ok(()));
    let ping = Ping::new(
        &helo(true),
        "client.example.com",
        KEY,
        SALT,
        Some(("alice", b"s3cret")),
    );
    assert!(ping.shared_key_hexdigest.starts_with("daf26c631c55e3ab"));
    assert!(ping.password_digest.starts_with("cef17dab8e5e3a2c"));
}

#[test]
fn failures_are_reported_with_fluentd_reasons() {
    let (v, c) = exchange(
        b"wrong key",
        "client.example.com",
        Some(("alice", b"s3cret")),
    );
    assert_eq!(v, Err(AuthFailure::SharedKeyMismatch));
    assert_eq!(c, Err(AuthFailure::Refused));
    let (v, _) = exchange(KEY, "client.example.com", Some(("alice", b"wrong")));
    assert_eq!(v, Err(AuthFailure::UserMismatch));
    let (v, _) = exchange(KEY, "client.example.com", Some(("mallory", b"s3cret")));
    assert_eq!(v, Err(AuthFailure::UserMismatch));
    let (v, _) = exchange(KEY, "server.example.com", None);
    assert_eq!(v, Err(AuthFailure::SameHostname));
    assert_eq!(
        AuthFailure::SharedKeyMismatch.to_string(),
        "shared_key mismatch"
    );
}

#[test]
fn forged_pong_is_rejected_by_the_client() {
    let h = helo(false);
    let ping = Ping::new(&h, "client.example.com", KEY, SALT, None);
    assert_eq!(ping.username, "");
    assert_eq!(ping.password_digest, "");
    let good = Pong::answer(&ping, &h, "server.example.com", KEY, Ok(()));
    assert_eq!(good.verify(&ping, &h, KEY), Ok(()));
    let forged = Pong::answer(&ping, &h, "server.example.com", b"guessed", Ok(()));
    assert_eq!(
        forged.verify(&ping, &h, KEY),
        Err(AuthFailure::SharedKeyMismatch)
    );
    let same = Pong::answer(&ping, &h, "client.example.com", KEY, Ok(()));
    assert_eq!(same.verify(&ping, &h, KEY), Err(AuthFailure::SameHostname));
}

#[test]
fn fluent_bit_style_helo_with_str_nonce_and_auth() {
    // ["HELO", {"nonce": str(16), "auth": str(0), "keepalive": true}] as Fluent Bit writes it.
    let mut wire = vec![0x92, 0xa4, b'H', b'E', b'L', b'O', 0x83, 0xa5];
    wire.extend_from_slice(b"nonce");
    wire.push(0xb0);
    wire.extend_from_slice(b"ABCDEFGHIJKLMNOP");
    wire.push(0xa4);
    wire.extend_from_slice(b"auth");
    wire.push(0xa0);
    wire.push(0xa9);
    wire.extend_from_slice(b"keepalive");
    wire.push(0xc3);
    let Ok(Some(ServerMessage::Helo(h))) = to_client(&wire) else {
        panic!("HELO decodes")
    };
    assert_eq!(&h.nonce[..], b"ABCDEFGHIJKLMNOP");
    assert!(h.auth.is_empty());
    assert!(h.keepalive);
}

#[test]
fn malformed_handshake_messages_are_recoverable_errors() {
    // HELO without nonce.
    let wire = [0x92, 0xa4, b'H', b'E', b'L', b'O', 0x80];
    let err = to_client(&wire).expect_err("no nonce");
    assert!(err.is_recoverable());
    // A reply map without "ack".
    let wire = [0x81, 0xa1, b'x', 0x01];
    assert!(matches!(to_client(&wire), Err(DecodeError::AckMissing)));
    // PING with a hostname that is an integer.
    let wire = [
        0x96, 0xa4, b'P', b'I', b'N', b'G', 0x01, 0xa0, 0xa0, 0xa0, 0xa0,
    ];
    assert!(matches!(
        to_server(&wire),
        Err(DecodeError::UnexpectedType { .. })
    ));
    // The recorded Fluentd PING decodes (hostname "fwd-client", empty username).
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/forward/fluentd-1.18-handshake-heartbeat-client.bin"
    );
    let bytes = std::fs::read(path).expect("fixture");
    let Ok(Some(ClientMessage::Ping(p))) = to_server(&bytes) else {
        panic!("PING decodes")
    };
    assert_eq!(
        (p.self_hostname.as_str(), p.username.as_str()),
        ("fwd-client", "")
    );
    assert_eq!(p.shared_key_hexdigest.len(), 128);
}
