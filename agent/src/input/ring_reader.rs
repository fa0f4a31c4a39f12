//! Reading one peer's ring in the order the process wrote.
//!
//! A process hands its writes over on two paths: most go into its ring, but a write too large
//! for a ring record goes as DATA frames over the control socket, and FILE/LOSS frames travel
//! there too. Every write part and every frame takes the next number of one per-process
//! sequence (Contract 2's `seq`), so the agent restores the order with it:
//! - a ring record whose `seq` skips ahead of the last one seen (a *gap*) may have to wait for a
//!   frame: the pass stops with [`Pass::Gap`] and holds the record; the peer reads its socket;
//!   the record then proceeds whether or not a frame filled the gap (a gap with no frame is a
//!   write the process dropped, or another thread's write still being copied);
//! - before a DATA frame is applied, the ring is read up to (not including) the frame's `seq`
//!   ([`RingReader::pass`] with `before`).
//!
//! The held record keeps its bytes in the reader's payload buffer until it is applied.
//!
//! # The keeper: a live agent keeps every ring's `tail` moving
//! A process whose ring is full waits for room by default (`LLT_RING_FULL=block`) as long as
//! the ring's `tail` moves, and takes the agent for stopped or dead once it stands still for
//! 200 ms. But a live agent does not always read: its peer task waits while the pipeline is
//! full (an output busy with a chunk, a server slow to acknowledge), or waits for a runtime
//! thread that another task holds (the stdout output renders up to 16 chunks in one go:
//! 300 ms and more in a debug build). So one thread of the agent, the *keeper*, visits every
//! ring each [`TRICKLE`] (20 ms): a ring with committed records that nobody read since the
//! last visit gets one record read ahead into the reader's own queue (raw bytes, at most
//! [`READ_AHEAD_BYTES`] per ring and [`READ_AHEAD_TOTAL`] for the agent), and the peer is
//! woken through its eventfd. Queued records are applied first, in order, by the next passes,
//! which themselves read one record ahead every [`TRICKLE`] while they work through the queue.
//! The keeper is a plain thread, mostly asleep, so the kernel schedules it promptly even when
//! the runtime's threads are busy, and a pass locks the ring only to fetch each record, so a
//! worker preempted in the middle of a pass does not keep the keeper out. Once a ring's queue is
//! full (the pipeline blocked for seconds) the keeper leaves it: the tail stops, and the process
//! drops and counts.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, TryLockError, Weak};
use std::time::{Duration, Instant};

use logtap_protocol::ring::{
    Consumer, ConsumerOptions, RECORD_CONTINUED, RecordMeta, RingCounters, RingError,
};

use super::streams::{StreamError, Streams};
use crate::metrics::{DropReason, METRICS};

/// How often the keeper visits the rings, and how often a pass working through the read-ahead
/// queue reads one more record: 10× within the interceptor's 200 ms stall bound.
pub const TRICKLE: Duration = Duration::from_millis(20);

/// Raw bytes one ring's read-ahead queue holds at most: one default ring's worth. At one record
/// per [`TRICKLE`] that covers a blocked pipeline for ≈ 2.5 s of 8 KiB records (stdio's
/// buffer-sized writes) and for minutes of ordinary lines.
pub const READ_AHEAD_BYTES: usize = 1 << 20;

/// Raw bytes all read-ahead queues of the agent hold at most together, so that many blocked
/// peers cannot add more than this to the agent's memory.
pub const READ_AHEAD_TOTAL: usize = 32 << 20;

/// Bytes in all read-ahead queues now.
static READ_AHEAD_USED: AtomicUsize = AtomicUsize::new(0);

/// The rings the keeper visits.
static KEPT: Mutex<Vec<Weak<Mutex<Shared>>>> = Mutex::new(Vec::new());
static KEEPER: Once = Once::new();

/// Why a pass over the ring stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Nothing more to read now. Unless the reader lingers, the consumer announced sleep
    /// (producers will wake it through the eventfd).
    Empty,
    /// Enough entries gathered: hand them off, then call again.
    Handoff,
    /// The next record skips ahead in `seq`: read the control socket, then call again.
    Gap,
    /// The next record is not older than the `before` bound.
    Reached,
}

/// `a` comes after `b` in the wrapping sequence.
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The part of a reader the keeper touches too.
struct Shared {
    consumer: Consumer,
    /// Records read ahead, not applied yet, and their payload bytes.
    queue: VecDeque<(RecordMeta, Vec<u8>)>,
    queued_bytes: usize,
    /// When a record was last read ahead.
    read_ahead_at: Instant,
    /// Records taken out of the ring so far (by passes and read-ahead).
    taken: u64,
    /// `taken` at the keeper's last visit.
    keeper_seen: u64,
    /// What the keeper's read-ahead found wrong with the ring, for the next pass to report.
    error: Option<RingError>,
    /// A copy of the peer's eventfd, to wake it after a read-ahead.
    wake: Option<File>,
    /// Payload buffers the passes are done with, for the next read-ahead: the keeper then
    /// does not allocate (the agent's two malloc arenas are busy with its workers, and a
    /// worker preempted while holding one would hold up the keeper too).
    spare: Vec<Vec<u8>>,
}

