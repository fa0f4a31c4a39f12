//! Layout version 3 (issue 14): records of variable length at 8-byte granularity. How much ring
//! a line takes (read back from `head` after N records), how many 100-byte lines the default
//! ring holds before it is full (version 2: 4,096), records of every length placed so that they
//! end exactly at the end of the data area or need a PAD before it, and the PADs that
//! concurrent producers leave at the wrap.

mod ring_support;

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use logtap_protocol::ring::layout::{self, WORD_BYTES};
use logtap_protocol::ring::{
    Consumer, ConsumerOptions, DEFAULT_RING_SIZE, MIN_RING_SIZE, Producer, PushError, RecordMeta,
    create_ring_memfd,
};
use ring_support::*;

/// The 100-byte lines (101 bytes with the newline) version 2 held in the default ring: two
/// 128-byte slots each.
const V2_DEFAULT_RING_LINES: u64 = 4_096;

#[test]
fn a_100_byte_line_takes_120_bytes_of_ring() {
    let fd = create_ring_memfd(DEFAULT_RING_SIZE, 1).unwrap();
    let raw = RawRing::map(fd.as_fd());
    let producer = Producer::map(fd.as_fd()).unwrap();
    let line = [b'x'; 101];
    for i in 0..1_000u32 {
        producer.try_push(&meta_for(0, i), &line).unwrap();
    }
    let bytes_per_line = raw.head() * WORD_BYTES as u64 / 1_000;
    assert_eq!(
        bytes_per_line, 120,
        "16 bytes of header + 101 rounded up to 104"
    );
    // And 100 bytes without the newline: the same 120.
    let fd = create_ring_memfd(DEFAULT_RING_SIZE, 1).unwrap();
    let raw = RawRing::map(fd.as_fd());
    let producer = Producer::map(fd.as_fd()).unwrap();
    for i in 0..1_000u32 {
        producer.try_push(&meta_for(0, i), &[b'y'; 100]).unwrap();
    }
    assert_eq!(raw.head() * WORD_BYTES as u64, 120_000);
}

