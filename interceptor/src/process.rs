//! Per-process identity stamped on every record: the pid, the sequence counter and the
//! [`Route`] a tapped call's bytes take. Low in the tree: `debug`, `hooks` and every part of
//! `sender` read it, and it reads nothing of the library but `sys`.

use core::sync::atomic::{AtomicU32, Ordering};

pub use logtap_protocol::tap::Stream;

/// Where a tapped call's bytes belong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Stdout, stderr or a tap file (Contract 2's numbers, [`Stream`]).
    pub stream: Stream,
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

/// Whether this call comes from a `vfork()` child (CPython's subprocess, `posix_spawn`
/// variants) that still shares the parent's memory: its `close_range(3, ~0)` before `exec`
/// must not clear the *parent's* fd table. A forked child has its own pid stored by the
/// atfork handler; only a vfork child (whose atfork handlers do not run) differs.
#[inline]
pub fn in_vfork_child() -> bool {
    crate::sys::getpid() != pid()
}
