//! The consumer side of the ring: the agent drains one peer's ring with it.
//!
//! The ring is hostile memory: another process may write any byte at any moment. So the consumer
//! keeps its own copy of everything it relies on (geometry, its position), reads the shared bytes
//! only through bounds-checked atomic accesses, copies a record out before it looks at it,
//! re-checks the record's stamp after the copy (seqlock-style), and reports anything that breaks
//! the protocol as [`RingError::Inconsistent`] — never a panic, never an out-of-bounds read.
//!
//! Stuck reservations: a writer may reserve slots and never commit them (killed thread, a signal
//! handler that siglongjmp'd out of the hook). When the slot at `tail` stays reserved but
//! uncommitted, the consumer notes the time and the `head` it sees; once `stuck_timeout` has
//! passed, every slot below that `head` that is still uncommitted has been reserved for at least
//! the timeout, and is skipped (counted in `abandoned_slots`), while committed records in between
//! are delivered in order. Continuation slots whose first slot was skipped are freed the same way.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::{Duration, Instant};

use super::error::RingError;
use super::layout::{
    self, CONT_SLOT_PAYLOAD, FIRST_SLOT_PAYLOAD, Geometry, MAX_POSITION, OFF_ABANDONED_SLOTS,
    OFF_CONSUMER_SLEEPING, OFF_CREATOR_PID, OFF_DROPPED_BYTES, OFF_DROPPED_RECORDS, OFF_HEAD,
    OFF_TAIL, RECORD_HEADER_BYTES, STAMP_BYTES,
};
use super::mapping::Mapping;
use super::memfd;
use super::record::{self, RecordMeta};

/// Tuning of a [`Consumer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerOptions {
    /// How long a reservation may stay uncommitted at the consumer's position before it is
    /// skipped. The agent should poll at least this often while the ring has a backlog (a
    /// stuck writer sends no wake-up).
    pub stuck_timeout: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            stuck_timeout: Duration::from_secs(2),
        }
    }
}

/// Loss counters kept in the ring's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingCounters {
    /// Records producers dropped (ring full), as reported with `Producer::note_dropped`.
    pub dropped_records: u64,
    /// Bytes of those records.
    pub dropped_bytes: u64,
    /// Slots the consumer skipped because their reservation was never committed.
    pub abandoned_slots: u64,
}

/// Since when the slot at the consumer's position has been seen reserved but uncommitted, and
/// the `head` seen at that moment: every slot below it was reserved before `since`.
#[derive(Debug, Clone, Copy)]
struct Stuck {
    since: Instant,
    head_then: u64,
}

/// A mapped ring on the consuming side; owns the mapping and the fd.
pub struct Consumer {
    map: Mapping,
    geometry: Geometry,
    _fd: OwnedFd,
    opts: ConsumerOptions,
    /// Our position; the shared `tail` is a copy for the producers, never read back.
    tail: u64,
    creator_pid: u32,
    stuck: Option<Stuck>,
}

impl Consumer {
    /// Opens a ring received from a peer: checks its seals (`F_SEAL_SHRINK | F_SEAL_GROW`), its
    /// size (fstat), magic, version and geometry, and resumes at the `tail` stored in it.
    pub fn open(fd: OwnedFd, opts: ConsumerOptions) -> Result<Consumer, RingError> {
        memfd::check_seals(fd.as_fd())?;
        let (map, geometry) = memfd::map_validated(fd.as_fd())?;
        let tail = map.u64_at(OFF_TAIL).load(Ordering::Acquire);
        if tail > MAX_POSITION {
            return Err(RingError::BadHeader {
                reason: "tail position out of range",
            });
        }
        let creator_pid = u32::from_le(map.u32_at(OFF_CREATOR_PID).load(Ordering::Relaxed));
        Ok(Consumer {
            map,
            geometry,
            _fd: fd,
            opts,
            tail,
            creator_pid,
            stuck: None,
        })
    }

