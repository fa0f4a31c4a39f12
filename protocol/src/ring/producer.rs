//! The producer side of the ring: the interceptor's hook copies each tapped write into it.
//!
//! Constraints (Contract 1): the hook runs inside arbitrary programs, on any thread, possibly in
//! a signal handler that interrupted another push on the same thread. So `try_push` takes no
//! lock, allocates nothing, cannot panic on any input, and makes no system call except one raw
//! `write` to the wake eventfd when the consumer said it sleeps. A signal handler that
//! interrupts a push between its claim and its move of `head` moves `head` itself and claims
//! the room after it; one that interrupts between claim and commit simply claims after it; if
//! the handler never returns (siglongjmp), the interrupted reservation stays uncommitted and
//! the consumer skips it after its stuck timeout. The algorithm is `raw` (`core` only); this
//! file adds the mapping and the eventfd.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use super::error::RingError;
use super::layout::{Geometry, OFF_DROPPED_BYTES, OFF_DROPPED_RECORDS, OFF_HEAD, OFF_TAIL};
use super::mapping::Mapping;
use super::memfd;
use super::raw::{PushError, RawRing};
use super::record::{self, RecordMeta};

/// A mapped ring on the producing side. `Send + Sync`: share one per process among all threads.
///
/// Dropping it unmaps the ring; a thread or signal handler still inside `try_push` would then
/// touch unmapped memory. The interceptor therefore keeps its producer for the life of the
/// process (or of the fork generation) and never drops one that a hook may still use.
pub struct Producer {
    map: Mapping,
    geometry: Geometry,
    wake_fd: AtomicI32,
    /// The highest `tail` this process has read: producers check for room against it and only
    /// re-read the shared `tail` (a cache line the consumer writes after every release) when it
    /// says the ring is full. It is never ahead of the real tail, so the check stays safe.
    tail_seen: AtomicU64,
}

impl Producer {
    /// Maps the ring behind `fd` (normally from [`create_ring_memfd`](super::create_ring_memfd))
    /// and validates its header. The fd may be closed afterwards; the mapping stays.
    pub fn map(fd: BorrowedFd<'_>) -> Result<Producer, RingError> {
        let (map, geometry) = memfd::map_validated(fd)?;
        Ok(Producer {
            map,
            geometry,
            wake_fd: AtomicI32::new(-1),
            tail_seen: AtomicU64::new(0),
        })
    }

