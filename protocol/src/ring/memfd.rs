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
    self, Geometry, MAGIC, MAX_RING_SIZE, MIN_RING_SIZE, OFF_CAPACITY, OFF_CREATOR_PID, OFF_MAGIC,
    OFF_VERSION, OFF_WORD_BYTES, OFF_WORD_COUNT, VERSION, WORD_BYTES,
};
use super::mapping::Mapping;

/// Seals the consumer requires.
pub const REQUIRED_SEALS: i32 = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;

/// Creates a ring: a memfd (close-on-exec) of one header page plus a data area of `data_bytes`
/// clamped to [`MIN_RING_SIZE`](layout::MIN_RING_SIZE) ..= [`MAX_RING_SIZE`](layout::MAX_RING_SIZE)
/// and rounded up to a power of two, with its header initialised (the zero-filled data area is an empty ring), sealed
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

/// Writes the header of a zeroed file. The data area needs no writing: a control word of 0 is
/// FREE for the first lap (`layout::free`), and the memfd is zero-filled, so only the header
/// page is touched here; the data area's pages are allocated as writers reach them.
fn init(map: &Mapping, geometry: &Geometry, creator_pid: u32) {
    let lo_hi = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    let store = |off: usize, v: u64| map.u64_at(off).store(v.to_le(), Ordering::Relaxed);
    store(OFF_MAGIC, lo_hi(u32::from_le_bytes(MAGIC), VERSION));
    store(
        OFF_WORD_BYTES,
        lo_hi(WORD_BYTES as u32, geometry.word_count as u32),
    );
    store(OFF_CAPACITY, geometry.word_count * WORD_BYTES as u64);
    store(OFF_CREATOR_PID, u64::from(creator_pid));
    debug_assert_eq!(geometry.free(geometry.word_count - 1), 0);
    // Publish before anyone can map it: the fd has not left this function yet, and munmap plus
    // the later mmap by another process are full barriers, so Relaxed stores suffice.
}

/// Validates the fixed header fields (`header` is a private copy of the first bytes of the
/// header page) against the size of the file, and returns the geometry they describe.
pub fn geometry_from_header(header: &[u8; 32], file_size: u64) -> Result<Geometry, RingError> {
    let bad = |reason: &'static str| Err(RingError::BadHeader { reason });
    let u32_at = |off: usize| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&header[off..off + 4]);
        u32::from_le_bytes(b)
    };
    if header[OFF_MAGIC..OFF_MAGIC + 4] != MAGIC {
        return bad("magic is not LTR1 (not a logtap ring)");
    }
    let version = u32_at(OFF_VERSION);
    if version != VERSION {
        return Err(RingError::Version {
            found: version,
            expected: VERSION,
        });
    }
    if u32_at(OFF_WORD_BYTES) as usize != WORD_BYTES {
        return bad("word size is not 8");
    }
    let word_count = u32_at(OFF_WORD_COUNT) as usize;
    if !word_count.is_power_of_two() {
        return bad("word count is not a power of two");
    }
    let data_bytes = word_count.saturating_mul(WORD_BYTES);
    if !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&data_bytes) {
        return bad("data area size outside 64 KiB ..= 256 MiB");
    }
    let mut cap = [0u8; 8];
    cap.copy_from_slice(&header[OFF_CAPACITY..OFF_CAPACITY + 8]);
    if u64::from_le_bytes(cap) != data_bytes as u64 {
        return bad("capacity does not match word size × word count");
    }
    let geometry = Geometry::for_data_bytes(data_bytes);
    if file_size != geometry.map_len as u64 {
        return Err(RingError::BadSize {
            size: file_size,
            expected: geometry.map_len as u64,
        });
    }
    Ok(geometry)
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
    let geometry = geometry_from_header(&header, size)?;
    let map = Mapping::map(fd, geometry.map_len)?;
    debug_assert_eq!(map.len(), geometry.map_len);
    Ok((map, geometry))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_validation_rejects_each_bad_field() {
        let geometry = Geometry::for_data_bytes(MIN_RING_SIZE);
        let mut header = [0u8; 32];
        header[0..4].copy_from_slice(&MAGIC);
        header[4..8].copy_from_slice(&VERSION.to_le_bytes());
        header[8..12].copy_from_slice(&(WORD_BYTES as u32).to_le_bytes());
        header[12..16].copy_from_slice(&8192u32.to_le_bytes());
        header[16..24].copy_from_slice(&(MIN_RING_SIZE as u64).to_le_bytes());
        let size = geometry.map_len as u64;
        assert_eq!(geometry_from_header(&header, size).ok(), Some(geometry));
        assert!(matches!(
            geometry_from_header(&header, size + 1),
            Err(RingError::BadSize { .. })
        ));
        let mut other_version = header;
        for other in [1, 2, VERSION + 1] {
            other_version[4..8].copy_from_slice(&other.to_le_bytes());
            assert!(matches!(
                geometry_from_header(&other_version, size),
                Err(RingError::Version { found, expected: VERSION }) if found == other
            ));
        }
        for (off, value) in [(0, 0u8), (8, 64), (12, 3), (16, 1)] {
            let mut h = header;
            h[off] = value;
            assert!(
                matches!(
                    geometry_from_header(&h, size),
                    Err(RingError::BadHeader { .. })
                ),
                "offset {off}"
            );
        }
    }
}
