//! The ring under threads: many producers and one consumer sharing one mapping, wrap-around with
//! records of every size, a full ring's drop accounting, the sleep/wake handshake, and a
//! consumer reopened on the same memfd.

mod ring_support;

use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use logtap_protocol::ring::{
    Consumer, ConsumerOptions, MIN_RING_SIZE, Producer, PushError, RecordMeta, create_ring_memfd,
};
use ring_support::*;

const PRODUCERS: u32 = 8;
const PER_PRODUCER: u32 = 5_000;

/// Pushes `count` self-checking records as producer `id`, retrying while the ring is full.
fn produce(producer: &Producer, id: u32, count: u32, deadline: Instant) {
    let mut buf = [0u8; MAX_TEST_PAYLOAD];
    for counter in 0..count {
        let len = len_for(id, counter, producer.max_payload());
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
    }
}

#[test]
fn many_threads_deliver_every_record_once_in_per_producer_order() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let producer = Arc::new(Producer::map(fd.as_fd()).unwrap());
    let max = producer.max_payload();
    let mut consumer = Consumer::open(fd, ConsumerOptions::default()).unwrap();
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|id| {
            let producer = Arc::clone(&producer);
            std::thread::spawn(move || produce(&producer, id, PER_PRODUCER, deadline))
        })
        .collect();
    let mut order = OrderCheck::new(PRODUCERS as usize);
    let mut payload = Vec::new();
    let total = PRODUCERS * PER_PRODUCER;
    let mut seen = 0;
    while seen < total {
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
    assert_eq!(consumer.counters().abandoned_records, 0);
    assert_eq!(producer.backlog_words(), 0);
}

#[test]
fn wrap_around_with_records_of_every_size() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    let max = producer.max_payload();
    let mut consumer = Consumer::open(fd, ConsumerOptions::default()).unwrap();
    let mut payload = Vec::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut bytes = vec![0u8; max];
    let mut slots_used = 0u64;
    let mut counter = 0u32;
    // Several times around the ring, with a backlog of up to 7 records of any size (0 ..= max,
    // including the word boundaries) in flight.
    while slots_used < 6 * producer.capacity_words() {
        let batch = 1 + counter % 7;
        let mut pushed = Vec::new();
        for _ in 0..batch {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let len = match rng % 4 {
                0 => (rng >> 8) as usize % (max + 1),
                1 => [0, 1, 7, 8, 9, 100, 101, max][(rng >> 8) as usize % 8],
                _ => (rng >> 8) as usize % 600,
            };
            for (i, b) in bytes[..len].iter_mut().enumerate() {
                *b = (i as u32 ^ counter) as u8;
            }
            match producer.try_push(&meta_for(9, counter), &bytes[..len]) {
                Ok(()) => pushed.push((counter, len)),
                Err(PushError::Full) => break,
                Err(e) => panic!("push: {e}"),
            }
            slots_used += logtap_protocol::ring::layout::words_for(len);
            counter += 1;
        }
        for (c, len) in pushed {
            let meta = consumer
                .next(&mut payload)
                .unwrap()
                .expect("a committed record");
            assert_eq!(
                meta,
                RecordMeta {
                    pid: 1,
                    ..meta_for(9, c)
                }
            );
            assert_eq!(payload.len(), len);
            assert!(
                payload
                    .iter()
                    .enumerate()
                    .all(|(i, b)| *b == (i as u32 ^ c) as u8)
            );
        }
        assert!(consumer.next(&mut payload).unwrap().is_none());
    }
    assert_eq!(producer.backlog_words(), 0);
}

#[test]
fn oversized_records_are_refused_without_touching_the_ring() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    let max = producer.max_payload();
    let bytes = vec![7u8; max + 1];
    assert_eq!(
        producer.try_push(&meta_for(0, 0), &bytes),
        Err(PushError::TooLarge { len: max + 1, max })
    );
    assert_eq!(producer.backlog_words(), 0);
    producer.try_push(&meta_for(0, 0), &bytes[..max]).unwrap();
}

#[test]
fn full_ring_counts_drops_and_delivered_plus_dropped_equals_produced() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    let max = producer.max_payload();
    let mut consumer = Consumer::open(fd, ConsumerOptions::default()).unwrap();
    let mut buf = [0u8; MAX_TEST_PAYLOAD];
    let (mut dropped, mut dropped_bytes) = (0u64, 0u64);
    let produced = 3_000u32;
    let mut delivered = Vec::new();
    let mut payload = Vec::new();
    for counter in 0..produced {
        let len = len_for(0, counter, max);
        fill_payload(&mut buf, 0, counter, len);
        match producer.try_push(&meta_for(0, counter), &buf[..len]) {
            Ok(()) => {}
            Err(PushError::Full) => {
                producer.note_dropped(1, len as u64);
                dropped += 1;
                dropped_bytes += len as u64;
            }
            Err(e) => panic!("{e}"),
        }
        // A slow consumer: one record per three produced.
        if counter % 3 == 0
            && let Some(meta) = consumer.next(&mut payload).unwrap()
        {
            delivered.push(check_payload(&meta, &payload, max).1);
        }
    }
    drain(
        &mut consumer,
        2,
        Instant::now() + Duration::from_secs(10),
        |meta, p| {
            delivered.push(check_payload(meta, p, max).1);
        },
    );
    assert!(dropped > 0, "the ring never filled up");
    assert_eq!(delivered.len() as u64 + dropped, u64::from(produced));
    assert!(delivered.windows(2).all(|w| w[0] < w[1]), "order kept");
    let counters = consumer.counters();
    assert_eq!(counters.dropped_records, dropped);
    assert_eq!(counters.dropped_bytes, dropped_bytes);
    assert_eq!(counters.abandoned_records, 0);
}

