//! Forward protocol micro-benchmark: encode and decode of a 1,000-record PackedForward chunk of
//! 100-byte messages, beside baselines measured in the same run.
//!
//! Each record is what the agent sends (Contract 3, trimmed): `{"message": <100 bytes>,
//! "stream": "stdout", "pid": 4242}` with an EventTime. Cases:
//! - encode: `memcpy` of the finished chunk's bytes (the floor), `rmp-serde` serialising the same
//!   records (a generic MessagePack encoder), logtap's `PackedForwardBuilder` (plain and gzip);
//! - decode: `memcpy`, `rmp-serde` deserialising the same records into owned structs, logtap's
//!   streaming `ServerDecoder` (plain and gzip).
//!
//! Run: `cargo run --release -p logtap-bench --bin forward_bench` (`LOGTAP_BENCH_ROUNDS` to change
//! the number of rounds).

use std::hint::black_box;

use bytes::BytesMut;
use logtap_bench::{Case, Sample, rounds, side_by_side};
use logtap_protocol::forward::{
    ChunkId, ClientMessage, Compression, EventTime, PackedForwardBuilder, ServerDecoder,
};
use serde::{Deserialize, Serialize};

const RECORDS: usize = 1_000;
const MESSAGE_LEN: usize = 100;

/// The same record for the rmp-serde baseline (EventTime as a (secs, nanos) pair: serde has no
/// ext type support without extra glue).
#[derive(Serialize, Deserialize)]
struct Entry {
    time: (u32, u32),
    record: Record,
}

#[derive(Serialize, Deserialize)]
struct Record {
    #[serde(with = "serde_bytes_compat")]
    message: Vec<u8>,
    stream: String,
    pid: u32,
}

/// `Vec<u8>` as MessagePack `bin` like our encoding (serde's default would be an array of ints).
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer, de::Visitor};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_str<E>(self, v: &str) -> Result<Vec<u8>, E> {
                Ok(v.as_bytes().to_vec())
            }
        }
        d.deserialize_bytes(V)
    }
}

fn messages() -> Vec<Vec<u8>> {
    (0..RECORDS)
        .map(|i| {
            let mut m = format!("{i:08} GET /api/v1/items?page={i} HTTP/1.1 200 ").into_bytes();
            m.resize(MESSAGE_LEN, b'x');
            m
        })
        .collect()
}

fn time(i: usize) -> EventTime {
    EventTime::new(
        1_700_000_000 + i as u32 / 100,
        (i as u32 * 7_919) % 1_000_000_000,
    )
}

fn build(msgs: &[Vec<u8>], id: &ChunkId, compression: Compression) -> bytes::Bytes {
    let mut b =
        PackedForwardBuilder::with_capacity("logtap.stdout", msgs.len() * (MESSAGE_LEN + 40));
    for (i, m) in msgs.iter().enumerate() {
        b.record(time(i))
            .str("message", m)
            .str("stream", b"stdout")
            .uint("pid", 4242);
    }
    b.finish(Some(id), compression).expect("encode chunk")
}

fn decode(wire: &[u8]) -> usize {
    let mut dec = ServerDecoder::default();
    let mut buf = BytesMut::from(wire);
    match dec.decode(&mut buf) {
        Ok(Some(ClientMessage::Events(batch))) => batch.events.len(),
        other => panic!("chunk does not decode: {other:?}"),
    }
}

fn main() {
    let rounds = rounds(30);
    let msgs = messages();
    let payload = (RECORDS * MESSAGE_LEN) as u64;
    let id = ChunkId::from_random_bytes([9; 16]);
    let plain = build(&msgs, &id, Compression::None);
    let gzip = build(&msgs, &id, Compression::Gzip);
    assert_eq!(decode(&plain), RECORDS);
    assert_eq!(decode(&gzip), RECORDS);
    let entries: Vec<Entry> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| Entry {
            time: (time(i).secs, time(i).nanos),
            record: Record {
                message: m.clone(),
                stream: "stdout".into(),
                pid: 4242,
            },
        })
        .collect();
    let rmp_bytes = rmp_serde::to_vec(&entries).expect("rmp encode");
    println!(
        "chunk: {RECORDS} records of {MESSAGE_LEN}-byte messages; PackedForward {} bytes, gzip {} bytes, rmp-serde {} bytes; MB/s counts message bytes ({payload} per chunk)",
        plain.len(),
        gzip.len(),
        rmp_bytes.len()
    );

    let n = RECORDS as u64;
    let mut cases = vec![
        Case::new("baseline: memcpy of the chunk bytes", || {
            Sample::time(n, payload, || {
                black_box(black_box(&plain[..]).to_vec());
            })
        }),
        Case::new("baseline: rmp-serde encode of the same records", || {
            Sample::time(n, payload, || {
                black_box(rmp_serde::to_vec(black_box(&entries)).expect("rmp"));
            })
        }),
        Case::new("logtap PackedForwardBuilder", || {
            Sample::time(n, payload, || {
                black_box(build(black_box(&msgs), &id, Compression::None));
            })
        }),
        Case::new("logtap PackedForwardBuilder + gzip", || {
            Sample::time(n, payload, || {
                black_box(build(black_box(&msgs), &id, Compression::Gzip));
            })
        }),
    ];
    side_by_side(
        "Forward encode: 1,000-record PackedForward chunk",
        rounds,
        &mut cases,
    );

    let mut cases = vec![
        Case::new("baseline: memcpy of the chunk bytes", || {
            Sample::time(n, payload, || {
                black_box(black_box(&plain[..]).to_vec());
            })
        }),
        Case::new("baseline: rmp-serde decode of the same records", || {
            Sample::time(n, payload, || {
                let v: Vec<Entry> = rmp_serde::from_slice(black_box(&rmp_bytes)).expect("rmp");
                black_box(v);
            })
        }),
        Case::new("logtap ServerDecoder (PackedForward)", || {
            Sample::time(n, payload, || {
                black_box(decode(black_box(&plain)));
            })
        }),
        Case::new("logtap ServerDecoder (CompressedPackedForward)", || {
            Sample::time(n, payload, || {
                black_box(decode(black_box(&gzip)));
            })
        }),
    ];
    side_by_side(
        "Forward decode: 1,000-record PackedForward chunk",
        rounds,
        &mut cases,
    );
}
