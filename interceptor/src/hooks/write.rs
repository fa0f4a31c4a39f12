//! `write`, `writev`, `pwrite`, `pwrite64`, `pwritev`, `pwritev64`, `pwritev2`, `pwritev64v2`.
//!
//! These are the async-signal-safe hooks: a descriptor that is not tapped costs one config
//! load and one table load before the real call; a tapped one adds a clock read, one ring
//! record (or DATA frame) and nothing else — no lock, no allocation, no panic. The bytes
//! tapped are the first `r` the kernel accepted; `errno` and the return value are the real
//! call's (or the full count on a suppressed stream, see [`super::tapped_write`]).

use core::ffi::{c_int, c_uint, c_void};

use libc::{iovec, off_t, size_t, ssize_t};

use super::{RealFn, route_for_fd, tapped_write, write_rest};
use crate::process::Route;
use crate::sender::Payload;

static WRITE: RealFn = RealFn::new(c"write");
static WRITEV: RealFn = RealFn::new(c"writev");
static PWRITE: RealFn = RealFn::new(c"pwrite");
static PWRITE64: RealFn = RealFn::new(c"pwrite64");
static PWRITEV: RealFn = RealFn::new(c"pwritev");
static PWRITEV64: RealFn = RealFn::new(c"pwritev64");
static PWRITEV2: RealFn = RealFn::new(c"pwritev2");
static PWRITEV64V2: RealFn = RealFn::new(c"pwritev64v2");

type WriteFn = unsafe extern "C" fn(c_int, *const c_void, size_t) -> ssize_t;
type WritevFn = unsafe extern "C" fn(c_int, *const iovec, c_int) -> ssize_t;
type PwriteFn = unsafe extern "C" fn(c_int, *const c_void, size_t, off_t) -> ssize_t;
type PwritevFn = unsafe extern "C" fn(c_int, *const iovec, c_int, off_t) -> ssize_t;
type Pwritev2Fn = unsafe extern "C" fn(c_int, *const iovec, c_int, off_t, c_int) -> ssize_t;

/// Resolves every real function of this module (constructor).
pub fn resolve() {
    for f in [
        &WRITE,
        &WRITEV,
        &PWRITE,
        &PWRITE64,
        &PWRITEV,
        &PWRITEV64,
        &PWRITEV2,
        &PWRITEV64V2,
    ] {
        let _ = f.get();
    }
    resolve_copies();
}

/// The real `write` (raw syscall if libc's cannot be found).
///
/// # Safety
/// `write(2)`'s contract: `buf` is readable for `count` bytes.
pub unsafe fn real_write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    match WRITE.get() {
        Some(p) => {
            // SAFETY: dlsym("write") has `write`'s signature; arguments are the caller's.
            unsafe { core::mem::transmute::<*mut c_void, WriteFn>(p)(fd, buf, count) }
        }
        // SAFETY: raw write with the caller's arguments.
        None => unsafe { libc::syscall(libc::SYS_write, fd, buf, count) as ssize_t },
    }
}

/// The real `pwrite`-family call `f` (raw `pwrite64` if libc's cannot be found).
///
/// # Safety
/// `pwrite(2)`'s contract: `buf` is readable for `count` bytes.
unsafe fn real_pwrite(
    f: &RealFn,
    fd: c_int,
    buf: *const c_void,
    count: size_t,
    off: off_t,
) -> ssize_t {
    match f.get() {
        // SAFETY: dlsym of a pwrite-family name has pwrite's signature.
        Some(p) => unsafe { core::mem::transmute::<*mut c_void, PwriteFn>(p)(fd, buf, count, off) },
        // SAFETY: raw pwrite64 with the caller's arguments.
        None => unsafe { libc::syscall(libc::SYS_pwrite64, fd, buf, count, off) as ssize_t },
    }
}

/// The app's buffer as a slice (the kernel read it, or will: it is the caller's to keep valid).
///
/// # Safety
/// `buf` is null, or readable for `count` bytes for as long as the slice is used (a write
/// call's contract, for the duration of the hook).
unsafe fn buf_slice<'a>(buf: *const c_void, count: size_t) -> &'a [u8] {
    if buf.is_null() || count == 0 {
        return &[];
    }
    // SAFETY: the caller passed (buf, count) to a write call, which requires `count` readable
    // bytes at `buf` for the duration of the call; we read them only within the hook.
    unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), count) }
}