/// Spare payload buffers kept per ring.
const SPARE_BUFFERS: usize = 4;

impl Shared {
    /// Takes the next committed record out of the ring into the read-ahead queue. Returns
    /// `false` when the queue is full (the ring was not looked at).
    fn read_ahead(&mut self) -> Result<bool, RingError> {
        if self.queued_bytes >= READ_AHEAD_BYTES
            || READ_AHEAD_USED.load(Ordering::Relaxed) >= READ_AHEAD_TOTAL
        {
            return Ok(false);
        }
        self.read_ahead_at = Instant::now();
        let mut payload = self.spare.pop().unwrap_or_default();
        match self.consumer.next(&mut payload)? {
            Some(meta) => {
                self.taken += 1;
                self.queued_bytes += payload.len();
                READ_AHEAD_USED.fetch_add(payload.len(), Ordering::Relaxed);
                self.queue.push_back((meta, payload));
            }
            None => self.spare.push(payload),
        }
        Ok(true)
    }

    /// The keeper's visit: one record ahead if records wait and nobody read since last time.
    fn visit(&mut self) {
        let idle = self.taken == self.keeper_seen;
        self.keeper_seen = self.taken;
        if !idle || self.error.is_some() || self.consumer.backlog_slots() == 0 {
            return;
        }
        let looked = match self.read_ahead() {
            Ok(looked) => looked,
            Err(e) => {
                self.error = Some(e);
                true
            }
        };
        // `Consumer::next` withdraws an announced sleep, so the producers no longer wake the
        // peer: wake it here (it applies what was read, and announces sleep again if idle).
        if looked && let Some(wake) = &mut self.wake {
            let _ = wake.write(&1u64.to_ne_bytes());
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        READ_AHEAD_USED.fetch_sub(self.queued_bytes, Ordering::Relaxed);
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Puts a ring in the keeper's care (and starts the keeper on first use).
fn keep(shared: &Arc<Mutex<Shared>>) {
    KEPT.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Arc::downgrade(shared));
    KEEPER.call_once(|| {
        let started = std::thread::Builder::new()
            .name("logtap-ring-keeper".into())
            .spawn(keeper);
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the ring keeper thread");
        }
    });
}

/// The keeper thread: visits every ring each [`TRICKLE`], skipping one a pass is reading.
/// It allocates nothing on its rounds (see `Shared::spare`).
fn keeper() {
    loop {
        std::thread::sleep(TRICKLE);
        let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|w| w.strong_count() > 0);
        for ring in kept.iter().filter_map(Weak::upgrade) {
            let mut shared = match ring.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            };
            shared.visit();
        }
    }
}

/// A peer's ring, its loss counters, and the ordering state.
pub struct RingReader {
    shared: Arc<Mutex<Shared>>,
    seen: RingCounters,
    payload: Vec<u8>,
    held: Option<RecordMeta>,
    gap_checked: bool,
    /// While set, an empty pass does not announce sleep: the peer polls again shortly.
    lingering: bool,
}

impl RingReader {
    /// Maps and checks the ring memfd a peer passed (see `Consumer::open`), and puts it in the
    /// keeper's care.
    pub fn open(memfd: OwnedFd, opts: ConsumerOptions) -> Result<RingReader, RingError> {
        let consumer = Consumer::open(memfd, opts)?;
        // Losses a previous agent already reported are in the ring's header; the rest —
        // drops before any agent held the ring, or while none did — are still to report.
        let seen = consumer.reported();
        let shared = Arc::new(Mutex::new(Shared {
            consumer,
            queue: VecDeque::with_capacity(64),
            queued_bytes: 0,
            read_ahead_at: Instant::now(),
            taken: 0,
            keeper_seen: 0,
            error: None,
            wake: None,
            spare: Vec::with_capacity(SPARE_BUFFERS + 1),
        }));
        keep(&shared);
        Ok(RingReader {
            shared,
            seen,
            payload: Vec::new(),
            held: None,
            gap_checked: false,
            lingering: false,
        })
    }

    /// Gives the keeper a copy of the peer's eventfd, to wake the peer after a read-ahead.
    pub fn set_wake(&mut self, eventfd: OwnedFd) {
        lock(&self.shared).wake = Some(File::from(eventfd));
    }

    /// Whether records wait (committed or still being written, or read ahead) or one is held.
    pub fn has_backlog(&self) -> bool {
        let shared = lock(&self.shared);
        self.held.is_some() || !shared.queue.is_empty() || shared.consumer.backlog_slots() > 0
    }