#[test]
fn reopened_consumer_resumes_at_tail_without_loss_or_duplicate() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let fd = create_ring_memfd(MIN_RING_SIZE, 77).unwrap();
    let producer = Arc::new(Producer::map(fd.as_fd()).unwrap());
    let max = producer.max_payload();
    let count = 20_000u32;
    let writer = {
        let producer = Arc::clone(&producer);
        std::thread::spawn(move || produce(&producer, 0, count, deadline))
    };
    let mut order = OrderCheck::new(1);
    let mut payload = Vec::new();
    let mut seen = 0u32;
    let mut generation = 0;
    let mut spare = fd.try_clone().unwrap();
    let mut consumer = Consumer::open(fd, ConsumerOptions::default()).unwrap();
    while seen < count {
        check_deadline(deadline, "consumer");
        // Every 1,500 records the agent "restarts": the consumer is dropped mid-stream and a
        // new one opens a dup of the same memfd.
        if seen / 1_500 > generation {
            generation = seen / 1_500;
            let next_spare = spare.try_clone().unwrap();
            drop(consumer);
            consumer = Consumer::open(spare, ConsumerOptions::default()).unwrap();
            assert_eq!(consumer.creator_pid(), 77);
            spare = next_spare;
        }
        match consumer.next(&mut payload).unwrap() {
            Some(meta) => {
                let (id, counter) = check_payload(&meta, &payload, max);
                order.see(id, counter);
                seen += 1;
            }
            None => std::thread::yield_now(),
        }
    }
    writer.join().unwrap();
    assert!(generation >= 10);
    assert!(consumer.next(&mut payload).unwrap().is_none());
}

#[test]
fn sleeping_consumer_is_woken_once_and_never_misses_a_wake_up() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let producer = Arc::new(Producer::map(fd.as_fd()).unwrap());
    // SAFETY: plain syscall creating an fd we own.
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    assert!(efd >= 0);
    let mut consumer = Consumer::open(fd, ConsumerOptions::default()).unwrap();
    let read_efd = || {
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into a live u64.
        let n = unsafe { libc::read(efd, (&raw mut v).cast(), 8) };
        if n == 8 { v } else { 0 }
    };

    // A wake-up whose write fails (EBADF) must not leak its errno into the app.
    producer.set_wake_fd(1_000_000);
    assert!(consumer.prepare_sleep());
    // SAFETY: errno is thread-local.
    unsafe { *libc::__errno_location() = libc::EINTR };
    producer.try_push(&meta_for(0, 0), b"failed wake").unwrap();
    // SAFETY: as above.
    let errno = unsafe { *libc::__errno_location() };
    assert_eq!(
        errno,
        libc::EINTR,
        "errno preserved across a failed wake write"
    );
    drain(&mut consumer, 1, deadline, |_, _| {});
    producer.set_wake_fd(efd);

    // Idle ring: safe to sleep; one push wakes, a second push (no sleeper) writes nothing.
    assert!(consumer.prepare_sleep());
    // SAFETY: errno is thread-local; we check the push leaves it untouched.
    unsafe { *libc::__errno_location() = libc::EINTR };
    producer.try_push(&meta_for(0, 0), b"wake me up").unwrap();
    // SAFETY: as above.
    let errno = unsafe { *libc::__errno_location() };
    assert_eq!(errno, libc::EINTR, "errno preserved");
    producer
        .try_push(&meta_for(0, 1), b"no second wake")
        .unwrap();
    assert_eq!(read_efd(), 1);
    assert!(!consumer.prepare_sleep(), "committed records: do not sleep");
    let mut payload = Vec::new();
    drain(&mut consumer, 1, deadline, |_, _| {});

    // Stress: a producer with random pauses; the consumer sleeps on the eventfd whenever
    // prepare_sleep allows. A lost wake-up would leave a record waiting out the 2 s poll.
    let count = 3_000u32;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let producer = Arc::clone(&producer);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            for counter in 0..count {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                while producer
                    .try_push(&meta_for(1, counter), &counter.to_le_bytes())
                    .is_err()
                {
                    std::thread::yield_now();
                }
                if counter % 7 == 0 {
                    std::thread::sleep(Duration::from_micros(u64::from(counter % 200)));
                }
            }
        })
    };
    let mut next_counter = 0u32;
    while next_counter < count {
        check_deadline(deadline, "sleep/wake stress");
        match consumer.next(&mut payload).unwrap() {
            Some(meta) => {
                assert_eq!(meta.seq, next_counter);
                next_counter += 1;
            }
            None if consumer.prepare_sleep() => {
                let mut pfd = libc::pollfd {
                    fd: efd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                let n = unsafe { libc::poll(&mut pfd, 1, 2_000) };
                if n == 0 {
                    stop.store(true, Ordering::Relaxed);
                    panic!("lost wake-up: slept 2 s with record {next_counter} pending");
                }
                read_efd();
            }
            None => {}
        }
    }
    writer.join().unwrap();
    // SAFETY: closing the eventfd we created.
    unsafe { libc::close(efd.as_raw_fd()) };
}
