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
//! Read-ahead ([`RingReader::read_ahead`]): while the peer waits for the pipeline, it takes one
//! record every [`TRICKLE`] out of the ring into the reader's own queue (raw bytes, at most
//! [`READ_AHEAD_BYTES`]), so that the ring's `tail` keeps moving and a process waiting for room
//! sees a live agent. Queued records are applied first, in order, by the next passes — which
//! meanwhile keep reading one record ahead every [`TRICKLE`], since working through a full
//! queue takes long enough (≈ 150,000 short lines) to look like a stall otherwise.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use logtap_protocol::ring::{
    Consumer, ConsumerOptions, RECORD_CONTINUED, RecordMeta, RingCounters, RingError,
};

use super::streams::{StreamError, Streams};
use crate::metrics::{DropReason, METRICS};

/// While the peer cannot apply what it reads (the pipeline is full, or the read-ahead queue is
/// being worked through), one ring record is read ahead this often: enough to keep the ring's
/// `tail` moving (10× faster than the interceptor's 200 ms stall bound), so that a process
/// waiting for room knows the agent is alive; slow enough that the queue lasts.
pub const TRICKLE: Duration = Duration::from_millis(20);

/// Raw bytes a reader holds at most in its read-ahead queue: one default ring's worth. At the
/// trickle's pace that covers a blocked pipeline for ≈ 2.5 s of 8 KiB records (stdio's
/// buffer-sized writes) and for minutes of ordinary lines.
pub const READ_AHEAD_BYTES: usize = 1 << 20;

/// Raw bytes all readers of the agent hold at most in their read-ahead queues together, so
/// that many blocked peers cannot add more than this to the agent's memory.
pub const READ_AHEAD_TOTAL: usize = 32 << 20;

/// Bytes in all read-ahead queues now.
static READ_AHEAD_USED: AtomicUsize = AtomicUsize::new(0);

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

/// A peer's ring, its loss counters, and the ordering state.
pub struct RingReader {
    consumer: Consumer,
    seen: RingCounters,
    payload: Vec<u8>,
    held: Option<RecordMeta>,
    gap_checked: bool,
    /// While set, an empty pass does not announce sleep: the peer polls again shortly.
    lingering: bool,
    /// Records read so far (tells the peer whether a pass found anything).
    records: u64,
    /// Records read ahead, not applied yet, and their payload bytes.
    queue: VecDeque<(RecordMeta, Vec<u8>)>,
    queued_bytes: usize,
    /// When the last record was read ahead (meaningful while the queue is not empty).
    read_ahead_at: Instant,
}

impl RingReader {
    /// Maps and checks the ring memfd a peer passed (see `Consumer::open`).
    pub fn open(memfd: OwnedFd, opts: ConsumerOptions) -> Result<RingReader, RingError> {
        let consumer = Consumer::open(memfd, opts)?;
        // Losses a previous agent already reported are in the ring's header; the rest —
        // drops before any agent held the ring, or while none did — are still to report.
        let seen = consumer.reported();
        Ok(RingReader {
            consumer,
            seen,
            payload: Vec::new(),
            held: None,
            gap_checked: false,
            lingering: false,
            records: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            read_ahead_at: Instant::now(),
        })
    }

    /// Whether records wait (committed or still being written) or one is held.
    pub fn has_backlog(&self) -> bool {
        self.held.is_some() || !self.queue.is_empty() || self.consumer.backlog_slots() > 0
    }

    /// Takes the next committed record out of the ring into the read-ahead queue, without
    /// applying it. Returns `false` when the queue is full (nothing was read).
    pub fn read_ahead(&mut self) -> Result<bool, RingError> {
        if self.queued_bytes >= READ_AHEAD_BYTES
            || READ_AHEAD_USED.load(Ordering::Relaxed) >= READ_AHEAD_TOTAL
        {
            return Ok(false);
        }
        self.read_ahead_at = Instant::now();
        let mut payload = Vec::new();
        if let Some(meta) = self.consumer.next(&mut payload)? {
            self.records += 1;
            self.queued_bytes += payload.len();
            READ_AHEAD_USED.fetch_add(payload.len(), Ordering::Relaxed);
            self.queue.push_back((meta, payload));
        }
        Ok(true)
    }

    /// Lingering: an empty pass leaves `consumer_sleeping` unset, so the producer's writes cost
    /// no eventfd wake-up (a syscall in the app's `write()`) while the peer polls on a timer.
    pub fn set_lingering(&mut self, on: bool) {
        self.lingering = on;
    }

    /// Records read from the ring so far.
    pub fn records_read(&self) -> u64 {
        self.records
    }

    /// The control socket was read after a [`Pass::Gap`]: let the held record proceed.
    pub fn gap_checked(&mut self) {
        self.gap_checked = true;
    }

    /// Applies records to `streams` in order. `expected` is the next `seq` the peer expects
    /// (updated); `before` bounds the pass for a DATA frame; it stops early with
    /// [`Pass::Handoff`] once `streams` holds `handoff_bytes`, or once it has applied
    /// `max_records` records.
    pub fn pass(
        &mut self,
        streams: &mut Streams,
        expected: &mut Option<u32>,
        before: Option<u32>,
        handoff_bytes: usize,
        max_records: u64,
    ) -> Result<Pass, PassError> {
        let mut applied = 0u64;
        loop {
            if applied >= max_records {
                return Ok(Pass::Handoff);
            }
            let meta = if let Some(m) = self.held.take() {
                m
            } else if let Some((m, payload)) = self.queue.pop_front() {
                self.queued_bytes -= payload.len();
                READ_AHEAD_USED.fetch_sub(payload.len(), Ordering::Relaxed);
                self.payload = payload;
                // Keep the tail moving while the queue is worked through (see the module doc).
                if self.read_ahead_at.elapsed() >= TRICKLE {
                    self.read_ahead()?;
                }
                m
            } else {
                match self.consumer.next(&mut self.payload)? {
                    Some(m) => {
                        self.records += 1;
                        m
                    }
                    None if self.lingering || self.consumer.prepare_sleep() => {
                        return Ok(Pass::Empty);
                    }
                    None => continue,
                }
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
            applied += 1;
            if streams.out_bytes() >= handoff_bytes {
                return Ok(Pass::Handoff);
            }
        }
    }

    /// Counts what producers dropped (ring full) and what the consumer skipped since last time;
    /// returns those new losses.
    pub fn report_losses(&mut self) -> RingCounters {
        let c = self.consumer.counters();
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
            self.consumer.set_reported(&c);
        }
        self.seen = c;
        new
    }
}

impl Drop for RingReader {
    fn drop(&mut self) {
        READ_AHEAD_USED.fetch_sub(self.queued_bytes, Ordering::Relaxed);
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
