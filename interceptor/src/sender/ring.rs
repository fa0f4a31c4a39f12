//! The process's shared-memory ring (Contract 2's data path) and the hook's push into it.
//!
//! Lifecycle: the ring is created on the first tapped write of the process (not in the
//! constructor: every process started under `LD_PRELOAD` — each `sh`, `ls`, `sed` — would
//! otherwise pay a 1 MiB memfd it never uses). Creation is a handful of raw-ish syscalls
//! (`memfd_create`, `ftruncate`, `mmap`, `fcntl(F_ADD_SEALS)`, `eventfd2`) and no heap
//! allocation, so doing it inside a hook is safe; the thread that wins a CAS creates it while
//! holding the recursion guard (the protocol crate calls the interposed `fcntl`/`close`), and
//! writes by other threads (or a signal handler) meanwhile see "no ring yet" and take the
//! no-ring path. Records pushed before the agent connects wait in the ring: the agent drains
//! them once it receives the memfd.
//!
//! The memfd and the eventfd stay open in our own descriptor slots, so that every reconnect
//! passes the *same* ring and the agent resumes at `tail`. A forked child drops its mapping of
//! the parent's ring and creates its own on its first tapped write.
//!
//! # A full ring (`LLT_RING_FULL`)
//! `block` (the default, Docker's `mode: blocking`): a write that finds the ring full while an
//! agent holds it waits for room (`wait_for_room`): it wakes the consumer through the eventfd
//! if it sleeps, then naps (`NAP_NS`, `nanosleep`) and retries, watching the ring's `tail`
//! (`Producer::consumed`: the tail, combined with the heartbeat the agent beats while it makes
//! progress — it releases ring space only once records are safe, i.e. acknowledged or on disk).
//! While the tail moves the agent is draining and the wait goes on, so a program is slowed to
//! the agent's pace and loses nothing. Once the tail has not moved for [`STALL_NS`] (200 ms)
//! the agent is taken for stopped, dead or swamped: the copy is dropped and counted, and the
//! tail at which it stalled is remembered, so later writes drop at once, without waiting, until
//! the tail moves again. A stopped agent thus costs a program one 200 ms wait, not one per
//! write. The 200 ms are counted in rounds of the wait, each counting for at most
//! [`ROUND_CAP_NS`] (5 ms): a round that took longer means the program itself was not running
//! (the machine or its container busy or frozen — then the agent was most likely not running
//! either), which says nothing about the agent; [`WAIT_MAX_NS`] (1 s) bounds the wait in wall
//! time whatever the rounds say.
//! No agent holding the ring (never connected, or hung up): no wait at all. Async-signal-safe:
//! atomics, `nanosleep` and the eventfd `write` as raw syscalls, no lock, no allocation; `errno`
//! is restored. A signal handler that interrupts a push between reserve and commit and then
//! waits itself sees the tail stuck behind that reservation: it gives up after the stall time.
//!
//! `drop` (Docker's `mode: non-blocking`): the copy is dropped and counted at once; only the
//! parts of a write larger than one record wait (same bound), so that a write is not cut in
//! the middle. Either way a suppressed stream whose copy is not taken writes for real.

use core::sync::atomic::{AtomicU64, Ordering};
use std::os::fd::{BorrowedFd, IntoRawFd};

use logtap_protocol::ring::{self, Producer, PushError, RECORD_CONTINUED, RecordMeta};

use super::payload::{GATHER_MAX, Payload};
use crate::config::{self, Config, RingFull};
use crate::guard::{self, Guard};
use crate::own_fds::{self, Slot};
use crate::process::{Route, pid, reserve_seq};
use crate::statics::{Fill, Published, Refused};
use crate::sys;

/// How long a write waits for another thread's ring creation to finish.
const CREATE_WAIT_NS: u64 = 50_000_000;
/// A write waiting for room gives up once the agent's `tail` has not moved for this long.
/// A live agent moves it (or its heartbeat) at least every 20 ms while it makes progress (see
/// `agent/src/input/ring_release.rs`), yet gaps of up to 70 ms were measured
/// for a debug-build agent on 2 loaded cores, and a container throttled by a CPU limit can be
/// frozen for most of the kernel's 100 ms CFS period. 200 ms stays clear of both, and a
/// program whose agent is SIGSTOPped pays it once per stop, not per write (bench/RESULTS.md).
pub const STALL_NS: u64 = 200_000_000;
/// One nap of a waiting write (plus the kernel's 50 µs timer slack: ≈ 100 µs a round).
const NAP_NS: u64 = 50_000;
/// What one round of a wait (a nap and a retry) counts for at most toward [`STALL_NS`]: a
/// longer round means this program was not running (measured on the project's 2-core VM:
/// every process of the machine frozen for up to 420 ms at once, agents included).
pub const ROUND_CAP_NS: u64 = 5_000_000;
/// A wait without progress ends after this much wall time, however its rounds counted.
pub const WAIT_MAX_NS: u64 = 1_000_000_000;
/// Rounds without progress after which a wait gives up even if the clock says otherwise
/// (a wall clock stepped back): four times the rounds that fill [`STALL_NS`] with bare naps.
const MAX_IDLE_NAPS: u32 = (STALL_NS / NAP_NS) as u32 * 4;
/// Not stalled (no position of a valid ring is this large).
const NOT_STALLED: u64 = u64::MAX;
/// The `tail` at which the last wait stalled: while the ring's tail is still there, writes
/// that find the ring full drop at once.
static STALLED_AT: AtomicU64 = AtomicU64::new(NOT_STALLED);

