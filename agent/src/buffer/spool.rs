//! The spool (`storage_path`): every chunk on disk before any output sees it, until delivered.
//!
//! One file per chunk, `<hex id>.chunk`, written as `<hex id>.tmp` and renamed. The file holds
//! a magic, the tag, the record count, the entries and a CRC-32 over all of it; a file that
//! fails the check is renamed `.bad` and reported, never sent. [`Spool::open`] lists the chunks
//! left by the previous run, oldest first; the agent sends them again (duplicates are possible
//! after a crash, loss is not).
//!
//! **When a chunk is safe.** [`ChunkStore::persist`] returns once the file is written and
//! renamed into place: from then on it survives a crash of the agent (kill -9), since the
//! kernel keeps the written pages whatever happens to the process — that is when the tapped
//! processes' ring space is released. It does not wait for `fsync` (a journal commit: ≈ 7 ms
//! per chunk measured on this project's VM, which would cap a spooled agent at ≈ 35 MB/s and
//! hold ring space for as long). Instead a syncer thread makes the spool durable against a
//! crash of the *machine*: every [`SYNC_INTERVAL`] it checks whether a chunk written and not
//! yet synced is still there after [`SYNC_AGE`] (not yet delivered), and then syncs the file
//! system (`syncfs`: one journal commit for all of them); Fluent Bit's default
//! (`storage.sync normal`) leaves it all to the kernel. What a power loss can take is therefore the chunks of the last
//! [`SYNC_AGE`] + [`SYNC_INTERVAL`] — a machine crash also takes every tapped process and its
//! ring, so the window adds little; a chunk file torn by it fails its CRC and is set aside as
//! `.bad`. Chunks delivered within [`SYNC_AGE`] (nearly all, with a live server) are deleted
//! before they were ever synced, and cost no disk write at all.
//!
//! A write that fails (disk full, I/O error) removes its `.tmp` and returns the error: no
//! partial chunk is left behind, and the buffer keeps the chunk in memory instead.
//!
//! `storage_limit` bounds the bytes on disk: [`ChunkStore::persist`] waits for room (the
//! batch stage waits behind it, then the inputs: backpressure, not loss), and gives up with an
//! error only after [`ROOM_WAIT`].

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::{ChunkStore, StoredChunk};
use crate::record::{Chunk, ChunkId};

const MAGIC: &[u8; 8] = b"LTSPOOL1";
/// How long `persist` waits for room under `storage_limit` before refusing a chunk.
pub const ROOM_WAIT: Duration = Duration::from_secs(60);
/// How often the syncer looks for chunks to make durable.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(20);
/// A chunk still undelivered this long after it was written is synced to the device.
pub const SYNC_AGE: Duration = Duration::from_millis(100);

/// Why the spool could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot use --storage-path {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
}

struct State {
    used: u64,
    sizes: HashMap<ChunkId, u64>,
}

/// Shared with the syncer thread.
struct Shared {
    state: Mutex<State>,
    /// Chunks written and not synced yet, with the time they were written.
    unsynced: Mutex<Vec<(ChunkId, Instant)>>,
    stop: AtomicBool,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a chunk written at least [`SYNC_AGE`] ago is still there and not synced; forgets
    /// delivered ones. When it says yes, every chunk written so far is taken as synced (the
    /// caller syncs the whole file system).
    fn due(&self, now: Instant) -> bool {
        let mut unsynced = self.unsynced.lock().unwrap_or_else(|e| e.into_inner());
        let state = self.state();
        unsynced.retain(|(id, _)| state.sizes.contains_key(id));
        drop(state);
        let due = unsynced
            .iter()
            .any(|(_, at)| now.saturating_duration_since(*at) >= SYNC_AGE);
        if due {
            unsynced.clear();
        }
        due
    }
}

/// The chunk files in one directory.
pub struct Spool {
    dir: PathBuf,
    limit: u64,
    shared: Arc<Shared>,
    room: Condvar,
}

/// The file name of a chunk: its 16 random bytes in hex (any other id — never one of ours —
/// its bytes in hex, which [`parse_hex`] does not take back).
fn hex(id: &ChunkId) -> String {
    match id.random_bytes() {
        Some(raw) => raw.iter().map(|b| format!("{b:02x}")).collect(),
        None => id.bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn parse_hex(name: &str) -> Option<ChunkId> {
    if name.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(name.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(ChunkId::from_random_bytes(id))
}

/// The file's bytes before the entries (the entries and the CRC follow).
fn header(chunk: &Chunk) -> Vec<u8> {
    let mut b = Vec::with_capacity(chunk.tag.len() + 32);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&(chunk.tag.len() as u32).to_le_bytes());
    b.extend_from_slice(chunk.tag.as_bytes());
    b.extend_from_slice(&chunk.records.to_le_bytes());
    b.extend_from_slice(&(chunk.entries.len() as u64).to_le_bytes());
    b
}

/// Parses a chunk file; `None` when it is damaged.
fn decode(id: ChunkId, b: &[u8]) -> Option<Chunk> {
    let (body, sum) = b.split_at_checked(b.len().checked_sub(4)?)?;
    let mut crc = flate2::Crc::new();
    crc.update(body);
    if crc.sum().to_le_bytes() != sum || !body.starts_with(MAGIC) {
        return None;
    }
    let rest = &body[MAGIC.len()..];
    let (tag_len, rest) = rest.split_at_checked(4)?;
    let tag_len = u32::from_le_bytes(tag_len.try_into().ok()?) as usize;
    let (tag, rest) = rest.split_at_checked(tag_len)?;
    let (records, rest) = rest.split_at_checked(4)?;
    let (len, entries) = rest.split_at_checked(8)?;
    if u64::from_le_bytes(len.try_into().ok()?) != entries.len() as u64 {
        return None;
    }
    Some(Chunk {
        id,
        tag: Arc::from(std::str::from_utf8(tag).ok()?),
        entries: bytes::Bytes::copy_from_slice(entries),
        records: u32::from_le_bytes(records.try_into().ok()?),
    })
}

fn read_chunk(path: &Path, id: ChunkId) -> io::Result<Chunk> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    decode(id, &bytes)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "damaged chunk file"))
}

