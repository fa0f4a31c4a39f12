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

use core::cell::Cell;

thread_local! {
    static IN_LIBRARY: Cell<bool> = const { Cell::new(false) };
}

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
    }
}

/// Whether this thread is inside the library (a hook must then pass through).
#[inline]
pub fn held() -> bool {
    IN_LIBRARY.try_with(Cell::get).unwrap_or(true)
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
}
