//! The bounded in-memory buffer: chunks wait here until every output has acknowledged them.
//!
//! Memory is counted in bytes with a semaphore of `mem_buf_limit` permits. [`MemoryBuffer::admit`]
//! waits for a chunk's permits — so when outputs fall behind, the batch stage waits, the peers'
//! tasks wait, the rings fill, and the interceptor drops copies and counts them (Contract 2):
//! the agent's memory stays bounded whatever the input rate.
//!
//! Admission returns one [`Delivery`] per output. An output keeps its `Delivery` for as long as
//! the chunk is in flight (across resends) and then calls [`Delivery::ack`] — or
//! [`Delivery::give_up`] when its `retry_limit` is exhausted. When the last `Delivery` is gone
//! the permits return; when every output has settled it, the durable store (if any) forgets the
//! chunk. A `Delivery` dropped unsettled (shutdown) leaves the chunk on disk for the next start.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ChunkStore;
use crate::metrics::{DropReason, METRICS};
use crate::record::Chunk;

/// Why a chunk was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("the buffer is closed (the agent is shutting down)")]
    Closed,
    #[error("cannot store chunk in storage_path: {0}")]
    Store(std::io::Error),
}

/// The buffer shared by the batch stage and the forward input.
pub struct MemoryBuffer {
    permits: Arc<Semaphore>,
    limit: usize,
    store: Option<Arc<dyn ChunkStore>>,
}

/// A chunk held for its outputs.
struct Held {
    chunk: Chunk,
    size: usize,
    unsettled: AtomicUsize,
    store: Option<Arc<dyn ChunkStore>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.unsettled.load(Ordering::Acquire) > 0 && self.store.is_none() {
            // Some output never delivered it and nothing keeps it: lost at shutdown.
            METRICS.dropped(
                DropReason::Shutdown,
                u64::from(self.chunk.records),
                self.chunk.entries.len() as u64,
            );
        }
        METRICS
            .buffer_bytes
            .fetch_sub(self.size as i64, Ordering::Relaxed);
        METRICS.buffer_chunks.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One output's hold on one buffered chunk.
pub struct Delivery {
    held: Arc<Held>,
    settled: bool,
}

impl MemoryBuffer {
    /// A buffer of at most `limit` bytes (a larger chunk is admitted alone).
    pub fn new(limit: usize, store: Option<Arc<dyn ChunkStore>>) -> MemoryBuffer {
        let limit = limit
            .clamp(1, Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize);
        MemoryBuffer {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            store,
        }
    }

    /// Waits for room, persists the chunk if a store is configured, and returns one
    /// [`Delivery`] for each of `outputs` outputs.
    pub async fn admit(&self, chunk: Chunk, outputs: usize) -> Result<Vec<Delivery>, BufferError> {
        let size = chunk.size();
        let want = u32::try_from(size.clamp(1, self.limit)).unwrap_or(u32::MAX);
        let permit = Arc::clone(&self.permits)
            .acquire_many_owned(want)
            .await
            .map_err(|_| BufferError::Closed)?;
        let chunk = match &self.store {
            Some(store) => {
                let store = Arc::clone(store);
                tokio::task::spawn_blocking(move || store.persist(&chunk).map(|()| chunk))
                    .await
                    .map_err(|e| BufferError::Store(std::io::Error::other(e)))?
                    .map_err(BufferError::Store)?
            }
            None => chunk,
        };
        METRICS
            .buffer_bytes
            .fetch_add(size as i64, Ordering::Relaxed);
        METRICS.buffer_chunks.fetch_add(1, Ordering::Relaxed);
        let held = Arc::new(Held {
            chunk,
            size,
            unsettled: AtomicUsize::new(outputs),
            store: self.store.clone(),
            _permit: permit,
        });
        Ok((0..outputs)
            .map(|_| Delivery {
                held: Arc::clone(&held),
                settled: false,
            })
            .collect())
    }

    /// Bytes currently admitted.
    pub fn used(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// Wakes every waiting admission with [`BufferError::Closed`].
    pub fn close(&self) {
        self.permits.close();
    }
}

impl Delivery {
    /// The chunk to deliver.
    pub fn chunk(&self) -> &Chunk {
        &self.held.chunk
    }

    /// This output has delivered the chunk (the server acknowledged it, or it was written).
    pub fn ack(mut self) {
        self.settle();
    }

    /// This output will never deliver the chunk (retry limit, permanent rejection): counted
    /// as a drop, and the chunk is settled for it.
    pub fn give_up(mut self) {
        let c = &self.held.chunk;
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
            if self.held.unsettled.fetch_sub(1, Ordering::AcqRel) == 1
                && let Some(store) = &self.held.store
            {
                store.remove(self.held.chunk.id);
            }
        }
    }

    /// Whether every output has settled the chunk.
    pub fn all_settled(&self) -> bool {
        self.held.unsettled.load(Ordering::Acquire) == 0
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("chunk", &self.held.chunk.id)
            .field("records", &self.held.chunk.records)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ChunkId;
    use std::sync::Mutex;
    use std::time::Duration;

    fn chunk(bytes: usize) -> Chunk {
        Chunk {
            id: ChunkId::random(),
            tag: "t".into(),
            entries: vec![0u8; bytes].into(),
            records: 1,
        }
    }

    #[tokio::test]
    async fn admission_waits_for_acks() {
        let buf = MemoryBuffer::new(100, None);
        let first = buf.admit(chunk(60), 2).await.unwrap();
        assert_eq!(buf.used(), 61);
        let blocked =
            tokio::time::timeout(Duration::from_millis(50), buf.admit(chunk(60), 1)).await;
        assert!(blocked.is_err(), "no room until both outputs let go");
        let mut first = first.into_iter();
        first.next().unwrap().ack();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), buf.admit(chunk(60), 1))
                .await
                .is_err()
        );
        first.next().unwrap().ack();
        let second =
            tokio::time::timeout(Duration::from_millis(500), buf.admit(chunk(60), 1)).await;
        assert!(second.is_ok(), "room after the last ack");
    }

    #[tokio::test]
    async fn oversized_chunk_is_admitted_alone() {
        let buf = MemoryBuffer::new(10, None);
        let d = buf.admit(chunk(1000), 1).await.unwrap();
        assert_eq!(buf.used(), 10);
        drop(d);
        assert_eq!(buf.used(), 0);
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);
    impl ChunkStore for Recorder {
        fn persist(&self, c: &Chunk) -> std::io::Result<()> {
            self.0.lock().unwrap().push(format!("persist {:?}", c.id));
            Ok(())
        }
        fn remove(&self, id: ChunkId) {
            self.0.lock().unwrap().push(format!("remove {id:?}"));
        }
    }

    #[tokio::test]
    async fn store_forgets_only_settled_chunks() {
        let rec = Arc::new(Recorder::default());
        let buf = MemoryBuffer::new(1000, Some(rec.clone() as Arc<dyn ChunkStore>));
        let c = chunk(10);
        let id = c.id;
        let mut d = buf.admit(c, 2).await.unwrap().into_iter();
        d.next().unwrap().ack();
        drop(d.next()); // the second output never delivered it: it stays stored
        assert_eq!(*rec.0.lock().unwrap(), vec![format!("persist {id:?}")]);
        let c = chunk(10);
        let id2 = c.id;
        let mut d = buf.admit(c, 2).await.unwrap().into_iter();
        d.next().unwrap().ack();
        d.next().unwrap().give_up();
        assert_eq!(
            rec.0.lock().unwrap().last().unwrap(),
            &format!("remove {id2:?}")
        );
    }
}
