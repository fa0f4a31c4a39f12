// The one touch point between the C hook layer and the protocol sources: plain `extern "C"`
// functions over `ring::Producer`, `ring::memfd::create_ring_memfd` and `tap`'s encoders.
// Nothing here allocates, locks or panics; every pointer the C side passes is checked for null
// and used only for the length it gives.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, Ordering};

use crate::ring::raw::PushError;
use crate::ring::producer::Producer;
use crate::ring::record::RecordMeta;
use crate::std_shim::os::fd::BorrowedFd;
use crate::tap::{self, HelloFields, Header, Kind, Stream};

/// The process's producer. It lives in static storage and is never dropped (a hook may still be
/// inside `try_push`); a forked child maps its own ring over it and leaks the parent's mapping.
struct Slot(UnsafeCell<MaybeUninit<Producer>>);

// SAFETY: written only while STATE is BUSY by the one thread that moved it there, read only
// while STATE is READY; `Producer` itself is Send + Sync.
unsafe impl Sync for Slot {}

static PRODUCER: Slot = Slot(UnsafeCell::new(MaybeUninit::uninit()));
static STATE: AtomicU32 = AtomicU32::new(EMPTY);
const EMPTY: u32 = 0;
const BUSY: u32 = 1;
const READY: u32 = 2;

fn producer() -> Option<&'static Producer> {
    if STATE.load(Ordering::Acquire) != READY {
        return None;
    }
    // SAFETY: READY is published (Release) only after the slot was written.
    Some(unsafe { (*PRODUCER.0.get()).assume_init_ref() })
}

/// Creates a sealed ring memfd of (about) `data_bytes` bytes; returns the fd or -1.
#[unsafe(no_mangle)]
pub extern "C" fn llt_ring_create(data_bytes: usize, creator_pid: u32) -> i32 {
    match crate::ring::memfd::create_ring_memfd(data_bytes, creator_pid) {
        Ok(fd) => fd.into_raw(),
        Err(_) => -1,
    }
}

/// Maps the ring behind `fd` as this process's producer, waking the consumer through
/// `wake_fd`. 0 on success, -1 if the ring is not valid, -2 if another thread is mapping one.
#[unsafe(no_mangle)]
pub extern "C" fn llt_ring_map(fd: i32, wake_fd: i32) -> i32 {
    let prior = STATE.load(Ordering::Acquire);
    if prior == BUSY
        || STATE
            .compare_exchange(prior, BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
    {
        return -2;
    }
    // SAFETY: the caller passes an open fd; the mapping does not need it afterwards.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    match Producer::map(borrowed) {
        Ok(p) => {
            p.set_wake_fd(wake_fd);
            // SAFETY: we hold BUSY: nobody reads the slot. A previous producer (the parent's,
            // in a forked child) is overwritten without drop: its mapping is leaked on purpose.
            unsafe { (*PRODUCER.0.get()).write(p) };
            STATE.store(READY, Ordering::Release);
            0
        }
        Err(_) => {
            STATE.store(EMPTY, Ordering::Release);
            -1
        }
    }
}

/// Forgets the producer (a forked child, before it creates its own ring).
#[unsafe(no_mangle)]
pub extern "C" fn llt_ring_forget() {
    STATE.store(EMPTY, Ordering::Release);
}

/// Pushes one record. 0 pushed, 1 full, 2 too large, 3 abandoned, -1 no ring.
///
/// # Safety
/// `data` points to `len` readable bytes (or `len` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llt_ring_push(
    stream: u8,
    flags: u8,
    file_index: u16,
    pid: u32,
    seq: u32,
    time_ns: u64,
    data: *const u8,
    len: usize,
) -> i32 {
    let Some(p) = producer() else { return -1 };
    let payload: &[u8] = if data.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the caller's contract.
        unsafe { core::slice::from_raw_parts(data, len) }
    };
    let meta = RecordMeta {
        stream,
        flags,
        file_index,
        pid,
        seq,
        time_ns,
    };
    match p.try_push(&meta, payload) {
        Ok(()) => 0,
        Err(PushError::Full) => 1,
        Err(PushError::TooLarge { .. }) => 2,
        Err(PushError::Abandoned) => 3,
        Err(PushError::Unencodable) => 4,
    }
}

/// Largest payload of one record (0 without a ring).
#[unsafe(no_mangle)]
pub extern "C" fn llt_ring_max_payload() -> usize {
    producer().map_or(0, Producer::max_payload)
}

/// The consumer's progress counter (`Producer::consumed`), 0 without a ring.
#[unsafe(no_mangle)]
pub extern "C" fn llt_ring_consumed() -> u64 {
    producer().map_or(0, Producer::consumed)
}

