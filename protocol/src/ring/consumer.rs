//! The consumer side of the ring: the agent drains one peer's ring with it.
//!
//! The ring is hostile memory: another process may write any byte at any moment. So the consumer
//! keeps its own copy of everything it relies on (geometry, its position), reads the shared bytes
//! only through bounds-checked atomic accesses, checks every length against the ring's bounds
//! before it uses it, copies a record out before it looks at it, re-checks the record's control
//! word after the copy (seqlock-style), and reports anything that breaks the protocol as
//! [`RingError::Inconsistent`] — never a panic, never an out-of-bounds read.
//!
//! Stuck reservations: a writer may claim a record and never commit it (killed thread, a signal
//! handler that siglongjmp'd out of the hook). Its RESERVED control word carries the record's
//! length. When the record at the read position stays RESERVED, the consumer notes the time and
//! the `head` it sees (after moving `head` past the claim itself, for a writer stopped before
//! it did); once `stuck_timeout` has passed, every record below that `head` that is still
//! RESERVED has been so for at least the timeout, and is skipped — its word turned into a PAD of
//! the same length, so that the late writer's commit fails — and counted in
//! `abandoned_records`, while committed records in between are delivered in order.
//!
//! Two ways to give space back to the producers:
//! - [`Consumer::open`]: the shared `tail` follows the read position — a record's words are
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
    self, Control, Geometry, MAX_POSITION, OFF_ABANDONED_RECORDS, OFF_CONSUMER_SLEEPING,
    OFF_CREATOR_PID, OFF_DROPPED_BYTES, OFF_DROPPED_RECORDS, OFF_HEAD, OFF_RELEASING, OFF_TAIL,
    STATE_COMMITTED, STATE_PAD, STATE_RESERVED,
};
use super::mapping::Mapping;
use super::memfd;
use super::raw::{RawRing, Seen};
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
    /// Records the consumer skipped because their reservation was never committed.
    pub abandoned_records: u64,
}

/// Since when the record at the consumer's position has been seen reserved but uncommitted,
/// and the `head` seen at that moment: every record below it was claimed before `since`.
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
    /// Our read position: every record below it has been read (or skipped). Private: the
    /// shared `tail` is what producers may reuse, and it is never read back while we run.
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

/// The handle that gives a holding consumer's records back to the producers
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

/// Gives positions `from .. to` back to the producers: announces the release at
/// `OFF_RELEASING`, clears the words to FREE for their next lap, then publishes `tail = to`
/// (Release: our reads and clears happen before a producer reuses the words). A consumer
/// killed in the middle leaves `OFF_RELEASING` beyond `tail`: its successor finishes the job
/// at open.
fn release_range(map: &Mapping, geometry: Geometry, from: u64, to: u64) {
    map.u64_at(OFF_RELEASING).store(to, Ordering::Relaxed);
    RawRing::new(map.words(), geometry).clear(from, to);
    map.u64_at(OFF_TAIL).store(to, Ordering::Release);
}

impl Release {
    /// Declares every record below position `pos` safe: their words become free for producers
    /// and `tail = pos` is published. `pos` must be a record boundary (a read position);
    /// positions the consumer has not read yet are never released (`pos` is clamped to its read
    /// position); a `pos` at or below the current `tail` does nothing. Costs one store per
    /// word released.
    pub fn release(&self, pos: u64) {
        let pos = pos.min(self.state.read.load(Ordering::Acquire));
        let _serial = self.state.lock.lock().unwrap_or_else(|e| e.into_inner());
        let tail = self.state.released.load(Ordering::Relaxed);
        if pos <= tail {
            return;
        }
        // `read - tail` never exceeds one ring: the consumer reads only claimed records, and
        // producers claim at most one ring beyond `tail`.
        release_range(&self.map, self.geometry, tail, pos);
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

    /// Size of the data area in positions (8-byte words).
    pub fn capacity_words(&self) -> u64 {
        self.geometry.word_count
    }
}

impl Consumer {
    /// Opens a ring received from a peer: checks its seals (`F_SEAL_SHRINK | F_SEAL_GROW`), its
    /// size (fstat), magic, version and geometry, finishes a release a killed predecessor left
    /// half done, and resumes at the `tail` stored in it. The shared `tail` follows the read
    /// position: a record's words are free once it was read.
    pub fn open(fd: OwnedFd, opts: ConsumerOptions) -> Result<Consumer, RingError> {
        memfd::check_seals(fd.as_fd())?;
        let (map, geometry) = memfd::map_validated(fd.as_fd())?;
        let mut tail = map.u64_at(OFF_TAIL).load(Ordering::Acquire);
        if tail > MAX_POSITION {
            return Err(RingError::BadHeader {
                reason: "tail position out of range",
            });
        }
        // A predecessor killed in the middle of a release: what it was releasing was safe.
        let releasing = map.u64_at(OFF_RELEASING).load(Ordering::Relaxed);
        if releasing > tail && releasing - tail <= geometry.word_count {
            release_range(&map, geometry, tail, releasing);
            tail = releasing;
        }
        let creator_pid = map.u32_le_at(OFF_CREATOR_PID);
        // Hostile or stale: only ever used to count, and clamped to the ring ahead of `tail`.
        let hint = map.u64_at(layout::OFF_READ_HINT).load(Ordering::Relaxed);
        let reread_end = hint.clamp(tail, tail.saturating_add(geometry.word_count));
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
    /// words are not free for producers) until they are released through the returned
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

    #[inline]
    fn raw(&self) -> RawRing<'_> {
        RawRing::new(self.map.words(), self.geometry)
    }

