//! The bounded in-memory buffer: chunks wait here until every output has acknowledged them.
//!
//! Memory is counted in bytes with a semaphore of `mem_buf_limit` permits. A chunk's permits
//! return when the last output lets it go.
//!
//! **Without a store** [`MemoryBuffer::admit`] waits for a chunk's permits — so when outputs
//! fall behind, the batch stage waits, the peers' tasks wait, the rings fill, and the
//! interceptor waits for room or drops and counts (Contract 2): the agent's memory stays
//! bounded whatever the input rate. A tap chunk's ring pins are released once every output has
//! settled it: then its records are safe, and the tapped process may reuse their ring space.
//!
//! **With a store** (`storage_path`) a chunk is persisted first; that makes it safe (its pins
//! are released at once). Then it takes its permits if they come within [`SPILL_AFTER`] — else
//! it is *spilled*: kept on disk only, queued, and loaded back by [`MemoryBuffer::next_spilled`]
//! when memory frees up (oldest first; while the queue is not empty, new chunks queue behind it). So
//! an outage of the outputs fills the disk up to `storage_limit`, not the memory. A tap chunk
//! that cannot be persisted (disk full, I/O error) is not refused: it goes the memory way with
//! its pins held until acknowledged — the process's ring keeps its records meanwhile — and the
//! failure is logged once until a write succeeds again. A chunk of the forward input (no pins)
//! is refused instead, so the client resends it.
//!
//! Admission returns one [`Delivery`] per output. An output keeps its `Delivery` for as long as
//! the chunk is in flight (across resends) and then calls [`Delivery::ack`] — or
//! [`Delivery::give_up`] when its `retry_limit` is exhausted. When every output has settled it,
//! the store (if any) forgets the chunk and its pins are released. A `Delivery` dropped
//! unsettled (shutdown) leaves the chunk on disk, or its records in the rings, for the next start.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::{ChunkStore, StoredChunk};
use crate::metrics::{DropReason, METRICS};
use crate::output::delivery::{Delivery, Hold};
use crate::record::Chunk;
use crate::record::ring_release::RingPins;

/// How long a persisted chunk waits for memory before it is spilled (kept on disk only). An
/// output that is merely busy frees memory within it, and the wait costs nothing (the chunk
/// is safe on disk, its ring space released): the batch stage waits, and the input follows
/// the output's pace instead of writing every chunk a second time (to disk, and back). An
/// output that stalls longer (a server down) lets the spool take the input.
pub const SPILL_AFTER: std::time::Duration = std::time::Duration::from_millis(100);

/// Why a chunk was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("the buffer is closed (the agent is shutting down)")]
    Closed,
    #[error("cannot store chunk in storage_path: {0}")]
    Store(std::io::Error),
}

/// What became of an admitted chunk.
#[derive(Debug)]
pub enum Admitted {
    /// In memory: one delivery per output, to hand to them now.
    Now(Vec<Delivery>),
    /// On disk only, queued for [`MemoryBuffer::next_spilled`].
    Spilled,
}

/// The buffer shared by the batch stage and the forward input.
pub struct MemoryBuffer {
    permits: Arc<Semaphore>,
    limit: usize,
    store: Option<Arc<dyn ChunkStore>>,
    /// Chunks on disk only, oldest first.
    spilled: Mutex<VecDeque<StoredChunk>>,
    spilled_added: Notify,
    /// The last write to the store failed (logged once until one succeeds).
    store_failing: AtomicBool,
    /// For the log lines: where the store is.
    store_dir: Option<PathBuf>,
}

/// A chunk held for its outputs.
struct Held {
    chunk: Chunk,
    size: usize,
    unsettled: AtomicUsize,
    /// The store holding the chunk's file, when it was persisted.
    stored: Option<Arc<dyn ChunkStore>>,
    /// Ring positions held until every output settled the chunk (not persisted).
    pins: Mutex<Option<RingPins>>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.unsettled.load(Ordering::Acquire) > 0 && self.stored.is_none() {
            let pins = self
                .pins
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            // Not delivered, not on disk. Records pinned in the ring of a live process are not
            // lost: the next agent reads them again. Anything else is.
            let in_rings = pins.is_some_and(|p| !p.is_empty() && !p.any_peer_gone());
            if !in_rings {
                METRICS.dropped(
                    DropReason::Shutdown,
                    u64::from(self.chunk.records),
                    self.chunk.entries.len() as u64,
                );
            }
        }
        METRICS
            .buffer_bytes
            .fetch_sub(self.size as i64, Ordering::Relaxed);
        METRICS.buffer_chunks.fetch_sub(1, Ordering::Relaxed);
    }
}