#[test]
fn the_default_ring_holds_twice_version_2s_lines_before_it_is_full() {
    let fd = create_ring_memfd(DEFAULT_RING_SIZE, 1).unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    let mut lines = 0u64;
    let result = loop {
        match producer.try_push(&meta_for(0, lines as u32), &[b'z'; 101]) {
            Ok(()) => lines += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(result, PushError::Full);
    assert_eq!(lines, (DEFAULT_RING_SIZE / 120) as u64, "8,738 lines");
    assert!(lines >= 2 * V2_DEFAULT_RING_LINES, "{lines}");
    // All of them come out, intact.
    let mut consumer = Consumer::open(fd, ConsumerOptions::default()).unwrap();
    let mut payload = Vec::new();
    for i in 0..lines {
        let meta = consumer.next(&mut payload).unwrap().expect("a line");
        assert_eq!(meta.seq, i as u32);
        assert_eq!(payload, [b'z'; 101]);
    }
    assert!(consumer.next(&mut payload).unwrap().is_none());
}

/// Pushes (and reads back) filler records until the next record starts `before_end` words
/// before the end of the data area.
fn move_to(
    producer: &Producer,
    consumer: &mut Consumer,
    raw: &RawRing,
    before_end: u64,
    payload: &mut Vec<u8>,
) {
    let w = raw.word_count;
    let max_words = layout::words_for(producer.max_payload());
    let target = w - before_end;
    let mut dist = (target + w - raw.head() % w) % w;
    if dist == 1 {
        dist += w; // no record is one word long
    }
    while dist > 0 {
        let step = if dist <= max_words {
            dist
        } else if dist - max_words >= 2 {
            max_words
        } else {
            max_words - 2
        };
        let filler = vec![0xF1; (step - 2) as usize * WORD_BYTES];
        producer
            .try_push(&RecordMeta::default(), &filler)
            .expect("room for a filler");
        consumer
            .next(payload)
            .expect("consistent ring")
            .expect("the filler");
        dist -= step;
    }
    assert_eq!(raw.head() % w, target % w);
}

#[test]
fn records_of_every_length_end_at_the_end_of_the_area_or_wrap_behind_a_pad() {
    let deadline = Instant::now() + Duration::from_secs(120);
    let fd = create_ring_memfd(MIN_RING_SIZE, 3).unwrap();
    let raw = RawRing::map(fd.as_fd());
    let producer = Producer::map(fd.as_fd()).unwrap();
    let mut consumer = Consumer::open(fd, ConsumerOptions::default()).unwrap();
    let max = producer.max_payload();
    let w = raw.word_count;
    let mut payload = Vec::new();
    let mut bytes = vec![0u8; max];
    // Every length in sequence: the records wrap wherever they fall (a PAD of any size).
    for len in 0..=max {
        check_deadline(deadline, "every length in sequence");
        for (i, b) in bytes[..len].iter_mut().enumerate() {
            *b = (i ^ len) as u8;
        }
        producer
            .try_push(&meta_for(1, len as u32), &bytes[..len])
            .unwrap();
        let meta = consumer.next(&mut payload).unwrap().expect("the record");
        assert_eq!(
            meta,
            RecordMeta {
                pid: 3,
                ..meta_for(1, len as u32)
            }
        );
        assert!(payload == bytes[..len], "length {len}");
    }
    // Placed on purpose: a record that ends exactly at the end of the data area (no PAD), and
    // one that misses it by one word (a PAD of all but one of its words, then the record at
    // the start of the next lap). Every length up to 256 bytes and around the largest record,
    // and one length in 61 in between (a lap of fillers each).
    let lengths: Vec<usize> = (0..=256)
        .chain((257..max - 256).step_by(61))
        .chain(max - 256..=max)
        .collect();
    for len in lengths {
        check_deadline(deadline, "placed lengths");
        let words = layout::words_for(len);
        for (i, b) in bytes[..len].iter_mut().enumerate() {
            *b = ((i * 7) ^ len) as u8;
        }
        for (before_end, wraps) in [(words, false), (words - 1, true)] {
            move_to(&producer, &mut consumer, &raw, before_end, &mut payload);
            let at = raw.head();
            producer
                .try_push(&meta_for(2, len as u32), &bytes[..len])
                .unwrap();
            let end = raw.head();
            if wraps {
                // The PAD took the `before_end` words left, the record starts the next lap.
                assert_eq!(end - at, before_end + words, "length {len}");
                assert_eq!(end % w, words % w);
                let pad = raw.control(at).expect("a PAD claimed at the old head");
                assert_eq!((pad.state, pad.len_words), (layout::STATE_PAD, before_end));
            } else {
                assert_eq!(end - at, words, "length {len}");
                assert_eq!(end % w, 0, "ends at the end of the data area");
            }
            let meta = consumer.next(&mut payload).unwrap().expect("the record");
            assert_eq!(
                meta,
                RecordMeta {
                    pid: 3,
                    ..meta_for(2, len as u32)
                }
            );
            assert!(payload == bytes[..len], "length {len}, wraps {wraps}");
        }
    }
    assert!(consumer.next(&mut payload).unwrap().is_none());
    assert_eq!(raw.tail(), raw.head());
}

#[test]
fn concurrent_producers_wrap_behind_pads_and_every_record_arrives_in_order() {
    const PRODUCERS: u32 = 4;
    const PER_PRODUCER: u32 = 3_000;
    let deadline = Instant::now() + Duration::from_secs(60);
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let raw = RawRing::map(fd.as_fd());
    let producer = Arc::new(Producer::map(fd.as_fd()).unwrap());
    let max = producer.max_payload();
    let record_words = Arc::new(AtomicU64::new(0));
    let mut consumer = Consumer::open(fd, ConsumerOptions::default()).unwrap();
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let producer = Arc::clone(&producer);
            let record_words = Arc::clone(&record_words);
            std::thread::spawn(move || {
                let mut buf = [0u8; MAX_TEST_PAYLOAD];
                for counter in 0..PER_PRODUCER {
                    let len = len_for(id, counter, max);
                    fill_payload(&mut buf, id, counter, len);
                    loop {
                        match producer.try_push(&meta_for(id, counter), &buf[..len]) {
                            Ok(()) => break,
                            Err(PushError::Full) => {
                                check_deadline(deadline, "producer waiting for room");
                                std::thread::yield_now();
                            }
                            Err(e) => panic!("push {id}/{counter}: {e}"),
                        }
                    }
                    record_words.fetch_add(layout::words_for(len), Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut order = OrderCheck::new(PRODUCERS as usize);
    let mut payload = Vec::new();
    let mut seen = 0;
    while seen < PRODUCERS * PER_PRODUCER {
        check_deadline(deadline, "consumer");
        match consumer.next(&mut payload).unwrap() {
            Some(meta) => {
                let (id, counter) = check_payload(&meta, &payload, max);
                order.see(id, counter);
                seen += 1;
            }
            None => std::thread::yield_now(),
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(consumer.next(&mut payload).unwrap().is_none());
    assert_eq!(order.counts(), &[PER_PRODUCER; PRODUCERS as usize]);
    let head = raw.head();
    let laps = head / raw.word_count;
    let pad_words = head - record_words.load(Ordering::Relaxed);
    assert!(laps >= 10, "{laps} laps");
    assert!(
        pad_words > 0 && pad_words < laps * layout::words_for(max),
        "{pad_words} words of PAD over {laps} laps"
    );
    assert_eq!(consumer.counters().abandoned_records, 0);
    assert_eq!(raw.tail(), head);
}
