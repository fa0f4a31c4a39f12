//! The batch stage: entries of the same tag are gathered into chunks.
//!
//! A chunk is closed when it reaches `chunk_limit` bytes or when its first entry has waited
//! `flush_interval`, then handed to the [`Router`] (buffer admission, then every output). The
//! stage is one task; inputs send it [`Entries`] over a bounded channel, so while admission
//! waits for room in the buffer the channel fills and the inputs wait too (backpressure).
//! When every sender is gone (inputs stopped), it flushes what it holds and ends: that is the
//! "flush" step of the shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::output::Router;
use crate::record::{Chunk, ChunkId, Entries};

/// Largest chunk the stage makes (a single larger entry makes a chunk of its own).
pub const CHUNK_LIMIT: usize = 256 * 1024;

/// Settings of the batch stage.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub flush_interval: Duration,
    pub chunk_limit: usize,
}

impl BatchConfig {
    /// Chunks of at most [`CHUNK_LIMIT`], and small enough that four fit in the buffer.
    pub fn new(flush_interval: Duration, mem_buf_limit: usize) -> BatchConfig {
        BatchConfig {
            flush_interval,
            chunk_limit: CHUNK_LIMIT.min(mem_buf_limit / 4).max(1024),
        }
    }
}

struct Open {
    buf: Vec<u8>,
    records: u32,
    deadline: Instant,
}

/// Runs the stage until every sender of `rx` is dropped and what it held is dispatched.
pub async fn run(mut rx: mpsc::Receiver<Entries>, router: Router, config: BatchConfig) {
    let mut open: HashMap<Arc<str>, Open> = HashMap::new();
    loop {
        let next_deadline = open.values().map(|o| o.deadline).min();
        tokio::select! {
            received = rx.recv() => match received {
                Some(entries) => {
                    if let Some(full) = add(&mut open, entries, &config) {
                        dispatch(&router, full).await;
                    }
                }
                None => break,
            },
            () = sleep_until(next_deadline) => {
                let now = Instant::now();
                let due: Vec<Arc<str>> = open
                    .iter()
                    .filter(|(_, o)| o.deadline <= now)
                    .map(|(t, _)| Arc::clone(t))
                    .collect();
                for tag in due {
                    if let Some(o) = open.remove(&tag) {
                        dispatch(&router, seal(tag, o)).await;
                    }
                }
            }
        }
    }
    for (tag, o) in open.drain() {
        dispatch(&router, seal(tag, o)).await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Adds entries to the open chunk of their tag; returns a chunk that became full.
fn add(
    open: &mut HashMap<Arc<str>, Open>,
    entries: Entries,
    config: &BatchConfig,
) -> Option<Chunk> {
    if entries.records == 0 {
        return None;
    }
    let o = open
        .entry(Arc::clone(&entries.tag))
        .or_insert_with(|| Open {
            // Room for a full chunk at once: growing by doubling would copy, and leave up to twice
            // the bytes the buffer accounts for.
            buf: Vec::with_capacity(config.chunk_limit + config.chunk_limit / 4),
            records: 0,
            deadline: Instant::now() + config.flush_interval,
        });
    if o.buf.is_empty() && entries.buf.len() >= config.chunk_limit {
        // Already a chunk's worth: no copy.
        o.buf = entries.buf;
    } else {
        o.buf.extend_from_slice(&entries.buf);
    }
    o.records += entries.records;
    if o.buf.len() >= config.chunk_limit {
        let tag = entries.tag;
        open.remove(&tag).map(|o| seal(tag, o))
    } else {
        None
    }
}

fn seal(tag: Arc<str>, mut o: Open) -> Chunk {
    // The buffer's accounting counts `len`; unused capacity would be memory nobody counts.
    o.buf.shrink_to_fit();
    Chunk {
        id: ChunkId::random(),
        tag,
        entries: Bytes::from(o.buf),
        records: o.records,
    }
}

async fn dispatch(router: &Router, chunk: Chunk) {
    if let Err(e) = router.dispatch(chunk).await {
        tracing::error!(error = %e, "a chunk could not be buffered; its records are lost");
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
        let full = add(&mut open, entries("a", 2, 60), &config).unwrap();
        assert_eq!(
            (&*full.tag, full.records, full.entries.len()),
            ("a", 3, 120)
        );
        assert_eq!(open.len(), 1, "b stays open");
        assert!(add(&mut open, entries("c", 0, 0), &config).is_none());
        assert_eq!(open.len(), 1, "empty runs open nothing");
    }
}