    #[inline(always)]
    fn raw(&self) -> RawRing<'_> {
        RawRing::new(self.map.words(), self.geometry)
    }

    /// Sets the eventfd written when the consumer sleeps (-1: none).
    pub fn set_wake_fd(&self, fd: i32) {
        self.wake_fd.store(fd, Ordering::Relaxed);
    }

    /// Largest payload one record may carry; split longer writes (with `RECORD_CONTINUED`).
    pub fn max_payload(&self) -> usize {
        self.geometry.max_payload
    }

    /// Size of the data area in positions (8-byte words).
    pub fn capacity_words(&self) -> u64 {
        self.geometry.word_count
    }

    /// Copies one record into the ring and wakes the consumer if it sleeps. `meta.pid` is not
    /// stored (the ring's creator pid stands for it); `meta.stream` must be ≤ 3 and
    /// `meta.file_index` ≤ 255 (else `Unencodable`).
    ///
    /// Lock-free and allocation-free; async-signal-safe. The caller's `errno` is preserved.
    ///
    /// Always inlined (with its parts), so that the hook's whole push is one function: left to
    /// itself the compiler kept four nested calls with their register spills, ≈ 5 ns of a
    /// ≈ 55 ns tap (A/B-measured, bench/RESULTS.md).
    #[inline(always)]
    pub fn try_push(&self, meta: &RecordMeta, payload: &[u8]) -> Result<(), PushError> {
        let (pos, reserved, len_words) = self.reserve(meta, payload.len())?;
        let raw = self.raw();
        raw.write_and_commit(pos, reserved, meta.time_ns, payload)?;
        self.wake_consumer();
        // The next push most likely starts right after ours, in words the consumer last wrote
        // (it cleared them a lap ago): ask for the line now, so that the transfer from the
        // consumer's core overlaps with the app's next system call.
        raw.prefetch_write(pos + len_words);
        Ok(())
    }

    /// Adds to the header's loss counters (records the caller dropped, e.g. after `Full`).
    pub fn note_dropped(&self, records: u64, bytes: u64) {
        self.map
            .u64_at(OFF_DROPPED_RECORDS)
            .fetch_add(records, Ordering::Relaxed);
        self.map
            .u64_at(OFF_DROPPED_BYTES)
            .fetch_add(bytes, Ordering::Relaxed);
    }

    /// Positions reserved but not yet released (`head - tail`, in words): a value that stays
    /// high tells the interceptor that nobody drains the ring any more.
    pub fn backlog_words(&self) -> u64 {
        let tail = self.map.u64_at(OFF_TAIL).load(Ordering::Relaxed);
        let head = self.map.u64_at(OFF_HEAD).load(Ordering::Relaxed);
        head.saturating_sub(tail)
    }

    /// The consumer's progress: a value that changes whenever `tail` moves or the consumer's
    /// heartbeat ticks (a holding consumer — the agent — beats it while it makes progress, even
    /// when no space is released yet: records wait for an acknowledgement). A writer waiting
    /// for room tells a live agent from a stopped, dead, absent or stuck one by it. Equal to
    /// `tail` for a consumer that never beats.
    pub fn consumed(&self) -> u64 {
        let tail = self.map.u64_at(OFF_TAIL).load(Ordering::Acquire);
        let beats = self
            .map
            .u64_at(super::layout::OFF_HEARTBEAT)
            .load(Ordering::Relaxed);
        // Positions stay below 2^60 and move by at most a ring at a time: no tail move can
        // cancel a beat.
        tail.wrapping_add(beats << 40)
    }

    /// Wakes the consumer if it announced sleep (one eventfd write then, nothing otherwise):
    /// for a writer about to wait for room.
    pub fn wake(&self) {
        self.wake_consumer();
    }

    /// Test hook: reserves the room of a `payload_len`-byte record without committing it, as a
    /// writer killed (or siglongjmp'd away) between reserve and commit leaves it. Returns the
    /// position (pass it to [`Producer::commit_for_test`] with the same record).
    #[doc(hidden)]
    pub fn reserve_for_test(
        &self,
        meta: &RecordMeta,
        payload_len: usize,
    ) -> Result<u64, PushError> {
        self.reserve(meta, payload_len).map(|(pos, _, _)| pos)
    }

    /// Test hook: completes a reservation made by [`Producer::reserve_for_test`] with the same
    /// `meta` and payload length.
    #[doc(hidden)]
    pub fn commit_for_test(
        &self,
        pos: u64,
        meta: &RecordMeta,
        payload: &[u8],
    ) -> Result<(), PushError> {
        let ctl = record::control(meta, payload.len())?;
        let reserved = super::layout::encode_control(&ctl, pos, self.geometry.shift);
        self.raw()
            .write_and_commit(pos, reserved, meta.time_ns, payload)?;
        self.wake_consumer();
        Ok(())
    }

    /// Claims the room of a record (see `RawRing::reserve`): its position, RESERVED word and
    /// length in words.
    #[inline(always)]
    fn reserve(&self, meta: &RecordMeta, len: usize) -> Result<(u64, u64, u64), PushError> {
        let max = self.geometry.max_payload;
        if len > max {
            return Err(PushError::TooLarge { len, max });
        }
        let ctl = record::control(meta, len)?;
        let (pos, reserved) = self.raw().reserve(&ctl, &self.tail_seen)?;
        Ok((pos, reserved, ctl.len_words))
    }

    /// Wakes a sleeping consumer (see `RawRing::take_wake`): one raw eventfd write.
    #[inline(always)]
    fn wake_consumer(&self) {
        if !self.raw().take_wake() {
            return;
        }
        let fd = self.wake_fd.load(Ordering::Relaxed);
        if fd < 0 {
            return;
        }
        let one: u64 = 1;
        // SAFETY: reading and restoring errno through the thread's own errno location. The
        // write is a raw syscall because the interceptor exports its own `write` symbol: the
        // PLT `write` would re-enter the hook. `one` outlives the call; the fd is ours.
        unsafe {
            let errno = libc::__errno_location();
            let saved = *errno;
            libc::syscall(libc::SYS_write, fd, (&raw const one).cast::<u8>(), 8usize);
            *errno = saved;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;
    use crate::ring::layout::{self, WORD_BYTES};
    use crate::ring::{Consumer, ConsumerOptions, MIN_RING_SIZE, create_ring_memfd};

    #[test]
    fn producer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Producer>();
    }

    #[test]
    fn full_ring_frees_up_once_the_consumer_moves_the_tail() {
        let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
        let producer = Producer::map(fd.as_fd()).unwrap();
        let mut consumer = Consumer::open(fd, ConsumerOptions::default()).unwrap();
        let meta = RecordMeta::default();
        let mut pushed = 0;
        while producer.try_push(&meta, &[1; 8]).is_ok() {
            pushed += 1;
        }
        // 3 words a record, and the last word of the area a PAD.
        assert_eq!(pushed, producer.capacity_words() / 3);
        assert_eq!(producer.try_push(&meta, &[1; 8]), Err(PushError::Full));
        assert_eq!(producer.consumed(), 0);
        let mut payload = Vec::new();
        assert!(consumer.next(&mut payload).unwrap().is_some());
        assert_eq!(
            producer.consumed(),
            3,
            "the tail moved by the record's 3 words"
        );
        // The producer's cached tail is stale; the push must refresh it and succeed (after a
        // PAD over the last words of the area).
        producer.try_push(&meta, &[2; 8]).unwrap();
        assert_eq!(producer.try_push(&meta, &[3; 8]), Err(PushError::Full));
    }

    /// The figure issue 14 improves: how many 100-byte lines (101 bytes with the newline) a
    /// default ring holds before it is full, with no consumer. Printed for the report
    /// (`cargo nextest run -p logtap-protocol -E 'test(default_ring_capacity)' --no-capture`).
    #[test]
    fn default_ring_capacity_in_100_byte_lines() {
        let fd = create_ring_memfd(crate::ring::DEFAULT_RING_SIZE, 1).unwrap();
        let producer = Producer::map(fd.as_fd()).unwrap();
        let line = [b'x'; 101];
        let mut lines = 0u64;
        while producer.try_push(&RecordMeta::default(), &line).is_ok() {
            lines += 1;
        }
        let ring_bytes_per_line = crate::ring::DEFAULT_RING_SIZE as u64 / lines;
        println!(
            "default ring ({} bytes): {lines} lines of 100 bytes + newline, {ring_bytes_per_line} \
             ring bytes a line",
            crate::ring::DEFAULT_RING_SIZE
        );
        // Version 3: 16 header bytes + 104 = 120 bytes a line.
        assert_eq!(layout::words_for(101) * WORD_BYTES as u64, 120);
        assert_eq!(lines, producer.capacity_words() / 15);
        // Version 2 held 4,096 (two 128-byte slots a line).
        assert!(lines >= 2 * 4096, "{lines} lines");
    }

    #[test]
    fn note_dropped_adds_to_the_header_counters() {
        let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
        let producer = Producer::map(fd.as_fd()).unwrap();
        producer.note_dropped(2, 100);
        producer.note_dropped(1, 5);
        let consumer = Consumer::open(fd, ConsumerOptions::default()).unwrap();
        let counters = consumer.counters();
        assert_eq!((counters.dropped_records, counters.dropped_bytes), (3, 105));
    }
}
