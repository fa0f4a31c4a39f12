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
//!
//! Two ways to give space back to the producers:
//! - [`Consumer::open`]: the shared `tail` follows the read position — a record's slots are
//!   free for producers as soon as it was copied out (tests, benches, simple readers);
//! - [`Consumer::open_holding`]: the read position is the consumer's own, and `tail` moves only
//!   when the owner of the records says they are safe, through the [`Release`] handle. Records
//!   read but not released stay committed in the ring: a consumer that dies before releasing
//!   them is replaced by one that resumes at `tail` and reads them again (at least once).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex};
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

/// A mapped ring on the consuming side; owns the fd and (with its [`Release`] handles) the
/// mapping.
pub struct Consumer {
    map: Arc<Mapping>,
    geometry: Geometry,
    _fd: OwnedFd,
    opts: ConsumerOptions,
    /// Our read position: every slot below it has been read (or skipped). Private: the shared
    /// `tail` is what producers may reuse, and it is never read back while we run.
    read: u64,
    /// Holding mode: the state shared with the [`Release`] handles. `None`: `tail` follows
    /// `read`.
    hold: Option<Arc<HoldState>>,
    creator_pid: u32,
    stuck: Option<Stuck>,
    /// The read position a previous holding consumer published (see [`Consumer::reread_end`]).
    reread_end: u64,
}

/// What a holding consumer shares with its [`Release`] handles.
#[derive(Debug)]
struct HoldState {
    /// The consumer's read position (published after every move): nothing at or above it may
    /// be released, whatever a caller asks.
    read: AtomicU64,
    /// The shared `tail` as we last stored it (changed only under `lock`).
    released: AtomicU64,
    /// Serialises releases.
    lock: Mutex<()>,
}

/// The handle that gives a holding consumer's slots back to the producers
/// ([`Consumer::open_holding`]). Cheap to clone, `Send + Sync`, and it keeps the ring mapped
/// (so releases may still come after the [`Consumer`] is dropped, e.g. once the last chunk of a
/// process that exited is acknowledged).
#[derive(Clone)]
pub struct Release {
    map: Arc<Mapping>,
    geometry: Geometry,
    state: Arc<HoldState>,
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Release")
            .field("released", &self.released())
            .finish()
    }
}

impl Release {
    /// Declares every record below position `pos` safe: their slots become free for producers
    /// (stamp `FREE(p + N)`) and `tail = pos` is published (Release). Positions the consumer has
    /// not read yet are never released (`pos` is clamped to its read position); a `pos` at or
    /// below the current `tail` does nothing. Costs one store per slot released.
    pub fn release(&self, pos: u64) {
        let pos = pos.min(self.state.read.load(Ordering::Acquire));
        let _serial = self.state.lock.lock().unwrap_or_else(|e| e.into_inner());
        let tail = self.state.released.load(Ordering::Relaxed);
        if pos <= tail {
            return;
        }
        // `read - tail` never exceeds one ring: the consumer reads only reserved slots, and
        // producers reserve at most one ring beyond `tail`.
        let n = self.geometry.slot_count;
        for p in tail..pos {
            // First slot first, as the non-holding consumer does: a consumer killed in this
            // loop leaves FREE(p + N) stamps below `tail`, which its successor steps over.
            self.map
                .u64_at(self.geometry.slot_offset(p))
                .store(self.geometry.free(p + n), Ordering::Release);
        }
        self.map.u64_at(OFF_TAIL).store(pos, Ordering::Release);
        self.state.released.store(pos, Ordering::Release);
    }

    /// Beats the ring's heartbeat (offset 352): the consumer is alive and making progress.
    /// Producers waiting for room keep waiting while it beats (see `Producer::consumed`).
    pub fn beat(&self) {
        self.map
            .u64_at(layout::OFF_HEARTBEAT)
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The position released so far (the shared `tail` as this consumer stored it).
    pub fn released(&self) -> u64 {
        self.state.released.load(Ordering::Acquire)
    }

    /// Number of slots in the ring.
    pub fn slot_count(&self) -> u64 {
        self.geometry.slot_count
    }
}

impl Consumer {
    /// Opens a ring received from a peer: checks its seals (`F_SEAL_SHRINK | F_SEAL_GROW`), its
    /// size (fstat), magic, version and geometry, and resumes at the `tail` stored in it. The
    /// shared `tail` follows the read position: a record's slots are free once it was read.
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
        // Hostile or stale: only ever used to count, and clamped to the ring ahead of `tail`.
        let hint = map.u64_at(layout::OFF_READ_HINT).load(Ordering::Relaxed);
        let reread_end = hint.clamp(tail, tail.saturating_add(geometry.slot_count));
        Ok(Consumer {
            map: Arc::new(map),
            geometry,
            _fd: fd,
            opts,
            read: tail,
            hold: None,
            creator_pid,
            stuck: None,
            reread_end,
        })
    }