/// The process's ring: created by the first tapped write, failed for good if the kernel
/// refused, dropped (unmapped) in a forked child.
static RING: Published<Producer> = Published::new();

/// The ring, if it exists.
#[inline]
pub fn get() -> Option<&'static Producer> {
    RING.get()
}

/// The ring, created now if this is the first tapped write. `None` while another thread
/// creates it, or if the kernel refused (the socket transport's DATA frames are used then).
/// The existing-ring case is one inlined load; creating is out of line (`create_once`).
#[inline]
pub fn get_or_create(cfg: &Config) -> Option<&'static Producer> {
    if let Some(p) = get() {
        return Some(p);
    }
    create_once(cfg)
}

#[cold]
#[inline(never)]
fn create_once(cfg: &Config) -> Option<&'static Producer> {
    let made = RING.fill(|| {
        // The protocol crate calls interposed names (`fcntl`, `close`): hold the recursion
        // guard, unless our caller (the connecting thread) already holds it. Without it, leave
        // the ring to a later write.
        let _guard = if guard::held() {
            None
        } else {
            Some(Guard::enter().ok_or((Fill::Empty, None))?)
        };
        create(cfg).map_err(|what| (Fill::Failed, Some(what)))
    });
    match made {
        Ok(p) => {
            crate::debug!(
                "ring created: {} bytes, records up to {} bytes",
                cfg.ring_size,
                p.max_payload()
            );
            Some(p)
        }
        Err(Refused::Failed(Some(what))) => {
            crate::debug!("cannot create the ring ({what}): using DATA frames");
            None
        }
        Err(Refused::Failed(None)) => None,
        Err(Refused::Busy(Fill::Filling)) => {
            // Another thread creates it right now (a millisecond at most): wait, bounded, so
            // that the threads of a program that all start writing at once lose nothing. A
            // signal handler that interrupted the creating thread itself gives up after the
            // bound.
            let end = sys::now_ns().saturating_add(CREATE_WAIT_NS);
            while RING.state() == Fill::Filling && sys::now_ns() < end {
                sys::yield_now();
            }
            get()
        }
        Err(Refused::Busy(_)) => get(),
    }
}

fn create(cfg: &Config) -> Result<Producer, &'static str> {
    let memfd = ring::create_ring_memfd(cfg.ring_size, pid()).map_err(|_| "memfd_create")?;
    let memfd = own_fds::install(Slot::RingMemfd, memfd.into_raw_fd()).map_err(|_| "fcntl")?;
    // SAFETY: `memfd` is our open slot descriptor for the duration of the call.
    let producer = Producer::map(unsafe { BorrowedFd::borrow_raw(memfd) }).map_err(|_| "mmap")?;
    let efd = sys::eventfd()
        .and_then(|fd| own_fds::install(Slot::WakeEventfd, fd))
        .map_err(|_| "eventfd")?;
    producer.set_wake_fd(efd);
    Ok(producer)
}

/// Whether the ring's memfd is still ours to pass in a HELLO.
#[inline]
pub fn passable() -> bool {
    own_fds::get(Slot::RingMemfd) >= 0
}

/// The (memfd, eventfd) pair a HELLO passes.
pub fn fds() -> (i32, i32) {
    (
        own_fds::get(Slot::RingMemfd),
        own_fds::get(Slot::WakeEventfd),
    )
}

/// Points the ring's wake-ups at our eventfd's number now: call after [`own_fds`] moved it
/// (the app `dup2`ed onto the old one) or forgot it (closed behind our back).
pub fn refresh_wake_fd() {
    if let Some(p) = get() {
        p.set_wake_fd(own_fds::get(Slot::WakeEventfd));
    }
}

/// Whether full-ring waits are on (`LLT_RING_FULL=block`, the default).
#[inline]
pub fn blocking() -> bool {
    config::get().is_none_or(|c| c.ring_full == RingFull::Block)
}

