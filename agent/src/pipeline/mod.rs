//! The pipeline: bytes of tapped writes → lines → records → chunks.
//!
//! - [`lines`] — reassembles lines per (pid, stream, file); partial lines and `max_line_bytes`.
//! - [`multiline`] — joins the lines of one event (a stack trace): whole writes or Fluent Bit rules.
//! - [`enrich`] — turns a line into a Contract 3 record (tag template, Downward-API metadata),
//!   encoded straight into Forward entries.
//! - [`batch`] — gathers entries of one tag into chunks by `flush_interval` and size, and hands
//!   them to the buffer and outputs.
//!
//! Line assembly and enrichment run in each tap peer's own task (so they spread over cores
//! with the peers); the peers send [`Entries`] to the single batch task through an [`Ingest`].

pub mod batch;
pub mod enrich;
pub mod lines;
pub mod multiline;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::buffer::Router;
use crate::buffer::memory::BufferError;
use crate::record::{Chunk, Entries};

/// Capacity (in [`Entries`] messages, each at most ~64 KiB) of the channel into the batch
/// stage. Small: it only smooths bursts, and what waits here is outside `mem_buf_limit` —
/// 16 × 64 KiB keeps that under about a megabyte.
const BATCH_CHANNEL: usize = 16;

/// The inputs' handle on the pipeline. Cloneable; the batch stage ends when every clone is gone.
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Entries>,
    router: Router,
}

/// The batch stage has ended (the agent is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the pipeline is closed")]
pub struct Closed;

impl Ingest {
    /// Sends a run of encoded entries to be batched; waits while the pipeline is full.
    pub async fn send(&self, entries: Entries) -> Result<(), Closed> {
        if entries.records == 0 {
            return Ok(());
        }
        self.tx.send(entries).await.map_err(|_| Closed)
    }

    /// Puts a ready chunk straight into the buffer (no batching); returns once it is buffered
    /// (and persisted with `storage_path`), i.e. when it is safe to acknowledge it upstream.
    /// For the forward input, whose clients already send chunks.
    pub async fn send_chunk(&self, chunk: Chunk) -> Result<(), BufferError> {
        self.router.dispatch(chunk).await
    }
}

/// Starts the batch stage in front of `router`.
pub fn start(router: Router, config: batch::BatchConfig) -> (Ingest, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(BATCH_CHANNEL);
    let task = tokio::spawn(batch::run(rx, router.clone(), config));
    (Ingest { tx, router }, task)
}
