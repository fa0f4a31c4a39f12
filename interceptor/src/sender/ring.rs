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

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};
use std::os::fd::{BorrowedFd, IntoRawFd};

use logtap_protocol::ring::{self, Producer, PushError, RECORD_CONTINUED, RecordMeta};

use super::payload::{GATHER_MAX, Payload};
use super::{Route, pid, reserve_seq};
use crate::config::Config;
use crate::guard::{self, Guard};
use crate::own_fds::{self, Slot};
use crate::sys;

const NONE: u8 = 0;
const CREATING: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

/// How long a write waits for another thread's ring creation to finish.
const CREATE_WAIT_NS: u64 = 50_000_000;
/// A write larger than one record may wait this long without seeing the agent make room.
const BIG_WRITE_STALL_NS: u64 = 20_000_000;
const BIG_WRITE_NAP_NS: u64 = 50_000;

static STATE: AtomicU8 = AtomicU8::new(NONE);

struct RingCell(UnsafeCell<MaybeUninit<Producer>>);

// SAFETY: the Producer is written only by the thread that moved STATE from NONE to CREATING,
// before it publishes READY with Release; it is dropped only in a forked child, which has a
// single thread. Between those, it is only read (and `Producer` is Sync).
unsafe impl Sync for RingCell {}

static RING: RingCell = RingCell(UnsafeCell::new(MaybeUninit::uninit()));

/// The ring, if it exists.
#[inline]
pub fn get() -> Option<&'static Producer> {
    if STATE.load(Ordering::Acquire) == READY {
        // SAFETY: READY (Acquire) means it was fully written (see `RingCell`).
        Some(unsafe { (*RING.0.get()).assume_init_ref() })
    } else {
        None
    }
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
    if let Err(current) =
        STATE.compare_exchange(NONE, CREATING, Ordering::AcqRel, Ordering::Relaxed)
    {
        // Another thread creates it right now (a millisecond at most): wait, bounded, so that
        // the threads of a program that all start writing at once lose nothing. A signal
        // handler that interrupted the creating thread itself gives up after the bound.
        if current == CREATING {
            let end = sys::now_ns().saturating_add(CREATE_WAIT_NS);
            while STATE.load(Ordering::Acquire) == CREATING && sys::now_ns() < end {
                sys::yield_now();
            }
        }
        return get();
    }
    // The protocol crate calls interposed names (`fcntl`, `close`): hold the recursion guard,
    // unless our caller (the connecting thread) already holds it.
    let _guard = if guard::held() {
        None
    } else {
        match Guard::enter() {
            Some(g) => Some(g),
            None => {
                STATE.store(NONE, Ordering::Release);
                return None;
            }
        }
    };
    match create(cfg) {
        Ok(p) => {
            let slot = p.max_payload();
            // SAFETY: we own CREATING; nobody reads RING before READY.
            unsafe { (*RING.0.get()).write(p) };
            STATE.store(READY, Ordering::Release);
            crate::debug!(
                "ring created: {} bytes, records up to {slot} bytes",
                cfg.ring_size
            );
            get()
        }
        Err(what) => {
            STATE.store(FAILED, Ordering::Release);
            crate::debug!("cannot create the ring ({what}): using DATA frames");
            None
        }
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

/// Our eventfd moved to another number (the app `dup2`ed onto the old one).
pub fn wake_fd_moved(fd: i32) {
    if let Some(p) = get() {
        p.set_wake_fd(fd);
    }
}

/// In a forked child: drop the mapping of the parent's ring and our copies of its fds.
pub fn forget_in_child() {
    if STATE.swap(NONE, Ordering::AcqRel) == READY {
        // SAFETY: the child has one thread, and READY said the value is initialised; after the
        // swap to NONE nobody can obtain a new reference. Dropping unmaps the child's view only.
        unsafe { (*RING.0.get()).assume_init_drop() };
    }
    own_fds::close_slot(Slot::RingMemfd);
    own_fds::close_slot(Slot::WakeEventfd);
}

/// Pushes the first `len` bytes as records; returns how many leading bytes were committed.
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
            stream: route.stream,
            flags: 0,
            file_index: route.file_index,
            pid: pid(),
            seq: reserve_seq(1),
            time_ns: now,
        };
        return match p.try_push(&meta, bytes) {
            Ok(()) => len,
            Err(PushError::Full) => {
                if !route.suppressed {
                    p.note_dropped(1, u64::try_from(len).unwrap_or(u64::MAX));
                }
                0
            }
            Err(_) => 0,
        };
    }
    let k = data.chunk_count(len, max);
    let seq0 = reserve_seq(u32::try_from(k).unwrap_or(u32::MAX));
    let big = k > 1;
    let mut delivered = 0usize;
    for (i, chunk) in data.chunks(len, max).enumerate() {
        let last = i.saturating_add(1) >= k;
        let meta = RecordMeta {
            stream: route.stream,
            flags: if last { 0 } else { RECORD_CONTINUED },
            file_index: route.file_index,
            pid: pid(),
            seq: seq0.wrapping_add(u32::try_from(i).unwrap_or(0)),
            time_ns: now,
        };
        match push(p, &meta, chunk, big && connected) {
            Ok(()) => delivered = delivered.saturating_add(chunk.len()),
            Err(PushError::Full) => {
                if !route.suppressed {
                    let records = u64::try_from(k.saturating_sub(i)).unwrap_or(u64::MAX);
                    let bytes = u64::try_from(len.saturating_sub(delivered)).unwrap_or(u64::MAX);
                    p.note_dropped(records, bytes);
                }
                break;
            }
            // Abandoned: the agent skipped our slots (and counted them); TooLarge cannot
            // happen (chunks are at most max_payload). Either way stop here.
            Err(_) => break,
        }
    }
    delivered
}

/// One record; a part of a write larger than one record may wait (bounded) for room while
/// the agent is draining, since dropping one part would break the whole write.
fn push(p: &Producer, meta: &RecordMeta, chunk: &[u8], may_wait: bool) -> Result<(), PushError> {
    let first = p.try_push(meta, chunk);
    if !may_wait || !matches!(first, Err(PushError::Full)) {
        return first;
    }
    // Only the parts of a large write get here (the common path reads no shared counter).
    let _errno = sys::ErrnoGuard::save();
    let mut backlog = p.backlog_slots();
    let mut stalled = 0u64;
    while stalled < BIG_WRITE_STALL_NS {
        sys::sleep_ns(BIG_WRITE_NAP_NS);
        match p.try_push(meta, chunk) {
            Err(PushError::Full) => {}
            r => return r,
        }
        let now_backlog = p.backlog_slots();
        if now_backlog < backlog {
            stalled = 0;
        } else {
            stalled = stalled.saturating_add(BIG_WRITE_NAP_NS);
        }
        backlog = now_backlog;
    }
    Err(PushError::Full)
}
