//! The interposed functions, and the logic every tapped call shares.
//!
//! # Layout
//! - [`write`](mod@write) — `write`, `writev`, `pwrite(64)`, `pwritev(64)(2)`: async-signal-safe.
//! - [`stdio`] — the Rust half of the C shim's stdio hooks (routing and delivering bytes).
//! - [`exec`] — `_exit`, `_Exit`, the `exec` family: the ring goes to the agent before the
//!   image does.
//! - [`open`] — following tap files: the open family, `fopen`/`freopen`, `dup*`, `fcntl`
//!   duplicates, `close`/`fclose`/`close_range` (and keeping our own descriptors safe); the
//!   C-variadic `open`/`openat`/`fcntl` entry points are in `csrc/variadic.c`.
//!
//! Each hook is thin: call the real function (resolved once with `dlsym(RTLD_NEXT)`), and when
//! the descriptor is tapped hand the bytes the kernel accepted to [`crate::sender`]. Hooks are
//! exported with `#[cfg_attr(not(test), unsafe(no_mangle))]`, so unit tests do not hook the
//! test runner.

pub mod exec;
pub mod open;
pub mod stdio;
pub mod write;

use core::ffi::{CStr, c_void};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crate::process::{Route, Stream};
use crate::sender::{self, Payload};
use crate::{config, fd_table, guard, streams, sys};

/// A real libc function, resolved with `dlsym(RTLD_NEXT)` once and cached.
pub struct RealFn {
    name: &'static CStr,
    ptr: AtomicPtr<c_void>,
}

impl RealFn {
    /// An unresolved function.
    pub const fn new(name: &'static CStr) -> RealFn {
        RealFn {
            name,
            ptr: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The address of the next definition after ours, or `None` if there is none. The
    /// constructor resolves every hook's function up front; the lazy path only serves hooks
    /// that run before it (another library's constructor).
    #[inline]
    pub fn get(&self) -> Option<*mut c_void> {
        let p = self.ptr.load(Ordering::Acquire);
        if !p.is_null() {
            return Some(p);
        }
        let _errno = sys::ErrnoGuard::save();
        // SAFETY: `name` is NUL-terminated; RTLD_NEXT looks past this library.
        let p = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) };
        if p.is_null() {
            return None;
        }
        self.ptr.store(p, Ordering::Release);
        Some(p)
    }
}

/// 0: active; otherwise the `CLOCK_REALTIME` ns before which `LLT_PASSIV_ON_START` keeps the
/// library passive.
static PASSIVE_UNTIL: AtomicU64 = AtomicU64::new(0);

/// Sets the end of the passive period (constructor).
pub fn set_passive_until(ns: u64) {
    PASSIVE_UNTIL.store(ns, Ordering::Relaxed);
}

#[inline]
fn active() -> bool {
    let until = PASSIVE_UNTIL.load(Ordering::Relaxed);
    if until == 0 {
        return true;
    }
    if sys::now_ns() >= until {
        PASSIVE_UNTIL.store(0, Ordering::Relaxed);
        return true;
    }
    false
}

/// Where a write to `fd` is tapped to, or `None` (not tapped, not yet configured, passive,
/// or called from inside the library). Does not touch `errno`.
#[inline]
pub fn route_for_fd(fd: i32) -> Option<Route> {
    let cfg = config::get()?;
    // fd 1 / fd 2 only while they are the stream the tap was set up for, as that stream
    // (`2>&1` onto the real stdout is stdout), and their aliases: see [`streams`].
    let table = fd_table::get(fd);
    let stream = match table {
        None => streams::stream_of(fd),
        Some(index) => streams::alias_stream(index).unwrap_or(streams::FILE),
    };
    let route = match stream {
        streams::STDOUT if cfg.tap_stdout => Route {
            stream: Stream::Stdout,
            file_index: 0,
            suppressed: cfg.suppress_stdout,
        },
        streams::STDERR if cfg.tap_stderr => Route {
            stream: Stream::Stderr,
            file_index: 0,
            suppressed: cfg.suppress_stderr,
        },
        streams::FILE => Route {
            stream: Stream::File,
            file_index: table.unwrap_or(0),
            suppressed: cfg.suppress_tap_file,
        },
        _ => return None,
    };
    if guard::held() || !active() {
        return None;
    }
    Some(route)
}

/// The shared body of every tapped write. `real(skip)` performs the real call for the bytes
/// from offset `skip` on and returns its result (errno set by it on failure).
///
/// - Not suppressed: the real call first; then its first `r` bytes (what the kernel accepted)
///   are delivered; the real result and errno are returned unchanged.
/// - Suppressed: the copy is delivered first; if all of it was, the real call is skipped and
///   the full count returned with errno untouched; otherwise the undelivered rest is written
///   for real (fail open: nothing is lost).
pub fn tapped_write(
    route: Route,
    data: Payload<'_>,
    mut real: impl FnMut(usize) -> isize,
) -> isize {
    if route.suppressed {
        // The copy would read the app's buffer before the kernel does: a buffer the real call
        // would refuse with EFAULT must get exactly that, not a fault in the library.
        let saved = sys::errno();
        if !data.readable() {
            sys::set_errno(saved);
            return real(0);
        }
        let total = data.len();
        let delivered = sender::deliver(route, &data, total).min(total);
        sys::set_errno(saved);
        if delivered >= total {
            return isize::try_from(total).unwrap_or(isize::MAX);
        }
        let r = real(delivered);
        if r < 0 {
            if delivered > 0 {
                sys::set_errno(saved);
                return isize::try_from(delivered).unwrap_or(isize::MAX);
            }
            return r;
        }
        return isize::try_from(delivered)
            .unwrap_or(isize::MAX)
            .saturating_add(r);
    }
    let r = real(0);
    if r > 0 {
        // errno is saved only here, after the real call (whose errno the app must see), and
        // not before it as well: the common path pays one `__errno_location()`, not three.
        let _errno = sys::ErrnoGuard::save();
        let _ = sender::deliver(route, &data, usize::try_from(r).unwrap_or(0));
    }
    r
}

/// Writes `data` from byte `skip` on, segment by segment, with `write_at(buf, offset_in_data)`;
/// stops at the first short or failed call. Returns the bytes written, or the first call's
/// error result when nothing was written.
pub fn write_rest(
    data: &Payload<'_>,
    skip: usize,
    mut write_at: impl FnMut(&[u8], usize) -> isize,
) -> isize {
    let mut pos = 0usize;
    let mut written = 0usize;
    for seg in data.chunks(data.len(), usize::MAX) {
        let seg_end = pos.saturating_add(seg.len());
        if seg_end > skip {
            let from = skip.saturating_sub(pos);
            let part = seg.get(from..).unwrap_or(&[]);
            let r = write_at(part, pos.saturating_add(from));
            if r < 0 {
                return if written > 0 {
                    isize::try_from(written).unwrap_or(isize::MAX)
                } else {
                    r
                };
            }
            let n = usize::try_from(r).unwrap_or(0);
            written = written.saturating_add(n);
            if n < part.len() {
                break;
            }
        }
        pos = seg_end;
    }
    isize::try_from(written).unwrap_or(isize::MAX)
}
