//! Reservations that are never committed (a writer killed, or siglongjmp'd out of the hook
//! between reserve and commit): the consumer waits `stuck_timeout`, skips them, counts them,
//! and delivers everything committed after them; a writer that comes back late is told
//! `Abandoned` and cannot damage the ring.

mod ring_support;

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use logtap_protocol::ring::layout;
use logtap_protocol::ring::{
    Consumer, MIN_RING_SIZE, Producer, PushError, RecordMeta, create_ring_memfd,
};
use ring_support::*;

const STUCK_MS: u64 = 150;

fn push(producer: &Producer, counter: u32) {
    let mut buf = [0u8; MAX_TEST_PAYLOAD];
    let len = len_for(3, counter, producer.max_payload());
    fill_payload(&mut buf, 3, counter, len);
    producer
        .try_push(&meta_for(3, counter), &buf[..len])
        .expect("room in the ring");
}

fn next_counter(consumer: &mut Consumer, max: usize) -> Option<u32> {
    let mut payload = Vec::new();
    let meta = consumer.next(&mut payload).expect("consistent ring")?;
    Some(check_payload(&meta, &payload, max).1)
}

#[test]
fn stuck_reservation_is_skipped_after_the_timeout_and_later_records_delivered() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    let max = producer.max_payload();
    let mut consumer = Consumer::open(fd, opts(STUCK_MS)).unwrap();
    push(&producer, 0);
    let stuck_len = 500;
    let stuck = producer
        .reserve_for_test(&meta_for(3, 99), stuck_len)
        .unwrap();
    for counter in 1..=20 {
        push(&producer, counter);
    }
    assert_eq!(next_counter(&mut consumer, max), Some(0));
    let started = Instant::now();
    // Before the timeout: nothing (records 1..=20 wait behind the reservation), and the
    // consumer may sleep (a stuck writer sends no wake-up, the agent's periodic sweep does).
    assert_eq!(next_counter(&mut consumer, max), None);
    assert!(consumer.prepare_sleep());
    std::thread::sleep(Duration::from_millis(STUCK_MS / 3));
    assert_eq!(next_counter(&mut consumer, max), None);
    assert_eq!(consumer.counters().abandoned_records, 0);
    std::thread::sleep(Duration::from_millis(STUCK_MS));
    assert!(
        !consumer.prepare_sleep(),
        "the timeout has passed: work to do"
    );
    for counter in 1..=20 {
        assert_eq!(next_counter(&mut consumer, max), Some(counter));
    }
    assert!(started.elapsed() >= Duration::from_millis(STUCK_MS));
    assert_eq!(next_counter(&mut consumer, max), None);
    assert_eq!(consumer.counters().abandoned_records, 1, "one record");
    // The writer comes back: its commit fails, and touches nothing.
    let payload = vec![0xAA; stuck_len];
    assert_eq!(
        producer.commit_for_test(stuck, &meta_for(3, 99), &payload),
        Err(PushError::Abandoned)
    );
    assert_eq!(next_counter(&mut consumer, max), None);
    push(&producer, 21);
    assert_eq!(next_counter(&mut consumer, max), Some(21));
    assert_eq!(producer.backlog_words(), 0);
}

#[test]
fn reservations_made_after_the_stuck_one_get_their_own_full_timeout() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    let max = producer.max_payload();
    let mut consumer = Consumer::open(fd, opts(STUCK_MS)).unwrap();
    producer.reserve_for_test(&meta_for(3, 98), 10).unwrap();
    assert_eq!(next_counter(&mut consumer, max), None);
    std::thread::sleep(Duration::from_millis(STUCK_MS * 2 / 3));
    // A second writer reserves now, i.e. after the consumer started the clock: it is slow but
    // not stuck, and must not be skipped together with the first one.
    let len = len_for(3, 7, max);
    let slow = producer.reserve_for_test(&meta_for(3, 7), len).unwrap();
    std::thread::sleep(Duration::from_millis(STUCK_MS * 2 / 3));
    assert_eq!(next_counter(&mut consumer, max), None);
    assert_eq!(consumer.counters().abandoned_records, 1);
    let mut full = vec![0u8; len];
    fill_payload(&mut full, 3, 7, len);
    producer
        .commit_for_test(slow, &meta_for(3, 7), &full)
        .unwrap();
    assert_eq!(next_counter(&mut consumer, max), Some(7));
}