/// Syncs the spool's file system when a chunk stayed undelivered for [`SYNC_AGE`] (checked
/// every [`SYNC_INTERVAL`]), until the spool is dropped (then once more).
fn syncer(dir: PathBuf, shared: Arc<Shared>) {
    let Ok(handle) = File::open(&dir) else {
        tracing::warn!(dir = %dir.display(), "cannot open storage_path to sync it");
        return;
    };
    let mut failing = false;
    loop {
        let stop = shared.stop.load(Ordering::Relaxed);
        let now = Instant::now() + if stop { SYNC_AGE } else { Duration::ZERO };
        if shared.due(now) {
            match crate::sys::syncfs(handle.as_fd()) {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(dir = %dir.display(), error = %e, "cannot sync storage_path to disk");
                }
                Err(_) => {}
            }
        }
        if stop {
            return;
        }
        std::thread::sleep(SYNC_INTERVAL);
    }
}

impl Spool {
    /// Opens (creates) `dir`, removes unfinished writes, and lists the chunks still to deliver
    /// (each file checked, then dropped from memory), oldest first.
    pub fn open(dir: &Path, limit: u64) -> Result<(Spool, Vec<StoredChunk>), SpoolError> {
        let err = |source| SpoolError::Dir {
            path: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(err)?;
        let mut found: Vec<(SystemTime, StoredChunk)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(err)? {
            let entry = entry.map_err(err)?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                // An unfinished write: its chunk was never safe, so its records are still in
                // their rings (or were never acknowledged to a forward client).
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some(id) = name.strip_suffix(".chunk").and_then(parse_hex) else {
                continue;
            };
            match read_chunk(&path, id.clone()) {
                Ok(chunk) => {
                    let mtime = entry
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(SystemTime::UNIX_EPOCH);
                    found.push((
                        mtime,
                        StoredChunk {
                            id,
                            size: chunk.size() as u64,
                            records: chunk.records,
                        },
                    ));
                }
                Err(_) => {
                    tracing::error!(file = %path.display(), "damaged chunk file in storage_path; renamed .bad, not sent");
                    let _ = fs::rename(&path, path.with_extension("bad"));
                }
            }
        }
        found.sort_by_key(|(t, _)| *t);
        let mut state = State {
            used: 0,
            sizes: HashMap::new(),
        };
        for (_, c) in &found {
            state.used += c.size;
            state.sizes.insert(c.id.clone(), c.size);
        }
        if !found.is_empty() {
            tracing::info!(chunks = found.len(), bytes = state.used, dir = %dir.display(), "chunks recovered from storage_path; sending them again");
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            unsynced: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        {
            let (dir, shared) = (dir.to_owned(), Arc::clone(&shared));
            std::thread::Builder::new()
                .name("logtap-spool-sync".into())
                .spawn(move || syncer(dir, shared))
                .map_err(err)?;
        }
        let spool = Spool {
            dir: dir.to_owned(),
            limit: limit.max(1),
            shared,
            room: Condvar::new(),
        };
        Ok((spool, found.into_iter().map(|(_, c)| c).collect()))
    }

    /// Bytes of chunks on disk.
    pub fn used(&self) -> u64 {
        self.shared.state().used
    }

    fn path(&self, id: &ChunkId, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", hex(id)))
    }

    /// Reserves `size` bytes, waiting for room; `Ok(false)` when the chunk is already stored.
    fn reserve(&self, id: &ChunkId, size: u64) -> io::Result<bool> {
        let mut st = self.shared.state();
        if st.sizes.contains_key(id) {
            return Ok(false);
        }
        let deadline = std::time::Instant::now() + ROOM_WAIT;
        // A chunk larger than the limit is stored alone rather than never.
        while st.used > 0 && st.used + size > self.limit {
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(io::Error::other(format!(
                    "storage_limit ({} bytes) full for {ROOM_WAIT:?}: outputs are not delivering",
                    self.limit
                )));
            }
            st = self
                .room
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st.used += size;
        st.sizes.insert(id.clone(), size);
        Ok(true)
    }

    fn release(&self, id: &ChunkId) {
        let mut st = self.shared.state();
        if let Some(size) = st.sizes.remove(id) {
            st.used -= size;
            self.room.notify_all();
        }
    }

    fn write(&self, chunk: &Chunk) -> io::Result<()> {
        let tmp = self.path(&chunk.id, "tmp");
        let written = (|| {
            let head = header(chunk);
            let mut crc = flate2::Crc::new();
            crc.update(&head);
            crc.update(&chunk.entries);
            let mut f = File::create(&tmp)?;
            f.write_all(&head)?;
            f.write_all(&chunk.entries)?;
            f.write_all(&crc.sum().to_le_bytes())?;
            drop(f);
            fs::rename(&tmp, self.path(&chunk.id, "chunk"))
        })();
        match &written {
            Ok(()) => self
                .shared
                .unsynced
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((chunk.id.clone(), Instant::now())),
            Err(_) => {
                let _ = fs::remove_file(&tmp);
            }
        }
        written
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

impl ChunkStore for Spool {
    fn persist(&self, chunk: &Chunk) -> io::Result<()> {
        if !self.reserve(&chunk.id, chunk.size() as u64)? {
            return Ok(()); // recovered at start: already on disk
        }
        self.write(chunk).inspect_err(|_| self.release(&chunk.id))
    }

    fn load(&self, id: &ChunkId) -> io::Result<Chunk> {
        let path = self.path(id, "chunk");
        read_chunk(&path, id.clone()).inspect_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                let _ = fs::rename(&path, path.with_extension("bad"));
            }
        })
    }

    fn remove(&self, id: &ChunkId) {
        if let Err(e) = fs::remove_file(self.path(id, "chunk"))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "cannot remove a delivered chunk from storage_path (it will be sent again after a restart)");
        }
        self.release(id);
    }

    fn location(&self) -> PathBuf {
        self.dir.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(n: u8) -> Chunk {
        Chunk {
            id: ChunkId::generate(),
            tag: "app.x".into(),
            entries: vec![n; 100].into(),
            records: u32::from(n),
        }
    }

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("logtap-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn chunks_survive_a_reopen_until_removed() {
        let dir = tempdir("reopen");
        let (spool, found) = Spool::open(&dir, 1 << 20).unwrap();
        assert!(found.is_empty());
        let (a, b) = (chunk(1), chunk(2));
        spool.persist(&a).unwrap();
        spool.persist(&b).unwrap();
        spool.remove(&a.id);
        fs::write(dir.join("0123.tmp"), b"half").unwrap();
        drop(spool);
        let (spool, found) = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].id.clone(), found[0].size, found[0].records),
            (b.id.clone(), b.size() as u64, 2)
        );
        let loaded = spool.load(&b.id).unwrap();
        assert_eq!((&*loaded.tag, &loaded.entries), ("app.x", &b.entries));
        assert!(
            !dir.join("0123.tmp").exists(),
            "unfinished writes are removed"
        );
        assert_eq!(spool.used(), b.size() as u64);
        spool.persist(&loaded).unwrap(); // re-admitted after recovery: no second copy
        assert_eq!(spool.used(), b.size() as u64);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_chunks_left_undelivered_are_synced() {
        let dir = tempdir("sync");
        let (spool, _) = Spool::open(&dir, 1 << 20).unwrap();
        // The syncer thread must not take the chunks from under the test: let it end first.
        spool.shared.stop.store(true, Ordering::Relaxed);
        std::thread::sleep(SYNC_INTERVAL * 3);
        let later = || Instant::now() + SYNC_AGE + Duration::from_millis(1);
        let delivered = chunk(1);
        spool.persist(&delivered).unwrap();
        spool.remove(&delivered.id);
        assert!(
            !spool.shared.due(later()),
            "delivered before SYNC_AGE: never synced"
        );
        let waiting = chunk(2);
        spool.persist(&waiting).unwrap();
        assert!(!spool.shared.due(Instant::now()), "too young");
        assert!(spool.shared.due(later()), "still undelivered: synced");
        assert!(!spool.shared.due(later()), "once");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_files_are_set_aside() {
        let dir = tempdir("damaged");
        let (spool, _) = Spool::open(&dir, 1 << 20).unwrap();
        let c = chunk(3);
        spool.persist(&c).unwrap();
        let path = dir.join(format!("{}.chunk", hex(&c.id)));
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 10;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let (_, found) = Spool::open(&dir, 1 << 20).unwrap();
        assert!(found.is_empty());
        assert!(path.with_extension("bad").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn limit_waits_for_room() {
        let dir = tempdir("limit");
        let (spool, _) = Spool::open(&dir, 150).unwrap();
        let spool = Arc::new(spool);
        let a = chunk(1);
        spool.persist(&a).unwrap();
        let s2 = Arc::clone(&spool);
        let waiter = std::thread::spawn(move || s2.persist(&chunk(2)));
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !waiter.is_finished(),
            "no room until the first chunk is delivered"
        );
        spool.remove(&a.id);
        waiter.join().unwrap().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
