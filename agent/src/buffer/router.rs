//! The [`Router`]: admits each chunk into the buffer and hands it to every output, as one
//! [`Delivery`] each — the one way from the pipeline (and the forward input) to the outputs.
//! Chunks spilled to disk are handed out the same way when memory frees up.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::memory::{Admitted, BufferError, MemoryBuffer};
use crate::output::{Delivery, DeliverySender};
use crate::record::Chunk;
use crate::record::ring_release::RingPins;

/// Admits chunks into the buffer and gives every output its [`Delivery`].
#[derive(Clone)]
pub struct Router {
    buffer: Arc<MemoryBuffer>,
    outputs: Vec<DeliverySender>,
}

impl Router {
    /// A router admitting into `buffer` and handing each chunk to every one of `outputs`.
    /// With a store it also feeds the outputs the chunks spilled to disk (and those of the
    /// previous run), as memory frees up.
    pub fn new(buffer: Arc<MemoryBuffer>, outputs: Vec<DeliverySender>) -> Router {
        if buffer.has_store() {
            let weak = outputs.iter().map(|s| s.downgrade()).collect();
            tokio::spawn(load_spilled(Arc::clone(&buffer), weak));
        }
        Router { buffer, outputs }
    }

    /// Waits for room in the buffer (or persists the chunk, with `storage_path`), then hands
    /// the chunk to every output. When this returns `Ok`, the chunk is buffered (and persisted,
    /// with `storage_path`): safe to acknowledge upstream. For the forward input.
    pub async fn dispatch(&self, chunk: Chunk) -> Result<(), BufferError> {
        let admitted = self.buffer.admit(chunk, None, self.outputs.len()).await?;
        self.hand_out(admitted);
        Ok(())
    }

    /// [`Router::dispatch`] for a chunk of tapped records: `pins` hold their ring positions
    /// until the chunk is safe (persisted, or settled by every output).
    pub async fn dispatch_pinned(&self, chunk: Chunk, pins: RingPins) -> Result<(), BufferError> {
        let admitted = self
            .buffer
            .admit(chunk, Some(pins), self.outputs.len())
            .await?;
        self.hand_out(admitted);
        Ok(())
    }

    fn hand_out(&self, admitted: Admitted) {
        if let Admitted::Now(deliveries) = admitted {
            send_all(&self.outputs, deliveries);
        }
    }
}

fn send_all(outputs: &[DeliverySender], deliveries: Vec<Delivery>) {
    for (tx, d) in outputs.iter().zip(deliveries) {
        // A stopped output's share stays unsettled (counted when the chunk is released).
        let _ = tx.send(d);
    }
}

/// Feeds the outputs the chunks the buffer spilled to disk, as memory frees up. Holds the
/// outputs' channels weakly, so that they still end when the last [`Router`] is dropped
/// (spilled chunks then stay on disk for the next start).
async fn load_spilled(
    buffer: Arc<MemoryBuffer>,
    outputs: Vec<mpsc::WeakUnboundedSender<Delivery>>,
) {
    while let Some(deliveries) = buffer.next_spilled(outputs.len()).await {
        let strong: Option<Vec<_>> = outputs.iter().map(|w| w.upgrade()).collect();
        match strong {
            Some(strong) => send_all(&strong, deliveries),
            // The outputs are finishing: the chunk stays on disk (its deliveries are dropped
            // unsettled).
            None => return,
        }
    }
}
