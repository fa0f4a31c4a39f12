//! The batch stage: entries of the same tag are gathered into chunks.
//!
//! A chunk is closed when it reaches `chunk_limit` bytes or when its first entry has waited
//! `flush_interval`, then handed to the [`Router`] (buffer admission, then every output). The
//! stage is one task; inputs send it [`Entries`] over a bounded channel, so while admission
//! waits for room in the buffer the channel fills and the inputs wait too (backpressure).
//! When every sender is gone (inputs stopped), it flushes what it holds and ends: that is the
//! "flush" step of the shutdown.
//!
//! A chunk carries the ring pins of its entries (one per ring, the lowest; see
//! [`crate::record::ring_release`]). A chunk holding the oldest record of a *pressured* ring —
//! more than half of it read and not yet safe — or records of a process that is gone is
//! *urgent*: it is sealed once it is [`URGENT_AGE`] old instead of waiting for its size or
//! `flush_interval`, since the tapped process is waiting for that space.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::buffer::Router;
use crate::record::ring_release::{PRESSURE, RingPins};
use crate::record::{Chunk, ChunkId, Entries, PRESSURED_CHUNK};

/// Settings of the batch stage.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub flush_interval: Duration,
    /// Largest chunk the stage makes (a single larger entry makes a chunk of its own).
    pub chunk_limit: usize,
}

impl BatchConfig {
    /// Chunks of at most `chunk_limit_size` (`chunk_limit_size`), and small enough that four
    /// fit in the buffer: while some wait for their acks, the next ones are admitted and the
    /// rings keep being read.
    pub fn new(
        flush_interval: Duration,
        chunk_limit_size: usize,
        mem_buf_limit: usize,
    ) -> BatchConfig {
        BatchConfig {
            flush_interval,
            chunk_limit: chunk_limit_size.min(mem_buf_limit / 4).max(1024),
        }
    }
}

struct Open {
    buf: Vec<u8>,
    records: u32,
    opened: Instant,
    deadline: Instant,
    pins: RingPins,
}

/// An urgent chunk (see the module docs) is sealed once it is this old: a chunk that fills
/// fast closes by size before (a flood is not cut into small chunks, which would fill a
/// server's window of chunks in flight long before its bandwidth), one that fills slowly does
/// not hold its ring for `flush_interval`.
pub const URGENT_AGE: Duration = Duration::from_millis(20);

impl Open {
    /// Brings the deadline forward to `opened + URGENT_AGE` if the chunk is urgent; returns
    /// whether it is due now.
    fn hurry(&mut self, now: Instant) -> bool {
        if self.pins.urgent() {
            self.deadline = self.deadline.min(self.opened + URGENT_AGE);
        }
        self.deadline <= now
    }
}