/// The app's iovec array as a slice (`None` for a count outside 1..=1024 or a null array).
///
/// # Safety
/// `iov` is null, or points at `cnt` readable iovecs for as long as the slice is used
/// (`writev(2)`'s contract, for the duration of the hook).
unsafe fn iov_slice<'a>(iov: *const iovec, cnt: c_int) -> Option<&'a [iovec]> {
    let n = usize::try_from(cnt).ok().filter(|n| *n > 0 && *n <= 1024)?;
    if iov.is_null() {
        return None;
    }
    // SAFETY: writev's contract: `iov` points at `cnt` iovecs (at most IOV_MAX = 1024).
    Some(unsafe { core::slice::from_raw_parts(iov, n) })
}

/// The write hook's logic, shared with the C shim's `dprintf` family.
///
/// # Safety
/// `write(2)`'s contract: `buf` is readable for `count` bytes.
pub unsafe fn hooked_write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    let Some(route) = route_for_fd(fd).filter(|_| !buf.is_null() || count == 0) else {
        // (A null buffer gets the real call's EFAULT.)
        // SAFETY: the caller's arguments, unchanged.
        return unsafe { real_write(fd, buf, count) };
    };
    // SAFETY: non-null (checked above), and `write(2)`'s contract is our caller's.
    let bytes = unsafe { buf_slice(buf, count) };
    tapped_write(route, Payload::One(bytes), |skip| {
        let rest = bytes.get(skip..).unwrap_or(&[]);
        // SAFETY: `rest` is a valid slice of the caller's buffer.
        unsafe { real_write(fd, rest.as_ptr().cast(), rest.len()) }
    })
}

/// `write(2)`.
///
/// # Safety
/// The caller's contract of `write(2)`: `buf` is readable for `count` bytes.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    // SAFETY: the caller's contract of write(2) is ours.
    unsafe { hooked_write(fd, buf, count) }
}

/// `writev(2)`.
///
/// # Safety
/// The caller's contract of `writev(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    let real = |iov: *const iovec, cnt: c_int| match WRITEV.get() {
        // SAFETY: dlsym("writev") has writev's signature; the caller's arguments.
        Some(p) => unsafe { core::mem::transmute::<*mut c_void, WritevFn>(p)(fd, iov, cnt) },
        // SAFETY: raw writev with the caller's arguments.
        None => unsafe { libc::syscall(libc::SYS_writev, fd, iov, cnt) as ssize_t },
    };
    // SAFETY: `writev(2)`'s contract is our caller's.
    let (Some(route), Some(v)) = (route_for_fd(fd), unsafe { iov_slice(iov, cnt) }) else {
        return real(iov, cnt);
    };
    let data = Payload::Iov(v);
    tapped_write(route, data, |skip| {
        if skip == 0 {
            return real(iov, cnt);
        }
        // SAFETY: `part` is a valid slice of the caller's iovec buffers.
        write_rest(&data, skip, |part, _| unsafe {
            real_write(fd, part.as_ptr().cast(), part.len())
        })
    })
}

/// Shared by `pwrite` and `pwrite64` (`f` is the real one).
///
/// # Safety
/// `pwrite(2)`'s contract: `buf` is readable for `count` bytes.
unsafe fn pwrite_common(
    f: &RealFn,
    fd: c_int,
    buf: *const c_void,
    count: size_t,
    off: off_t,
) -> ssize_t {
    let Some(route) = route_for_fd(fd).filter(|_| !buf.is_null() || count == 0) else {
        // SAFETY: the caller's arguments, unchanged.
        return unsafe { real_pwrite(f, fd, buf, count, off) };
    };
    // SAFETY: non-null (checked above), and `pwrite(2)`'s contract is our caller's.
    let bytes = unsafe { buf_slice(buf, count) };
    tapped_write(route, Payload::One(bytes), |skip| {
        let rest = bytes.get(skip..).unwrap_or(&[]);
        let at = off.saturating_add(off_t::try_from(skip).unwrap_or(0));
        // SAFETY: `rest` is a valid slice of the caller's buffer.
        unsafe { real_pwrite(f, fd, rest.as_ptr().cast(), rest.len(), at) }
    })
}

/// `pwrite(2)`.
///
/// # Safety
/// The caller's contract of `pwrite(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pwrite(
    fd: c_int,
    buf: *const c_void,
    count: size_t,
    off: off_t,
) -> ssize_t {
    // SAFETY: the caller's contract of pwrite(2) is ours.
    unsafe { pwrite_common(&PWRITE, fd, buf, count, off) }
}

