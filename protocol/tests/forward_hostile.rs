//! Hostile input to the stream decoder: truncation, declared lengths of 2^32, deep nesting,
//! messages over the cap, a gzip bomb, invalid UTF-8 — each gets a clear error (or "need more
//! bytes"), never a panic, and never a large allocation. A counting allocator in this test binary
//! records the largest single allocation made on the decoding thread to prove the last point.

#![cfg(feature = "forward")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;

use bytes::BytesMut;
use flate2::write::GzEncoder;
use logtap_protocol::forward::{
    ClientMessage, DecodeError, DecodeLimits, EventTime, PackedForwardBuilder, ServerDecoder,
};

struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the thread-local is a
// const-initialised `Cell<usize>` without destructor, so touching it never allocates or recurses.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.with(|l| l.set(l.get().max(layout.size())));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.with(|l| l.set(l.get().max(new_size)));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Decodes `bytes` with `limits`; returns the result and the largest allocation made meanwhile.
fn decode_measured(
    bytes: &[u8],
    limits: DecodeLimits,
) -> (Result<Option<ClientMessage>, DecodeError>, usize, usize) {
    let mut buf = BytesMut::from(bytes);
    let mut dec = ServerDecoder::new(limits);
    LARGEST.with(|l| l.set(0));
    let r = dec.decode(&mut buf);
    let largest = LARGEST.with(|l| l.get());
    (r, largest, buf.len())
}

fn decode(bytes: &[u8]) -> Result<Option<ClientMessage>, DecodeError> {
    decode_measured(bytes, DecodeLimits::default()).0
}

fn good_message() -> Vec<u8> {
    let mut b = PackedForwardBuilder::new("app.ok");
    b.record(EventTime::new(1, 2)).str("message", b"fine");
    b.finish(None, Default::default()).expect("encode").to_vec()
}

#[test]
fn every_truncation_asks_for_more_and_consumes_nothing() {
    let msg = good_message();
    for cut in 0..msg.len() {
        let (r, _, left) = decode_measured(&msg[..cut], DecodeLimits::default());
        assert!(matches!(r, Ok(None)), "prefix {cut}: {r:?}");
        assert_eq!(left, cut, "prefix {cut} must stay in the buffer");
    }
}

#[test]
fn declared_lengths_of_4_gib_fail_at_once_without_allocating() {
    let cases: [&[u8]; 6] = [
        &[0xdd, 0xff, 0xff, 0xff, 0xff],                   // array32 message
        &[0x93, 0xdb, 0xff, 0xff, 0xff, 0xff],             // str32 tag
        &[0x93, 0xa1, b't', 0xc6, 0xff, 0xff, 0xff, 0xff], // bin32 body
        &[0x93, 0xa1, b't', 0xdb, 0xff, 0xff, 0xff, 0xff], // str32 body
        &[0x93, 0xa1, b't', 0xdd, 0xff, 0xff, 0xff, 0xff], // array32 of entries
        &[0x94, 0xa1, b't', 0x01, 0xdf, 0xff, 0xff, 0xff], // map32 record (truncated count)
    ];
    for (i, head) in cases.iter().enumerate() {
        let (r, largest, left) = decode_measured(head, DecodeLimits::default());
        if i == 5 {
            // The map32 count is not all there yet: nothing can be said, nothing is allocated.
            assert!(matches!(r, Ok(None)), "case {i}: {r:?}");
        } else {
            let err = r.expect_err("declared 4 GiB");
            assert!(
                matches!(err, DecodeError::MessageTooLarge { .. }),
                "case {i}: {err:?}"
            );
            assert!(!err.is_recoverable());
            assert!(
                err.to_string().contains("max_message_bytes"),
                "actionable: {err}"
            );
        }
        assert!(largest < 4096, "case {i}: allocated {largest} bytes");
        assert_eq!(left, head.len());
    }
    let full_map32 = [0x94, 0xa1, b't', 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff];
    assert!(matches!(
        decode(&full_map32),
        Err(DecodeError::MessageTooLarge { .. })
    ));
}