    /// Lingering: an empty pass leaves `consumer_sleeping` unset, so the producer's writes cost
    /// no eventfd wake-up (a syscall in the app's `write()`) while the peer polls on a timer.
    pub fn set_lingering(&mut self, on: bool) {
        self.lingering = on;
    }

    /// Records taken out of the ring so far.
    pub fn records_read(&self) -> u64 {
        lock(&self.shared).taken
    }

    /// The control socket was read after a [`Pass::Gap`]: let the held record proceed.
    pub fn gap_checked(&mut self) {
        self.gap_checked = true;
    }

    /// Applies records to `streams` in order. `expected` is the next `seq` the peer expects
    /// (updated); `before` bounds the pass for a DATA frame; it stops early with
    /// [`Pass::Handoff`] once `streams` holds `handoff_bytes`.
    pub fn pass(
        &mut self,
        streams: &mut Streams,
        expected: &mut Option<u32>,
        before: Option<u32>,
        handoff_bytes: usize,
    ) -> Result<Pass, PassError> {
        loop {
            let Some(meta) = self.next_record()? else {
                return Ok(Pass::Empty);
            };
            if let Some(bound) = before {
                if !after(bound, meta.seq) {
                    self.held = Some(meta);
                    return Ok(Pass::Reached);
                }
            } else if let Some(e) = *expected
                && after(meta.seq, e)
                && !self.gap_checked
            {
                self.held = Some(meta);
                return Ok(Pass::Gap);
            }
            self.gap_checked = false;
            let next = meta.seq.wrapping_add(1);
            if expected.is_none_or(|e| after(next, e)) {
                *expected = Some(next);
            }
            let continued = meta.flags & RECORD_CONTINUED != 0;
            streams
                .write(
                    meta.pid,
                    meta.stream,
                    meta.file_index,
                    continued,
                    meta.time_ns,
                    &self.payload,
                )
                .map_err(PassError::Stream)?;
            if streams.out_bytes() >= handoff_bytes {
                return Ok(Pass::Handoff);
            }
        }
    }

    /// The next record to apply — the held one, a read-ahead one, or the next in the ring — with
    /// its bytes in `self.payload`; `None` when there is none now (the consumer then announced
    /// sleep, unless lingering). The ring is locked for the fetch only, not while the record
    /// is applied, so that the keeper can visit while a pass works (a worker thread may be
    /// preempted in the middle of a pass on a loaded machine).
    fn next_record(&mut self) -> Result<Option<RecordMeta>, RingError> {
        if let Some(m) = self.held.take() {
            return Ok(Some(m));
        }
        let mut shared = lock(&self.shared);
        if let Some(e) = shared.error.take() {
            return Err(e);
        }
        if let Some((m, payload)) = shared.queue.pop_front() {
            shared.queued_bytes -= payload.len();
            READ_AHEAD_USED.fetch_sub(payload.len(), Ordering::Relaxed);
            let done = std::mem::replace(&mut self.payload, payload);
            if shared.spare.len() < SPARE_BUFFERS {
                shared.spare.push(done);
            }
            // Working through the queue does not move the tail: read one more ahead now and
            // then, in case the keeper is slow to come.
            if shared.read_ahead_at.elapsed() >= TRICKLE {
                shared.read_ahead()?;
            }
            return Ok(Some(m));
        }
        loop {
            match shared.consumer.next(&mut self.payload)? {
                Some(m) => {
                    shared.taken += 1;
                    return Ok(Some(m));
                }
                None if self.lingering || shared.consumer.prepare_sleep() => return Ok(None),
                None => continue,
            }
        }
    }

    /// Counts what producers dropped (ring full) and what the consumer skipped since last time;
    /// returns those new losses.
    pub fn report_losses(&mut self) -> RingCounters {
        let shared = lock(&self.shared);
        let c = shared.consumer.counters();
        let new = RingCounters {
            dropped_records: c.dropped_records.saturating_sub(self.seen.dropped_records),
            dropped_bytes: c.dropped_bytes.saturating_sub(self.seen.dropped_bytes),
            abandoned_slots: c.abandoned_slots.saturating_sub(self.seen.abandoned_slots),
        };
        if new.dropped_records > 0 {
            METRICS.dropped(DropReason::RingFull, new.dropped_records, new.dropped_bytes);
        }
        if new.abandoned_slots > 0 {
            METRICS.dropped(DropReason::RingAbandoned, new.abandoned_slots, 0);
        }
        if c != self.seen {
            shared.consumer.set_reported(&c);
        }
        self.seen = c;
        new
    }
}

/// Why a pass failed: the peer is dropped.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("ring rejected: {0}")]
    Ring(#[from] RingError),
    #[error(transparent)]
    Stream(#[from] StreamError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_order() {
        assert!(after(5, 4));
        assert!(!after(4, 4));
        assert!(!after(3, 4));
        assert!(after(0, u32::MAX), "wraps");
        assert!(!after(u32::MAX, 0));
    }
}