/// `pwrite64(2)`.
///
/// # Safety
/// The caller's contract of `pwrite64(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pwrite64(
    fd: c_int,
    buf: *const c_void,
    count: size_t,
    off: off_t,
) -> ssize_t {
    // SAFETY: the caller's contract of pwrite64(2) is ours.
    unsafe { pwrite_common(&PWRITE64, fd, buf, count, off) }
}

/// Shared by the pwritev family. `off == -1` (pwritev2 only) means the file position.
///
/// # Safety
/// `pwritev(2)`'s contract: `iov` points at `cnt` iovecs of readable buffers; `real` is safe
/// to call with them, or with a one-element iovec of a part of one of them.
unsafe fn pwritev_common(
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
    off: off_t,
    real: impl Fn(*const iovec, c_int, off_t) -> ssize_t,
) -> ssize_t {
    // SAFETY: `pwritev(2)`'s contract is our caller's.
    let (Some(route), Some(v)) = (route_for_fd(fd), unsafe { iov_slice(iov, cnt) }) else {
        return real(iov, cnt, off);
    };
    let data = Payload::Iov(v);
    tapped_write(route, data, |skip| {
        if skip == 0 {
            return real(iov, cnt, off);
        }
        write_rest(&data, skip, |part, pos| {
            let one = crate::sender::payload::iovec_of(part);
            let at = if off < 0 {
                off
            } else {
                off.saturating_add(off_t::try_from(pos).unwrap_or(0))
            };
            real(&raw const one, 1, at)
        })
    })
}

/// The real `pwritev`-family call `f` (`ENOSYS` if libc's cannot be found).
///
/// # Safety
/// `pwritev(2)`'s contract: `iov` points at `cnt` iovecs of readable buffers.
unsafe fn call_pwritev(
    f: &RealFn,
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
    off: off_t,
) -> ssize_t {
    match f.get() {
        // SAFETY: dlsym of a pwritev name has pwritev's signature.
        Some(p) => unsafe { core::mem::transmute::<*mut c_void, PwritevFn>(p)(fd, iov, cnt, off) },
        None => {
            crate::sys::set_errno(libc::ENOSYS);
            -1
        }
    }
}

/// The real `pwritev2`-family call `f` (`ENOSYS` if libc's cannot be found).
///
/// # Safety
/// `pwritev2(2)`'s contract: `iov` points at `cnt` iovecs of readable buffers.
unsafe fn call_pwritev2(
    f: &RealFn,
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
    off: off_t,
    flags: c_int,
) -> ssize_t {
    match f.get() {
        // SAFETY: dlsym of a pwritev2 name has pwritev2's signature.
        Some(p) => unsafe {
            core::mem::transmute::<*mut c_void, Pwritev2Fn>(p)(fd, iov, cnt, off, flags)
        },
        None => {
            crate::sys::set_errno(libc::ENOSYS);
            -1
        }
    }
}

/// `pwritev(2)`.
///
/// # Safety
/// The caller's contract of `pwritev(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pwritev(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t) -> ssize_t {
    let real = |i, c, o| {
        // SAFETY: `pwritev_common` passes the caller's iovecs, or one iovec of a part of the
        // caller's buffers.
        unsafe { call_pwritev(&PWRITEV, fd, i, c, o) }
    };
    // SAFETY: the caller's contract is ours, and `real` is safe with what it is passed.
    unsafe { pwritev_common(fd, iov, cnt, off, real) }
}

/// `pwritev64(2)`.
///
/// # Safety
/// The caller's contract of `pwritev64(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pwritev64(
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
    off: off_t,
) -> ssize_t {
    let real = |i, c, o| {
        // SAFETY: `pwritev_common` passes the caller's iovecs, or one iovec of a part of the
        // caller's buffers.
        unsafe { call_pwritev(&PWRITEV64, fd, i, c, o) }
    };
    // SAFETY: the caller's contract is ours, and `real` is safe with what it is passed.
    unsafe { pwritev_common(fd, iov, cnt, off, real) }
}

/// `pwritev2(2)`.
///
/// # Safety
/// The caller's contract of `pwritev2(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pwritev2(
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
    off: off_t,
    flags: c_int,
) -> ssize_t {
    let real = |i, c, o| {
        // SAFETY: `pwritev_common` passes the caller's iovecs, or one iovec of a part of the
        // caller's buffers.
        unsafe { call_pwritev2(&PWRITEV2, fd, i, c, o, flags) }
    };
    // SAFETY: the caller's contract is ours, and `real` is safe with what it is passed.
    unsafe { pwritev_common(fd, iov, cnt, off, real) }
}

