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
//! The ring is read in holding mode: what was read stays in the ring until it is safe (see
//! [`crate::record::ring_release`]). Every record goes to the streams with its ring position, and
//! [`RingReader::hand_off`] turns the positions of the entries handed to the pipeline into pins
//! and tells the tracker how far the peer itself still holds. A process waiting for room in
//! its full ring (`LLT_RING_FULL=block`) tells a live agent by the ring's *progress* — `tail`,
//! or the heartbeat the agent's keeper thread beats while the agent makes progress (see
//! [`crate::record::ring_release`]): reading ahead into the agent's memory would not make room, since
//! what was read is not released before it is safe.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use logtap_protocol::ring::{
    Consumer, ConsumerOptions, RECORD_CONTINUED, RecordMeta, RingCounters, RingError,
};

use super::streams::{StreamError, Streams};
use crate::metrics::{DropReason, METRICS};
use crate::record::ring_release::RingTracker;

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
    tracker: Arc<RingTracker>,
    seen: RingCounters,
    payload: Vec<u8>,
    /// A record read but held back (a `seq` gap, or a DATA frame's bound), with its position.
    held: Option<(RecordMeta, u64)>,
    gap_checked: bool,
    /// While set, an empty pass does not announce sleep: the peer polls again shortly.
    lingering: bool,
    /// Records read so far (tells the peer whether a pass found anything).
    records: u64,
    /// `records` at the last hand-off.
    records_at_handoff: u64,
}

impl RingReader {
    /// Maps and checks the ring memfd a peer passed (see `Consumer::open`).
    pub fn open(memfd: OwnedFd, opts: ConsumerOptions) -> Result<RingReader, RingError> {
        let (consumer, release) = Consumer::open_holding(memfd, opts)?;
        // Losses a previous agent already reported are in the ring's header; the rest —
        // drops before any agent held the ring, or while none did — are still to report.
        let seen = consumer.reported();
        let unreleased = consumer.reread_end() - consumer.read_position();
        if unreleased > 0 {
            tracing::info!(
                words = unreleased,
                "resuming a ring where the previous agent stopped: records it read but had not made safe are read again"
            );
        }
        let tracker = RingTracker::new(release);
        crate::record::ring_release::keep(&tracker);
        Ok(RingReader {
            consumer,
            tracker,
            seen,
            payload: Vec::new(),
            held: None,
            gap_checked: false,
            lingering: false,
            records: 0,
            records_at_handoff: 0,
        })
    }

    /// Whether records wait (committed or still being written) or one is held.
    pub fn has_backlog(&self) -> bool {
        self.held.is_some() || self.consumer.backlog_words() > 0
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

    /// The ring's release tracker.
    pub fn tracker(&self) -> &Arc<RingTracker> {
        &self.tracker
    }

    /// Turns the ring positions of the entries `streams` made into pins, and tells the tracker
    /// the oldest position the peer still holds itself (pending lines, a held record) — so the
    /// ring is released up to what is safe. Call before the entries are taken. Returns whether
    /// the ring is pressured with a line pending in `streams` holding it most: the caller
    /// flushes pending lines then (see `ring_release`).
    pub fn hand_off(&mut self, streams: &mut Streams) -> bool {
        let tracker = &self.tracker;
        streams.pin_out(|pos| tracker.pin(pos));
        let read = self.consumer.read_position();
        let pending = streams.pending_floor();
        let mut floor = read;
        if let Some(pos) = pending {
            floor = floor.min(pos);
        }
        if let Some((_, pos)) = &self.held {
            floor = floor.min(*pos);
        }
        if self.records != self.records_at_handoff {
            self.records_at_handoff = self.records;
            crate::record::ring_release::note_progress();
        }
        let (pressured, local) = self.tracker.set_floor(floor, read);
        // A pending line is what holds the ring most (not a record held for a `seq` gap).
        pressured && local && pending == Some(floor)
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
            let (meta, pos) = match self.held.take() {
                Some(held) => held,
                None => {
                    // The record starts at or after the read position (stuck reservations skipped
                    // first): pinning this position is safe.
                    let pos = self.consumer.read_position();
                    match self.consumer.next(&mut self.payload)? {
                        Some(m) => {
                            self.records += 1;
                            if pos < self.consumer.reread_end() {
                                METRICS.ring_records_reread.fetch_add(1, Relaxed);
                            }
                            (m, pos)
                        }
                        None if self.lingering || self.consumer.prepare_sleep() => {
                            return Ok(Pass::Empty);
                        }
                        None => continue,
                    }
                }
            };
            if let Some(bound) = before {
                if !after(bound, meta.seq) {
                    self.held = Some((meta, pos));
                    return Ok(Pass::Reached);
                }
            } else if let Some(e) = *expected
                && after(meta.seq, e)
                && !self.gap_checked
            {
                self.held = Some((meta, pos));
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
                    Some(pos),
                )
                .map_err(PassError::Stream)?;
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
            abandoned_records: c
                .abandoned_records
                .saturating_sub(self.seen.abandoned_records),
        };
        if new.dropped_records > 0 {
            METRICS.dropped(DropReason::RingFull, new.dropped_records, new.dropped_bytes);
        }
        if new.abandoned_records > 0 {
            METRICS.dropped(DropReason::RingAbandoned, new.abandoned_records, 0);
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
        self.tracker.set_peer_gone();
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
