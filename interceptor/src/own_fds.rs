//! The library's own descriptors: control socket, ring memfd, wake eventfd, `file:` target.
//!
//! Rules they follow (Contract 1):
//! - close-on-exec, and moved to a high number (≥ [`base`], 900 under the usual limits) so that
//!   they never take 0, 1, 2 or the low numbers an app expects from `open`;
//! - each lives in a fixed *slot* whose number never changes while the library uses it: a
//!   reconnect `dup3`s the new socket onto the old number, so a thread still holding the
//!   number sends to the new connection, never to a number the app may have been given;
//! - the app cannot close them by accident: `close`/`close_range` on one of our numbers is
//!   skipped (reported as success) — a daemon that closes every fd above 2 then keeps its
//!   numbers free for itself and we keep tapping. An app that `dup2`s onto one of our numbers
//!   on purpose gets it: we first move our descriptor elsewhere (see [`relocate_if_own`]).

use core::ffi::c_int;
use core::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use crate::sys;

/// Which of our descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The `SOCK_SEQPACKET` control connection to the agent.
    Control = 0,
    /// The ring's memfd (kept to pass it again after a reconnect).
    RingMemfd = 1,
    /// The eventfd that wakes the agent's consumer.
    WakeEventfd = 2,
    /// The `file:` target.
    TargetFile = 3,
}

const SLOTS: usize = 4;
static FDS: [AtomicI32; SLOTS] = [
    AtomicI32::new(-1),
    AtomicI32::new(-1),
    AtomicI32::new(-1),
    AtomicI32::new(-1),
];
static BASE: AtomicI32 = AtomicI32::new(900);
/// (device, inode) of each slot's file when we installed it, to notice a descriptor that was
/// closed behind our back (a raw `close` syscall) and reused by the app.
static IDS: [[AtomicU64; 2]; SLOTS] = [
    [AtomicU64::new(0), AtomicU64::new(0)],
    [AtomicU64::new(0), AtomicU64::new(0)],
    [AtomicU64::new(0), AtomicU64::new(0)],
    [AtomicU64::new(0), AtomicU64::new(0)],
];

fn remember(slot: usize, fd: c_int) {
    let (dev, ino) = sys::dev_ino(fd).unwrap_or((0, 0));
    if let Some([d, i]) = IDS.get(slot) {
        d.store(dev, Ordering::Relaxed);
        i.store(ino, Ordering::Relaxed);
    }
}

/// Forgets (without closing: it is not ours any more) every slot whose descriptor no longer
/// refers to the file we installed. Called about once a second. Returns whether any was lost.
/// (The caller points the ring's wake-ups at the eventfd's slot again.)
pub fn verify() -> bool {
    let mut lost = false;
    for (cell, [d, n]) in FDS.iter().zip(IDS.iter()) {
        let fd = cell.load(Ordering::Acquire);
        if fd < 0 {
            continue;
        }
        let want = (d.load(Ordering::Relaxed), n.load(Ordering::Relaxed));
        if sys::dev_ino(fd) == Some(want) {
            continue;
        }
        if cell
            .compare_exchange(fd, -1, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            lost = true;
            crate::debug!("our fd {fd} was closed behind our back: forgotten");
        }
    }
    lost
}

/// Chooses the lowest number our descriptors take, from `RLIMIT_NOFILE` (called at load).
pub fn init_base() {
    let base = match sys::nofile_limit() {
        Some(lim) if lim >= 1024 => 900,
        Some(lim) => c_int::try_from(lim.saturating_mul(3) / 4)
            .unwrap_or(3)
            .max(3),
        None => 900,
    };
    BASE.store(base, Ordering::Relaxed);
}

/// The lowest number our descriptors take.
pub fn base() -> c_int {
    BASE.load(Ordering::Relaxed)
}

/// The descriptor in `slot`, or -1.
#[inline]
pub fn get(slot: Slot) -> c_int {
    FDS.get(slot as usize)
        .map_or(-1, |a| a.load(Ordering::Acquire))
}

/// Whether `fd` is one of ours.
#[inline]
pub fn is_own(fd: c_int) -> bool {
    fd >= 0 && FDS.iter().any(|a| a.load(Ordering::Relaxed) == fd)
}

/// Our descriptors, sorted, -1 for empty slots (for splitting a `close_range`).
pub fn sorted() -> [c_int; SLOTS] {
    let mut out = [-1; SLOTS];
    for (o, a) in out.iter_mut().zip(FDS.iter()) {
        *o = a.load(Ordering::Relaxed);
    }
    out.sort_unstable();
    out
}

/// Moves a fresh descriptor to a high close-on-exec number (closing the original).
pub fn move_high(fd: c_int) -> Result<c_int, c_int> {
    let high =
        sys::dup_cloexec_at_least(fd, base()).or_else(|_| sys::dup_cloexec_at_least(fd, 3))?;
    sys::close(fd);
    Ok(high)
}

/// Installs a fresh descriptor `fd` into `slot`: onto the slot's existing number (dup3, which
/// atomically replaces the old file) or, for an empty slot, at a new high number. `fd` itself
/// is closed. Returns the slot's number.
pub fn install(slot: Slot, fd: c_int) -> Result<c_int, c_int> {
    let Some(cell) = FDS.get(slot as usize) else {
        return Err(libc::EINVAL);
    };
    let current = cell.load(Ordering::Acquire);
    if current >= 0 {
        let r = sys::dup3_cloexec(fd, current);
        sys::close(fd);
        if r.is_ok() {
            remember(slot as usize, current);
        }
        return r.map(|()| current);
    }
    let high = move_high(fd)?;
    remember(slot as usize, high);
    cell.store(high, Ordering::Release);
    Ok(high)
}

/// Empties `slot` and closes its descriptor (fork child: our copy of the parent's).
pub fn close_slot(slot: Slot) {
    if let Some(cell) = FDS.get(slot as usize) {
        sys::close(cell.swap(-1, Ordering::AcqRel));
    }
}

/// Before the app `dup2`s/`dup3`s onto `fd`: if `fd` is ours, move ours to another number
/// first, so the app gets the number it asked for and we keep our file. (The caller points the
/// ring's wake-ups at the eventfd's slot again, before the app's call.)
pub fn relocate_if_own(fd: c_int) {
    for (i, cell) in FDS.iter().enumerate() {
        if fd < 0 || cell.load(Ordering::Acquire) != fd {
            continue;
        }
        match sys::dup_cloexec_at_least(fd, base()).or_else(|_| sys::dup_cloexec_at_least(fd, 3)) {
            Ok(new) => {
                remember(i, new);
                cell.store(new, Ordering::Release);
                crate::debug!("the app reuses our fd {fd}: ours moved to {new}");
            }
            Err(_) => {
                // We cannot keep it: forget it (the app's dup2 replaces it).
                cell.store(-1, Ordering::Release);
            }
        }
    }
}
