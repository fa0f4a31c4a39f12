//! The producer side of the ring: the interceptor's hook copies each tapped write into it.
//!
//! Constraints (Contract 1): the hook runs inside arbitrary programs, on any thread, possibly in
//! a signal handler that interrupted another push on the same thread. So `try_push` takes no
//! lock, allocates nothing, cannot panic on any input, and makes no system call except one raw
//! `write` to the wake eventfd when the consumer said it sleeps. A signal handler that
//! interrupts a push between reservation and commit simply reserves the slots after it; if the
//! handler never returns (siglongjmp), the interrupted reservation stays uncommitted and the
//! consumer skips it after its stuck timeout.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use super::error::{PushError, RingError};
use super::layout::{
    self, CONT_SLOT_PAYLOAD, FIRST_SLOT_PAYLOAD, Geometry, MAX_POSITION, OFF_CONSUMER_SLEEPING,
    OFF_DROPPED_BYTES, OFF_DROPPED_RECORDS, OFF_HEAD, OFF_TAIL, RECORD_HEADER_BYTES, STAMP_BYTES,
};
use super::mapping::Mapping;
use super::memfd;
use super::record::{self, RecordMeta};

/// CAS attempts on `head` before a push gives up and reports `Full`. Every failed attempt means
/// another writer reserved, so the ring is making progress; the bound only keeps a writer from
/// spinning for ever under extreme contention (the caller then drops and counts, as when full).
const MAX_RESERVE_ATTEMPTS: u32 = 1024;

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
    /// re-read the shared `tail` (a cache line the consumer writes after every record) when it
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

    /// Sets the eventfd written when the consumer sleeps (-1: none).
    pub fn set_wake_fd(&self, fd: i32) {
        self.wake_fd.store(fd, Ordering::Relaxed);
    }

    /// Largest payload one record may carry; split longer writes (with `RECORD_CONTINUED`).
    pub fn max_payload(&self) -> usize {
        self.geometry.max_payload
    }

    /// Number of slots in the ring.
    pub fn slot_count(&self) -> u64 {
        self.geometry.slot_count
    }

    /// Copies one record into the ring and wakes the consumer if it sleeps.
    ///
    /// Lock-free and allocation-free; async-signal-safe. The caller's `errno` is preserved.
    ///
    /// Always inlined (with its parts), so that the hook's whole push is one function: left to
    /// itself the compiler kept four nested calls with their register spills, ≈ 5 ns of a
    /// ≈ 55 ns tap (A/B-measured, bench/RESULTS.md).
    #[inline(always)]
    pub fn try_push(&self, meta: &RecordMeta, payload: &[u8]) -> Result<(), PushError> {
        let pos = self.reserve(payload.len())?;
        self.write_and_commit(pos, meta, payload)?;
        self.wake_consumer();
        // The next push most likely takes the slot after ours, last written by the consumer
        // (it stamped it FREE a lap ago): ask for its two cache lines now, so that the
        // transfer from the consumer's core overlaps with the app's next system call instead
        // of stalling the next push's stamp check and commit.
        let next = self
            .geometry
            .slot_offset(pos + layout::slots_for(payload.len()) as u64);
        self.map.prefetch_write(next);
        self.map.prefetch_write(next + 64);
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

    /// Slots reserved but not yet consumed (`head - tail`): a value that stays high tells the
    /// interceptor that nobody drains the ring any more.
    pub fn backlog_slots(&self) -> u64 {
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

    /// Test hook: reserves the slots of a `payload_len`-byte record without committing them,
    /// as a writer killed (or siglongjmp'd away) between reserve and commit leaves them.
    #[doc(hidden)]
    pub fn reserve_for_test(&self, payload_len: usize) -> Result<u64, PushError> {
        self.reserve(payload_len)
    }

    /// Test hook: completes a reservation made by [`Producer::reserve_for_test`].
    #[doc(hidden)]
    pub fn commit_for_test(
        &self,
        pos: u64,
        meta: &RecordMeta,
        payload: &[u8],
    ) -> Result<(), PushError> {
        self.write_and_commit(pos, meta, payload)?;
        self.wake_consumer();
        Ok(())
    }

    /// Claims `slots_for(len)` consecutive positions by CAS on `head`; returns the first.
    #[inline(always)]
    fn reserve(&self, len: usize) -> Result<u64, PushError> {
        let max = self.geometry.max_payload;
        if len > max {
            return Err(PushError::TooLarge { len, max });
        }
        let k = layout::slots_for(len) as u64;
        let head = self.map.u64_at(OFF_HEAD);
        let tail = self.map.u64_at(OFF_TAIL);
        let mut h = head.load(Ordering::Relaxed);
        // Acquire (here and on the refresh below): the consumer frees a slot (stamp FREE for
        // its next position) before it publishes the tail with Release, so a tail read through
        // this chain guarantees the stamp check in `write_and_commit` sees the freed stamp.
        let mut t = self.tail_seen.load(Ordering::Acquire);
        for _ in 0..MAX_RESERVE_ATTEMPTS {
            if h > MAX_POSITION {
                return Err(PushError::Full);
            }
            // A stale `h` below `t` saturates to 0; the CAS below then fails and reloads.
            if h.saturating_sub(t) + k > self.geometry.slot_count {
                // Our copy of the tail may be old: refresh it before calling the ring full.
                t = tail.load(Ordering::Acquire);
                // Only write our shared copy when it moves (writers spinning on a full ring
                // would otherwise fight over its cache line).
                if t > self.tail_seen.load(Ordering::Relaxed) {
                    self.tail_seen.fetch_max(t, Ordering::AcqRel);
                }
                if h.saturating_sub(t) + k > self.geometry.slot_count {
                    return Err(PushError::Full);
                }
            }
            match head.compare_exchange_weak(h, h + k, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(h),
                Err(current) => h = current,
            }
        }
        Err(PushError::Full)
    }

    /// Writes the record into its reserved slots, then commits: continuation stamps first, the
    /// first slot's stamp last (Release), so a consumer that sees the first committed sees all.
    #[inline(always)]
    fn write_and_commit(
        &self,
        pos: u64,
        meta: &RecordMeta,
        payload: &[u8],
    ) -> Result<(), PushError> {
        let len = payload.len();
        let k = layout::slots_for(len) as u64;
        let (head_part, rest) = payload.split_at(len.min(FIRST_SLOT_PAYLOAD));
        let mut chunks = rest.chunks(CONT_SLOT_PAYLOAD);
        for j in 0..k {
            let p = pos + j;
            let off = self.geometry.slot_offset(p);
            // If the consumer already skipped this slot (we were descheduled past its stuck
            // timeout), the slot may belong to a newer writer now: do not touch its data.
            if self.map.u64_at(off).load(Ordering::Acquire) != self.geometry.free(p) {
                return Err(PushError::Abandoned);
            }
            if j == 0 {
                let words = record::encode(meta, len as u32);
                for (i, w) in words.iter().enumerate() {
                    self.map
                        .u64_at(off + STAMP_BYTES + i * 8)
                        .store(*w, Ordering::Relaxed);
                }
                self.map
                    .write_bytes(off + STAMP_BYTES + RECORD_HEADER_BYTES, head_part);
            } else if let Some(chunk) = chunks.next() {
                self.map.write_bytes(off + STAMP_BYTES, chunk);
            }
        }
        for j in 1..k {
            let p = pos + j;
            let stamp = self.map.u64_at(self.geometry.slot_offset(p));
            if stamp
                .compare_exchange(
                    self.geometry.free(p),
                    self.geometry.cont(p),
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                return Err(PushError::Abandoned);
            }
        }
        // SeqCst (not only Release): it is the store half of the Dekker handshake with
        // `Consumer::prepare_sleep`, completed by the SeqCst load in `wake_consumer`.
        let first = self.map.u64_at(self.geometry.slot_offset(pos));
        first
            .compare_exchange(
                self.geometry.free(pos),
                self.geometry.first(pos),
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .map(|_| ())
            .map_err(|_| PushError::Abandoned)
    }

    /// Wakes a sleeping consumer. Our SeqCst commit CAS and SeqCst load of the flag pair with
    /// the consumer's SeqCst store of the flag and load of the stamp (Dekker): either the
    /// consumer sees our commit before it sleeps, or we see its flag and write the eventfd. On
    /// x86 the CAS is already a full barrier, so this costs no extra fence on the hot path.
    #[inline(always)]
    fn wake_consumer(&self) {
        let sleeping = self.map.u32_at(OFF_CONSUMER_SLEEPING);
        if sleeping.load(Ordering::SeqCst) == 0 || sleeping.swap(0, Ordering::SeqCst) != 1 {
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
        assert_eq!(pushed, producer.slot_count());
        assert_eq!(producer.try_push(&meta, &[1; 8]), Err(PushError::Full));
        assert_eq!(producer.backlog_slots(), producer.slot_count());
        assert_eq!(producer.consumed(), 0);
        let mut payload = Vec::new();
        assert!(consumer.next(&mut payload).unwrap().is_some());
        assert_eq!(
            producer.consumed(),
            1,
            "the tail moved by the record's one slot"
        );
        // The producer's cached tail is stale; the push must refresh it and succeed.
        producer.try_push(&meta, &[2; 8]).unwrap();
        assert_eq!(producer.try_push(&meta, &[3; 8]), Err(PushError::Full));
    }

    /// The figure issue 14 improves: how many 100-byte lines (101 bytes with the newline) a
    /// default ring holds before it is full, with no consumer. Printed for bench/RESULTS.md
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
        // Version 1: two 128-byte slots a line (96 bytes in the first, the rest in the second).
        assert_eq!(ring_bytes_per_line, 2 * layout::SLOT_BYTES as u64);
        assert_eq!(lines, producer.slot_count() / 2);
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
