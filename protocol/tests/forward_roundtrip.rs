//! Property tests: whatever we encode — any tag, record, time, options, in every mode, several
//! messages in a row — decodes back to the same thing however the byte stream is split; the
//! builder's records decode to the fields written; arbitrary bytes never make the decoder panic.

#![cfg(feature = "forward")]

use bytes::{Bytes, BytesMut};
use logtap_protocol::forward::{
    ChunkId, ClientMessage, Compression, DecodeLimits, Event, EventBatch, EventTime, Mode, Options,
    PackedForwardBuilder, RawKind, ServerDecoder, Value,
};
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Nil),
        any::<bool>().prop_map(Value::Bool),
        (i64::MIN..0).prop_map(Value::Int),
        any::<u64>().prop_map(Value::UInt),
        (-1e9f32..1e9).prop_map(Value::F32),
        (-1e300f64..1e300).prop_map(Value::F64),
        bytes(40).prop_map(Value::Str),
        bytes(300).prop_map(Value::Bin),
        (any::<i8>(), bytes(20)).prop_map(|(t, d)| Value::Ext(t, d)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((inner.clone(), inner), 0..6).prop_map(Value::Map),
        ]
    })
}

fn record() -> impl Strategy<Value = Value> {
    proptest::collection::vec((bytes(12).prop_map(Value::Str), value()), 0..20).prop_map(Value::Map)
}

/// Any time a client stamps: 0 seconds means "unstamped", which the decoder replaces with the
/// time of arrival (as Fluentd does), so it does not round-trip by design.
fn time() -> impl Strategy<Value = EventTime> {
    (1..=u32::MAX, any::<u32>()).prop_map(|(s, n)| EventTime::new(s, n))
}

fn event(with_meta: bool) -> impl Strategy<Value = Event> {
    let meta = if with_meta {
        proptest::option::of(record()).boxed()
    } else {
        Just(None).boxed()
    };
    (time(), record(), meta).prop_map(|(time, record, metadata)| Event {
        time,
        record,
        metadata,
    })
}

fn chunk_id() -> impl Strategy<Value = ChunkId> {
    (any::<bool>(), bytes(30)).prop_map(|(s, bytes)| ChunkId {
        kind: if s { RawKind::Str } else { RawKind::Bin },
        bytes,
    })
}

fn options(mode: Mode) -> impl Strategy<Value = Options> {
    let extra = proptest::collection::vec(
        (
            bytes(8).prop_map(|b| {
                let mut k = b"x_".to_vec();
                k.extend_from_slice(&b);
                Value::Str(Bytes::from(k))
            }),
            value(),
        ),
        0..3,
    );
    (
        proptest::option::of(any::<u64>()),
        proptest::option::of(chunk_id()),
        any::<bool>(),
        proptest::option::of(any::<i64>()),
        proptest::option::of(value()),
        extra,
    )
        .prop_map(move |(size, chunk, text, fluent_signal, metadata, extra)| {
            let gzip = mode == Mode::CompressedPackedForward;
            Options {
                size,
                chunk,
                compressed: if gzip {
                    Compression::Gzip
                } else {
                    Compression::None
                },
                compressed_present: gzip
                    || (text && mode != Mode::Message && mode != Mode::Forward),
                fluent_signal,
                metadata,
                extra,
            }
        })
}

fn tag() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z]{1,10}(\\.[a-z0-9_]{1,10}){0,3}"]
}

fn batch() -> impl Strategy<Value = EventBatch> {
    prop_oneof![
        Just(Mode::Message),
        Just(Mode::Forward),
        Just(Mode::PackedForward),
        Just(Mode::CompressedPackedForward)
    ]
    .prop_flat_map(|mode| {
        let events = match mode {
            Mode::Message => proptest::collection::vec(event(false), 1..=1).boxed(),
            _ => proptest::collection::vec(event(true), 0..8).boxed(),
        };
        (tag(), events, options(mode)).prop_map(move |(tag, events, options)| EventBatch {
            tag,
            mode,
            events,
            options,
        })
    })
}

