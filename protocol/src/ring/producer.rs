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
use std::sync::atomic::{AtomicI32, Ordering, fence};

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
    pub fn try_push(&self, meta: &RecordMeta, payload: &[u8]) -> Result<(), PushError> {
        let pos = self.reserve(payload.len())?;
        self.write_and_commit(pos, meta, payload)?;
        self.wake_consumer();
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
    fn reserve(&self, len: usize) -> Result<u64, PushError> {
        let max = self.geometry.max_payload;
        if len > max {
            return Err(PushError::TooLarge { len, max });
        }
        let k = layout::slots_for(len) as u64;
        let head = self.map.u64_at(OFF_HEAD);
        let tail = self.map.u64_at(OFF_TAIL);
        let mut h = head.load(Ordering::Relaxed);
        for _ in 0..MAX_RESERVE_ATTEMPTS {
            // Acquire pairs with the consumer's Release store of `tail`: once we see the tail
            // past a slot's previous occupant, the consumer has finished reading it.
            let t = tail.load(Ordering::Acquire);
            if h > MAX_POSITION {
                return Err(PushError::Full);
            }
            // A stale `h` below `t` saturates to 0; the CAS below then fails and reloads.
            if h.saturating_sub(t) + k > self.geometry.slot_count {
                return Err(PushError::Full);
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
            if self.map.u64_at(off).load(Ordering::Acquire) != layout::free(p) {
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
                    layout::free(p),
                    layout::cont(p),
                    Ordering::Release,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                return Err(PushError::Abandoned);
            }
        }
        let first = self.map.u64_at(self.geometry.slot_offset(pos));
        first
            .compare_exchange(
                layout::free(pos),
                layout::first(pos),
                Ordering::Release,
                Ordering::Relaxed,
            )
            .map(|_| ())
            .map_err(|_| PushError::Abandoned)
    }

    /// Wakes a sleeping consumer. The SeqCst fence pairs with the one in
    /// `Consumer::prepare_sleep` (Dekker): either the consumer sees our commit before it
    /// sleeps, or we see its `consumer_sleeping` flag and write the eventfd.
    fn wake_consumer(&self) {
        fence(Ordering::SeqCst);
        let sleeping = self.map.u32_at(OFF_CONSUMER_SLEEPING);
        if sleeping.load(Ordering::Relaxed) == 0 || sleeping.swap(0, Ordering::SeqCst) != 1 {
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