    /// Like [`Consumer::open`], but in *holding* mode: records read stay in the ring (their
    /// slots are not free for producers) until they are released through the returned
    /// [`Release`] handle. Resumes at the shared `tail`, i.e. after the last record a previous
    /// consumer released: what it read and never released is read again.
    pub fn open_holding(
        fd: OwnedFd,
        opts: ConsumerOptions,
    ) -> Result<(Consumer, Release), RingError> {
        let mut consumer = Consumer::open(fd, opts)?;
        let state = Arc::new(HoldState {
            read: AtomicU64::new(consumer.read),
            released: AtomicU64::new(consumer.read),
            lock: Mutex::new(()),
        });
        consumer.hold = Some(Arc::clone(&state));
        let release = Release {
            map: Arc::clone(&consumer.map),
            geometry: consumer.geometry,
            state,
        };
        Ok((consumer, release))
    }

    /// The read position: the record the next [`Consumer::next`] returns starts at or after it
    /// (positions count slots and only grow). In holding mode, release up to a position only
    /// once every record read below it is safe.
    pub fn read_position(&self) -> u64 {
        self.read
    }

    /// The end of what a previous holding consumer of this ring had read when it stopped (its
    /// published read position, at least the `tail` we resumed at): records starting below it
    /// are read a second time — delivered before, maybe, so possible duplicates. Diagnostic: a
    /// hostile producer can fake it.
    pub fn reread_end(&self) -> u64 {
        self.reread_end
    }

    /// Slots read (or skipped) but not yet released: always 0 unless holding.
    pub fn unreleased_slots(&self) -> u64 {
        match &self.hold {
            Some(state) => self
                .read
                .saturating_sub(state.released.load(Ordering::Acquire)),
            None => 0,
        }
    }

    /// Holding, and everything up to one ring ahead of `tail` is read: the slot at the read
    /// position still holds a record of the previous round, unreleased. Nothing can be read
    /// (no producer can reserve) until a release.
    fn all_held(&self) -> bool {
        self.hold.as_ref().is_some_and(|state| {
            self.read
                >= state
                    .released
                    .load(Ordering::Acquire)
                    .saturating_add(self.geometry.slot_count)
        })
    }