impl MemoryBuffer {
    /// A buffer of at most `limit` bytes (a larger chunk is admitted alone), persisting chunks
    /// in `store` if given.
    pub fn new(limit: usize, store: Option<Arc<dyn ChunkStore>>) -> MemoryBuffer {
        let limit = limit
            .clamp(1, Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize);
        let store_dir = store.as_ref().map(|s| s.location());
        MemoryBuffer {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            store,
            spilled: Mutex::new(VecDeque::new()),
            spilled_added: Notify::new(),
            store_failing: AtomicBool::new(false),
            store_dir,
        }
    }

    /// Whether chunks are persisted (and may be spilled).
    pub fn has_store(&self) -> bool {
        self.store.is_some()
    }

    /// Queues chunks found in the store at start (a previous run's): sent again, in order.
    pub fn recover(&self, chunks: Vec<StoredChunk>) {
        if chunks.is_empty() {
            return;
        }
        let mut q = self.spilled.lock().unwrap_or_else(|e| e.into_inner());
        METRICS
            .spilled_chunks
            .fetch_add(chunks.len() as i64, Ordering::Relaxed);
        q.extend(chunks);
        drop(q);
        self.spilled_added.notify_one();
    }

    fn permits_for(&self, size: usize) -> u32 {
        u32::try_from(size.clamp(1, self.limit)).unwrap_or(u32::MAX)
    }

    /// Admits a chunk for `outputs` outputs. `pins`: the ring positions of a tap chunk (see
    /// the module docs for what happens with and without a store); `None` for a chunk that
    /// must be persisted before it is accepted (forward input).
    pub async fn admit(
        &self,
        chunk: Chunk,
        pins: Option<RingPins>,
        outputs: usize,
    ) -> Result<Admitted, BufferError> {
        let size = chunk.size();
        let want = self.permits_for(size);
        let mut pins = pins;
        if let Some(store) = &self.store {
            let persisted = {
                let store = Arc::clone(store);
                let c = chunk.clone();
                tokio::task::spawn_blocking(move || store.persist(&c))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            };
            match persisted {
                Ok(()) => {
                    self.store_works();
                    crate::record::ring_release::note_progress();
                    // On disk: safe. The rings may reuse the space at once.
                    if let Some(p) = pins.take() {
                        p.release();
                    }
                    return Ok(self.hold_or_spill(chunk, want, outputs).await);
                }
                Err(e) => {
                    self.store_fails(&e);
                    if pins.is_none() {
                        return Err(BufferError::Store(e));
                    }
                    // A tap chunk: kept in memory, its records in their rings until acked.
                }
            }
        }
        let permit = Arc::clone(&self.permits)
            .acquire_many_owned(want)
            .await
            .map_err(|_| BufferError::Closed)?;
        Ok(Admitted::Now(self.hold(chunk, permit, None, pins, outputs)))
    }

    /// A persisted chunk: in memory if its permits come within [`SPILL_AFTER`] and nothing
    /// waits on disk before it, else spilled.
    async fn hold_or_spill(&self, chunk: Chunk, want: u32, outputs: usize) -> Admitted {
        if self.spilled_is_empty() {
            let acquire = Arc::clone(&self.permits).acquire_many_owned(want);
            if let Ok(Ok(permit)) = tokio::time::timeout(SPILL_AFTER, acquire).await {
                return Admitted::Now(self.hold(chunk, permit, self.store.clone(), None, outputs));
            }
        }
        let mut q = self.spilled.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back(StoredChunk {
            id: chunk.id.clone(),
            size: chunk.size() as u64,
            records: chunk.records,
        });
        METRICS.spilled_chunks.fetch_add(1, Ordering::Relaxed);
        METRICS.spilled_chunks_total.fetch_add(1, Ordering::Relaxed);
        drop(q);
        self.spilled_added.notify_one();
        Admitted::Spilled
    }