/// Slots reserved and not yet released.
#[unsafe(no_mangle)]
pub extern "C" fn llt_ring_backlog() -> u64 {
    producer().map_or(0, Producer::backlog_words)
}

/// Adds to the ring header's loss counters.
#[unsafe(no_mangle)]
pub extern "C" fn llt_ring_note_dropped(records: u64, bytes: u64) {
    if let Some(p) = producer() {
        p.note_dropped(records, bytes);
    }
}

/// Wakes the consumer if it sleeps.
#[unsafe(no_mangle)]
pub extern "C" fn llt_ring_wake() {
    if let Some(p) = producer() {
        p.wake();
    }
}

/// Writes a 32-byte control-frame header into `out`. `stream` 0 means none.
///
/// # Safety
/// `out` points to 32 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llt_frame_header(
    out: *mut u8,
    kind: u8,
    stream: u8,
    flags: u16,
    pid: u32,
    seq: u32,
    time_ns: u64,
    file_index: u32,
    payload_len: u32,
) -> i32 {
    let Some(kind) = Kind::from_u8(kind) else { return -1 };
    if out.is_null() {
        return -1;
    }
    let bytes = Header {
        kind,
        stream: Stream::from_u8(stream),
        flags,
        pid,
        seq,
        time_ns,
        file_index,
        payload_len,
    }
    .encode();
    // SAFETY: the caller's contract: 32 writable bytes.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), out, bytes.len()) };
    0
}

/// A byte string passed from C.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct LltBytes {
    pub ptr: *const u8,
    pub len: usize,
}

impl LltBytes {
    /// # Safety
    /// `ptr` points to `len` readable bytes that outlive `'a`, or is null.
    unsafe fn get<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() {
            &[]
        } else {
            // SAFETY: the caller's contract.
            unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// Encodes a HELLO payload into `out` (`cap` bytes); returns its length or -1.
///
/// # Safety
/// Every pointer is valid for the length given with it; `files` holds `nfiles` entries, `meta`
/// `2 × nmeta` (key, value, key, value…).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llt_encode_hello(
    out: *mut u8,
    cap: usize,
    pid: u32,
    ppid: u32,
    comm: LltBytes,
    exe: LltBytes,
    hostname: LltBytes,
    container_id: LltBytes,
    version: LltBytes,
    files: *const LltBytes,
    nfiles: usize,
    meta: *const LltBytes,
    nmeta: usize,
    ring: bool,
) -> isize {
    if out.is_null() {
        return -1;
    }
    // SAFETY: the caller's contract.
    let out = unsafe { core::slice::from_raw_parts_mut(out, cap) };
    let files: &[LltBytes] = if files.is_null() {
        &[]
    } else {
        // SAFETY: the caller's contract.
        unsafe { core::slice::from_raw_parts(files, nfiles) }
    };
    // SAFETY: the caller's contract, for each field.
    let fields = unsafe {
        HelloFields {
            pid,
            ppid,
            comm: comm.get(),
            exe: exe.get(),
            hostname: hostname.get(),
            container_id: container_id.get(),
            version: version.get(),
            ring,
        }
    };
    // SAFETY: the caller's contract.
    let paths = files.iter().map(|f| unsafe { f.get() });
    let meta: &[LltBytes] = if meta.is_null() {
        &[]
    } else {
        // SAFETY: the caller's contract: `nmeta` pairs, key then value.
        unsafe { core::slice::from_raw_parts(meta, nmeta.saturating_mul(2)) }
    };
    // SAFETY: the caller's contract.
    let pairs = meta.chunks_exact(2).map(|kv| unsafe { (kv[0].get(), kv[1].get()) });
    match tap::encode_hello(out, &fields, paths, pairs) {
        Ok(n) => n as isize,
        Err(_) => -1,
    }
}

/// Encodes a FILE payload; returns its length or -1.
///
/// # Safety
/// `out` holds `cap` writable bytes, `path` is valid for its length.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llt_encode_file(out: *mut u8, cap: usize, index: u32, path: LltBytes) -> isize {
    if out.is_null() {
        return -1;
    }
    // SAFETY: the caller's contract.
    let (out, path) = unsafe { (core::slice::from_raw_parts_mut(out, cap), path.get()) };
    tap::encode_file(out, index, path).map_or(-1, |n| n as isize)
}

/// Encodes a LOSS payload; returns its length or -1.
///
/// # Safety
/// `out` holds `cap` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn llt_encode_loss(out: *mut u8, cap: usize, frames: u64, bytes: u64) -> isize {
    if out.is_null() {
        return -1;
    }
    // SAFETY: the caller's contract.
    let out = unsafe { core::slice::from_raw_parts_mut(out, cap) };
    tap::encode_loss(out, frames, bytes).map_or(-1, |n| n as isize)
}
