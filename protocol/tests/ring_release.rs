//! Holding mode (`Consumer::open_holding`): the space producers may reuse (`tail`) moves only
//! when the reader releases it, and a consumer that dies before releasing is replaced by one that
//! reads the unreleased records again — at least once, never lost.

mod ring_support;

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use logtap_protocol::ring::{
    Consumer, ConsumerOptions, MIN_RING_SIZE, Producer, PushError, RecordMeta, create_ring_memfd,
    unreleased_records,
};
use ring_support::*;

fn meta(seq: u32) -> RecordMeta {
    RecordMeta {
        stream: 1,
        seq,
        pid: 7,
        ..RecordMeta::default()
    }
}

#[test]
fn read_records_keep_their_words_until_released() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    let raw = RawRing::map(fd.as_fd());
    let (mut consumer, release) = Consumer::open_holding(fd, ConsumerOptions::default()).unwrap();
    // Empty records: 2 words each (the header), so the ring holds exactly `words / 2`.
    let words = producer.capacity_words();
    let n = words / 2;
    for i in 0..n {
        producer.try_push(&meta(i as u32), b"").unwrap();
    }
    assert_eq!(producer.try_push(&meta(0), b""), Err(PushError::Full));
    let mut payload = Vec::new();
    for i in 0..n {
        let m = consumer.next(&mut payload).unwrap().unwrap();
        assert_eq!(m.seq, i as u32);
    }
    assert_eq!(consumer.read_position(), words);
    assert_eq!(consumer.unreleased_words(), words);
    assert_eq!(raw.tail(), 0, "nothing released yet");
    assert_eq!(
        producer.try_push(&meta(0), b""),
        Err(PushError::Full),
        "read is not released: the producer may not reuse the space"
    );
    assert!(consumer.next(&mut payload).unwrap().is_none());
    assert!(
        consumer.prepare_sleep(),
        "all held: nothing to read until a release (the next push wakes us)"
    );
    release.release(20);
    assert_eq!((raw.tail(), release.released()), (20, 20));
    assert_eq!(consumer.unreleased_words(), words - 20);
    for _ in 0..10 {
        producer.try_push(&meta(99), b"").unwrap();
    }
    assert_eq!(producer.try_push(&meta(0), b""), Err(PushError::Full));
    // Releasing backwards or to the same point does nothing.
    release.release(10);
    release.release(20);
    assert_eq!(raw.tail(), 20);
    // The ten new records are read after the old ones.
    for _ in 0..10 {
        assert_eq!(consumer.next(&mut payload).unwrap().unwrap().seq, 99);
    }
    assert!(consumer.next(&mut payload).unwrap().is_none());
}

#[test]
fn release_never_passes_the_read_position() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    let raw = RawRing::map(fd.as_fd());
    let (mut consumer, release) = Consumer::open_holding(fd, ConsumerOptions::default()).unwrap();
    for i in 0..20 {
        producer.try_push(&meta(i), b"abc").unwrap();
    }
    let mut payload = Vec::new();
    for _ in 0..5 {
        consumer.next(&mut payload).unwrap().unwrap();
    }
    release.release(1_000);
    assert_eq!(
        raw.tail(),
        15,
        "clamped to what was read (5 records of 3 words)"
    );
    // The unread records are still there, in order.
    for i in 5..20 {
        assert_eq!(consumer.next(&mut payload).unwrap().unwrap().seq, i);
    }
}

