//! The consumer against a hostile or broken peer: rings that are not sealed, have the wrong
//! size or header, carry corrupted control words and lengths, random bytes anywhere (proptest), or are
//! scribbled on while being consumed. The consumer must answer with errors — never a panic,
//! never an out-of-bounds access (the mapping's accessors also `debug_assert` every offset).

mod ring_support;

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use logtap_protocol::ring::fuzzing::consume_arbitrary_ring;
use logtap_protocol::ring::layout::{self, Control, HEADER_BYTES, OFF_HEAD};
use logtap_protocol::ring::{
    Consumer, ConsumerOptions, MIN_RING_SIZE, Producer, RingError, create_ring_memfd,
};
use proptest::prelude::*;
use ring_support::*;

/// The bytes of a freshly created ring holding `records` small records.
fn valid_ring_bytes(records: u32) -> Vec<u8> {
    let fd = create_ring_memfd(MIN_RING_SIZE, 5).expect("ring");
    let producer = Producer::map(fd.as_fd()).expect("mapped ring");
    for i in 0..records {
        producer
            .try_push(&meta_for(0, i), &[i as u8; 30])
            .expect("room");
    }
    let mut bytes = vec![0u8; HEADER_BYTES + MIN_RING_SIZE];
    // SAFETY: reads into a live buffer of exactly that length.
    let n = unsafe { libc::pread(fd.as_raw_fd(), bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    assert_eq!(n as usize, bytes.len());
    bytes
}

/// A memfd holding `bytes`, with `seals` added.
fn memfd_with(bytes: &[u8], seals: i32) -> OwnedFd {
    // SAFETY: plain syscalls on an fd we create and own.
    unsafe {
        let raw = libc::memfd_create(
            c"hostile".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        );
        assert!(raw >= 0);
        let fd = OwnedFd::from_raw_fd(raw);
        assert_eq!(
            libc::pwrite(raw, bytes.as_ptr().cast(), bytes.len(), 0) as usize,
            bytes.len()
        );
        if seals != 0 {
            assert_eq!(libc::fcntl(raw, libc::F_ADD_SEALS, seals), 0);
        }
        fd
    }
}

const SEALS: i32 = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;

#[test]
fn unsealed_or_half_sealed_memfd_is_refused() {
    let bytes = valid_ring_bytes(1);
    let open = |seals| Consumer::open(memfd_with(&bytes, seals), ConsumerOptions::default());
    assert!(matches!(open(0), Err(RingError::NotSealed { .. })));
    assert!(matches!(
        open(libc::F_SEAL_SHRINK),
        Err(RingError::NotSealed { .. })
    ));
    assert!(matches!(
        open(libc::F_SEAL_GROW),
        Err(RingError::NotSealed { .. })
    ));
    let mut consumer = open(SEALS).expect("sealed copy of a valid ring opens");
    let mut payload = Vec::new();
    assert_eq!(
        consumer.next(&mut payload).unwrap(),
        Some(logtap_protocol::ring::RecordMeta {
            pid: 5,
            ..meta_for(0, 0)
        })
    );
    assert_eq!(consumer.creator_pid(), 5);
}

#[test]
fn wrong_size_or_header_is_refused() {
    let bytes = valid_ring_bytes(0);
    let open = |b: &[u8]| Consumer::open(memfd_with(b, SEALS), ConsumerOptions::default());
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 4096]);
    assert!(matches!(open(&longer), Err(RingError::BadSize { .. })));
    assert!(matches!(
        open(&bytes[..bytes.len() - 128]),
        Err(RingError::BadSize { .. })
    ));
    assert!(matches!(
        open(&bytes[..100]),
        Err(RingError::BadSize { .. })
    ));
    // Another layout version is named as such (an old or newer library, not garbage).
    let mut b = bytes.clone();
    b[4] = 9;
    assert!(
        matches!(
            open(&b),
            Err(RingError::Version {
                found: 9,
                expected: layout::VERSION
            })
        ),
        "version byte"
    );
    for (off, value) in [(0usize, b'X'), (8, 1), (12, 0xFF), (16, 3)] {
        let mut b = bytes.clone();
        b[off] = value;
        assert!(
            matches!(open(&b), Err(RingError::BadHeader { .. })),
            "byte {off}"
        );
    }
    let mut b = bytes.clone();
    b[layout::OFF_TAIL + 7] = 0xFF;
    assert!(
        matches!(open(&b), Err(RingError::BadHeader { .. })),
        "tail out of range"
    );
    // Not a memfd at all.
    let mut fds = [0; 2];
    // SAFETY: creates a pipe we own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds are fresh and ours.
    let (r, _w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    assert!(Consumer::open(r, ConsumerOptions::default()).is_err());
}

/// Opens a sealed copy of a two-record ring after `corrupt` changed its bytes, and returns
/// what the first `next` says.
fn first_next(corrupt: impl FnOnce(&mut Vec<u8>)) -> Result<Option<u32>, RingError> {
    let mut bytes = valid_ring_bytes(2);
    corrupt(&mut bytes);
    let mut consumer = Consumer::open(memfd_with(&bytes, SEALS), ConsumerOptions::default())?;
    let mut payload = Vec::new();
    Ok(consumer.next(&mut payload)?.map(|m| m.seq))
}

#[test]
fn corrupted_control_words_lengths_and_head_are_inconsistent() {
    // The minimum-size ring the test rings have.
    let g = layout::Geometry::for_data_bytes(MIN_RING_SIZE);
    let word0 = HEADER_BYTES;
    let put =
        |b: &mut Vec<u8>, off: usize, v: u64| b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    // Record 0's control word, changed by `f` and stored for position `pos`'s lap.
    let with = |b: &mut Vec<u8>, pos: u64, f: &dyn Fn(&mut Control)| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[word0..word0 + 8]);
        let mut c = layout::decode_control(u64::from_ne_bytes(w), 0, g.shift).unwrap();
        f(&mut c);
        put(b, word0, layout::encode_control(&c, pos, g.shift));
    };
    assert_eq!(first_next(|_| {}).unwrap(), Some(0));
    assert_eq!(
        first_next(|b| with(b, 0, &|_| {})).unwrap(),
        Some(0),
        "the helper changes nothing by itself"
    );
    let inconsistent =
        |r: Result<Option<u32>, RingError>| matches!(r, Err(RingError::Inconsistent { .. }));
    // A control word of another lap, or FREE for another lap.
    assert!(inconsistent(first_next(|b| with(b, g.word_count, &|_| {}))));
    assert!(inconsistent(first_next(|b| put(
        b,
        word0,
        g.free(g.word_count)
    ))));
    // A length beyond the largest record, shorter than the header, or a payload length its
    // padding contradicts; a PAD of no length.
    assert!(inconsistent(first_next(|b| with(b, 0, &|c| {
        c.len_words = layout::MAX_LEN_WORDS
    }))));
    assert!(inconsistent(first_next(
        |b| with(b, 0, &|c| c.len_words = 1)
    )));
    assert!(inconsistent(first_next(|b| with(b, 0, &|c| {
        c.len_words = 2;
        c.pad_bytes = 3;
    }))));
    assert!(inconsistent(first_next(|b| with(b, 0, &|c| {
        c.state = layout::STATE_PAD;
        c.len_words = 0;
    }))));
    // Head more than a ring ahead of a reserved record.
    assert!(inconsistent(first_next(|b| {
        with(b, 0, &|c| c.state = layout::STATE_RESERVED);
        put(b, OFF_HEAD, 100_000);
    })));
    // A PAD is stepped over: the second record comes first.
    assert_eq!(
        first_next(|b| with(b, 0, &|c| c.state = layout::STATE_PAD)).unwrap(),
        Some(1)
    );
}

