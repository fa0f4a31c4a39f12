//! Buffering between the batch stage and the outputs.
//!
//! - [`memory`] — the bounded in-memory buffer (`mem_buf_limit`): admission waits for room
//!   (that is the backpressure that finally stops the tap input from reading), a chunk's
//!   memory is released only when every output has acknowledged it, and a tap chunk's ring
//!   positions only when it is safe.
//! - [`spool`] — the durable store of `storage_path`: one file per chunk.
//! - [`router`] — the [`Router`]: admission, then one [`Delivery`](crate::output::Delivery)
//!   per output (the outputs only receive deliveries).
//!
//! A durable store plugs in through [`ChunkStore`]: the buffer calls [`ChunkStore::persist`]
//! before a chunk is handed to any output, and [`ChunkStore::remove`] once every output has
//! settled it, so a chunk on disk is exactly a chunk not yet delivered. Chunks beyond
//! `mem_buf_limit` stay on disk only and are read back with [`ChunkStore::load`].

pub mod memory;
pub mod router;
pub mod spool;

pub use router::Router;

use crate::record::{Chunk, ChunkId};

/// Durable storage of chunks (the spool of `storage_path`).
pub trait ChunkStore: Send + Sync + 'static {
    /// Makes `chunk` safe from a crash of the agent; called before any output sees it. An error
    /// refuses the chunk (nothing of it is left behind).
    fn persist(&self, chunk: &Chunk) -> std::io::Result<()>;
    /// Reads a persisted chunk back.
    fn load(&self, id: &ChunkId) -> std::io::Result<Chunk>;
    /// Every output has delivered (or given up on) the chunk: forget it.
    fn remove(&self, id: &ChunkId);
    /// Where the chunks are (for log lines).
    fn location(&self) -> std::path::PathBuf;
}

/// A chunk in the store, not in memory: what it takes to queue it and load it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChunk {
    pub id: ChunkId,
    /// [`Chunk::size`] of the chunk.
    pub size: u64,
    pub records: u32,
}