#[test]
fn a_new_consumer_reads_again_what_the_old_one_did_not_release() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let spare = fd.try_clone().unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    let (mut first, release) = Consumer::open_holding(fd, ConsumerOptions::default()).unwrap();
    let big = vec![b'z'; 1000]; // 127 words
    for i in 0..30u32 {
        let body = if i % 7 == 3 { &big[..] } else { b"line" };
        producer.try_push(&meta(i), body).unwrap();
    }
    let mut payload = Vec::new();
    let mut ends = Vec::new();
    for _ in 0..30 {
        first.next(&mut payload).unwrap().unwrap();
        ends.push(first.read_position());
    }
    // Records 0..12 are safe; 12..30 were read but the consumer "dies" before they are.
    release.release(ends[11]);
    drop(first);
    drop(release);
    let (mut second, _release) = Consumer::open_holding(spare, ConsumerOptions::default()).unwrap();
    for i in 12..30 {
        let m = second.next(&mut payload).unwrap().unwrap();
        assert_eq!(m.seq, i, "read again, in order");
        if i % 7 == 3 {
            assert_eq!(payload, big);
        }
    }
    assert!(second.next(&mut payload).unwrap().is_none());
    assert_eq!(second.counters().abandoned_records, 0);
}

#[test]
fn a_consumer_killed_inside_a_release_leaves_a_ring_its_successor_reads() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let spare = fd.try_clone().unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    let raw = RawRing::map(fd.as_fd());
    let (mut first, _release) = Consumer::open_holding(fd, ConsumerOptions::default()).unwrap();
    for i in 0..8 {
        producer.try_push(&meta(i), b"3 words").unwrap();
    }
    let mut payload = Vec::new();
    for _ in 0..8 {
        first.next(&mut payload).unwrap().unwrap();
    }
    // A release of records 0..5 (3 words each) that announced itself, cleared 7 words (in
    // the middle of record 2) and died before storing `tail`.
    let end = 5 * logtap_protocol::ring::layout::words_for(8);
    raw.word(logtap_protocol::ring::layout::OFF_RELEASING)
        .store(end, Ordering::SeqCst);
    for p in 0..7 {
        raw.data(p).store(
            logtap_protocol::ring::layout::free(p + raw.word_count, raw.shift),
            Ordering::SeqCst,
        );
    }
    drop(first);
    let (mut second, _release) = Consumer::open_holding(spare, ConsumerOptions::default()).unwrap();
    assert_eq!(raw.tail(), end, "the successor finished the release");
    let seqs: Vec<u32> = (0..3)
        .map(|_| second.next(&mut payload).unwrap().unwrap().seq)
        .collect();
    assert_eq!(
        seqs,
        [5, 6, 7],
        "the released records are gone, the rest read again"
    );
    assert!(second.next(&mut payload).unwrap().is_none());
}

#[test]
fn releases_may_come_after_the_consumer_is_gone() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    let raw = RawRing::map(fd.as_fd());
    let (mut consumer, release) = Consumer::open_holding(fd, ConsumerOptions::default()).unwrap();
    producer.try_push(&meta(1), b"last words").unwrap();
    consumer.next(&mut Vec::new()).unwrap().unwrap();
    let end = consumer.read_position();
    drop(consumer);
    release.release(end);
    assert_eq!(raw.tail(), end);
}

#[test]
fn unreleased_records_lists_what_no_consumer_made_safe() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let spare = fd.try_clone().unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    let (mut consumer, release) =
        Consumer::open_holding(spare, ConsumerOptions::default()).unwrap();
    let big = vec![b'q'; 700];
    producer.try_push(&meta(0), b"safe").unwrap();
    producer.try_push(&meta(1), b"read, not safe").unwrap();
    producer.try_push(&meta(2), &big).unwrap();
    producer.reserve_for_test(&meta(9), 10).unwrap(); // never committed
    producer.try_push(&meta(3), b"not read").unwrap();
    let mut payload = Vec::new();
    consumer.next(&mut payload).unwrap().unwrap();
    release.release(consumer.read_position());
    consumer.next(&mut payload).unwrap().unwrap();
    let mut found = Vec::new();
    let n = unreleased_records(fd.as_fd(), &mut payload, |m, p| {
        found.push((m.seq, p.to_vec()));
    })
    .unwrap();
    assert_eq!(n, 3);
    assert_eq!(
        found,
        [
            (1, b"read, not safe".to_vec()),
            (2, big),
            (3, b"not read".to_vec())
        ]
    );
}