#[test]
fn consumer_survives_concurrent_scribbling() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let raw = Arc::new(RawRing::map(fd.as_fd()));
    let producer = Arc::new(Producer::map(fd.as_fd()).unwrap());
    let mut consumer = Consumer::open(fd, opts(1)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let spawn = |f: Box<dyn Fn(u64) + Send>| {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                f(i);
                i += 1;
            }
        })
    };
    let p = Arc::clone(&producer);
    let writer = spawn(Box::new(move |i| {
        let _ = p.try_push(&meta_for(1, i as u32), &[i as u8; 150]);
    }));
    let r = Arc::clone(&raw);
    let scribbler = spawn(Box::new(move |i| {
        let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        r.poke((x >> 20) as usize % r.len(), (x >> 8) as u8);
        if i % 64 == 0 {
            std::thread::yield_now();
        }
    }));
    let deadline = Instant::now() + Duration::from_millis(700);
    let (mut records, mut errors) = (0u64, 0u64);
    let mut payload = Vec::new();
    while Instant::now() < deadline {
        match consumer.next(&mut payload) {
            Ok(Some(_)) => {
                assert!(payload.len() <= consumer.max_payload());
                records += 1;
            }
            Ok(None) => {}
            Err(_) => errors += 1,
        }
        let _ = consumer.prepare_sleep();
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    scribbler.join().unwrap();
    assert!(
        records + errors > 0,
        "the consumer made progress or reported the damage"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Random patches anywhere in a ring holding records and a stuck reservation.
    #[test]
    fn random_patches_never_panic(patches in prop::collection::vec(
        (any::<u32>(), prop::collection::vec(any::<u8>(), 1..40)), 1..12)) {
        let mut input = vec![2u8];
        for (off, bytes) in patches {
            input.extend_from_slice(&off.to_le_bytes());
            input.push(bytes.len() as u8);
            input.extend_from_slice(&bytes);
        }
        let _ = consume_arbitrary_ring(&input);
    }

    /// Random header fields after a valid magic/geometry, and random data-area contents.
    #[test]
    fn random_header_and_data_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut input = vec![1u8];
        input.extend_from_slice(&bytes);
        let _ = consume_arbitrary_ring(&input);
    }

    /// Completely random files.
    #[test]
    fn random_files_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut input = vec![0u8];
        input.extend_from_slice(&bytes);
        prop_assert!(consume_arbitrary_ring(&input).is_err() || bytes.len() < 4);
    }
}