    fn spilled_is_empty(&self) -> bool {
        self.spilled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    fn hold(
        &self,
        chunk: Chunk,
        permit: OwnedSemaphorePermit,
        stored: Option<Arc<dyn ChunkStore>>,
        pins: Option<RingPins>,
        outputs: usize,
    ) -> Vec<Delivery> {
        let size = chunk.size();
        METRICS
            .buffer_bytes
            .fetch_add(size as i64, Ordering::Relaxed);
        METRICS.buffer_chunks.fetch_add(1, Ordering::Relaxed);
        let held = Arc::new(Held {
            chunk,
            size,
            unsettled: AtomicUsize::new(outputs),
            stored,
            pins: Mutex::new(pins),
            _permit: permit,
        });
        if outputs == 0 {
            settle_all(&held);
        }
        (0..outputs)
            .map(|_| Delivery::new(Arc::clone(&held) as Arc<dyn Hold>))
            .collect()
    }

    /// The oldest spilled chunk, loaded back once its permits are free, as one delivery per
    /// output. `None` once the buffer is closed. A chunk that cannot be read back is dropped
    /// (counted, logged) and the next one is tried.
    pub async fn next_spilled(&self, outputs: usize) -> Option<Vec<Delivery>> {
        let store = self.store.as_ref()?;
        loop {
            let front = loop {
                let notified = self.spilled_added.notified();
                if let Some(c) = self
                    .spilled
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .front()
                    .cloned()
                {
                    break c;
                }
                if self.permits.is_closed() {
                    return None;
                }
                notified.await;
            };
            let permit = Arc::clone(&self.permits)
                .acquire_many_owned(self.permits_for(front.size as usize))
                .await
                .ok()?;
            // Only this task takes from the front; admissions push to the back.
            self.spilled
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            METRICS.spilled_chunks.fetch_sub(1, Ordering::Relaxed);
            let loaded = {
                let (store, id) = (Arc::clone(store), front.id.clone());
                tokio::task::spawn_blocking(move || store.load(&id))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            };
            match loaded {
                Ok(chunk) => {
                    return Some(self.hold(chunk, permit, Some(Arc::clone(store)), None, outputs));
                }
                Err(e) => {
                    tracing::error!(chunk = %front.id.as_text(), error = %e, records = front.records,
                        "a chunk in storage_path cannot be read back; its records are lost");
                    METRICS.dropped(
                        DropReason::StorageDamaged,
                        u64::from(front.records),
                        front.size,
                    );
                    store.remove(&front.id);
                }
            }
        }
    }

    /// Bytes currently admitted.
    pub fn used(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// Wakes every waiting admission with [`BufferError::Closed`].
    pub fn close(&self) {
        self.permits.close();
        self.spilled_added.notify_one();
    }

    fn store_fails(&self, e: &std::io::Error) {
        METRICS.storage_write_errors.fetch_add(1, Ordering::Relaxed);
        if !self.store_failing.swap(true, Ordering::Relaxed) {
            let dir = self
                .store_dir
                .as_deref()
                .unwrap_or(std::path::Path::new("?"));
            tracing::error!(
                storage_path = %dir.display(),
                error = %e,
                "cannot write chunks to storage_path; keeping new chunks in memory (mem_buf_limit), \
                 their records stay in the tapped programs' rings until acknowledged; \
                 logged once until a write succeeds again"
            );
        }
    }

    fn store_works(&self) {
        if self.store_failing.swap(false, Ordering::Relaxed) {
            let dir = self
                .store_dir
                .as_deref()
                .unwrap_or(std::path::Path::new("?"));
            tracing::info!(storage_path = %dir.display(), "storage_path writable again");
        }
    }
}

/// Every output settled the chunk: the store forgets it, the rings may reuse its space.
fn settle_all(held: &Held) {
    crate::record::ring_release::note_progress();
    if let Some(store) = &held.stored {
        store.remove(&held.chunk.id);
    }
    let pins = held.pins.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(p) = pins {
        p.release();
    }
}

/// Outputs settle the chunk through their [`Delivery`]s.
impl Hold for Held {
    fn chunk(&self) -> &Chunk {
        &self.chunk
    }

    fn settle_one(&self) {
        if self.unsettled.fetch_sub(1, Ordering::AcqRel) == 1 {
            settle_all(self);
        }
    }

    fn all_settled(&self) -> bool {
        self.unsettled.load(Ordering::Acquire) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ChunkId;
    use crate::record::ring_release::{RingTracker, test_tracker};
    use std::sync::Mutex;
    use std::time::Duration;

    fn chunk(bytes: usize) -> Chunk {
        Chunk {
            id: ChunkId::generate(),
            tag: "t".into(),
            entries: vec![0u8; bytes].into(),
            records: 1,
        }
    }

    fn now(a: Admitted) -> Vec<Delivery> {
        match a {
            Admitted::Now(d) => d,
            Admitted::Spilled => panic!("spilled"),
        }
    }

    #[tokio::test]
    async fn admission_waits_for_acks() {
        let buf = MemoryBuffer::new(100, None);
        let first = now(buf.admit(chunk(60), None, 2).await.unwrap());
        assert_eq!(buf.used(), 61);
        let blocked =
            tokio::time::timeout(Duration::from_millis(50), buf.admit(chunk(60), None, 1)).await;
        assert!(blocked.is_err(), "no room until both outputs let go");
        let mut first = first.into_iter();
        first.next().unwrap().ack();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), buf.admit(chunk(60), None, 1))
                .await
                .is_err()
        );
        first.next().unwrap().ack();
        let second =
            tokio::time::timeout(Duration::from_millis(500), buf.admit(chunk(60), None, 1)).await;
        assert!(second.is_ok(), "room after the last ack");
    }

