//! The ring across processes: forked children producing into one ring while the parent
//! consumes, and a producer killed with SIGKILL mid-stream whose committed records are still
//! drained. Children only run async-signal-safe code (no allocation, no panic formatting: an
//! error is an exit code), as the interceptor does after fork.

mod ring_support;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use logtap_protocol::ring::{Consumer, MIN_RING_SIZE, Producer, PushError, create_ring_memfd};
use ring_support::*;

/// Exit codes of a child.
const CHILD_OK: i32 = 0;
const CHILD_PUSH_ERROR: i32 = 2;
const CHILD_TIMEOUT: i32 = 3;

/// Body of a forked producer: pushes `count` records as `id` (retrying while full), then exits.
fn child_produce(producer: &Producer, id: u32, count: u32) -> ! {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; MAX_TEST_PAYLOAD];
    for counter in 0..count {
        let len = len_for(id, counter, producer.max_payload());
        fill_payload(&mut buf, id, counter, len);
        loop {
            match producer.try_push(&meta_for(id, counter), &buf[..len]) {
                Ok(()) => break,
                Err(PushError::Full) if Instant::now() < deadline => {
                    // SAFETY: async-signal-safe syscall.
                    unsafe { libc::sched_yield() };
                }
                Err(PushError::Full) => exit(CHILD_TIMEOUT),
                Err(_) => exit(CHILD_PUSH_ERROR),
            }
        }
    }
    exit(CHILD_OK)
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit skips the parent's atexit handlers and stdio buffers, as a forked child must.
    unsafe { libc::_exit(code) }
}

fn fork_producer(producer: &Producer, id: u32, count: u32) -> libc::pid_t {
    // SAFETY: the child only runs `child_produce`, which is async-signal-safe.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        child_produce(producer, id, count);
    }
    pid
}

/// Reaps `pid` if it exited; returns its wait status.
fn try_wait(pid: libc::pid_t) -> Option<i32> {
    let mut status = 0;
    // SAFETY: plain waitpid on our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    (r == pid).then_some(status)
}

#[test]
fn forked_processes_deliver_every_record_once_in_per_producer_order() {
    const CHILDREN: u32 = 4;
    const PER_CHILD: u32 = 5_000;
    let deadline = Instant::now() + Duration::from_secs(60);
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    let max = producer.max_payload();
    let mut consumer = Consumer::open(fd, opts(2_000)).unwrap();
    let mut children: Vec<_> = (0..CHILDREN)
        .map(|id| fork_producer(&producer, id, PER_CHILD))
        .collect();
    let mut order = OrderCheck::new(CHILDREN as usize);
    let mut payload = Vec::new();
    let mut seen = 0;
    while seen < CHILDREN * PER_CHILD || !children.is_empty() {
        check_deadline(deadline, "consumer");
        children.retain(|&pid| match try_wait(pid) {
            Some(status) => {
                assert!(
                    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == CHILD_OK,
                    "child {pid} ended with status {status:#x}"
                );
                false
            }
            None => true,
        });
        match consumer.next(&mut payload).unwrap() {
            Some(meta) => {
                let (id, counter) = check_payload(&meta, &payload, max);
                order.see(id, counter);
                seen += 1;
            }
            None => std::thread::yield_now(),
        }
    }
    assert_eq!(order.counts(), &[PER_CHILD; CHILDREN as usize]);
    assert!(consumer.next(&mut payload).unwrap().is_none());
    assert_eq!(consumer.counters().abandoned_records, 0);
}

#[test]
fn records_of_a_producer_killed_mid_stream_are_all_drained() {
    let deadline = Instant::now() + Duration::from_secs(60);
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    let max = producer.max_payload();
    let mut consumer = Consumer::open(fd, opts(100)).unwrap();
    let child = fork_producer(&producer, 0, u32::MAX);
    let mut order = OrderCheck::new(1);
    let mut payload = Vec::new();
    let mut seen = 0u32;
    while seen < 2_000 {
        check_deadline(deadline, "consumer before the kill");
        if let Some(meta) = consumer.next(&mut payload).unwrap() {
            let (id, counter) = check_payload(&meta, &payload, max);
            order.see(id, counter);
            seen += 1;
        }
    }
    // Let the child fill the ring, then kill it wherever it is (possibly mid-record).
    while producer.backlog_words() < producer.capacity_words() / 2 {
        check_deadline(deadline, "ring filling up");
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child, libc::SIGKILL) }, 0);
    let mut status = 0;
    // SAFETY: reaping our own child.
    assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
    assert!(libc::WIFSIGNALED(status));
    let before = seen;
    // The child is gone; everything it committed must still come out, in order, and a
    // reservation it left open is skipped after the stuck timeout.
    drain(&mut consumer, 300, deadline, |meta, p| {
        let (id, counter) = check_payload(meta, p, max);
        order.see(id, counter);
        seen += 1;
    });
    // Half a ring of backlog holds dozens of records (they average several hundred bytes).
    assert!(
        seen - before >= 20,
        "backlog drained after the death: {} records",
        seen - before
    );
    assert_eq!(producer.backlog_words(), 0, "nothing left behind");
    let abandoned = consumer.counters().abandoned_records;
    assert!(
        abandoned <= 1,
        "at most one record abandoned, got {abandoned}"
    );
}
