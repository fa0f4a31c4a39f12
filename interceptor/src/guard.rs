//! The per-thread recursion guard: calls made by the library itself are never tapped.
//!
//! Most of the library's own I/O bypasses the hooks entirely (raw syscalls, see `sys`). The
//! guard covers what cannot: code in the protocol crate and libc that calls interposed names
//! (`close` when an `OwnedFd` drops, `fcntl` while sealing the ring's memfd), `dlsym`, and the
//! constructor. While a thread holds the guard, every hook on that thread is a plain
//! pass-through to the real function.
//!
//! The flag is a `thread_local!` `Cell<bool>` with a `const` initialiser and no destructor:
//! Rust compiles that to a plain `#[thread_local]` static (an initial-exec TLS slot of the
//! preloaded library), with no lazy registration and no allocation, so it is usable from
//! signal handlers. A signal handler that interrupts the library while the guard is held on
//! the same thread sees it held: its writes pass through untapped (never lost).
//!
//! Reading a `thread_local!` from a shared library costs a call to `__tls_get_addr` (the
//! general-dynamic TLS model, the only one stable Rust offers a `cdylib`). Guards are rare —
//! the constructor, creating the ring, connecting — while every tapped write asks [`held`],
//! so a process-wide count of guards held on any thread answers "no" without touching TLS
//! in the common case. Relaxed is enough: the only thread that must see a guard's increment
//! in [`held`] is the thread that took it (program order); other threads then look at their
//! own flag.

use core::cell::Cell;
use core::sync::atomic::{AtomicU32, Ordering};

thread_local! {
    static IN_LIBRARY: Cell<bool> = const { Cell::new(false) };
}

/// Guards held right now, on all threads.
static HELD_ANYWHERE: AtomicU32 = AtomicU32::new(0);

/// Held while the thread runs library code that may call interposed functions.
pub struct Guard(());

impl Guard {
    /// Takes the guard, or `None` if this thread already holds it (we are being re-entered)
    /// or its TLS is unavailable.
    #[inline]
    pub fn enter() -> Option<Guard> {
        IN_LIBRARY
            .try_with(|g| {
                if g.get() {
                    None
                } else {
                    g.set(true);
                    HELD_ANYWHERE.fetch_add(1, Ordering::Relaxed);
                    Some(Guard(()))
                }
            })
            .ok()
            .flatten()
    }
}

impl Drop for Guard {
    #[inline]
    fn drop(&mut self) {
        let _ = IN_LIBRARY.try_with(|g| g.set(false));
        HELD_ANYWHERE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether this thread is inside the library (a hook must then pass through).
#[inline]
pub fn held() -> bool {
    HELD_ANYWHERE.load(Ordering::Relaxed) != 0 && IN_LIBRARY.try_with(Cell::get).unwrap_or(true)
}

/// In a forked child: guards other threads of the parent held do not exist here.
pub fn after_fork_child() {
    let mine = IN_LIBRARY.try_with(Cell::get).unwrap_or(false);
    HELD_ANYWHERE.store(u32::from(mine), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_enter_is_refused_and_released() {
        assert!(!held());
        let g = Guard::enter();
        assert!(g.is_some());
        assert!(held());
        assert!(Guard::enter().is_none());
        drop(g);
        assert!(!held());
        assert!(Guard::enter().is_some());
    }

    #[test]
    fn a_guard_on_one_thread_is_not_held_on_another() {
        let g = Guard::enter();
        assert!(held());
        let other = std::thread::spawn(|| {
            let before = held();
            let g = Guard::enter();
            let during = held();
            drop(g);
            (before, during, held())
        })
        .join()
        .unwrap();
        assert_eq!(other, (false, true, false));
        assert!(held(), "the other thread's release must not release ours");
        drop(g);
        assert!(!held());
    }
}
