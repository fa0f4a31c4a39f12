//! Buffering between the batch stage and the outputs.
//!
//! - [`memory`] — the bounded in-memory buffer (`mem_buf_limit`): admission waits for room
//!   (that is the backpressure that finally stops the tap input from reading), and a chunk's
//!   memory is released only when every output has acknowledged it.
//!
//! A durable store (`storage_path`) plugs in through [`ChunkStore`]: the buffer calls
//! [`ChunkStore::persist`] before a chunk is handed to any output, and [`ChunkStore::remove`]
//! once every output has settled it, so a chunk on disk is exactly a chunk not yet delivered.

pub mod memory;
pub mod spool;

use crate::record::{Chunk, ChunkId};

/// Durable storage of chunks (the spool of `storage_path`).
pub trait ChunkStore: Send + Sync + 'static {
    /// Makes `chunk` durable; called before any output sees it. An error refuses the chunk.
    fn persist(&self, chunk: &Chunk) -> std::io::Result<()>;
    /// Every output has delivered (or given up on) the chunk: forget it.
    fn remove(&self, id: ChunkId);
}