    #[tokio::test]
    async fn oversized_chunk_is_admitted_alone() {
        let buf = MemoryBuffer::new(10, None);
        let d = now(buf.admit(chunk(1000), None, 1).await.unwrap());
        assert_eq!(buf.used(), 10);
        drop(d);
        assert_eq!(buf.used(), 0);
    }

    /// A store that records calls, keeps chunks in memory, and fails writes on demand.
    #[derive(Default)]
    struct Recorder {
        log: Mutex<Vec<String>>,
        chunks: Mutex<Vec<Chunk>>,
        fail: AtomicBool,
    }
    impl ChunkStore for Recorder {
        fn persist(&self, c: &Chunk) -> std::io::Result<()> {
            if self.fail.load(Ordering::Relaxed) {
                return Err(std::io::Error::other("disk full"));
            }
            self.log.lock().unwrap().push(format!("persist {:?}", c.id));
            self.chunks.lock().unwrap().push(c.clone());
            Ok(())
        }
        fn load(&self, id: &ChunkId) -> std::io::Result<Chunk> {
            let chunks = self.chunks.lock().unwrap();
            chunks
                .iter()
                .find(|c| &c.id == id)
                .cloned()
                .ok_or_else(|| std::io::Error::other("gone"))
        }
        fn remove(&self, id: &ChunkId) {
            self.log.lock().unwrap().push(format!("remove {id:?}"));
        }
        fn location(&self) -> PathBuf {
            PathBuf::from("/recorder")
        }
    }

    #[tokio::test]
    async fn store_forgets_only_settled_chunks() {
        let rec = Arc::new(Recorder::default());
        let buf = MemoryBuffer::new(1000, Some(rec.clone() as Arc<dyn ChunkStore>));
        let c = chunk(10);
        let id = c.id.clone();
        let mut d = now(buf.admit(c, None, 2).await.unwrap()).into_iter();
        d.next().unwrap().ack();
        drop(d.next()); // the second output never delivered it: it stays stored
        assert_eq!(*rec.log.lock().unwrap(), vec![format!("persist {id:?}")]);
        let c = chunk(10);
        let id2 = c.id.clone();
        let mut d = now(buf.admit(c, None, 2).await.unwrap()).into_iter();
        d.next().unwrap().ack();
        d.next().unwrap().give_up();
        assert_eq!(
            rec.log.lock().unwrap().last().unwrap(),
            &format!("remove {id2:?}")
        );
    }