/// `pwritev64v2(2)`.
///
/// # Safety
/// The caller's contract of `pwritev64v2(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn pwritev64v2(
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
    off: off_t,
    flags: c_int,
) -> ssize_t {
    let real = |i, c, o| {
        // SAFETY: `pwritev_common` passes the caller's iovecs, or one iovec of a part of the
        // caller's buffers.
        unsafe { call_pwritev2(&PWRITEV64V2, fd, i, c, o, flags) }
    };
    // SAFETY: the caller's contract is ours, and `real` is safe with what it is passed.
    unsafe { pwritev_common(fd, iov, cnt, off, real) }
}

// ---- copies the kernel makes between descriptors ----
//
// `copy_file_range` and `sendfile` move bytes from a file to a descriptor without passing
// them through the program (GNU `cat` uses `copy_file_range` when its stdout is a regular
// file). On a tapped descriptor the bytes are read back from the source file with `pread`, in
// pieces of [`COPY_PIECE`] bytes on the stack, and tapped; on a suppressed one the copy is
// made by the library instead: the source's bytes are read and delivered, its offset advanced
// as the call would, and only what could not be delivered is copied for real (fail open).
// `splice` (one end a pipe, whose bytes cannot be read twice) is not tapped.

static COPY_FILE_RANGE: RealFn = RealFn::new(c"copy_file_range");
static SENDFILE: RealFn = RealFn::new(c"sendfile");
static SENDFILE64: RealFn = RealFn::new(c"sendfile64");

type CopyFileRangeFn =
    unsafe extern "C" fn(c_int, *mut i64, c_int, *mut i64, size_t, c_uint) -> ssize_t;
type SendfileFn = unsafe extern "C" fn(c_int, c_int, *mut off_t, size_t) -> ssize_t;

/// Bytes read back per piece.
const COPY_PIECE: usize = 4096;
/// At most this much is copied by the library per suppressed call (the caller loops on a
/// short count, as it must for any copy).
const SUPPRESSED_COPY_MAX: usize = 256 * 1024;

/// Resolves the copy functions (constructor).
pub fn resolve_copies() {
    for f in [&COPY_FILE_RANGE, &SENDFILE, &SENDFILE64] {
        let _ = f.get();
    }
}

/// Where a copy reads from: the offset the caller passed, or the descriptor's position.
///
/// # Safety
/// `off_in` is null or readable (the copy call's contract).
unsafe fn copy_start(fd_in: c_int, off_in: *const i64) -> Option<i64> {
    if off_in.is_null() {
        return crate::sys::lseek(fd_in, 0, libc::SEEK_CUR).ok();
    }
    // SAFETY: the caller's offset pointer, which the real call would read too.
    Some(unsafe { off_in.read_unaligned() })
}

/// Reads up to `n` bytes of `fd_in` from `start` and delivers them along `route`, piece by
/// piece. Returns (bytes delivered, whether the source ended or failed before `n`).
fn tap_copied(route: Route, fd_in: c_int, start: i64, n: usize) -> (usize, bool) {
    let mut buf = [0u8; COPY_PIECE];
    let mut done = 0usize;
    while done < n {
        let want = n.saturating_sub(done).min(COPY_PIECE);
        let at = start.saturating_add(i64::try_from(done).unwrap_or(i64::MAX));
        let Some(piece) = buf.get_mut(..want) else {
            break;
        };
        let got = match crate::sys::pread(fd_in, piece, at) {
            Ok(0) | Err(_) => return (done, true),
            Ok(g) => g,
        };
        let bytes = piece.get(..got).unwrap_or(&[]);
        let d = crate::sender::deliver(route, &Payload::One(bytes), got);
        done = done.saturating_add(d);
        if d < got {
            break;
        }
    }
    (done, false)
}