#[test]
fn a_claim_whose_writer_stopped_before_moving_head_is_helped_then_skipped() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let raw = RawRing::map(fd.as_fd());
    let producer = Producer::map(fd.as_fd()).unwrap();
    let max = producer.max_payload();
    let mut consumer = Consumer::open(fd, opts(STUCK_MS)).unwrap();
    // A writer claimed 400 bytes at position 0 (its control word RESERVED) and was stopped
    // (killed, or interrupted by a signal handler that never returns) before it moved `head`.
    let claim = layout::Control {
        state: layout::STATE_RESERVED,
        len_words: layout::words_for(400),
        pad_bytes: 0,
        stream: 1,
        continued: false,
        file_index: 0,
        seq: 77,
    };
    raw.data(0).store(
        layout::encode_control(&claim, 0, raw.shift),
        Ordering::SeqCst,
    );
    assert_eq!(raw.head(), 0);
    // Another writer (or the signal handler itself) is not blocked: it moves `head` past the
    // claim and writes after it.
    push(&producer, 0);
    assert_eq!(
        raw.head(),
        claim.len_words + layout::words_for(len_for(3, 0, max))
    );
    assert_eq!(next_counter(&mut consumer, max), None);
    std::thread::sleep(Duration::from_millis(STUCK_MS + 20));
    assert_eq!(next_counter(&mut consumer, max), Some(0));
    assert_eq!(consumer.counters().abandoned_records, 1);
    assert_eq!(raw.tail(), raw.head());
    // Its words were released like any others: FREE for the next lap.
    for p in 0..raw.head() {
        assert_eq!(
            raw.data(p).load(Ordering::SeqCst),
            layout::free(p + raw.word_count, raw.shift),
            "word {p} free for the next lap"
        );
    }
}

#[test]
fn late_writer_after_skip_does_not_overwrite_the_words_new_owner() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let raw = RawRing::map(fd.as_fd());
    let producer = Producer::map(fd.as_fd()).unwrap();
    let mut consumer = Consumer::open(fd, opts(0)).unwrap();
    let mut payload = Vec::new();
    let stuck = producer.reserve_for_test(&meta_for(3, 99), 50).unwrap();
    assert!(consumer.next(&mut payload).unwrap().is_none());
    assert!(consumer.next(&mut payload).unwrap().is_none());
    assert_eq!(consumer.counters().abandoned_records, 1);
    // Once around the ring with 20-byte records (5 words), so that the stuck one's words are
    // reused.
    let words = producer.capacity_words();
    let mut i = 1u32;
    while raw.head() + 5 <= words {
        producer.try_push(&meta_for(3, i), &[i as u8; 20]).unwrap();
        assert_eq!(consumer.next(&mut payload).unwrap().unwrap().seq, i);
        i += 1;
    }
    let fresh = producer.reserve_for_test(&meta_for(3, 5), 20).unwrap();
    assert_eq!(
        fresh,
        stuck + words,
        "the same words, one lap later (after a PAD)"
    );
    // The stuck writer wakes up now: it must neither commit nor write into the new owner's words.
    assert_eq!(
        producer.commit_for_test(stuck, &meta_for(3, 99), &[0xEE; 50]),
        Err(PushError::Abandoned)
    );
    producer
        .commit_for_test(fresh, &meta_for(3, 5), &[0x11; 20])
        .unwrap();
    let meta = consumer.next(&mut payload).unwrap().unwrap();
    assert_eq!(
        meta,
        RecordMeta {
            pid: 1,
            ..meta_for(3, 5)
        }
    );
    assert_eq!(payload, [0x11; 20]);
}

#[test]
fn consumer_killed_between_clearing_words_and_storing_tail_is_recovered() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let raw = RawRing::map(fd.as_fd());
    let producer = Producer::map(fd.as_fd()).unwrap();
    let spare = fd.try_clone().unwrap();
    let mut consumer = Consumer::open(fd, opts(STUCK_MS)).unwrap();
    let mut payload = Vec::new();
    producer.try_push(&meta_for(3, 0), &[7; 300]).unwrap(); // words 0..40
    producer.try_push(&meta_for(3, 1), &[8; 20]).unwrap();
    assert_eq!(consumer.next(&mut payload).unwrap().unwrap().seq, 0);
    let end = consumer.read_position();
    assert_eq!(end, layout::words_for(300));
    drop(consumer);
    // Rewind to the moment the old consumer died: it had announced the release of record 0
    // and cleared its words, but `tail` was still 0. Its control word no longer says how long
    // the record was: only the announced release does.
    raw.word(layout::OFF_TAIL).store(0, Ordering::SeqCst);
    assert_eq!(raw.word(layout::OFF_RELEASING).load(Ordering::SeqCst), end);
    let mut consumer = Consumer::open(spare, opts(STUCK_MS)).unwrap();
    assert_eq!(raw.tail(), end, "the release was finished at open");
    let meta = consumer
        .next(&mut payload)
        .unwrap()
        .expect("the next record");
    assert_eq!((meta.seq, payload.as_slice()), (1, &[8u8; 20][..]));
    assert!(consumer.next(&mut payload).unwrap().is_none());
    assert_eq!(raw.tail(), raw.head());
}

/// What one writer thread of the concurrent test ends with.
struct WriterReport {
    /// Counters whose push returned `Ok`, in order.
    committed: Vec<u32>,
    /// Records whose commit came back `Abandoned`.
    abandoned_records: u64,
}

