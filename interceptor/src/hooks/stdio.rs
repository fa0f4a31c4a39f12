//! The Rust half of the stdio hooks in `csrc/stdio_shim.c`.
//!
//! The shim asks [`logtap_stdio_route`] whether a FILE's descriptor is tapped, formats the
//! output itself (C-variadic functions cannot be defined in Rust 1.95), writes it into the FILE
//! and hands the accepted bytes to [`logtap_stdio_deliver`]. A route is a small integer so
//! that it crosses the C boundary without a struct: bits 0-1 the stream, bit 2 "suppressed"
//! (the shim tests it), bits 8-23 the tap file index.

use core::ffi::{c_char, c_int, c_void};

use libc::{size_t, ssize_t};

use super::route_for_fd;
use crate::process::{Route, Stream};
use crate::sender::{self, Payload};
use crate::{guard, sys};

const SUPPRESSED: c_int = 4;

fn encode(r: Route) -> c_int {
    c_int::from(r.stream as u8)
        | if r.suppressed { SUPPRESSED } else { 0 }
        | (c_int::from(r.file_index) << 8)
}

fn decode(code: c_int) -> Option<Route> {
    let stream = Stream::from_u8(u8::try_from(code & 3).ok()?)?;
    Some(Route {
        stream,
        file_index: u16::try_from((code >> 8) & 0xffff).unwrap_or(0),
        suppressed: code & SUPPRESSED != 0,
    })
}

/// 0 when writes to `fd` are not tapped now; else the route code. Preserves errno.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn logtap_stdio_route(fd: c_int) -> c_int {
    route_for_fd(fd).map_or(0, encode)
}

/// Delivers `len` bytes at `buf` along `route`; returns how many were delivered (what a
/// suppressed stream need not write for real). Preserves errno.
///
/// # Safety
/// `buf` is readable for `len` bytes.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn logtap_stdio_deliver(
    route: c_int,
    buf: *const c_char,
    len: size_t,
) -> size_t {
    let Some(route) = decode(route) else { return 0 };
    if buf.is_null() || len == 0 {
        return 0;
    }
    let _errno = sys::ErrnoGuard::save();
    // SAFETY: the shim passes bytes it just formatted or the app's fwrite/fputs buffer.
    let bytes = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), len) };
    sender::deliver(route, &Payload::One(bytes), len)
}

/// [`logtap_stdio_deliver`] for one write made of two pieces (the bytes waiting in a FILE's
/// buffer and the character that makes it write them out): one record.
///
/// # Safety
/// `a` is readable for `na` bytes and `b` for `nb`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn logtap_stdio_deliver2(
    route: c_int,
    a: *const c_char,
    na: size_t,
    b: *const c_char,
    nb: size_t,
) -> size_t {
    let Some(route) = decode(route) else { return 0 };
    let piece = |p: *const c_char, n: size_t| libc::iovec {
        iov_base: if n == 0 {
            core::ptr::null_mut()
        } else {
            p.cast_mut().cast()
        },
        iov_len: if p.is_null() { 0 } else { n },
    };
    let iov = [piece(a, na), piece(b, nb)];
    let len = iov[0].iov_len.saturating_add(iov[1].iov_len);
    if len == 0 {
        return 0;
    }
    let _errno = sys::ErrnoGuard::save();
    sender::deliver(route, &Payload::Iov(&iov), len)
}

unsafe extern "C" {
    fn logtap_stdio_fd_changed(fd: c_int);
    fn logtap_stdio_before_fclose(f: *mut libc::FILE);
    fn logtap_stdio_at_exit();
    fn logtap_stdio_after_fork_child();
}

/// fd 1 or fd 2 became, or stopped being, a tapped stream: the shim forgets how far the
/// buffers of the FILEs on it were tapped (see `csrc/stdio_shim.c`).
pub fn fd_changed(fd: c_int) {
    // SAFETY: a plain C function of the shim; only atomic loads and stores on its table.
    unsafe { logtap_stdio_fd_changed(fd) };
}

/// Before `fclose(f)`: the bytes waiting in its buffer are tapped (fclose writes them out)
/// and the shim forgets the FILE.
///
/// # Safety
/// `f` is the app's open FILE (or null).
pub unsafe fn before_fclose(f: *mut libc::FILE) {
    if guard::held() {
        return;
    }
    // SAFETY: the caller's FILE, still open; the shim checks for null.
    unsafe { logtap_stdio_before_fclose(f) };
}

/// The destructor, before `exit` writes out the stdio buffers: what waits in the tapped
/// FILEs' buffers is tapped (suppressed streams: delivered and taken out of the buffer).
pub fn at_exit() {
    // SAFETY: a plain C function of the shim.
    unsafe { logtap_stdio_at_exit() };
}

/// In a forked child: the buffers it inherited are untapped as far as it is concerned.
pub fn after_fork_child() {
    // SAFETY: a plain C function of the shim; only atomic stores.
    unsafe { logtap_stdio_after_fork_child() };
}

/// The `write` hook's logic, for the shim's `dprintf` family.
///
/// # Safety
/// `buf` is readable for `len` bytes.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn logtap_fd_write(fd: c_int, buf: *const c_void, len: size_t) -> ssize_t {
    // SAFETY: the caller's contract (readable buffer) is write(2)'s.
    unsafe { super::write::hooked_write(fd, buf, len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_codes_round_trip() {
        for r in [
            Route {
                stream: Stream::Stdout,
                file_index: 0,
                suppressed: false,
            },
            Route {
                stream: Stream::Stderr,
                file_index: 0,
                suppressed: true,
            },
            Route {
                stream: Stream::File,
                file_index: 63,
                suppressed: true,
            },
        ] {
            assert_ne!(encode(r), 0);
            assert_eq!(decode(encode(r)), Some(r));
        }
        assert_eq!(decode(0), None);
    }
}
