//! Which of the app's descriptors are tapped files, and with which file index.
//!
//! A fixed-size array of atomics indexed by fd number: no lock, no allocation, one relaxed
//! load per `write()` to classify the descriptor. Entry value 0 means "not a tap file",
//! `index + 1` means "tap file number `index`". Descriptors at or above [`TABLE_FDS`] go to a
//! small open-addressed overflow table (fd in the high half, value in the low half of one
//! `AtomicU64`), searched only when it is non-empty.
//!
//! Entries are set by the open/dup hooks and cleared by close/fclose/close_range, and every
//! newly returned descriptor overwrites its entry, so a stale entry (a tap file closed through
//! a path we do not see) is corrected as soon as the number is handed out again by a hooked call.

use core::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};

/// Descriptors below this number have a direct slot (128 KiB of zero pages until used).
pub const TABLE_FDS: usize = 65536;
const OVERFLOW: usize = 256;

#[allow(clippy::declare_interior_mutable_const)]
const ZERO16: AtomicU16 = AtomicU16::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO64: AtomicU64 = AtomicU64::new(0);

static DIRECT: [AtomicU16; TABLE_FDS] = [ZERO16; TABLE_FDS];
static HIGH: [AtomicU64; OVERFLOW] = [ZERO64; OVERFLOW];
static HIGH_USED: AtomicUsize = AtomicUsize::new(0);

/// The tap-file index of `fd`, if it is a tapped file.
#[inline]
pub fn get(fd: i32) -> Option<u16> {
    let fd = usize::try_from(fd).ok()?;
    let v = match DIRECT.get(fd) {
        Some(slot) => slot.load(Ordering::Relaxed),
        None => high_get(fd),
    };
    v.checked_sub(1)
}

/// Marks `fd` as tap file `index` (`None`: not tapped).
pub fn set(fd: i32, index: Option<u16>) {
    let Ok(fd) = usize::try_from(fd) else { return };
    let v = index.map_or(0, |i| i.saturating_add(1));
    match DIRECT.get(fd) {
        Some(slot) => slot.store(v, Ordering::Relaxed),
        None => high_set(fd, v),
    }
}

/// Gives `new` the classification of `old` (after dup/dup2/dup3/F_DUPFD).
pub fn copy(old: i32, new: i32) {
    set(new, get(old));
}

/// Forgets every descriptor in `first..=last` (close_range).
pub fn clear_range(first: u32, last: u32) {
    let last_direct = usize::try_from(last)
        .unwrap_or(usize::MAX)
        .min(TABLE_FDS.saturating_sub(1));
    let first = usize::try_from(first).unwrap_or(usize::MAX);
    if let Some(slots) = DIRECT.get(first..=last_direct) {
        for s in slots {
            s.store(0, Ordering::Relaxed);
        }
    }
    if HIGH_USED.load(Ordering::Relaxed) > 0 {
        for e in &HIGH {
            let v = e.load(Ordering::Relaxed);
            let fd = usize::try_from(v >> 16).unwrap_or(0);
            if v != 0 && fd >= first && u64::try_from(fd).is_ok_and(|f| f <= u64::from(last)) {
                let _ = e.compare_exchange(v, 0, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
    }
}

/// Forgets everything (tests only).
#[cfg(test)]
pub fn clear_all() {
    clear_range(0, u32::MAX);
}

fn high_get(fd: usize) -> u16 {
    if HIGH_USED.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    for e in &HIGH {
        let v = e.load(Ordering::Relaxed);
        if v != 0 && usize::try_from(v >> 16).ok() == Some(fd) {
            return (v & 0xffff) as u16;
        }
    }
    0
}

fn high_set(fd: usize, value: u16) {
    let Ok(key) = u64::try_from(fd) else { return };
    // Replace (or clear) an existing entry for this fd first.
    for e in &HIGH {
        let v = e.load(Ordering::Relaxed);
        if v != 0 && v >> 16 == key {
            let new = if value == 0 {
                0
            } else {
                (key << 16) | u64::from(value)
            };
            let _ = e.compare_exchange(v, new, Ordering::Relaxed, Ordering::Relaxed);
            return;
        }
    }
    if value == 0 {
        return;
    }
    for e in &HIGH {
        if e.compare_exchange(
            0,
            (key << 16) | u64::from(value),
            Ordering::Relaxed,
            Ordering::Relaxed,
        )
        .is_ok()
        {
            HIGH_USED.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    crate::debug!(
        "more than {OVERFLOW} tapped descriptors above {TABLE_FDS}: fd {fd} is not tapped"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_copy_clear() {
        clear_all();
        set(7, Some(2));
        assert_eq!(get(7), Some(2));
        copy(7, 9);
        assert_eq!(get(9), Some(2));
        copy(3, 9);
        assert_eq!(get(9), None);
        set(100_000, Some(0));
        assert_eq!(get(100_000), Some(0));
        clear_range(5, 200_000);
        assert_eq!(get(7), None);
        assert_eq!(get(100_000), None);
        assert_eq!(get(-1), None);
        set(-1, Some(1));
    }
}