/// Writer `id` of the concurrent test: every 37th record reserves, sleeps past the stuck timeout
/// (most of the time), then tries to commit, as a writer descheduled mid-push would.
fn stalling_writer(producer: &Producer, id: u32, count: u32, deadline: Instant) -> WriterReport {
    let mut report = WriterReport {
        committed: Vec::new(),
        abandoned_records: 0,
    };
    let mut buf = [0u8; MAX_TEST_PAYLOAD];
    for counter in 0..count {
        let len = len_for(id, counter, producer.max_payload());
        fill_payload(&mut buf, id, counter, len);
        let meta = meta_for(id, counter);
        let result = loop {
            check_deadline(deadline, "stalling writer");
            let attempt = if counter % 37 == 5 {
                producer.reserve_for_test(&meta, len).map(|pos| {
                    std::thread::sleep(Duration::from_micros(u64::from(counter % 4) * 1_500));
                    producer.commit_for_test(pos, &meta, &buf[..len])
                })
            } else {
                Ok(producer.try_push(&meta, &buf[..len]))
            };
            match attempt {
                Err(PushError::Full) | Ok(Err(PushError::Full)) => std::thread::yield_now(),
                Err(e) => break Err(e),
                Ok(r) => break r,
            }
        };
        match result {
            Ok(()) => report.committed.push(counter),
            Err(PushError::Abandoned) => report.abandoned_records += 1,
            Err(e) => panic!("writer {id}, record {counter}: {e}"),
        }
    }
    report
}

#[test]
fn concurrent_writers_with_stalls_lose_only_what_was_abandoned() {
    const WRITERS: u32 = 4;
    const COUNT: u32 = 1_500;
    let deadline = Instant::now() + Duration::from_secs(60);
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let producer = Arc::new(Producer::map(fd.as_fd()).unwrap());
    let max = producer.max_payload();
    // 2 ms: writers stalled for 0, 1.5, 3 or 4.5 ms are sometimes skipped, sometimes not.
    let mut consumer = Consumer::open(fd, opts(2)).unwrap();
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| {
            let producer = Arc::clone(&producer);
            std::thread::spawn(move || stalling_writer(&producer, id, COUNT, deadline))
        })
        .collect();
    let mut delivered: Vec<Vec<u32>> = vec![Vec::new(); WRITERS as usize];
    let mut payload = Vec::new();
    while !writers.iter().all(|w| w.is_finished()) {
        check_deadline(deadline, "consumer");
        match consumer.next(&mut payload).unwrap() {
            Some(meta) => {
                let (id, counter) = check_payload(&meta, &payload, max);
                delivered[id as usize].push(counter);
            }
            None => std::thread::yield_now(),
        }
    }
    drain(&mut consumer, 20, deadline, |meta, p| {
        let (id, counter) = check_payload(meta, p, max);
        delivered[id as usize].push(counter);
    });
    let mut abandoned = 0;
    for (id, w) in writers.into_iter().enumerate() {
        let report = w.join().unwrap();
        assert_eq!(
            delivered[id], report.committed,
            "writer {id}: exactly the committed records"
        );
        abandoned += report.abandoned_records;
    }
    assert!(abandoned > 0, "some stalls outlived the timeout");
    assert_eq!(consumer.counters().abandoned_records, abandoned);
    assert_eq!(producer.backlog_words(), 0);
}

/// `head` set back (a writer that stored it late, see `RawRing::reserve`): behind it every word
/// up to the real head is claimed, and the next writer steps over them by helping; a `head`
/// set back below `tail` (after a stall longer than the stuck timeout) is healed to `tail`.
#[test]
fn a_head_set_back_is_walked_forward_or_healed_to_the_tail() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let raw = RawRing::map(fd.as_fd());
    let producer = Producer::map(fd.as_fd()).unwrap();
    let max = producer.max_payload();
    let mut consumer = Consumer::open(fd, opts(STUCK_MS)).unwrap();
    for counter in 0..5 {
        push(&producer, counter);
    }
    let end = raw.head();
    // Set back to the start of record 1: records 1..5 are claimed, nothing is released.
    raw.word(layout::OFF_HEAD)
        .store(layout::words_for(len_for(3, 0, max)), Ordering::SeqCst);
    push(&producer, 5);
    assert_eq!(
        raw.head(),
        end + layout::words_for(len_for(3, 5, max)),
        "the new record went after the last one"
    );
    for counter in 0..6 {
        assert_eq!(next_counter(&mut consumer, max), Some(counter));
    }
    // Everything read and released; `head` set back below `tail`, onto cleared words.
    let tail = raw.tail();
    assert_eq!(tail, raw.head());
    raw.word(layout::OFF_HEAD).store(3, Ordering::SeqCst);
    push(&producer, 6);
    assert_eq!(raw.head(), tail + layout::words_for(len_for(3, 6, max)));
    assert_eq!(next_counter(&mut consumer, max), Some(6));
    assert_eq!(consumer.counters().abandoned_records, 0);
}
