//! The tap files: which opened paths are tapped (`LLT_TAP_FILE` patterns) and the registry
//! that gives each tapped path its file index.
//!
//! A path is matched when it is opened for writing. The first time a path matches it gets the
//! next free index and is announced to the agent (a FILE frame, or the `files` list of the
//! next HELLO); reopening the same path — after a logrotate-style rename, say — finds its
//! index again. The registry is a fixed array of entries, each path written once and published
//! ([`Published`]): lock-free, allocation-free, usable from the open hooks of any thread.

use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::statics::{Fill, Published};
use crate::{config, glob};

/// Most distinct tapped paths per process.
pub const MAX_FILES: usize = 64;
/// Longest path kept (longer paths are kept truncated: the name is informational).
pub const MAX_PATH: usize = 1024;

/// A registered path: the first `len` bytes of `bytes`.
struct StoredPath {
    bytes: [u8; MAX_PATH],
    len: usize,
}

struct Entry {
    /// Written once, by the thread that claimed the entry (`NEXT.fetch_add`).
    path: Published<StoredPath>,
    /// Whether the agent has been told this entry (HELLO or FILE frame) on this connection.
    announced: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Entry = Entry {
    path: Published::new(),
    announced: AtomicBool::new(false),
};

static ENTRIES: [Entry; MAX_FILES] = [EMPTY; MAX_FILES];
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Whether `path` matches one of the `LLT_TAP_FILE` entries.
pub fn is_tapped_path(path: &[u8]) -> bool {
    let Some(cfg) = config::get() else {
        return false;
    };
    let list = cfg.tap_files.as_bytes();
    !path.is_empty()
        && list
            .split(|b| *b == b':')
            .filter(|p| !p.is_empty())
            .any(|pattern| glob::matches(pattern, path))
}

/// The published path of entry `index`.
pub fn path(index: usize) -> Option<&'static [u8]> {
    let stored = ENTRIES.get(index)?.path.get()?;
    stored.bytes.get(..stored.len)
}

/// The index of `path`, registering it if new. The flag says whether it is new (the caller
/// announces it). `None` when the registry is full.
pub fn register(path: &[u8]) -> Option<(u16, bool)> {
    let path = path.get(..path.len().min(MAX_PATH)).unwrap_or(&[]);
    if path.is_empty() {
        return None;
    }
    let known = NEXT.load(Ordering::Acquire).min(MAX_FILES);
    for i in 0..known {
        if self::path(i) == Some(path) {
            return Some((u16::try_from(i).ok()?, false));
        }
    }
    let i = NEXT.fetch_add(1, Ordering::AcqRel);
    let Some(e) = ENTRIES.get(i) else {
        NEXT.store(MAX_FILES, Ordering::Release);
        crate::debug!(
            "more than {MAX_FILES} tap files: {} is not tapped",
            crate::debug::Bytes(path)
        );
        return None;
    };
    let mut stored = StoredPath {
        bytes: [0; MAX_PATH],
        len: path.len(),
    };
    if let Some(d) = stored.bytes.get_mut(..path.len()) {
        d.copy_from_slice(path);
    }
    // Entry `i` was claimed by this thread alone (fetch_add), so the fill is ours.
    e.path.fill(|| Ok::<_, (Fill, ())>(stored)).ok()?;
    Some((u16::try_from(i).ok()?, true))
}

/// Published entries from index 0 up to the first gap (the HELLO's `files` list, where the
/// position is the index).
pub fn contiguous_count() -> usize {
    (0..MAX_FILES).take_while(|i| path(*i).is_some()).count()
}

/// Marks entry `index` as announced (or not).
pub fn set_announced(index: usize, announced: bool) {
    if let Some(e) = ENTRIES.get(index) {
        e.announced.store(announced, Ordering::Release);
    }
}

/// Published entries the agent has not been told about on this connection.
pub fn unannounced() -> impl Iterator<Item = (usize, &'static [u8])> {
    (0..MAX_FILES).filter_map(|i| {
        let e = ENTRIES.get(i)?;
        if e.announced.load(Ordering::Acquire) {
            return None;
        }
        Some((i, path(i)?))
    })
}

/// Forgets every announcement (a new connection, or a forked child that has none yet).
pub fn reset_announced() {
    for e in &ENTRIES {
        e.announced.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_finds_existing_and_assigns_new() {
        let (a, new_a) = register(b"/tmp/tap-files-test-a.log").unwrap();
        assert!(new_a);
        let (b, new_b) = register(b"/tmp/tap-files-test-b.log").unwrap();
        assert!(new_b);
        assert_ne!(a, b);
        assert_eq!(register(b"/tmp/tap-files-test-a.log"), Some((a, false)));
        assert_eq!(
            path(usize::from(a)),
            Some(&b"/tmp/tap-files-test-a.log"[..])
        );
        assert!(contiguous_count() >= 2);
        set_announced(usize::from(a), true);
        assert!(unannounced().all(|(i, _)| i != usize::from(a)));
        reset_announced();
        assert!(unannounced().any(|(i, _)| i == usize::from(a)));
        assert_eq!(register(b""), None);
    }
}