/// A producer thread against a holding consumer that releases in batches, late: every record
/// arrives once, in order, undamaged — the producer never overwrites a word that was read but
/// not released.
#[test]
fn producers_never_overwrite_unreleased_records() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let producer = Arc::new(Producer::map(fd.as_fd()).unwrap());
    let max = producer.max_payload();
    let (mut consumer, release) = Consumer::open_holding(fd, ConsumerOptions::default()).unwrap();
    const COUNT: u32 = 40_000;
    let full = Arc::new(AtomicU64::new(0));
    let writer = {
        let producer = Arc::clone(&producer);
        let full = Arc::clone(&full);
        std::thread::spawn(move || {
            let mut buf = [0u8; MAX_TEST_PAYLOAD];
            for counter in 0..COUNT {
                let len = len_for(0, counter, max);
                fill_payload(&mut buf, 0, counter, len);
                while producer
                    .try_push(&meta_for(0, counter), &buf[..len])
                    .is_err()
                {
                    full.fetch_add(1, Ordering::Relaxed);
                    check_deadline(deadline, "producer waiting for room");
                    std::thread::yield_now();
                }
            }
        })
    };
    // Records are "safe" in batches of 50, and the copies are checked only after the release
    // that covers them happened much later: a word reused too early would show as damage.
    let mut order = OrderCheck::new(1);
    let mut payload = Vec::new();
    let mut pending: Vec<(RecordMeta, Vec<u8>, u64)> = Vec::new();
    let mut seen = 0;
    while seen < COUNT {
        check_deadline(deadline, "consumer");
        match consumer.next(&mut payload).unwrap() {
            Some(m) => {
                pending.push((m, payload.clone(), consumer.read_position()));
                seen += 1;
            }
            None => std::thread::yield_now(),
        }
        if pending.len() >= 50 || (seen == COUNT && !pending.is_empty()) {
            // Check what we copied only now: a record whose words a producer reused before the
            // release would show as damage.
            for (m, p, _) in pending.drain(..) {
                let (id, counter) = check_payload(&m, &p, max);
                order.see(id, counter);
            }
            release.release(consumer.read_position());
        }
    }
    writer.join().unwrap();
    assert_eq!(order.counts(), &[COUNT]);
    assert!(
        full.load(Ordering::Relaxed) > 0,
        "the producer did wait for releases"
    );
}

#[test]
fn a_stuck_reservation_is_skipped_ahead_of_the_released_position() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let spare = fd.try_clone().unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    let raw = RawRing::map(fd.as_fd());
    let (mut consumer, release) = Consumer::open_holding(fd, opts(0)).unwrap();
    producer.try_push(&meta(0), b"before").unwrap();
    producer.reserve_for_test(&meta(1), 300).unwrap(); // 40 words, never committed
    producer.try_push(&meta(2), b"after").unwrap();
    let mut payload = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seqs = Vec::new();
    drain(&mut consumer, 3, deadline, |m, _| seqs.push(m.seq));
    assert_eq!(seqs, [0, 2]);
    assert_eq!(consumer.counters().abandoned_records, 1);
    assert_eq!(raw.tail(), 0, "skipping is not releasing");
    // A successor before the release steps over the skipped record (a PAD now) and reads the
    // rest again.
    let (mut again, _r) = Consumer::open_holding(spare, opts(0)).unwrap();
    let mut seqs = Vec::new();
    drain(&mut again, 3, deadline, |m, _| seqs.push(m.seq));
    assert_eq!(seqs, [0, 2]);
    assert_eq!(again.counters().abandoned_records, 1, "not counted twice");
    release.release(consumer.read_position());
    assert_eq!(raw.tail(), 3 + 40 + 3);
    // The space is reusable: a lap's worth of records goes in and is read.
    let mut pushed = 0;
    while pushed < 4_000 && producer.try_push(&meta(9), b"reuse").is_ok() {
        pushed += 1;
    }
    assert!(pushed > 2_000, "{pushed}");
    assert!(consumer.next(&mut payload).unwrap().is_some());
}