    /// The next committed record: its metadata, with its bytes in `payload` (cleared first).
    /// `Ok(None)`: nothing to read now (empty, or the next record is still being written).
    /// `Err`: the ring is inconsistent; stop using it.
    pub fn next(&mut self, payload: &mut Vec<u8>) -> Result<Option<RecordMeta>, RingError> {
        payload.clear();
        self.clear_sleeping();
        // Each round either returns or moves `tail` on by at least one slot, except when a
        // stamp changes under a CAS (a racing writer); the bound keeps a peer that flips stamps
        // for ever from holding us here.
        for _ in 0..=self.geometry.slot_count {
            let pos = self.tail;
            if pos > MAX_POSITION {
                return Err(RingError::Inconsistent {
                    pos,
                    reason: "consumer position out of range",
                });
            }
            let stamp = self.stamp(pos).load(Ordering::Acquire);
            if stamp == layout::first(pos) {
                return self.read_record(pos, payload).map(Some);
            } else if stamp == layout::free(pos) {
                if !self.skip_if_stuck(pos)? {
                    return Ok(None);
                }
            } else if stamp == layout::cont(pos) {
                // A continuation at our position: its first slot was skipped (uncommitted past
                // the timeout) and its writer committed this part later. Free it.
                self.free_abandoned(pos, stamp);
            } else if stamp == layout::free(pos + self.geometry.slot_count) {
                // Already freed for the next round, but `tail` was not moved past it: a previous
                // consumer (an agent that was killed) stopped between freeing a record's slots
                // (first slot first) and publishing `tail`. The record was delivered; move on.
                // No producer can hold this slot yet: none sees room beyond the old `tail`.
                self.advance(pos + 1);
            } else {
                return Err(RingError::Inconsistent {
                    pos,
                    reason: "slot stamp is in no valid state for the consumer position",
                });
            }
        }
        Ok(None)
    }

    /// Announces that the consumer is about to sleep on the wake eventfd. Returns `true` if it
    /// may sleep (nothing committed at its position: producers will write the eventfd), `false`
    /// if there is work and `next` must be called again instead.
    pub fn prepare_sleep(&self) -> bool {
        let sleeping = self.map.u32_at(OFF_CONSUMER_SLEEPING);
        sleeping.store(1, Ordering::SeqCst);
        // Pairs with the producer's SeqCst commit and flag load: see `Producer::wake_consumer`.
        fence(Ordering::SeqCst);
        let pos = self.tail;
        let idle =
            self.stamp(pos).load(Ordering::SeqCst) == layout::free(pos) && !self.stuck_expired(pos);
        if !idle {
            sleeping.store(0, Ordering::Relaxed);
        }
        idle
    }

    /// The loss counters in the ring's header.
    pub fn counters(&self) -> RingCounters {
        let read = |off| self.map.u64_at(off).load(Ordering::Relaxed);
        RingCounters {
            dropped_records: read(OFF_DROPPED_RECORDS),
            dropped_bytes: read(OFF_DROPPED_BYTES),
            abandoned_slots: read(OFF_ABANDONED_SLOTS),
        }
    }

    /// The loss counters as a consumer of this ring last reported them
    /// ([`Consumer::set_reported`]); zero for a ring no consumer reported from. The difference
    /// to [`Consumer::counters`] is what is still to be reported. The fields live in the shared
    /// header, so a hostile producer may change them: callers subtract with saturation.
    pub fn reported(&self) -> RingCounters {
        let read = |off| self.map.u64_at(off).load(Ordering::Relaxed);
        RingCounters {
            dropped_records: read(layout::OFF_REPORTED_RECORDS),
            dropped_bytes: read(layout::OFF_REPORTED_BYTES),
            abandoned_slots: read(layout::OFF_REPORTED_ABANDONED),
        }
    }