/// The shared body: `real()` makes the real copy; `off_in`/`off_out` are the caller's offset
/// pointers (null: the descriptors' positions).
///
/// # Safety
/// `copy_file_range(2)`'s contract: `off_in` and `off_out` are null or readable and writable.
unsafe fn copy_common(
    fd_in: c_int,
    off_in: *mut i64,
    fd_out: c_int,
    off_out: *mut i64,
    len: size_t,
    real: impl Fn() -> ssize_t,
) -> ssize_t {
    let Some(route) = route_for_fd(fd_out) else {
        return real();
    };
    let saved = crate::sys::errno();
    // SAFETY: our caller's contract.
    let Some(start) = (unsafe { copy_start(fd_in, off_in) }) else {
        // Not a seekable source (no copy would work anyway): the real call says so.
        crate::sys::set_errno(saved);
        return real();
    };
    crate::sys::set_errno(saved);
    if !route.suppressed {
        let r = real();
        if r > 0 {
            let _errno = crate::sys::ErrnoGuard::save();
            let _ = tap_copied(route, fd_in, start, usize::try_from(r).unwrap_or(0));
        }
        return r;
    }
    let (delivered, _) = tap_copied(route, fd_in, start, len.min(SUPPRESSED_COPY_MAX));
    if delivered == 0 {
        // Nothing delivered: the source is at its end (the real call returns 0 too) or the
        // copy cannot be delivered (it is made for real: fail open).
        crate::sys::set_errno(saved);
        return real();
    }
    let moved = i64::try_from(delivered).unwrap_or(i64::MAX);
    if off_in.is_null() {
        let _ = crate::sys::lseek(fd_in, start.saturating_add(moved), libc::SEEK_SET);
    } else {
        // SAFETY: the caller's offset pointer, which the real call would update.
        unsafe { off_in.write_unaligned(start.saturating_add(moved)) };
    }
    if !off_out.is_null() {
        // SAFETY: as above, for the destination's offset.
        unsafe { off_out.write_unaligned(off_out.read_unaligned().saturating_add(moved)) };
    }
    crate::sys::set_errno(saved);
    isize::try_from(delivered).unwrap_or(isize::MAX)
}

/// `copy_file_range(2)`.
///
/// # Safety
/// The caller's contract of `copy_file_range(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn copy_file_range(
    fd_in: c_int,
    off_in: *mut i64,
    fd_out: c_int,
    off_out: *mut i64,
    len: size_t,
    flags: c_uint,
) -> ssize_t {
    let real = || match COPY_FILE_RANGE.get() {
        // SAFETY: dlsym("copy_file_range") has its signature; the caller's arguments.
        Some(p) => unsafe {
            core::mem::transmute::<*mut c_void, CopyFileRangeFn>(p)(
                fd_in, off_in, fd_out, off_out, len, flags,
            )
        },
        // SAFETY: the raw system call with the caller's arguments.
        None => unsafe {
            libc::syscall(
                libc::SYS_copy_file_range,
                fd_in,
                off_in,
                fd_out,
                off_out,
                len,
                flags,
            ) as ssize_t
        },
    };
    // SAFETY: the caller's contract of copy_file_range(2) is ours.
    unsafe { copy_common(fd_in, off_in, fd_out, off_out, len, real) }
}

/// Shared by `sendfile` and `sendfile64` (`f` is the real one).
///
/// # Safety
/// `sendfile(2)`'s contract: `offset` is null or readable and writable.
unsafe fn sendfile_common(
    f: &RealFn,
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut off_t,
    count: size_t,
) -> ssize_t {
    let real = || match f.get() {
        // SAFETY: dlsym of a sendfile name has sendfile's signature; the caller's arguments.
        Some(p) => unsafe {
            core::mem::transmute::<*mut c_void, SendfileFn>(p)(out_fd, in_fd, offset, count)
        },
        // SAFETY: the raw system call with the caller's arguments.
        None => unsafe {
            libc::syscall(libc::SYS_sendfile, out_fd, in_fd, offset, count) as ssize_t
        },
    };
    // off_t is i64 on this target.
    // SAFETY: our caller's contract (`off_t` is `i64` here); no output offset.
    unsafe {
        copy_common(
            in_fd,
            offset.cast::<i64>(),
            out_fd,
            core::ptr::null_mut(),
            count,
            real,
        )
    }
}

/// `sendfile(2)`.
///
/// # Safety
/// The caller's contract of `sendfile(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sendfile(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut off_t,
    count: size_t,
) -> ssize_t {
    // SAFETY: the caller's contract of sendfile(2) is ours.
    unsafe { sendfile_common(&SENDFILE, out_fd, in_fd, offset, count) }
}

/// `sendfile64(2)`.
///
/// # Safety
/// The caller's contract of `sendfile64(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn sendfile64(
    out_fd: c_int,
    in_fd: c_int,
    offset: *mut off_t,
    count: size_t,
) -> ssize_t {
    // SAFETY: the caller's contract of sendfile64(2) is ours.
    unsafe { sendfile_common(&SENDFILE64, out_fd, in_fd, offset, count) }
}
