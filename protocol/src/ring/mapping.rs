//! One `MAP_SHARED` mapping of a ring memfd, and the only code that turns offsets into memory
//! accesses. Every accessor bounds-checks its offset against the mapping length (the checks are
//! cheap compares on values derived from a validated `Geometry`), so neither side can read or
//! write outside the mapping whatever the shared bytes say.
//!
//! All accesses to shared memory are atomic (`AtomicU64`/`AtomicU32` loads and stores, relaxed
//! unless the protocol needs more): another process may write the same bytes at any moment, and
//! atomics are the accesses Rust defines for memory that changes under us. Relaxed 8-byte loads
//! and stores compile to plain moves, so the copies cost what a `memcpy` costs.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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

    /// The 8-byte word at `off` as an atomic. Panic-free: an out-of-range or misaligned offset
    /// (a bug, never data-driven) is clamped to the word at 0 in release builds.
    #[inline]
    pub fn u64_at(&self, off: usize) -> &AtomicU64 {
        let off = self.checked(off, 8);
        // SAFETY: `checked` guarantees `off + 8 <= len` and 8-byte alignment (the mapping is
        // page-aligned); the memory lives as long as `self`, and is only accessed atomically.
        unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(off).cast::<u64>()) }
    }

    /// The 4-byte word at `off` as an atomic (same guarantees as [`Mapping::u64_at`]).
    #[inline]
    pub fn u32_at(&self, off: usize) -> &AtomicU32 {
        let off = self.checked(off, 4);
        // SAFETY: `checked` guarantees `off + 4 <= len` and 4-byte alignment; see `u64_at`.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(off).cast::<u32>()) }
    }

    /// Hints the CPU to fetch the cache line at `off` for writing (x86-64 `prefetchw`; elsewhere
    /// nothing). CPUs without the instruction execute it as a no-op.
    #[inline]
    pub fn prefetch_write(&self, off: usize) {
        let off = self.checked(off, 8);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch never faults and changes no architectural state; `off` is inside
        // the mapping (checked above).
        unsafe {
            core::arch::asm!(
                "prefetchw [{0}]",
                in(reg) self.base.as_ptr().add(off),
                options(nostack, preserves_flags, readonly)
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = off;
    }

    /// Copies `src` into the mapping at `off` (8-byte aligned), word by word. The last word is
    /// completed with zeros, so it may write up to 7 bytes past `off + src.len()`; the caller
    /// keeps that within the slot.
    #[inline]
    pub fn write_bytes(&self, off: usize, src: &[u8]) {
        let mut chunks = src.chunks_exact(8);
        let mut at = off;
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.u64_at(at)
                .store(u64::from_ne_bytes(word), Ordering::Relaxed);
            at += 8;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.u64_at(at)
                .store(u64::from_ne_bytes(word), Ordering::Relaxed);
        }
    }

    /// Appends `n` bytes read from the mapping at `off` (8-byte aligned) to `dst`, word by word.
    /// May read up to 7 bytes past `off + n` (within the slot, as for `write_bytes`).
    #[inline]
    pub fn read_bytes(&self, off: usize, n: usize, dst: &mut Vec<u8>) {
        let start = dst.len();
        dst.resize(start + n, 0);
        let mut chunks = dst[start..].chunks_exact_mut(8);
        let mut at = off;
        for chunk in &mut chunks {
            let word = self.u64_at(at).load(Ordering::Relaxed);
            chunk.copy_from_slice(&word.to_ne_bytes());
            at += 8;
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let word = self.u64_at(at).load(Ordering::Relaxed);
            rest.copy_from_slice(&word.to_ne_bytes()[..rest.len()]);
        }
    }

    /// `off` if `[off, off + size)` is inside the mapping and aligned to `size`, else 0. A bad
    /// offset can only come from a bug in this module (all offsets derive from a validated
    /// geometry and masked positions); it must not turn into an out-of-bounds access, and the
    /// producer must not panic, so it degrades to a harmless access of the magic word.
    #[inline]
    fn checked(&self, off: usize, size: usize) -> usize {
        let ok =
            off.checked_add(size).is_some_and(|end| end <= self.len) && off.is_multiple_of(size);
        debug_assert!(
            ok,
            "ring offset {off} (+{size}) outside a {}-byte mapping",
            self.len
        );
        if ok { off } else { 0 }
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