/// Decodes `stream` fed in pieces cut at `cuts` (positions, any order, may repeat).
fn decode_split(stream: &[u8], cuts: &[usize]) -> Vec<ClientMessage> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.push(stream.len());
    cuts.sort_unstable();
    let mut dec = ServerDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    for c in cuts {
        buf.extend_from_slice(&stream[at..c]);
        at = c;
        while let Some(m) = dec.decode(&mut buf).expect("our own encoding decodes") {
            out.push(m);
        }
    }
    assert!(buf.is_empty());
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn encode_decode_roundtrip_any_split(
        batches in proptest::collection::vec(batch(), 1..4),
        cuts in proptest::collection::vec(any::<usize>(), 0..6),
    ) {
        let mut stream = Vec::new();
        for b in &batches {
            b.encode(&mut stream).expect("encode");
        }
        let got = decode_split(&stream, &cuts);
        let want: Vec<ClientMessage> = batches.into_iter().map(ClientMessage::Events).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn builder_records_decode_to_their_fields(
        tag in tag(),
        records in proptest::collection::vec((time(), proptest::collection::vec((bytes(10), 0u8..5, bytes(50), any::<u64>()), 0..20)), 0..10),
        id in proptest::option::of(any::<[u8; 16]>()),
        gzip in any::<bool>(),
        cuts in proptest::collection::vec(any::<usize>(), 0..4),
    ) {
        let mut b = PackedForwardBuilder::new(&tag);
        let mut want = Vec::new();
        for (t, fields) in &records {
            let mut w = b.record(*t);
            let mut map = Vec::new();
            for (k, kind, raw, n) in fields {
                let key = String::from_utf8_lossy(k).into_owned();
                let v = match kind {
                    0 => { w.str(&key, raw); Value::Str(raw.clone()) }
                    1 => { w.bin(&key, raw); Value::Bin(raw.clone()) }
                    2 => { w.uint(&key, *n); Value::UInt(*n) }
                    3 => { w.bool(&key, n % 2 == 0); Value::Bool(n % 2 == 0) }
                    _ => {
                        w.text_or_bin(&key, raw);
                        if std::str::from_utf8(raw).is_ok() { Value::Str(raw.clone()) } else { Value::Bin(raw.clone()) }
                    }
                };
                map.push((Value::str(&key), v));
            }
            drop(w);
            want.push(Event { time: *t, record: Value::Map(map), metadata: None });
        }
        prop_assert_eq!(b.len(), records.len());
        let chunk = id.map(ChunkId::from_random_bytes);
        let compression = if gzip { Compression::Gzip } else { Compression::None };
        let wire = b.finish(chunk.as_ref(), compression).expect("finish");
        let got = decode_split(&wire, &cuts);
        prop_assert_eq!(got.len(), 1);
        let ClientMessage::Events(batch) = &got[0] else { panic!("events") };
        prop_assert_eq!(&batch.tag, &tag);
        prop_assert_eq!(batch.mode, if gzip { Mode::CompressedPackedForward } else { Mode::PackedForward });
        prop_assert_eq!(&batch.events, &want);
        prop_assert_eq!(batch.options.size, Some(records.len() as u64));
        prop_assert_eq!(&batch.options.chunk, &chunk);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..400),
        cuts in proptest::collection::vec(any::<usize>(), 0..4),
    ) {
        let limits = DecodeLimits { max_message_bytes: 1 << 16, max_decompressed_bytes: 1 << 16,
            max_decoded_bytes: 1 << 20, max_depth: 16 };
        let mut dec = ServerDecoder::new(limits);
        let mut buf = BytesMut::new();
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        cuts.push(data.len());
        cuts.sort_unstable();
        let mut at = 0;
        'feed: for c in cuts {
            buf.extend_from_slice(&data[at..c]);
            at = c;
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) if e.is_recoverable() => {}
                    Err(_) => break 'feed,
                }
            }
        }
    }
}

#[test]
fn records_with_many_fields_use_map16_and_map32() {
    for n in [15u32, 16, 65_535, 65_536] {
        let mut b = PackedForwardBuilder::new("t");
        {
            let mut w = b.record(EventTime::new(1, 0));
            for i in 0..n {
                w.uint("k", i as u64);
            }
        }
        let wire = b.finish(None, Compression::None).expect("finish");
        let mut buf = BytesMut::from(&wire[..]);
        let Ok(Some(ClientMessage::Events(batch))) = ServerDecoder::default().decode(&mut buf)
        else {
            panic!("decodes with {n} fields")
        };
        let Value::Map(m) = &batch.events[0].record else {
            panic!("map")
        };
        assert_eq!(m.len(), n as usize);
        assert_eq!(m.last().and_then(|(_, v)| v.as_u64()), Some(n as u64 - 1));
    }
}