    /// Records that the counters `c` (from [`Consumer::counters`]) have been reported.
    pub fn set_reported(&self, c: &RingCounters) {
        let write = |off, v| self.map.u64_at(off).store(v, Ordering::Relaxed);
        write(layout::OFF_REPORTED_RECORDS, c.dropped_records);
        write(layout::OFF_REPORTED_BYTES, c.dropped_bytes);
        write(layout::OFF_REPORTED_ABANDONED, c.abandoned_slots);
    }

    /// Pid of the process that created the ring (from its header, read at open).
    pub fn creator_pid(&self) -> u32 {
        self.creator_pid
    }

    /// Slots reserved by producers and not consumed yet (as far as the header tells).
    pub fn backlog_slots(&self) -> u64 {
        let head = self.map.u64_at(OFF_HEAD).load(Ordering::Relaxed);
        head.saturating_sub(self.tail)
    }

    /// Largest payload of one record in this ring.
    pub fn max_payload(&self) -> usize {
        self.geometry.max_payload
    }

    /// Copies out, checks and frees the record committed at `pos`.
    fn read_record(&mut self, pos: u64, payload: &mut Vec<u8>) -> Result<RecordMeta, RingError> {
        let inconsistent = |reason| Err(RingError::Inconsistent { pos, reason });
        let off = self.geometry.slot_offset(pos);
        let words = [0, 1, 2].map(|i| {
            self.map
                .u64_at(off + STAMP_BYTES + i * 8)
                .load(Ordering::Relaxed)
        });
        let (meta, len) = record::decode(words);
        let len = len as usize;
        if len > self.geometry.max_payload {
            return inconsistent("record length exceeds the ring's largest record");
        }
        let k = layout::slots_for(len) as u64;
        // A one-slot record is proven by its own stamp; only a longer one needs `head` (a
        // cache line producers keep writing, so the common case does not touch it).
        if k > 1 && pos + k > self.map.u64_at(OFF_HEAD).load(Ordering::Acquire) {
            return inconsistent("record extends past the slots producers reserved");
        }
        for j in 1..k {
            if self.stamp(pos + j).load(Ordering::Acquire) != layout::cont(pos + j) {
                return inconsistent("continuation slot not committed with its record");
            }
        }
        payload.reserve(len);
        let first_part = len.min(FIRST_SLOT_PAYLOAD);
        self.map
            .read_bytes(off + STAMP_BYTES + RECORD_HEADER_BYTES, first_part, payload);
        let mut left = len - first_part;
        for j in 1..k {
            let n = left.min(CONT_SLOT_PAYLOAD);
            let slot = self.geometry.slot_offset(pos + j);
            self.map.read_bytes(slot + STAMP_BYTES, n, payload);
            left -= n;
        }
        // Seqlock check: the data loads above happen before this stamp load.
        fence(Ordering::Acquire);
        if self.stamp(pos).load(Ordering::Relaxed) != layout::first(pos) {
            payload.clear();
            return inconsistent("record changed while it was read");
        }
        for j in 0..k {
            self.stamp(pos + j).store(
                layout::free(pos + j + self.geometry.slot_count),
                Ordering::Release,
            );
        }
        self.advance(pos + k);
        Ok(meta)
    }

    /// The slot at `pos` is free-for-`pos`. Returns `Ok(false)` if there is nothing to do now,
    /// `Ok(true)` if the caller should look at `tail` again (a stuck slot was skipped, or the
    /// slot changed under our CAS).
    fn skip_if_stuck(&mut self, pos: u64) -> Result<bool, RingError> {
        let head = self.map.u64_at(OFF_HEAD).load(Ordering::Acquire);
        if head <= pos {
            self.stuck = None;
            return Ok(false);
        }
        if head - pos > self.geometry.slot_count {
            return Err(RingError::Inconsistent {
                pos,
                reason: "head is more than one ring ahead of the consumer",
            });
        }
        match self.stuck {
            Some(stuck) if pos < stuck.head_then => {
                if stuck.since.elapsed() < self.opts.stuck_timeout {
                    return Ok(false);
                }
                self.free_abandoned(pos, layout::free(pos));
                Ok(true)
            }
            _ => {
                self.stuck = Some(Stuck {
                    since: Instant::now(),
                    head_then: head,
                });
                Ok(false)
            }
        }
    }

