//! [`Delivery`]: one output's hold on one buffered chunk — all an output receives.
//!
//! The buffer makes one `Delivery` per output for each chunk it hands out (see
//! [`crate::buffer`]). An output keeps it for as long as the chunk is in flight (across
//! resends) and then calls [`Delivery::ack`] — or [`Delivery::give_up`] when its
//! `retry_limit` is exhausted. What settling does (the store forgets the chunk, its ring
//! positions are released once every output has settled it) is the buffer's, behind [`Hold`].
//! A `Delivery` dropped unsettled (shutdown) leaves the chunk on disk, or its records in the
//! rings, for the next start.

use std::sync::Arc;

use crate::metrics::{DropReason, METRICS};
use crate::record::Chunk;

/// The buffer's side of a chunk handed to outputs.
pub trait Hold: Send + Sync {
    /// The chunk.
    fn chunk(&self) -> &Chunk;
    /// One output has settled the chunk (each output settles it once).
    fn settle_one(&self);
    /// Whether every output has settled the chunk.
    fn all_settled(&self) -> bool;
}

/// One output's hold on one buffered chunk.
pub struct Delivery {
    held: Arc<dyn Hold>,
    settled: bool,
}

impl Delivery {
    /// A delivery of `held`'s chunk to one output (made by the buffer).
    pub fn new(held: Arc<dyn Hold>) -> Delivery {
        Delivery {
            held,
            settled: false,
        }
    }

    /// The chunk to deliver.
    pub fn chunk(&self) -> &Chunk {
        self.held.chunk()
    }

    /// This output has delivered the chunk (the server acknowledged it, or it was written).
    pub fn ack(mut self) {
        self.settle();
    }

    /// This output will never deliver the chunk (retry limit, permanent rejection): counted
    /// as a drop, and the chunk is settled for it.
    pub fn give_up(mut self) {
        let c = self.held.chunk();
        METRICS.dropped(
            DropReason::OutputGaveUp,
            u64::from(c.records),
            c.entries.len() as u64,
        );
        self.settle();
    }

    fn settle(&mut self) {
        if !self.settled {
            self.settled = true;
            self.held.settle_one();
        }
    }

    /// Whether every output has settled the chunk.
    pub fn all_settled(&self) -> bool {
        self.held.all_settled()
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.held.chunk();
        f.debug_struct("Delivery")
            .field("chunk", &c.id.as_text())
            .field("records", &c.records)
            .finish()
    }
}