    /// The read position: the record the next [`Consumer::next`] returns starts at or after it
    /// (positions count 8-byte words and only grow). In holding mode, release up to a position
    /// only once every record read below it is safe.
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

    /// Words read (or skipped) but not yet released: always 0 unless holding.
    pub fn unreleased_words(&self) -> u64 {
        match &self.hold {
            Some(state) => self
                .read
                .saturating_sub(state.released.load(Ordering::Acquire)),
            None => 0,
        }
    }

    /// The end of the room a record may occupy: one ring beyond what is released.
    fn limit(&self) -> u64 {
        let released = match &self.hold {
            Some(state) => state.released.load(Ordering::Acquire),
            None => self.read,
        };
        released.saturating_add(self.geometry.word_count)
    }

    /// Holding, and everything up to one ring ahead of `tail` is read: the word at the read
    /// position still holds a record of the previous round, unreleased. Nothing can be read
    /// (no producer can claim) until a release.
    fn all_held(&self) -> bool {
        self.hold.is_some() && self.read >= self.limit()
    }

    /// Size of the data area in positions (8-byte words).
    pub fn capacity_words(&self) -> u64 {
        self.geometry.word_count
    }

    /// The next committed record: its metadata, with its bytes in `payload` (cleared first).
    /// `Ok(None)`: nothing to read now (empty, or the next record is still being written).
    /// `Err`: the ring is inconsistent; stop using it.
    pub fn next(&mut self, payload: &mut Vec<u8>) -> Result<Option<RecordMeta>, RingError> {
        payload.clear();
        self.clear_sleeping();
        // Each round either returns or moves the read position on by at least one word,
        // except when a control word changes under a CAS (a racing writer); the bound keeps a
        // peer that flips words for ever from holding us here.
        for _ in 0..=self.geometry.word_count {
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
            let (word, c) = match self.raw().look(pos) {
                Seen::Free => {
                    self.stuck = None;
                    return Ok(None);
                }
                Seen::Invalid => {
                    return Err(RingError::Inconsistent {
                        pos,
                        reason: "control word is in no valid state for the consumer position",
                    });
                }
                Seen::Claimed(word, c) => (word, c),
            };
            if !self.raw().fits(pos, &c) || pos + c.len_words > self.limit() {
                return Err(RingError::Inconsistent {
                    pos,
                    reason: "record length outside the ring's bounds",
                });
            }
            match c.state {
                STATE_COMMITTED => return self.read_record(pos, word, &c, payload).map(Some),
                STATE_PAD => self.advance(pos + c.len_words),
                _ => {
                    debug_assert_eq!(c.state, STATE_RESERVED);
                    if !self.skip_if_stuck(pos, word, &c)? {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(None)
    }

    /// Announces that the consumer is about to sleep on the wake eventfd. Returns `true` if it
    /// may sleep (nothing committed at its position: producers will write the eventfd), `false`
    /// if there is work and `next` must be called again instead.
    pub fn prepare_sleep(&self) -> bool {
        let sleeping = self.map.u64_at(OFF_CONSUMER_SLEEPING);
        sleeping.store(1, Ordering::SeqCst);
        // Pairs with the producer's SeqCst commit and flag load: see `RawRing::take_wake`.
        fence(Ordering::SeqCst);
        let pos = self.read;
        let word = self.raw().data(pos).load(Ordering::SeqCst);
        let reserved = layout::decode_control(word, pos, self.geometry.shift)
            .is_some_and(|c| c.state == STATE_RESERVED);
        // All held: producers cannot push until a release, and the first push after it wakes us.
        let idle = self.all_held()
            || ((word == self.geometry.free(pos) || reserved) && !self.stuck_expired(pos));
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
            abandoned_records: read(OFF_ABANDONED_RECORDS),
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
            abandoned_records: read(layout::OFF_REPORTED_ABANDONED),
        }
    }

    /// Records that the counters `c` (from [`Consumer::counters`]) have been reported.
    pub fn set_reported(&self, c: &RingCounters) {
        let write = |off, v| self.map.u64_at(off).store(v, Ordering::Relaxed);
        write(layout::OFF_REPORTED_RECORDS, c.dropped_records);
        write(layout::OFF_REPORTED_BYTES, c.dropped_bytes);
        write(layout::OFF_REPORTED_ABANDONED, c.abandoned_records);
    }

    /// Pid of the process that created the ring (from its header, read at open); every record
    /// of the ring is reported with it.
    pub fn creator_pid(&self) -> u32 {
        self.creator_pid
    }

    /// Words claimed by producers and not consumed yet (as far as the header tells).
    pub fn backlog_words(&self) -> u64 {
        let head = self.map.u64_at(OFF_HEAD).load(Ordering::Relaxed);
        head.saturating_sub(self.read)
    }

    /// Largest payload of one record in this ring.
    pub fn max_payload(&self) -> usize {
        self.geometry.max_payload
    }

    /// Copies out and checks the record committed at `pos` (control word `word`, fields `c`,
    /// already checked against the ring's bounds).
    fn read_record(
        &mut self,
        pos: u64,
        word: u64,
        c: &Control,
        payload: &mut Vec<u8>,
    ) -> Result<RecordMeta, RingError> {
        let inconsistent = |reason| Err(RingError::Inconsistent { pos, reason });
        let raw = self.raw();
        let Some(len) = raw.payload_len(c) else {
            return inconsistent("record's padding contradicts its length");
        };
        payload.resize(len, 0);
        let time = raw.time(pos);
        if !raw.copy_payload(pos, payload) {
            payload.clear();
            return inconsistent("record crosses the end of the data area");
        }
        // Seqlock check: the data loads above happen before this load of the control word.
        fence(Ordering::Acquire);
        if raw.data(pos).load(Ordering::Relaxed) != word {
            payload.clear();
            return inconsistent("record changed while it was read");
        }
        let meta = record::meta(c, time, self.creator_pid);
        self.advance(pos + c.len_words);
        Ok(meta)
    }

    /// The record at `pos` is RESERVED (word `word`). Returns `Ok(false)` if there is nothing
    /// to do now, `Ok(true)` if the caller should look at the read position again (a stuck
    /// reservation was skipped, or the word changed under our CAS).
    fn skip_if_stuck(&mut self, pos: u64, word: u64, c: &Control) -> Result<bool, RingError> {
        // A writer stopped between its claim and its move of `head` holds `head` back: move
        // it, as any writer would.
        self.raw().help_head(pos, c.len_words);
        // `head` may lag behind the claim for a moment (see `RawRing::reserve`); the claim
        // itself says how far it reaches.
        let head = self
            .map
            .u64_at(OFF_HEAD)
            .load(Ordering::Acquire)
            .max(pos + c.len_words);
        if head - pos > self.geometry.word_count {
            return Err(RingError::Inconsistent {
                pos,
                reason: "head is more than one ring ahead of a reserved record",
            });
        }
        match self.stuck {
            Some(stuck) if pos < stuck.head_then => {
                if stuck.since.elapsed() < self.opts.stuck_timeout {
                    return Ok(false);
                }
                if self.raw().abandon(pos, word) {
                    self.map
                        .u64_at(OFF_ABANDONED_RECORDS)
                        .fetch_add(1, Ordering::Relaxed);
                    self.advance(pos + c.len_words);
                }
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

    /// Whether the record at `pos` is reserved and its stuck timeout has passed.
    fn stuck_expired(&self, pos: u64) -> bool {
        self.stuck.is_some_and(|stuck| {
            pos < stuck.head_then && stuck.since.elapsed() >= self.opts.stuck_timeout
        })
    }

    /// Moves our read position to `to`. Without holding, releases what lies below it (the
    /// words are free for producers at once); holding, tells the [`Release`] handles how far
    /// they may go.
    fn advance(&mut self, to: u64) {
        let from = self.read;
        self.read = to;
        match &self.hold {
            Some(state) => {
                state.read.store(to, Ordering::Release);
                self.map
                    .u64_at(layout::OFF_READ_HINT)
                    .store(to, Ordering::Relaxed);
            }
            None => release_range(&self.map, self.geometry, from, to),
        }
    }

    /// Resets `consumer_sleeping` if a timeout (not a producer) ended our sleep, so producers do
    /// not pay for a useless eventfd write.
    fn clear_sleeping(&self) {
        let sleeping = self.map.u64_at(OFF_CONSUMER_SLEEPING);
        if sleeping.load(Ordering::Relaxed) != 0 {
            sleeping.store(0, Ordering::Relaxed);
        }
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
/// records it found. Reservations skipped as abandoned or never committed are passed over; the
/// walk stops at a control word that does not check out (the next record cannot be found
/// without it). Maps the ring again (mmap, munmap): not for a signal handler.
pub fn unreleased_records(
    fd: BorrowedFd<'_>,
    payload: &mut Vec<u8>,
    mut f: impl FnMut(&RecordMeta, &[u8]),
) -> Result<u64, RingError> {
    let (map, geometry) = memfd::map_validated(fd)?;
    let raw = RawRing::new(map.words(), geometry);
    let tail = map.u64_at(OFF_TAIL).load(Ordering::Acquire);
    let head = map.u64_at(OFF_HEAD).load(Ordering::Acquire);
    if tail > MAX_POSITION || head > MAX_POSITION {
        return Err(RingError::BadHeader {
            reason: "tail or head position out of range",
        });
    }
    let pid = map.u32_le_at(OFF_CREATOR_PID);
    let head = head.min(tail.saturating_add(geometry.word_count));
    let mut found = 0;
    let mut pos = tail;
    while pos < head {
        let Seen::Claimed(word, c) = raw.look(pos) else {
            break;
        };
        if !raw.fits(pos, &c) || pos + c.len_words > head {
            break;
        }
        if c.state == STATE_COMMITTED
            && let Some(len) = raw.payload_len(&c)
        {
            payload.clear();
            payload.resize(len, 0);
            let time = raw.time(pos);
            let copied = raw.copy_payload(pos, payload);
            fence(Ordering::Acquire);
            if copied && raw.data(pos).load(Ordering::Relaxed) == word {
                f(&record::meta(&c, time, pid), payload);
                found += 1;
            }
        }
        debug_assert!(c.state == STATE_PAD || c.len_words >= 2);
        pos += c.len_words;
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
        let flag = |c: &Consumer| c.map.u64_at(OFF_CONSUMER_SLEEPING).load(Ordering::SeqCst);
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
        producer
            .reserve_for_test(&RecordMeta::default(), 500)
            .unwrap();
        assert_eq!(consumer.backlog_words(), layout::words_for(500));
        assert!(consumer.next(&mut Vec::new()).unwrap().is_none());
        assert!(
            consumer.prepare_sleep(),
            "a pending reservation alone does not keep us awake"
        );
        assert_eq!(consumer.creator_pid(), 9);
    }

    #[test]
    fn a_release_a_killed_consumer_left_half_done_is_finished_at_open() {
        let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
        let producer = Producer::map(fd.as_fd()).unwrap();
        for i in 0..3u8 {
            producer.try_push(&RecordMeta::default(), &[i; 20]).unwrap();
        }
        let (mut first, release) =
            Consumer::open_holding(fd.try_clone().unwrap(), ConsumerOptions::default()).unwrap();
        let mut payload = Vec::new();
        first.next(&mut payload).unwrap().unwrap();
        let end = first.read_position();
        // Killed after announcing the release and clearing one word, before `tail`.
        first
            .map
            .u64_at(OFF_RELEASING)
            .store(end, Ordering::Relaxed);
        RawRing::new(first.map.words(), first.geometry).clear(0, 1);
        drop((first, release));
        let mut second = Consumer::open(fd, ConsumerOptions::default()).unwrap();
        assert_eq!(second.read_position(), end);
        second.next(&mut payload).unwrap().unwrap();
        assert_eq!(payload, [1; 20]);
    }
}