    /// Whether the slot at `pos` is reserved and its stuck timeout has passed.
    fn stuck_expired(&self, pos: u64) -> bool {
        self.stuck.is_some_and(|stuck| {
            pos < stuck.head_then && stuck.since.elapsed() >= self.opts.stuck_timeout
        })
    }

    /// Frees the slot at `pos` (whose stamp we saw as `seen`) without delivering it, counting it
    /// as abandoned. The CAS makes a writer that commits at this very moment fail its own CAS
    /// (it then reports `PushError::Abandoned`), or makes ours fail: then the caller re-reads.
    fn free_abandoned(&mut self, pos: u64, seen: u64) {
        let next_round = layout::free(pos + self.geometry.slot_count);
        if self
            .stamp(pos)
            .compare_exchange(seen, next_round, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.map
                .u64_at(OFF_ABANDONED_SLOTS)
                .fetch_add(1, Ordering::Relaxed);
            self.advance(pos + 1);
        }
    }

    /// Moves our position to `tail` and publishes it (Release: our reads of the freed slots
    /// happen before a producer may reuse them).
    fn advance(&mut self, tail: u64) {
        self.tail = tail;
        self.map.u64_at(OFF_TAIL).store(tail, Ordering::Release);
    }

    /// Resets `consumer_sleeping` if a timeout (not a producer) ended our sleep, so producers do
    /// not pay for a useless eventfd write.
    fn clear_sleeping(&self) {
        let sleeping = self.map.u32_at(OFF_CONSUMER_SLEEPING);
        if sleeping.load(Ordering::Relaxed) != 0 {
            sleeping.store(0, Ordering::Relaxed);
        }
    }

    /// The stamp of the slot holding position `pos`.
    #[inline]
    fn stamp(&self, pos: u64) -> &AtomicU64 {
        self.map.u64_at(self.geometry.slot_offset(pos))
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;
    use crate::ring::{MIN_RING_SIZE, Producer, create_ring_memfd};

    #[test]
    fn consumer_is_send() {
        fn check<T: Send>() {}
        check::<Consumer>();
    }

    #[test]
    fn sleeping_flag_is_set_by_prepare_sleep_and_cleared_by_next() {
        let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
        let producer = Producer::map(fd.as_fd()).unwrap();
        let mut consumer = Consumer::open(fd, ConsumerOptions::default()).unwrap();
        let flag = |c: &Consumer| c.map.u32_at(OFF_CONSUMER_SLEEPING).load(Ordering::SeqCst);
        assert!(consumer.prepare_sleep());
        assert_eq!(flag(&consumer), 1);
        // Woken by a timeout rather than a producer: `next` resets the flag.
        assert!(consumer.next(&mut Vec::new()).unwrap().is_none());
        assert_eq!(flag(&consumer), 0);
        // A committed record at the tail: no sleep, and the flag is withdrawn.
        producer.try_push(&RecordMeta::default(), b"x").unwrap();
        assert!(!consumer.prepare_sleep());
        assert_eq!(flag(&consumer), 0);
    }

    #[test]
    fn reserved_but_empty_ring_reports_its_backlog() {
        let fd = create_ring_memfd(MIN_RING_SIZE, 9).unwrap();
        let producer = Producer::map(fd.as_fd()).unwrap();
        let mut consumer = Consumer::open(fd, ConsumerOptions::default()).unwrap();
        producer.reserve_for_test(500).unwrap();
        assert_eq!(consumer.backlog_slots(), layout::slots_for(500) as u64);
        assert!(consumer.next(&mut Vec::new()).unwrap().is_none());
        assert!(
            consumer.prepare_sleep(),
            "a pending reservation alone does not keep us awake"
        );
        assert_eq!(consumer.creator_pid(), 9);
    }
}
