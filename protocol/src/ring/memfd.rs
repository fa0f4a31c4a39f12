//! The ring's file: creating a sealed memfd with an initialised header (interceptor side), and
//! the checks the agent runs on a memfd it received from a peer before mapping it.
//!
//! Why seals: the agent maps memory owned by another process. Without `F_SEAL_SHRINK` that
//! process could truncate the file and every later access of the agent would die of SIGBUS;
//! without `F_SEAL_GROW` the size checked at open would not be the size for ever. `F_SEAL_SEAL`
//! keeps anyone from adding `F_SEAL_WRITE`, which would make the agent's stamp writes fail.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;

use super::error::RingError;
use super::layout::{
    self, Geometry, MAGIC, OFF_CAPACITY, OFF_CREATOR_PID, OFF_SLOT_COUNT, OFF_SLOT_SIZE,
    OFF_VERSION, SLOT_BYTES, VERSION,
};
use super::mapping::Mapping;

/// Seals the consumer requires.
pub const REQUIRED_SEALS: i32 = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;

/// Creates a ring: a memfd (close-on-exec) of one header page plus a data area of `data_bytes`
/// clamped to [`MIN_RING_SIZE`](layout::MIN_RING_SIZE) ..= [`MAX_RING_SIZE`](layout::MAX_RING_SIZE)
/// and rounded up to a power of two, with its header and slot stamps initialised, sealed
/// against shrinking, growing and further sealing.
///
/// Not async-signal-safe (mmap, ftruncate): call it at start-up or after fork, not in a hook.
pub fn create_ring_memfd(data_bytes: usize, creator_pid: u32) -> Result<OwnedFd, RingError> {
    let geometry = Geometry::for_data_bytes(layout::normalized_ring_size(data_bytes));
    // SAFETY: the name is a NUL-terminated literal; the flags are valid for memfd_create.
    let raw = unsafe {
        libc::memfd_create(
            c"logtap-ring".as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    };
    if raw < 0 {
        return Err(RingError::last_os("memfd_create"));
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: plain syscall on our own fd.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), geometry.map_len as libc::off_t) } != 0 {
        return Err(RingError::last_os("ftruncate"));
    }
    init(
        &Mapping::map(fd.as_fd(), geometry.map_len)?,
        &geometry,
        creator_pid,
    );
    let seals = REQUIRED_SEALS | libc::F_SEAL_SEAL;
    // SAFETY: plain fcntl on our own fd.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(RingError::last_os("fcntl(F_ADD_SEALS)"));
    }
    Ok(fd)
}

/// Writes the header and the initial stamps (slot `i` free for position `i`) of a zeroed file.
fn init(map: &Mapping, geometry: &Geometry, creator_pid: u32) {
    let word = |off: usize, v: u32| map.u32_at(off).store(v.to_le(), Ordering::Relaxed);
    map.u32_at(0)
        .store(u32::from_ne_bytes(MAGIC), Ordering::Relaxed);
    word(OFF_VERSION, VERSION);
    word(OFF_SLOT_SIZE, SLOT_BYTES as u32);
    word(OFF_SLOT_COUNT, geometry.slot_count as u32);
    word(OFF_CREATOR_PID, creator_pid);
    map.u64_at(OFF_CAPACITY).store(
        (geometry.slot_count * SLOT_BYTES as u64).to_le(),
        Ordering::Relaxed,
    );
    // The slots need no writing: a stamp of 0 is FREE for the first lap (`layout::stamp`), and
    // the memfd is zero-filled, so only the header page is touched here; the data area's pages
    // are allocated as writers reach them.
    debug_assert_eq!(geometry.free(geometry.slot_count - 1), 0);
    // Publish before anyone can map it: the fd has not left this function yet, and munmap plus
    // the later mmap by another process are full barriers, so Relaxed stores suffice.
}

/// Size of the file behind `fd` (fstat).
pub fn file_size(fd: BorrowedFd<'_>) -> Result<u64, RingError> {
    // SAFETY: `stat` is plain old data; fstat fills it or fails.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and a valid out pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(RingError::last_os("fstat"));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(RingError::BadHeader {
            reason: "the fd is not a memfd (not a regular file)",
        });
    }
    Ok(u64::try_from(st.st_size).unwrap_or(0))
}

/// Checks that `fd` carries `F_SEAL_SHRINK` and `F_SEAL_GROW`.
pub fn check_seals(fd: BorrowedFd<'_>) -> Result<(), RingError> {
    // SAFETY: plain fcntl query.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 || seals & REQUIRED_SEALS != REQUIRED_SEALS {
        return Err(RingError::NotSealed { seals });
    }
    Ok(())
}

/// Maps the ring behind `fd` after validating its size and header; used by both sides.
pub fn map_validated(fd: BorrowedFd<'_>) -> Result<(Mapping, Geometry), RingError> {
    let size = file_size(fd)?;
    let min = (layout::HEADER_BYTES + layout::MIN_RING_SIZE) as u64;
    let max = (layout::HEADER_BYTES + layout::MAX_RING_SIZE) as u64;
    if !(min..=max).contains(&size) {
        return Err(RingError::BadSize {
            size,
            expected: min,
        });
    }
    // Map only the header page first: the geometry decides how much to map.
    let header_map = Mapping::map(fd, layout::HEADER_BYTES)?;
    let mut header = [0u8; 32];
    for (i, chunk) in header.chunks_exact_mut(8).enumerate() {
        let word = header_map.u64_at(i * 8).load(Ordering::Relaxed);
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    drop(header_map);
    let geometry = Geometry::from_header(&header, size)?;
    let map = Mapping::map(fd, geometry.map_len)?;
    debug_assert_eq!(map.len(), geometry.map_len);
    Ok((map, geometry))
}
