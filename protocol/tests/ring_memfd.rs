//! What `create_ring_memfd` hands out: a close-on-exec memfd of the normalized size, sealed so
//! that nobody (not even its creator) can shrink, grow or unseal it; and the largest record of
//! a default-size ring (64 KiB) round-trips.

mod ring_support;

use std::os::fd::{AsFd, AsRawFd};

use logtap_protocol::ring::layout::{HEADER_BYTES, MAX_RECORD_PAYLOAD};
use logtap_protocol::ring::{
    Consumer, ConsumerOptions, DEFAULT_RING_SIZE, MAX_RING_SIZE, MIN_RING_SIZE, Producer,
    RecordMeta, create_ring_memfd,
};
use ring_support::*;

fn size_of(fd: &impl AsFd) -> usize {
    RawRing::map(fd.as_fd()).len()
}

#[test]
fn sizes_are_clamped_and_rounded_to_a_power_of_two() {
    for (asked, data) in [
        (0, MIN_RING_SIZE),
        (MIN_RING_SIZE + 1, 2 * MIN_RING_SIZE),
        (DEFAULT_RING_SIZE, DEFAULT_RING_SIZE),
        (3 << 20, 4 << 20),
    ] {
        let fd = create_ring_memfd(asked, 1).unwrap();
        assert_eq!(size_of(&fd), HEADER_BYTES + data, "asked {asked}");
    }
    assert!(MAX_RING_SIZE.is_power_of_two());
}

#[test]
fn ring_is_sealed_and_close_on_exec() {
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
    let raw = fd.as_raw_fd();
    // SAFETY: plain fcntl/ftruncate queries on our own fd.
    let (seals, fd_flags, shrink, grow) = unsafe {
        (
            libc::fcntl(raw, libc::F_GET_SEALS),
            libc::fcntl(raw, libc::F_GETFD),
            libc::ftruncate(raw, 4096),
            libc::ftruncate(raw, 1 << 30),
        )
    };
    let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    assert_eq!(seals & want, want);
    assert_ne!(fd_flags & libc::FD_CLOEXEC, 0);
    assert_eq!(
        (shrink, grow),
        (-1, -1),
        "the seals hold against our own ftruncate"
    );
    // SAFETY: as above.
    let unseal = unsafe { libc::fcntl(raw, libc::F_ADD_SEALS, libc::F_SEAL_WRITE) };
    assert_eq!(
        unseal, -1,
        "F_SEAL_SEAL: no more seals (a write seal would break the agent)"
    );
}

#[test]
fn largest_record_of_a_default_ring_round_trips() {
    let fd = create_ring_memfd(DEFAULT_RING_SIZE, 1).unwrap();
    let producer = Producer::map(fd.as_fd()).unwrap();
    assert_eq!(producer.max_payload(), MAX_RECORD_PAYLOAD);
    let mut consumer = Consumer::open(fd, ConsumerOptions::default()).unwrap();
    assert_eq!(consumer.max_payload(), MAX_RECORD_PAYLOAD);
    let bytes: Vec<u8> = (0..MAX_RECORD_PAYLOAD)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let mut payload = Vec::new();
    for round in 0..40 {
        producer.try_push(&meta_for(0, round), &bytes).unwrap();
        let meta = consumer.next(&mut payload).unwrap().expect("the record");
        assert_eq!(
            meta,
            RecordMeta {
                pid: 1,
                ..meta_for(0, round)
            }
        );
        assert!(payload == bytes, "round {round}: payload intact");
    }
}

/// Memory the memfd behind `fd` has allocated (fstat's `st_blocks`, in 512-byte units).
fn allocated_bytes(fd: &impl AsFd) -> u64 {
    // SAFETY: an all-zero stat is valid; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: plain syscall on a live fd into our own buffer.
    assert_eq!(unsafe { libc::fstat(fd.as_fd().as_raw_fd(), &mut st) }, 0);
    st.st_blocks as u64 * 512
}

/// Since layout version 2: a new ring is all FREE without a byte of its data area written, so
/// creating even the largest ring allocates its header page only, and a writer allocates pages
/// as it reaches them (version 1 stamped every slot: the whole ring at creation).
#[test]
fn a_new_ring_allocates_its_header_page_only_and_pages_come_with_use() {
    let fd = create_ring_memfd(MAX_RING_SIZE, 1).unwrap();
    assert_eq!(allocated_bytes(&fd), HEADER_BYTES as u64);
    let producer = Producer::map(fd.as_fd()).unwrap();
    let meta = logtap_protocol::ring::RecordMeta::default();
    // 100 records of 16 + 64 bytes: 8,000 bytes, two data pages (version 2: 128-byte slots,
    // four pages).
    for _ in 0..100 {
        producer.try_push(&meta, &[7; 64]).unwrap();
    }
    assert_eq!(allocated_bytes(&fd), HEADER_BYTES as u64 + 2 * 4096);
    let mut consumer = Consumer::open(fd, ConsumerOptions::default()).unwrap();
    let mut payload = Vec::new();
    let mut read = 0;
    while consumer.next(&mut payload).unwrap().is_some() {
        read += 1;
    }
    assert_eq!(read, 100);
}
