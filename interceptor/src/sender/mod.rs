//! Delivering tapped bytes to `LLT_TARGET`: the `file:` target, or the agent (Contract 2).
//!
//! # Layout
//! - [`payload`] — the bytes of one tapped call (one buffer or an iovec array) cut into
//!   record-sized chunks without copying.
//! - [`file_target`] — `file:PATH`: raw bytes appended to a file, as the seed does.
//! - [`ring`] — the process's shared-memory ring: created on first use, pushed to by every
//!   tapped write, replaced in a forked child.
//! - [`connection`] — the control connection: rate-limited connects, HELLO with the ring's
//!   fds, hang-up detection without a syscall per write, DATA frames for the socket transport.
//! - [`hello`] — what the HELLO says about the process.
//! - [`loss`] — copies dropped outside the ring, reported in LOSS frames.
//!
//! [`deliver`] returns how many leading bytes reached a place from which the agent will get
//! them. For a *suppressed* stream the caller writes the rest to the real descriptor (fail
//! open); for other streams a shortfall is counted as loss.

pub mod connection;
pub mod file_target;
pub mod hello;
pub mod loss;
pub mod payload;
pub mod ring;

use core::sync::atomic::{AtomicU32, Ordering};

use crate::config::{self, TargetKind, Transport};
pub use payload::Payload;

/// Stream numbers of Contract 2.
pub const STREAM_STDOUT: u8 = 1;
/// See [`STREAM_STDOUT`].
pub const STREAM_STDERR: u8 = 2;
/// See [`STREAM_STDOUT`].
pub const STREAM_FILE: u8 = 3;

/// Where a tapped call's bytes belong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// 1 stdout, 2 stderr, 3 file.
    pub stream: u8,
    /// The tap file's index (stream 3), else 0.
    pub file_index: u16,
    /// Whether the real write is skipped when the copy is delivered.
    pub suppressed: bool,
}

static PID: AtomicU32 = AtomicU32::new(0);
static SEQ: AtomicU32 = AtomicU32::new(0);

/// This process's id as stamped on records (set at load and in a forked child).
#[inline]
pub fn pid() -> u32 {
    PID.load(Ordering::Relaxed)
}

/// Records a new process identity: at load, and in a forked child (which also restarts `seq`).
pub fn set_pid(pid: u32) {
    PID.store(pid, Ordering::Relaxed);
    SEQ.store(0, Ordering::Relaxed);
}

unsafe extern "C" {
    /// glibc (≥ 2.32, `<sys/single_threaded.h>`): non-zero while the process has never had a
    /// second thread; glibc clears it before `pthread_create` starts one, and its own stdio
    /// skips locking while it is set.
    static __libc_single_threaded: core::ffi::c_char;
}

/// Reserves `k` consecutive sequence numbers (the parts of one split write are consecutive,
/// so a reader can tell them from other threads' records that land between them).
///
/// `SEQ` is process-private memory. While the process is single-threaded, nothing but this
/// thread (and a signal handler interrupting it, which runs between two instructions) can
/// touch it, so a *single* non-locked `xadd` instruction is atomic enough and saves the
/// `lock` prefix (3–6 ns measured: the first locked instruction after the program's system
/// call waits for the store buffer to drain). Otherwise the locked `fetch_add`. (A program that
/// makes threads with a raw `clone(CLONE_VM)`, unknown to glibc, could get two records with
/// one number — an ordering hint for the agent, never memory at stake.)
#[inline]
pub fn reserve_seq(k: u32) -> u32 {
    // SAFETY: reading a byte glibc exports for exactly this purpose; a volatile read because
    // glibc writes it (once, from this very thread, before a second thread exists).
    let single = unsafe { core::ptr::read_volatile(&raw const __libc_single_threaded) } != 0;
    #[cfg(target_arch = "x86_64")]
    if single {
        let mut v = k;
        // SAFETY: an in-bounds, aligned read-modify-write of SEQ's own 4 bytes, by the only
        // thread of the process (see above); one instruction, so a signal handler sees SEQ
        // either before or after it.
        unsafe {
            core::arch::asm!(
                "xadd dword ptr [{p}], {v:e}",
                p = in(reg) SEQ.as_ptr(),
                v = inout(reg) v,
                options(nostack)
            );
        }
        return v;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = single;
    SEQ.fetch_add(k, Ordering::Relaxed)
}

/// Delivers the first `len` bytes of `data`; returns how many leading bytes were delivered.
pub fn deliver(route: Route, data: &Payload<'_>, len: usize) -> usize {
    let Some(cfg) = config::get() else { return 0 };
    let len = len.min(data.len());
    if len == 0 {
        return 0;
    }
    let now = crate::clock::record_time_ns();
    match cfg.target_kind {
        TargetKind::File => file_target::deliver(cfg, data, len, now),
        TargetKind::Socket => {
            let connected = connection::maintain(cfg, now);
            let ring = match cfg.transport {
                // Without its memfd (closed behind our back) the ring could not be passed to
                // an agent again: fall back to DATA frames.
                Transport::Ring => ring::get_or_create(cfg).filter(|_| ring::passable()),
                Transport::Socket => None,
            };
            match ring {
                Some(producer) => ring::deliver(producer, route, data, len, now, connected),
                None => connection::deliver_frames(route, data, len, now, connected),
            }
        }
    }
}

/// Called at exit: hands the ring to the agent if that has not happened yet (one immediate
/// connection attempt), then reports losses still pending (bounded wait).
pub fn on_exit() {
    if let Some(cfg) = config::get()
        && cfg.target_kind == TargetKind::Socket
    {
        connection::connect_at_exit(cfg);
        connection::flush_at_exit();
    }
}

/// The destructor's exit (a normal `exit`): [`on_exit`], then, if still no agent holds the
/// ring, the suppressed records no agent made safe are written where the program wrote them
/// ([`ring::write_back_suppressed`]; allocates, so not from the `_exit`/`exec` hooks).
pub fn on_exit_destructor() {
    on_exit();
    if let Some(cfg) = config::get()
        && cfg.target_kind == TargetKind::Socket
        && cfg.transport == Transport::Ring
        && !connection::is_connected()
    {
        let _ = ring::write_back_suppressed(cfg);
    }
}

/// Called in the child after `fork()`: the child is a new process with its own ring,
/// connection and sequence numbers, and inherits nothing of ours that could disturb the parent.
pub fn after_fork_child() {
    set_pid(crate::sys::getpid());
    crate::clock::after_fork_child();
    crate::guard::after_fork_child();
    ring::forget_in_child();
    connection::forget_in_child();
    loss::reset();
    crate::tap_files::reset_announced();
}