    /// Number of slots in the ring.
    pub fn slot_count(&self) -> u64 {
        self.geometry.slot_count
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
            let pos = self.read;
            if self.all_held() {
                return Ok(None);
            }
            if pos > MAX_POSITION {
                return Err(RingError::Inconsistent {
                    pos,
                    reason: "consumer position out of range",
                });
            }
            let stamp = self.stamp(pos).load(Ordering::Acquire);
            if stamp == self.geometry.first(pos) {
                return self.read_record(pos, payload).map(Some);
            } else if stamp == self.geometry.free(pos) {
                if !self.skip_if_stuck(pos)? {
                    return Ok(None);
                }
            } else if stamp == self.geometry.cont(pos) {
                // A continuation at our position: its first slot was skipped (uncommitted past
                // the timeout) and its writer committed this part later. Free it.
                self.free_abandoned(pos, stamp);
            } else if stamp == self.geometry.free(pos + self.geometry.slot_count) {
                // Already freed for the next round, but `tail` was not moved past it: a previous
                // consumer (an agent that was killed) stopped between freeing a record's slots
                // (first slot first) and publishing `tail`, so the record was released; or, in
                // holding mode, a slot skipped as abandoned and not released yet. Move on.
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
        let pos = self.read;
        // All held: producers cannot push until a release, and the first push after it wakes us.
        let idle = self.all_held()
            || (self.stamp(pos).load(Ordering::SeqCst) == self.geometry.free(pos)
                && !self.stuck_expired(pos));
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
        head.saturating_sub(self.read)
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
            if self.stamp(pos + j).load(Ordering::Acquire) != self.geometry.cont(pos + j) {
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
        if self.stamp(pos).load(Ordering::Relaxed) != self.geometry.first(pos) {
            payload.clear();
            return inconsistent("record changed while it was read");
        }
        if self.hold.is_none() {
            for j in 0..k {
                self.stamp(pos + j).store(
                    self.geometry.free(pos + j + self.geometry.slot_count),
                    Ordering::Release,
                );
            }
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
                self.free_abandoned(pos, self.geometry.free(pos));
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
        let next_round = self.geometry.free(pos + self.geometry.slot_count);
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

    /// Moves our read position to `to`. Without holding, publishes it as `tail` (Release: our
    /// reads of the freed slots happen before a producer may reuse them); holding, tells the
    /// [`Release`] handles how far they may go.
    fn advance(&mut self, to: u64) {
        self.read = to;
        match &self.hold {
            Some(state) => {
                state.read.store(to, Ordering::Release);
                self.map
                    .u64_at(layout::OFF_READ_HINT)
                    .store(to, Ordering::Relaxed);
            }
            None => self.map.u64_at(OFF_TAIL).store(to, Ordering::Release),
        }
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

/// Reads, without changing anything, the records committed in the ring behind `fd` and not
/// released yet (positions `tail .. head`), oldest first: the records no consumer has made safe.
///
/// For the interceptor's exit path: when no agent holds the ring as the process exits, the
/// records of a *suppressed* stream in this range reached nobody for sure (an agent that read
/// them may have died before they were safe), so they are written to the original stream or
/// file (fail-open); records of other streams were written there already. Calls `f` with each
/// record's metadata and payload (copied into `payload`, cleared first) and returns how many
/// records it found. Slots skipped as abandoned and records whose stamps do not check out are
/// passed over. Maps the ring again (mmap, munmap): not for a signal handler.
pub fn unreleased_records(
    fd: BorrowedFd<'_>,
    payload: &mut Vec<u8>,
    mut f: impl FnMut(&RecordMeta, &[u8]),
) -> Result<u64, RingError> {
    let (map, geometry) = memfd::map_validated(fd)?;
    let tail = map.u64_at(OFF_TAIL).load(Ordering::Acquire);
    let head = map.u64_at(OFF_HEAD).load(Ordering::Acquire);
    if tail > MAX_POSITION || head > MAX_POSITION {
        return Err(RingError::BadHeader {
            reason: "tail or head position out of range",
        });
    }
    let head = head.min(tail.saturating_add(geometry.slot_count));
    let stamp = |pos: u64| {
        map.u64_at(geometry.slot_offset(pos))
            .load(Ordering::Acquire)
    };
    let mut found = 0;
    let mut pos = tail;
    while pos < head {
        if stamp(pos) != geometry.first(pos) {
            pos += 1;
            continue;
        }
        let off = geometry.slot_offset(pos);
        let words = [0, 1, 2].map(|i| {
            map.u64_at(off + STAMP_BYTES + i * 8)
                .load(Ordering::Relaxed)
        });
        let (meta, len) = record::decode(words);
        let len = len as usize;
        let k = layout::slots_for(len.min(geometry.max_payload)) as u64;
        if len > geometry.max_payload
            || pos + k > head
            || (1..k).any(|j| stamp(pos + j) != geometry.cont(pos + j))
        {
            pos += 1;
            continue;
        }
        payload.clear();
        let first_part = len.min(FIRST_SLOT_PAYLOAD);
        map.read_bytes(off + STAMP_BYTES + RECORD_HEADER_BYTES, first_part, payload);
        let mut left = len - first_part;
        for j in 1..k {
            let n = left.min(CONT_SLOT_PAYLOAD);
            map.read_bytes(geometry.slot_offset(pos + j) + STAMP_BYTES, n, payload);
            left -= n;
        }
        fence(Ordering::Acquire);
        if stamp(pos) == geometry.first(pos) {
            f(&meta, payload);
            found += 1;
        }
        pos += k;
    }
    Ok(found)
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