#[test]
fn the_cap_is_enforced_before_the_bytes_arrive() {
    let limits = DecodeLimits {
        max_message_bytes: 1000,
        ..DecodeLimits::default()
    };
    // A 2,000-byte bin body announced in the header: rejected from the header alone.
    let head = [0x93, 0xa1, b't', 0xc5, 0x07, 0xd0];
    let (r, _, _) = decode_measured(&head, limits);
    assert!(matches!(r, Err(DecodeError::MessageTooLarge { needed, max: 1000 }) if needed >= 2000));
    // Exactly at the cap is fine.
    let msg = good_message();
    let limits = DecodeLimits {
        max_message_bytes: msg.len(),
        ..DecodeLimits::default()
    };
    assert!(matches!(decode_measured(&msg, limits).0, Ok(Some(_))));
    let limits = DecodeLimits {
        max_message_bytes: msg.len() - 1,
        ..DecodeLimits::default()
    };
    assert!(matches!(
        decode_measured(&msg, limits).0,
        Err(DecodeError::MessageTooLarge { .. })
    ));
}

#[test]
fn deep_nesting_is_refused() {
    // Message mode whose record nests 10,000 maps deep.
    let mut msg = vec![0x93, 0xa1, b't', 0x01];
    msg.extend(std::iter::repeat_n([0x81u8, 0xa1, b'k'], 10_000).flatten());
    msg.push(0xc0);
    let err = decode(&msg).expect_err("too deep");
    assert!(matches!(err, DecodeError::TooDeep { max: 64 }), "{err:?}");
    // Deep nesting hidden inside a PackedForward body is caught by the parser instead.
    let mut body = vec![0x92, 0x01];
    body.extend(std::iter::repeat_n([0x81u8, 0xa1, b'k'], 10_000).flatten());
    body.push(0xc0);
    let mut msg = vec![0x92, 0xa1, b't', 0xc6];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes());
    msg.extend_from_slice(&body);
    assert!(matches!(decode(&msg), Err(DecodeError::TooDeep { .. })));
}

#[test]
fn gzip_bomb_is_capped_and_the_connection_survives() {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0u8; 1 << 20]).expect("gzip");
    let member = enc.finish().expect("gzip");
    let body: Vec<u8> = std::iter::repeat_n(member, 32).flatten().collect(); // 32 MiB of zeros
    let mut msg = vec![0x93, 0xa1, b't', 0xc6];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes());
    msg.extend_from_slice(&body);
    msg.extend_from_slice(&[0x81, 0xaa]);
    msg.extend_from_slice(b"compressed");
    msg.extend_from_slice(&[0xa4, b'g', b'z', b'i', b'p']);
    let next = good_message();
    msg.extend_from_slice(&next);

    let cap = 4 << 20;
    let limits = DecodeLimits {
        max_decompressed_bytes: cap,
        ..DecodeLimits::default()
    };
    let mut buf = BytesMut::from(&msg[..]);
    let mut dec = ServerDecoder::new(limits);
    LARGEST.with(|l| l.set(0));
    let err = dec.decode(&mut buf).expect_err("bomb");
    let largest = LARGEST.with(|l| l.get());
    assert!(
        matches!(err, DecodeError::DecompressedTooLarge { max } if max == cap),
        "{err:?}"
    );
    assert!(err.is_recoverable());
    assert!(largest <= 2 * cap + 4096, "largest allocation {largest}");
    assert!(matches!(
        dec.decode(&mut buf),
        Ok(Some(ClientMessage::Events(_)))
    ));
}

