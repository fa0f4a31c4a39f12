//! Golden byte streams captured from real Fluentd 1.18 and Fluent Bit 5.1 peers
//! (`tests/fixtures/forward/`, see its README) decode to what `EXPECTED.json` says — an
//! independent reading by Python `msgpack` + `gzip` — whole, split at every byte offset into two
//! reads, and fed one byte at a time.

#![cfg(feature = "forward")]

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use logtap_protocol::forward::{
    Ack, ClientMessage, Compression, Event, EventBatch, Mode, RawKind, ServerDecoder, Value,
};
use serde_json::{Value as Json, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/forward")
}

/// Feeds `chunks` in order and decodes everything; panics on any error.
fn decode_pieces<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<ClientMessage> {
    let mut dec = ServerDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for c in chunks {
        buf.extend_from_slice(c);
        while let Some(m) = dec.decode(&mut buf).expect("golden stream decodes") {
            out.push(m);
        }
    }
    assert!(buf.is_empty(), "{} bytes left undecoded", buf.len());
    out
}

/// The JSON form `EXPECTED.json` uses for MessagePack values (Python's view: bytes as text).
fn to_json(v: &Value) -> Json {
    match v {
        Value::Nil => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::F32(f) => json!(f),
        Value::F64(f) => json!(f),
        Value::Str(b) | Value::Bin(b) => json!(String::from_utf8_lossy(b)),
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

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Message => "Message",
        Mode::Forward => "Forward",
        Mode::PackedForward => "PackedForward",
        Mode::CompressedPackedForward => "CompressedPackedForward",
    }
}

fn options_json(b: &EventBatch) -> Json {
    let o = &b.options;
    let mut m = serde_json::Map::new();
    if let Some(c) = &o.chunk {
        m.insert("chunk".into(), json!(String::from_utf8_lossy(&c.bytes)));
    }
    if let Some(s) = o.size {
        m.insert("size".into(), json!(s));
    }
    if o.compressed_present || o.compressed == Compression::Gzip {
        let c = if o.compressed == Compression::Gzip {
            "gzip"
        } else {
            "text"
        };
        m.insert("compressed".into(), json!(c));
    }
    if let Some(s) = o.fluent_signal {
        m.insert("fluent_signal".into(), json!(s));
    }
    assert!(
        o.extra.is_empty() && o.metadata.is_none(),
        "unexpected options {o:?}"
    );
    Json::Object(m)
}

fn event_json(e: &Event) -> Json {
    json!([{"EventTime": [e.time.secs, e.time.nanos]}, to_json(&e.record)])
}

fn message_json(m: &ClientMessage) -> Json {
    match m {
        ClientMessage::Events(b) => json!({
            "kind": mode_name(b.mode),
            "tag": b.tag,
            "events": b.events.len(),
            "options": options_json(b),
            "first_event": event_json(&b.events[0]),
        }),
        ClientMessage::Ping(p) => json!({
            "kind": "PING",
            "fields": [
                format!("b'{}'", p.self_hostname),
                String::from_utf8_lossy(&p.shared_key_salt),
                p.shared_key_hexdigest,
                p.username,
                p.password_digest,
            ],
        }),
    }
}

fn golden_files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(fixtures())
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read fixture"))
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 9, "expected the nine captured streams");
    files
}

fn expected() -> Json {
    let text = std::fs::read_to_string(fixtures().join("EXPECTED.json")).expect("EXPECTED.json");
    serde_json::from_str(&text).expect("EXPECTED.json is JSON")
}

#[test]
fn every_fixture_decodes_whole_to_expected() {
    let expected = expected();
    for (name, bytes) in golden_files() {
        let got: Vec<Json> = decode_pieces([&bytes[..]])
            .iter()
            .map(message_json)
            .collect();
        assert_eq!(Json::Array(got), expected[&name], "{name}");
    }
}

#[test]
fn every_split_decodes_identically() {
    for (name, bytes) in golden_files() {
        let whole = decode_pieces([&bytes[..]]);
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(decode_pieces([a, b]), whole, "{name} split at {at}");
        }
        assert_eq!(decode_pieces(bytes.chunks(1)), whole, "{name} byte by byte");
        assert_eq!(
            decode_pieces(bytes.chunks(7)),
            whole,
            "{name} in 7-byte reads"
        );
    }
}

#[test]
fn acks_echo_chunk_ids_byte_for_byte_with_their_type() {
    let mut seen = 0;
    for (name, bytes) in golden_files() {
        for m in decode_pieces([&bytes[..]]) {
            let ClientMessage::Events(batch) = m else {
                continue;
            };
            let Some(ack) = batch.ack() else { continue };
            seen += 1;
            // The chunk id as the peer encoded it appears verbatim in the stream (options are
            // never compressed); the ack carries exactly that encoding.
            let mut id = Vec::new();
            ack.chunk.encode(&mut id);
            assert!(
                bytes.windows(id.len()).any(|w| w == id),
                "{name}: chunk encoding not echoed"
            );
            let mut expected = vec![0x81, 0xa3, b'a', b'c', b'k'];
            expected.extend_from_slice(&id);
            assert_eq!(ack.to_vec(), expected, "{name}");
            if name.starts_with("fluentd") {
                assert_eq!(ack.chunk.kind, RawKind::Str, "{name}");
                assert!(
                    ack.chunk.bytes.ends_with(b"\n"),
                    "{name}: Fluentd ids end in a newline"
                );
            }
            let reparsed: Ack = ack.clone();
            assert!(reparsed.acknowledges(batch.options.chunk.as_ref().expect("chunk")));
        }
    }
    assert_eq!(seen, 7, "seven captured chunks ask for an ack");
}

#[test]
fn fluent_bit_v15_entries_keep_their_metadata() {
    let bytes = std::fs::read(fixtures().join("fluentbit-5.1-forward-ack.bin")).expect("fixture");
    let msgs = decode_pieces([&bytes[..]]);
    let ClientMessage::Events(b) = &msgs[0] else {
        panic!("events expected")
    };
    assert_eq!(b.options.fluent_signal, Some(0));
    for e in &b.events {
        assert_eq!(e.metadata, Some(Value::Map(vec![])));
    }
}

#[test]
fn fluentd_packed_bodies_are_str32_and_gzip_has_three_members() {
    let packed =
        std::fs::read(fixtures().join("fluentd-1.18-packedforward-ack.bin")).expect("fixture");
    // [0x93, fixstr tag, 0xdb = str32 body ...]
    let tag_len = (packed[1] & 0x1f) as usize;
    assert_eq!(packed[2 + tag_len], 0xdb);
    let gz =
        std::fs::read(fixtures().join("fluentd-1.18-compressed-gzip-ack.bin")).expect("fixture");
    let members = gz.windows(3).filter(|w| w == &[0x1f, 0x8b, 0x08]).count();
    assert!(members >= 3, "{members} gzip member headers");
    let ClientMessage::Events(b) = &decode_pieces([&gz[..]])[0] else {
        panic!("events")
    };
    assert_eq!(b.events.len(), 3, "events from every gzip member");
}