/// In a forked child: drop the mapping of the parent's ring and our copies of its fds.
pub fn forget_in_child() {
    STALLED_AT.store(NOT_STALLED, Ordering::Relaxed);
    // SAFETY: the child has one thread, which runs this atfork handler outside any hook's
    // use of the ring. Dropping unmaps the child's view only.
    unsafe { RING.reset() };
    own_fds::close_slot(Slot::RingMemfd);
    own_fds::close_slot(Slot::WakeEventfd);
}

/// Pushes the first `len` bytes as records; returns how many leading bytes were committed.
/// A write longer than one record (`max_payload`) is split into records with
/// `RECORD_CONTINUED` on all but the last and consecutive `seq` numbers.
/// A suppressed stream is only "delivered" while an agent holds the ring (`connected`).
#[inline(always)]
pub fn deliver(
    p: &Producer,
    route: Route,
    data: &Payload<'_>,
    len: usize,
    now: u64,
    connected: bool,
) -> usize {
    if route.suppressed && !connected {
        return 0;
    }
    if let Payload::Iov(_) = data
        && len <= GATHER_MAX
    {
        // Zeroing this buffer costs a few ns: only vectored writes pay it.
        let mut gathered = [0u8; GATHER_MAX];
        if let Some(bytes) = data.gather(len, &mut gathered) {
            return push_chunks(p, route, &Payload::One(bytes), bytes.len(), now, connected);
        }
    }
    push_chunks(p, route, data, len, now, connected)
}

#[inline(always)]
fn push_chunks(
    p: &Producer,
    route: Route,
    data: &Payload<'_>,
    len: usize,
    now: u64,
    connected: bool,
) -> usize {
    let max = p.max_payload();
    // The common case: one buffer, one record.
    if let Payload::One(bytes) = data
        && len <= max
        && let Some(bytes) = bytes.get(..len)
    {
        let meta = RecordMeta {
            stream: route.stream as u8,
            flags: 0,
            file_index: route.file_index,
            pid: pid(),
            seq: reserve_seq(1),
            time_ns: now,
        };
        return match p.try_push(&meta, bytes) {
            Ok(()) => len,
            Err(PushError::Full) => full(p, route, &meta, bytes, connected),
            Err(_) => 0,
        };
    }
    let k = data.chunk_count(len, max);
    let seq0 = reserve_seq(u32::try_from(k).unwrap_or(u32::MAX));
    let may_wait = connected && (k > 1 || blocking());
    let mut delivered = 0usize;
    for (i, chunk) in data.chunks(len, max).enumerate() {
        let last = i.saturating_add(1) >= k;
        let meta = RecordMeta {
            stream: route.stream as u8,
            flags: if last { 0 } else { RECORD_CONTINUED },
            file_index: route.file_index,
            pid: pid(),
            seq: seq0.wrapping_add(u32::try_from(i).unwrap_or(0)),
            time_ns: now,
        };
        match push(p, &meta, chunk, may_wait) {
            Ok(()) => delivered = delivered.saturating_add(chunk.len()),
            Err(PushError::Full) => {
                if !route.suppressed {
                    let records = u64::try_from(k.saturating_sub(i)).unwrap_or(u64::MAX);
                    let bytes = u64::try_from(len.saturating_sub(delivered)).unwrap_or(u64::MAX);
                    p.note_dropped(records, bytes);
                }
                break;
            }
            // Abandoned: the agent skipped our reservation (and counted it); TooLarge cannot
            // happen (chunks are at most max_payload). Either way stop here.
            Err(_) => break,
        }
    }
    delivered
}

/// The one-record write found the ring full: wait for room when that is the mode and an agent
/// holds the ring, else (or when the wait stalls) drop the copy and count it — except for a
/// suppressed stream, whose caller then writes for real. Returns the bytes delivered.
#[cold]
#[inline(never)]
fn full(p: &Producer, route: Route, meta: &RecordMeta, bytes: &[u8], connected: bool) -> usize {
    let pushed = if connected && blocking() {
        wait_for_room(p, meta, bytes)
    } else {
        Err(PushError::Full)
    };
    match pushed {
        Ok(()) => bytes.len(),
        Err(PushError::Full) => {
            if !route.suppressed {
                p.note_dropped(1, u64::try_from(bytes.len()).unwrap_or(u64::MAX));
            }
            0
        }
        Err(_) => 0,
    }
}

/// One record of a split write; with `may_wait`, a full ring is waited on ([`wait_for_room`]).
fn push(p: &Producer, meta: &RecordMeta, chunk: &[u8], may_wait: bool) -> Result<(), PushError> {
    let first = p.try_push(meta, chunk);
    if !may_wait || !matches!(first, Err(PushError::Full)) {
        return first;
    }
    wait_for_room(p, meta, chunk)
}

