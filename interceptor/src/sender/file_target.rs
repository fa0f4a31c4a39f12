//! `LLT_TARGET=file:PATH`: the seed's mode. Tapped bytes are appended, raw, to PATH.
//!
//! The file is opened on the first tapped write (raw `openat`, `O_APPEND | O_CREAT |
//! O_CLOEXEC | O_NONBLOCK`, mode 0644) and kept in our own high descriptor slot; a failed
//! open is retried at most once per `LLT_TARGET_RECONNECT`. Concurrent writers append whole
//! chunks (`O_APPEND` writes of a regular file do not interleave); small vectored writes are
//! gathered first so that they stay one append.

use core::sync::atomic::{AtomicU64, Ordering};

use super::payload::{GATHER_MAX, Payload};
use crate::config::Config;
use crate::own_fds::{self, Slot};
use crate::statics::AtomicState;
use crate::sys;

crate::state_enum! {
    /// The target file's state.
    enum Target {
        /// Not open; opened on a write when due.
        Closed = 0,
        /// One thread is opening it.
        Opening = 1,
        /// Open in our [`Slot::TargetFile`].
        Open = 2,
    }
}

static STATE: AtomicState<Target> = AtomicState::new();
static LAST_ATTEMPT: AtomicU64 = AtomicU64::new(0);

/// Our descriptor of the target file, opening it if due.
fn ensure_open(cfg: &Config, now: u64) -> Option<i32> {
    match STATE.load(Ordering::Acquire) {
        Target::Open => return Some(own_fds::get(Slot::TargetFile)).filter(|fd| *fd >= 0),
        Target::Opening => return None,
        _ => {}
    }
    let last = LAST_ATTEMPT.load(Ordering::Relaxed);
    let interval = cfg.reconnect_s.saturating_mul(1_000_000_000);
    if last != 0 && now >= last && now < last.saturating_add(interval) {
        return None;
    }
    if STATE
        .compare_exchange(
            Target::Closed,
            Target::Opening,
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_err()
    {
        return None;
    }
    LAST_ATTEMPT.store(now.max(1), Ordering::Relaxed);
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT | libc::O_NONBLOCK;
    let opened = sys::open(cfg.target_path.as_bytes_with_nul(), flags, 0o644)
        .and_then(|fd| own_fds::install(Slot::TargetFile, fd));
    match opened {
        Ok(fd) => {
            STATE.store(Target::Open, Ordering::Release);
            crate::debug!(
                "writing tapped output to file {}",
                crate::debug::Bytes(cfg.target_path.as_bytes())
            );
            Some(fd)
        }
        Err(e) => {
            STATE.store(Target::Closed, Ordering::Release);
            crate::debug!(
                "cannot open target file {} (errno {e}); retrying in {} s",
                crate::debug::Bytes(cfg.target_path.as_bytes()),
                cfg.reconnect_s
            );
            None
        }
    }
}

/// Appends the first `len` bytes; returns how many were written.
pub fn deliver(cfg: &Config, data: &Payload<'_>, len: usize, now: u64) -> usize {
    let Some(fd) = ensure_open(cfg, now) else {
        return 0;
    };
    if let Payload::Iov(_) = data
        && len <= GATHER_MAX
    {
        let mut gathered = [0u8; GATHER_MAX];
        if let Some(bytes) = data.gather(len, &mut gathered) {
            return sys::write_all(fd, bytes);
        }
    }
    let mut done = 0usize;
    for chunk in data.chunks(len, usize::MAX) {
        let n = sys::write_all(fd, chunk);
        done = done.saturating_add(n);
        if n < chunk.len() {
            break;
        }
    }
    done
}
