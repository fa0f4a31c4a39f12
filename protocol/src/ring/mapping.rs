//! One `MAP_SHARED` mapping of a ring memfd, and the only code that turns offsets into memory
//! accesses. Every accessor bounds-checks its offset against the mapping length (the checks are
//! cheap compares on values derived from a validated `Geometry`), so neither side can read or
//! write outside the mapping whatever the shared bytes say.
//!
//! All accesses to shared memory are atomic (`AtomicU64`/`AtomicU32` loads and stores, relaxed
//! unless the protocol needs more): another process may write the same bytes at any moment, and
//! atomics are the accesses Rust defines for memory that changes under us. Relaxed 8-byte loads
//! and stores compile to plain moves, so the copies cost what a `memcpy` costs. The algorithm
//! itself works on [`Mapping::words`] (see `raw`).

use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::RingError;

/// A read-write shared mapping of a whole ring file; unmapped on drop.
pub struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access goes through atomics, so sharing the
// pointer between threads is as safe as sharing an `&[AtomicU64]`.
unsafe impl Send for Mapping {}
// SAFETY: see `Send`: all access is atomic.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` read-write, shared. `len` must not exceed the file size (the
    /// caller checked it with fstat, and the seals keep the file from shrinking afterwards).
    pub fn map(fd: BorrowedFd<'_>, len: usize) -> Result<Mapping, RingError> {
        // SAFETY: a fresh mapping chosen by the kernel (addr null); it aliases nothing of ours.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(RingError::last_os("mmap"));
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or(RingError::BadHeader {
            reason: "mmap returned a null mapping",
        })?;
        Ok(Mapping { base, len })
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The whole mapping as 8-byte atomic words (the view the ring's algorithm works on).
    #[inline(always)]
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is `len` bytes, page-aligned (so 8-byte aligned), lives as long
        // as `self`, and is only ever accessed through atomics (here and by the peer, which
        // may change any byte at any moment — exactly what atomics allow).
        unsafe {
            std::slice::from_raw_parts(
                self.base.as_ptr().cast::<AtomicU64>(),
                self.len / std::mem::size_of::<AtomicU64>(),
            )
        }
    }

    /// The 8-byte word at byte offset `off` (header fields); a private dummy word if `off` is
    /// out of range or misaligned (a bug, never data-driven).
    #[inline]
    pub fn u64_at(&self, off: usize) -> &AtomicU64 {
        static DUMMY: AtomicU64 = AtomicU64::new(0);
        debug_assert!(off.is_multiple_of(8) && off + 8 <= self.len);
        if off.is_multiple_of(8) {
            self.words().get(off / 8).unwrap_or(&DUMMY)
        } else {
            &DUMMY
        }
    }

    /// The 4-byte little-endian field at byte offset `off` (read once, at validation).
    pub fn u32_le_at(&self, off: usize) -> u32 {
        let word = self.u64_at(off & !7).load(Ordering::Relaxed).to_le_bytes();
        let at = off & 7;
        let mut b = [0u8; 4];
        if let Some(src) = word.get(at..at + 4) {
            b.copy_from_slice(src);
        }
        u32::from_le_bytes(b)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned; no reference into the mapping
        // outlives `self` (accessors borrow `self`).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}