    fn pins(t: &Arc<RingTracker>, pos: u64) -> RingPins {
        RingPins::one(t.pin(pos))
    }

    #[tokio::test]
    async fn without_a_store_the_ring_is_released_when_every_output_settled() {
        let (t, _ring) = test_tracker(10);
        let buf = MemoryBuffer::new(1000, None);
        let mut d = now(buf.admit(chunk(10), Some(pins(&t, 3)), 2).await.unwrap()).into_iter();
        t.set_floor(10, 10);
        assert_eq!(t.released(), 3);
        d.next().unwrap().ack();
        assert_eq!(t.released(), 3, "one output still holds it");
        d.next().unwrap().give_up();
        assert_eq!(t.released(), 10, "settled (a give-up is a counted drop)");
        // Dropped unsettled (shutdown): the records stay in the ring.
        let d = now(buf.admit(chunk(10), Some(pins(&t, 10)), 1).await.unwrap());
        drop(d);
        assert_eq!(t.released(), 10);
    }

    #[tokio::test]
    async fn with_a_store_the_ring_is_released_once_persisted() {
        let (t, _ring) = test_tracker(10);
        let rec = Arc::new(Recorder::default());
        let buf = MemoryBuffer::new(1000, Some(rec.clone() as Arc<dyn ChunkStore>));
        let d = now(buf.admit(chunk(10), Some(pins(&t, 4)), 1).await.unwrap());
        t.set_floor(10, 10);
        assert_eq!(t.released(), 10, "on disk: safe before any ack");
        drop(d);
    }

    #[tokio::test]
    async fn a_failing_store_keeps_tap_chunks_in_memory_and_refuses_forwarded_ones() {
        let (t, _ring) = test_tracker(10);
        let rec = Arc::new(Recorder::default());
        rec.fail.store(true, Ordering::Relaxed);
        let buf = MemoryBuffer::new(1000, Some(rec.clone() as Arc<dyn ChunkStore>));
        let d = now(buf.admit(chunk(10), Some(pins(&t, 2)), 1).await.unwrap());
        t.set_floor(10, 10);
        assert_eq!(t.released(), 2, "held in the ring until acknowledged");
        assert!(matches!(
            buf.admit(chunk(10), None, 1).await,
            Err(BufferError::Store(_))
        ));
        d.into_iter().for_each(Delivery::ack);
        assert_eq!(t.released(), 10);
        rec.fail.store(false, Ordering::Relaxed);
        let d = now(buf.admit(chunk(10), Some(pins(&t, 10)), 1).await.unwrap());
        assert!(!buf.store_failing.load(Ordering::Relaxed), "writable again");
        drop(d);
    }

    #[tokio::test]
    async fn chunks_beyond_memory_are_spilled_and_come_back_in_order() {
        let rec = Arc::new(Recorder::default());
        let buf = MemoryBuffer::new(100, Some(rec.clone() as Arc<dyn ChunkStore>));
        let first = now(buf.admit(chunk(60), None, 1).await.unwrap());
        let (a, b) = (chunk(50), chunk(20));
        let ids = (a.id.clone(), b.id.clone());
        assert!(matches!(
            buf.admit(a, None, 1).await.unwrap(),
            Admitted::Spilled
        ));
        // `b` would fit, but must not overtake `a`.
        assert!(matches!(
            buf.admit(b, None, 1).await.unwrap(),
            Admitted::Spilled
        ));
        assert_eq!(buf.used(), 61, "spilled chunks take no memory");
        let waiting = tokio::time::timeout(Duration::from_millis(50), buf.next_spilled(1)).await;
        assert!(waiting.is_err(), "no room for `a` yet");
        first.into_iter().for_each(Delivery::ack);
        let got = buf.next_spilled(1).await.unwrap();
        assert_eq!(got[0].chunk().id, ids.0);
        let got2 = buf.next_spilled(1).await.unwrap();
        assert_eq!(got2[0].chunk().id, ids.1);
        buf.close();
        assert!(buf.next_spilled(1).await.is_none());
    }
}