#[test]
fn recoverable_errors_consume_the_message_and_decoding_goes_on() {
    let bad: Vec<Vec<u8>> = vec![
        vec![0x93, 0xa2, 0xff, 0xfe, 0x01, 0x80], // invalid UTF-8 tag
        vec![0x93, 0xa1, b't', 0x01, 0x01],       // record is not a map
        vec![0x93, 0xa1, b't', 0xc4, 0x02, 0x92, 0x01, 0xc0], // PackedForward entry truncated
        vec![
            0x94, 0xa1, b't', 0xd7, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x80,
        ], // ext type 5 as time
        vec![
            0x93, 0xa1, b't', 0xc4, 0x00, 0x81, 0xaa, b'c', b'o', b'm', b'p', b'r', b'e', b's',
            b's', b'e', b'd', 0xa3, b'l', b'z', b'4',
        ],
        vec![0x91, 0xa1, b't'],          // too short
        vec![0x97, 0, 0, 0, 0, 0, 0, 0], // too long
        vec![0x01],                      // not an array
    ];
    for (i, b) in bad.iter().enumerate() {
        let mut stream = b.clone();
        stream.extend_from_slice(&good_message());
        let mut buf = BytesMut::from(&stream[..]);
        let mut dec = ServerDecoder::default();
        let err = dec.decode(&mut buf).expect_err("bad message");
        assert!(err.is_recoverable(), "case {i}: {err:?}");
        assert!(!err.to_string().is_empty());
        let next = dec.decode(&mut buf);
        assert!(
            matches!(next, Ok(Some(ClientMessage::Events(_)))),
            "case {i}: after {err}: {next:?}"
        );
    }
    let tag_err = decode(&bad[0]).expect_err("utf8");
    assert!(matches!(tag_err, DecodeError::InvalidUtf8 { what: "tag" }));
    assert!(matches!(decode(&bad[4]), Err(DecodeError::UnknownCompression(c)) if c == "lz4"));
}

#[test]
fn invalid_marker_drops_the_connection() {
    let err = decode(&[0x93, 0xc1]).expect_err("0xc1");
    assert!(matches!(
        err,
        DecodeError::InvalidMarker {
            byte: 0xc1,
            offset: 1
        }
    ));
    assert!(!err.is_recoverable());
}

#[test]
fn many_tiny_values_cannot_amplify_memory() {
    // Message mode whose record holds an array of 4 Mi nils: 4 MiB on the wire, 160 MiB as Values.
    let n: u32 = 4 << 20;
    let mut msg = vec![0x93, 0xa1, b't', 0x01, 0x81, 0xa1, b'k', 0xdd];
    msg.extend_from_slice(&n.to_be_bytes());
    msg.resize(msg.len() + n as usize, 0xc0);
    let cap = 8 << 20;
    let limits = DecodeLimits {
        max_decoded_bytes: cap,
        ..DecodeLimits::default()
    };
    let (r, largest, left) = decode_measured(&msg, limits);
    let err = r.expect_err("amplification refused");
    assert!(
        matches!(err, DecodeError::DecodedTooLarge { max } if max == cap),
        "{err:?}"
    );
    assert!(err.is_recoverable());
    assert_eq!(left, 0, "the message was consumed");
    assert!(largest < msg.len() + 4096, "largest allocation {largest}");
    // The same inside a PackedForward body, as events: each entry is 3 bytes on the wire.
    let mut body = Vec::new();
    for _ in 0..(1 << 20) {
        body.extend_from_slice(&[0x92, 0x00, 0x80]);
    }
    let mut msg = vec![0x92, 0xa1, b't', 0xc6];
    msg.extend_from_slice(&(body.len() as u32).to_be_bytes());
    msg.extend_from_slice(&body);
    let (r, _, _) = decode_measured(&msg, limits);
    assert!(
        matches!(r, Err(DecodeError::DecodedTooLarge { .. })),
        "{r:?}"
    );
    // With the default limits both decode.
    assert!(
        matches!(decode(&msg), Ok(Some(ClientMessage::Events(b))) if b.events.len() == 1 << 20)
    );
}

#[test]
fn trickling_a_message_byte_by_byte_costs_linear_time() {
    // 200,000 tiny values sent one byte per read: a decoder that re-walked the message on every
    // read would do ~2·10^10 steps (minutes); the resumable walk does 2·10^5.
    let n: u32 = 200_000;
    let mut msg = vec![0x93, 0xa1, b't', 0x01, 0x81, 0xa1, b'k', 0xdd];
    msg.extend_from_slice(&n.to_be_bytes());
    msg.resize(msg.len() + n as usize, 0xc0);
    let start = std::time::Instant::now();
    let mut dec = ServerDecoder::default();
    let mut buf = BytesMut::new();
    let mut got = None;
    for b in &msg {
        buf.extend_from_slice(&[*b]);
        if let Some(m) = dec.decode(&mut buf).expect("valid") {
            got = Some(m);
        }
    }
    assert!(matches!(got, Some(ClientMessage::Events(_))));
    let took = start.elapsed();
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
}