/// Retries the push of a record that found the ring full until it goes in, or until the
/// agent's `tail` has not moved for [`STALL_NS`] of rounds (or [`WAIT_MAX_NS`] of wall time):
/// then `Full`, and later waits are skipped while the tail stays where it stalled. See the
/// module's documentation.
#[cold]
#[inline(never)]
fn wait_for_room(p: &Producer, meta: &RecordMeta, chunk: &[u8]) -> Result<(), PushError> {
    let mut tail = p.consumed();
    if STALLED_AT.load(Ordering::Relaxed) == tail {
        return Err(PushError::Full);
    }
    let _errno = sys::ErrnoGuard::save();
    p.wake();
    let mut since = sys::now_ns();
    let mut round_start = since;
    let mut stalled = 0u64;
    let mut idle_naps = 0u32;
    loop {
        sys::sleep_ns(NAP_NS);
        match p.try_push(meta, chunk) {
            Err(PushError::Full) => {}
            r => return r,
        }
        let now_tail = p.consumed();
        let now = sys::now_ns();
        // A clock stepped back makes a round count for nothing: `MAX_IDLE_NAPS` bounds that.
        let round = now.saturating_sub(round_start).min(ROUND_CAP_NS);
        round_start = now;
        if now_tail != tail {
            tail = now_tail;
            since = now;
            stalled = 0;
            idle_naps = 0;
            continue;
        }
        stalled = stalled.saturating_add(round);
        idle_naps = idle_naps.saturating_add(1);
        if stalled >= STALL_NS
            || now.saturating_sub(since) >= WAIT_MAX_NS
            || idle_naps >= MAX_IDLE_NAPS
        {
            STALLED_AT.store(tail, Ordering::Relaxed);
            crate::debug!(
                "the agent has not drained the ring for {} ms: dropping copies until it does",
                STALL_NS / 1_000_000
            );
            return Err(PushError::Full);
        }
    }
}

/// At a normal exit (the destructor) with no agent holding the ring: the records of a
/// *suppressed* stream that no agent made safe — an agent took them, then died or went away
/// before they were acknowledged or spooled — reached nobody, so they are written where the
/// program wrote them (fail open; a duplicate is possible if a dead agent had sent them,
/// loss is not). Records of other streams were written by the program itself. fd 1 / fd 2
/// only while they are still the tapped stream; a tap file is reopened by its path for
/// appending. Allocates (a payload buffer), so only from the destructor, never from a hook.
/// Returns how many records were written back.
pub fn write_back_suppressed(cfg: &Config) -> u64 {
    if !(cfg.suppress_stdout || cfg.suppress_stderr || cfg.suppress_tap_file) {
        return 0;
    }
    if get().is_none_or(|p| p.backlog_words() == 0) {
        return 0;
    }
    let fd = own_fds::get(Slot::RingMemfd);
    if fd < 0 {
        return 0;
    }
    // SAFETY: our own memfd slot, open for the duration of this call (the app cannot close
    // it: see own_fds).
    let memfd = unsafe { BorrowedFd::borrow_raw(fd) };
    let stream_fd = |want: u8| {
        [1, 2]
            .into_iter()
            .find(|f| crate::streams::stream_of(*f) == want)
    };
    let mut file: Option<(u16, i32)> = None;
    let mut written = 0u64;
    let mut payload = Vec::new();
    let _ = ring::unreleased_records(memfd, &mut payload, |meta, bytes| {
        let target = match meta.stream {
            1 if cfg.suppress_stdout => stream_fd(crate::streams::STDOUT),
            2 if cfg.suppress_stderr => stream_fd(crate::streams::STDERR),
            3 if cfg.suppress_tap_file => {
                if file.is_none_or(|(i, _)| i != meta.file_index) {
                    if let Some((_, old)) = file.take() {
                        sys::close(old);
                    }
                    file = crate::tap_files::path(usize::from(meta.file_index))
                        .and_then(|p| {
                            let mut z = [0u8; crate::tap_files::MAX_PATH + 1];
                            z.get_mut(..p.len())?.copy_from_slice(p);
                            let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CLOEXEC;
                            sys::open(z.get(..=p.len())?, flags, 0).ok()
                        })
                        .map(|f| (meta.file_index, f));
                }
                file.map(|(_, f)| f)
            }
            _ => None,
        };
        if let Some(to) = target
            && sys::write_all(to, bytes) == bytes.len()
        {
            written = written.saturating_add(1);
        }
    });
    if let Some((_, f)) = file {
        sys::close(f);
    }
    if written > 0 {
        crate::debug!(
            "no agent at exit: {written} suppressed records written where the program wrote them"
        );
    }
    written
}