/// Runs the stage until every sender of `rx` is dropped and what it held is dispatched.
pub async fn run(mut rx: mpsc::Receiver<Entries>, router: Router, config: BatchConfig) {
    let mut open: HashMap<Arc<str>, Open> = HashMap::new();
    loop {
        let next_deadline = open.values().map(|o| o.deadline).min();
        tokio::select! {
            received = rx.recv() => match received {
                Some(entries) => {
                    if let Some((full, pins)) = add(&mut open, entries, &config) {
                        dispatch(&router, full, pins).await;
                    }
                }
                None => break,
            },
            () = PRESSURE.notified() => {
                let now = Instant::now();
                let pressured: Vec<Arc<str>> = open
                    .iter_mut()
                    .filter_map(|(t, o)| o.hurry(now).then(|| Arc::clone(t)))
                    .collect();
                for tag in pressured {
                    if let Some(o) = open.remove(&tag) {
                        let (chunk, pins) = seal(tag, o);
                        dispatch(&router, chunk, pins).await;
                    }
                }
            }
            () = sleep_until(next_deadline) => {
                let now = Instant::now();
                let due: Vec<Arc<str>> = open
                    .iter()
                    .filter(|(_, o)| o.deadline <= now)
                    .map(|(t, _)| Arc::clone(t))
                    .collect();
                for tag in due {
                    if let Some(o) = open.remove(&tag) {
                        let (chunk, pins) = seal(tag, o);
                        dispatch(&router, chunk, pins).await;
                    }
                }
            }
        }
    }
    for (tag, o) in open.drain() {
        let (chunk, pins) = seal(tag, o);
        dispatch(&router, chunk, pins).await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Adds entries to the open chunk of their tag; returns a chunk that became full (or holds
/// records of a pressured ring), with its pins.
fn add(
    open: &mut HashMap<Arc<str>, Open>,
    entries: Entries,
    config: &BatchConfig,
) -> Option<(Chunk, RingPins)> {
    if entries.records == 0 {
        // Nothing to deliver: the positions are safe as they are.
        entries.pins.release();
        return None;
    }
    let o = open.entry(Arc::clone(&entries.tag)).or_insert_with(|| {
        let now = Instant::now();
        Open {
            // Room for a full chunk at once: growing by doubling would copy, and leave up
            // to twice the bytes the buffer accounts for.
            buf: Vec::with_capacity(config.chunk_limit + config.chunk_limit / 4),
            records: 0,
            opened: now,
            deadline: now + config.flush_interval,
            pins: RingPins::default(),
        }
    });
    o.pins.merge(entries.pins);
    if o.buf.is_empty() && entries.buf.len() >= config.chunk_limit {
        // Already a chunk's worth: no copy.
        o.buf = entries.buf;
    } else {
        o.buf.extend_from_slice(&entries.buf);
    }
    o.records += entries.records;
    let limit = if entries.pressured {
        config.chunk_limit.min(PRESSURED_CHUNK)
    } else {
        config.chunk_limit
    };
    if o.buf.len() >= limit || o.hurry(Instant::now()) {
        let tag = entries.tag;
        open.remove(&tag).map(|o| seal(tag, o))
    } else {
        None
    }
}

fn seal(tag: Arc<str>, mut o: Open) -> (Chunk, RingPins) {
    // The buffer's accounting counts `len`; unused capacity would be memory nobody counts.
    o.buf.shrink_to_fit();
    let chunk = Chunk {
        id: ChunkId::generate(),
        tag,
        entries: Bytes::from(o.buf),
        records: o.records,
    };
    (chunk, o.pins)
}

async fn dispatch(router: &Router, chunk: Chunk, pins: RingPins) {
    let records = chunk.records;
    if let Err(e) = router.dispatch_pinned(chunk, pins).await {
        // Only at shutdown (buffer closed): the records stay in their rings (the pins are not
        // released), for the next agent.
        tracing::warn!(error = %e, records, "a chunk could not be buffered");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tag: &str, n: u32, bytes: usize) -> Entries {
        Entries {
            tag: tag.into(),
            buf: vec![0x90; bytes],
            records: n,
            pins: RingPins::default(),
            pressured: false,
        }
    }

    #[test]
    fn groups_by_tag_and_cuts_at_limit() {
        let config = BatchConfig {
            flush_interval: Duration::from_secs(1),
            chunk_limit: 100,
        };
        let mut open = HashMap::new();
        assert!(add(&mut open, entries("a", 1, 60), &config).is_none());
        assert!(add(&mut open, entries("b", 1, 60), &config).is_none());
        let (full, _) = add(&mut open, entries("a", 2, 60), &config).unwrap();
        assert_eq!(
            (&*full.tag, full.records, full.entries.len()),
            ("a", 3, 120)
        );
        assert_eq!(open.len(), 1, "b stays open");
        assert!(add(&mut open, entries("c", 0, 0), &config).is_none());
        assert_eq!(open.len(), 1, "empty runs open nothing");
    }

    #[test]
    fn a_pressured_ring_closes_chunks_at_256_kib() {
        let config = BatchConfig::new(Duration::from_secs(1), 2 << 20, 16 << 20);
        assert_eq!(config.chunk_limit, 2 << 20);
        let mut open = HashMap::new();
        assert!(add(&mut open, entries("a", 1, 200 << 10), &config).is_none());
        assert!(
            add(&mut open, entries("a", 1, 100 << 10), &config).is_none(),
            "300 KiB: far from 2 MB"
        );
        let mut pressured = entries("a", 1, 1);
        pressured.pressured = true;
        let (full, _) = add(&mut open, pressured, &config).expect("closed under pressure");
        assert_eq!(full.records, 3);
        assert!(
            add(&mut open, entries("b", 1, 100), &config).is_none(),
            "a small chunk waits even so"
        );
    }
}
