//! Following the tap files through the descriptor's life, and protecting our own descriptors.
//!
//! - opened (`open*`, `openat*`, `__open*_2`, `creat*`, `fopen*`, `freopen*`): a
//!   descriptor opened for writing whose path matches `LLT_TAP_FILE` gets its file index in
//!   the fd table (relative paths and symlinks are resolved through `/proc/self/fd/N`); any
//!   other new descriptor clears its entry, so a reused number is never tapped by mistake;
//! - duplicated (`dup`, `dup2`, `dup3`, `fcntl(F_DUPFD*)`): the copy inherits the entry;
//! - closed (`close`, `fclose`, `close_range`): the entry is cleared.
//!
//! `close`/`close_range` on one of *our* descriptors is skipped and reported as success (see
//! `own_fds`), and `dup2`/`dup3` onto one of ours first moves ours away.
//!
//! Every open/dup/close hook's logic is here. The only C is `csrc/variadic.c`: the entry points
//! `open`, `open64`, `openat`, `openat64`, `fcntl` and `fcntl64` are C-variadic, which Rust
//! 1.95 cannot define, so C reads their optional argument and calls `logtap_hook_*` here.

use core::ffi::{CStr, c_char, c_int, c_uint, c_void};

use super::RealFn;
use crate::own_fds;
use crate::sender::connection;
use crate::{config, fd_table, guard, process, streams, sys, tap_files};

static CREAT: RealFn = RealFn::new(c"creat");
static CREAT64: RealFn = RealFn::new(c"creat64");
static DUP: RealFn = RealFn::new(c"dup");
static DUP2: RealFn = RealFn::new(c"dup2");
static DUP3: RealFn = RealFn::new(c"dup3");
static CLOSE: RealFn = RealFn::new(c"close");
static CLOSE_RANGE: RealFn = RealFn::new(c"close_range");
static FOPEN: RealFn = RealFn::new(c"fopen");
static FOPEN64: RealFn = RealFn::new(c"fopen64");
static FREOPEN: RealFn = RealFn::new(c"freopen");
static FREOPEN64: RealFn = RealFn::new(c"freopen64");
static FCLOSE: RealFn = RealFn::new(c"fclose");
static DAEMON: RealFn = RealFn::new(c"daemon");

type CreatFn = unsafe extern "C" fn(*const c_char, libc::mode_t) -> c_int;
type Int1Fn = unsafe extern "C" fn(c_int) -> c_int;
type Int2Fn = unsafe extern "C" fn(c_int, c_int) -> c_int;
type Int3Fn = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type CloseRangeFn = unsafe extern "C" fn(c_uint, c_uint, c_int) -> c_int;
type FopenFn = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut libc::FILE;
type FreopenFn =
    unsafe extern "C" fn(*const c_char, *const c_char, *mut libc::FILE) -> *mut libc::FILE;
type FcloseFn = unsafe extern "C" fn(*mut libc::FILE) -> c_int;

/// Resolves every real function of this module (constructor).
pub fn resolve() {
    for f in [
        &CREAT,
        &CREAT64,
        &DUP,
        &DUP2,
        &DUP3,
        &CLOSE,
        &CLOSE_RANGE,
        &FOPEN,
        &FOPEN64,
        &FREOPEN,
        &FREOPEN64,
        &FCLOSE,
        &DAEMON,
        &OPEN,
        &OPEN64,
        &OPENAT,
        &OPENAT64,
        &OPEN_2,
        &OPEN64_2,
        &OPENAT_2,
        &OPENAT64_2,
        &FCNTL,
        &FCNTL64,
    ] {
        let _ = f.get();
    }
}

/// Whether the hook must leave the library's state alone.
fn hands_off() -> bool {
    guard::held() || process::in_vfork_child()
}

/// Looks at fd 1 or fd 2 again after a call changed it ([`streams::evaluate`]); when its
/// stream changed, the stdio shim forgets how far the FILEs on it were tapped.
pub fn reclassify(fd: i32) {
    if streams::evaluate(fd) {
        super::stdio::fd_changed(fd);
    }
}

/// fd 1 or fd 2 changed: is it still the tapped stream? (See [`streams`]; not in a vfork
/// child, whose descriptors are not the parent's.)
fn restream(fd: c_int) {
    if streams::concerns(fd) && !hands_off() {
        reclassify(fd);
    }
}

/// Forgets `fd` (the getpid check only runs when there is something to forget).
fn forget(fd: c_int) {
    if fd_table::get(fd).is_some() && !process::in_vfork_child() {
        fd_table::set(fd, None);
    }
}

fn no_real() -> c_int {
    sys::set_errno(libc::ENOSYS);
    -1
}

/// Writes `/proc/self/fd/<fd>\0` into `buf`; returns its length with the NUL.
fn proc_fd_path(fd: c_int, buf: &mut [u8; 32]) -> usize {
    let prefix = b"/proc/self/fd/";
    let mut digits = [0u8; 12];
    let mut n = u32::try_from(fd).unwrap_or(0);
    let mut d = 0usize;
    loop {
        if let Some(slot) = digits.get_mut(d) {
            *slot = b'0'.saturating_add(u8::try_from(n % 10).unwrap_or(0));
        }
        d = d.saturating_add(1);
        n /= 10;
        if n == 0 || d >= digits.len() {
            break;
        }
    }
    let mut at = 0usize;
    for b in prefix
        .iter()
        .chain(digits.iter().take(d).rev())
        .chain(core::iter::once(&0u8))
    {
        if let Some(slot) = buf.get_mut(at) {
            *slot = *b;
            at = at.saturating_add(1);
        }
    }
    at
}

/// A new descriptor `fd` was opened with `flags` for `path`.
///
/// # Safety
/// `path` is null or NUL-terminated.
pub unsafe fn on_new_fd(fd: c_int, path: *const c_char, flags: c_int) {
    if fd < 0 || guard::held() {
        return;
    }
    restream(fd);
    let Some(cfg) = config::get() else { return };
    let acc = flags & libc::O_ACCMODE;
    let writable = acc == libc::O_WRONLY || acc == libc::O_RDWR;
    if !writable || cfg.tap_files.as_bytes().is_empty() || path.is_null() {
        forget(fd);
        return;
    }
    let _errno = sys::ErrnoGuard::save();
    // SAFETY: the app passed a NUL-terminated path to the open call that just succeeded.
    let given = unsafe { CStr::from_ptr(path) }.to_bytes();
    let mut resolved = [0u8; tap_files::MAX_PATH];
    let matched: Option<&[u8]> = if given.starts_with(b"/") && tap_files::is_tapped_path(given) {
        Some(given)
    } else {
        let mut link = [0u8; 32];
        let n = proc_fd_path(fd, &mut link);
        let len = sys::readlink(link.get(..n).unwrap_or(&[]), &mut resolved);
        resolved.get(..len).filter(|p| tap_files::is_tapped_path(p))
    };
    let Some(matched) = matched else {
        forget(fd);
        return;
    };
    if process::in_vfork_child() {
        return;
    }
    match tap_files::register(matched) {
        Some((index, new)) => {
            fd_table::set(fd, Some(index));
            crate::debug!(
                "tapping file {} (index {index}) on fd {fd}",
                crate::debug::Bytes(matched)
            );
            if new {
                connection::file_opened(index);
            }
        }
        None => fd_table::set(fd, None),
    }
}

// ---- open, openat and fcntl ----
//
// `open`, `open64`, `openat`, `openat64`, `fcntl` and `fcntl64` are C-variadic, which Rust
// 1.95 cannot define: `csrc/variadic.c` defines them, reads the optional argument (the mode
// when the flags create a file, fcntl's pointer-sized argument) and calls the
// `logtap_hook_*` functions below, which do everything else. The fortified `__open*_2` take
// no optional argument and are defined here.

static OPEN: RealFn = RealFn::new(c"open");
static OPEN64: RealFn = RealFn::new(c"open64");
static OPENAT: RealFn = RealFn::new(c"openat");
static OPENAT64: RealFn = RealFn::new(c"openat64");
static OPEN_2: RealFn = RealFn::new(c"__open_2");
static OPEN64_2: RealFn = RealFn::new(c"__open64_2");
static OPENAT_2: RealFn = RealFn::new(c"__openat_2");
static OPENAT64_2: RealFn = RealFn::new(c"__openat64_2");
static FCNTL: RealFn = RealFn::new(c"fcntl");
static FCNTL64: RealFn = RealFn::new(c"fcntl64");

type OpenFn = unsafe extern "C" fn(*const c_char, c_int, ...) -> c_int;
type OpenatFn = unsafe extern "C" fn(c_int, *const c_char, c_int, ...) -> c_int;
type Open2Fn = unsafe extern "C" fn(*const c_char, c_int) -> c_int;
type Openat2Fn = unsafe extern "C" fn(c_int, *const c_char, c_int) -> c_int;
type FcntlFn = unsafe extern "C" fn(c_int, c_int, ...) -> c_int;

/// `openat` as a raw system call, where libc's cannot be found.
///
/// # Safety
/// `open(2)`'s contract: `path` is a NUL-terminated string.
unsafe fn raw_openat(dirfd: c_int, path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    // SAFETY: the caller's arguments; the kernel reads the path.
    let r = unsafe { libc::syscall(libc::SYS_openat, dirfd, path, flags, mode) };
    c_int::try_from(r).unwrap_or(-1)
}

/// After any `open*`: a new descriptor's tap-file entry (errno kept).
///
/// # Safety
/// `path` is null or NUL-terminated.
unsafe fn opened(fd: c_int, path: *const c_char, flags: c_int) -> c_int {
    if fd >= 0 {
        let _errno = sys::ErrnoGuard::save();
        // SAFETY: the caller's path of a successful open.
        unsafe { on_new_fd(fd, path, flags) };
    }
    fd
}

/// `open(2)`, `open64(2)` (`real`), for `csrc/variadic.c`.
///
/// # Safety
/// `open(2)`'s contract: `path` is a NUL-terminated string.
unsafe fn open_common(
    real: &RealFn,
    path: *const c_char,
    flags: c_int,
    mode: libc::mode_t,
) -> c_int {
    let fd = match real.get() {
        // SAFETY: dlsym of an open name has open's signature; the caller's arguments (the
        // mode goes as the variadic argument, as the app passed it).
        Some(p) => unsafe { core::mem::transmute::<*mut c_void, OpenFn>(p)(path, flags, mode) },
        // SAFETY: the caller's arguments.
        None => unsafe { raw_openat(libc::AT_FDCWD, path, flags, mode) },
    };
    // SAFETY: the caller's path.
    unsafe { opened(fd, path, flags) }
}

/// `openat(2)`, `openat64(2)` (`real`), for `csrc/variadic.c`.
///
/// # Safety
/// `openat(2)`'s contract: `path` is a NUL-terminated string.
unsafe fn openat_common(
    real: &RealFn,
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: libc::mode_t,
) -> c_int {
    let fd = match real.get() {
        // SAFETY: dlsym of an openat name has openat's signature; the caller's arguments.
        Some(p) => unsafe {
            core::mem::transmute::<*mut c_void, OpenatFn>(p)(dirfd, path, flags, mode)
        },
        // SAFETY: the caller's arguments.
        None => unsafe { raw_openat(dirfd, path, flags, mode) },
    };
    // SAFETY: the caller's path.
    unsafe { opened(fd, path, flags) }
}

/// The body of `open` (`csrc/variadic.c`): `mode` is 0 unless the flags create a file.
///
/// # Safety
/// `open(2)`'s contract: `path` is a NUL-terminated string.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn logtap_hook_open(
    path: *const c_char,
    flags: c_int,
    mode: libc::mode_t,
) -> c_int {
    // SAFETY: the caller's contract is ours.
    unsafe { open_common(&OPEN, path, flags, mode) }
}

/// The body of `open64` (`csrc/variadic.c`).
///
/// # Safety
/// `open(2)`'s contract: `path` is a NUL-terminated string.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn logtap_hook_open64(
    path: *const c_char,
    flags: c_int,
    mode: libc::mode_t,
) -> c_int {
    // SAFETY: the caller's contract is ours.
    unsafe { open_common(&OPEN64, path, flags, mode) }
}

/// The body of `openat` (`csrc/variadic.c`).
///
/// # Safety
/// `openat(2)`'s contract: `path` is a NUL-terminated string.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn logtap_hook_openat(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: libc::mode_t,
) -> c_int {
    // SAFETY: the caller's contract is ours.
    unsafe { openat_common(&OPENAT, dirfd, path, flags, mode) }
}

/// The body of `openat64` (`csrc/variadic.c`).
///
/// # Safety
/// `openat(2)`'s contract: `path` is a NUL-terminated string.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn logtap_hook_openat64(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: libc::mode_t,
) -> c_int {
    // SAFETY: the caller's contract is ours.
    unsafe { openat_common(&OPENAT64, dirfd, path, flags, mode) }
}

/// `__open_2`/`__open64_2` (`real`): the fortified `open` without a mode.
///
/// # Safety
/// `open(2)`'s contract: `path` is a NUL-terminated string.
unsafe fn open_2_common(real: &RealFn, path: *const c_char, flags: c_int) -> c_int {
    let fd = match real.get() {
        // SAFETY: dlsym of an __open*_2 name has that signature; the caller's arguments.
        Some(p) => unsafe { core::mem::transmute::<*mut c_void, Open2Fn>(p)(path, flags) },
        // SAFETY: the caller's arguments.
        None => unsafe { raw_openat(libc::AT_FDCWD, path, flags, 0) },
    };
    // SAFETY: the caller's path.
    unsafe { opened(fd, path, flags) }
}

/// `__openat_2`/`__openat64_2` (`real`): the fortified `openat` without a mode.
///
/// # Safety
/// `openat(2)`'s contract: `path` is a NUL-terminated string.
unsafe fn openat_2_common(real: &RealFn, dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    let fd = match real.get() {
        // SAFETY: dlsym of an __openat*_2 name has that signature; the caller's arguments.
        Some(p) => unsafe { core::mem::transmute::<*mut c_void, Openat2Fn>(p)(dirfd, path, flags) },
        // SAFETY: the caller's arguments.
        None => unsafe { raw_openat(dirfd, path, flags, 0) },
    };
    // SAFETY: the caller's path.
    unsafe { opened(fd, path, flags) }
}

/// `__open_2` (glibc's `_FORTIFY_SOURCE` `open`).
///
/// # Safety
/// `open(2)`'s contract: `path` is a NUL-terminated string.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn __open_2(path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: the caller's contract is ours.
    unsafe { open_2_common(&OPEN_2, path, flags) }
}

/// `__open64_2`.
///
/// # Safety
/// `open(2)`'s contract: `path` is a NUL-terminated string.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: the caller's contract is ours.
    unsafe { open_2_common(&OPEN64_2, path, flags) }
}

/// `__openat_2`.
///
/// # Safety
/// `openat(2)`'s contract: `path` is a NUL-terminated string.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: the caller's contract is ours.
    unsafe { openat_2_common(&OPENAT_2, dirfd, path, flags) }
}

/// `__openat64_2`.
///
/// # Safety
/// `openat(2)`'s contract: `path` is a NUL-terminated string.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: the caller's contract is ours.
    unsafe { openat_2_common(&OPENAT64_2, dirfd, path, flags) }
}

/// `fcntl`/`fcntl64` (`real`): a duplicate (`F_DUPFD*`) inherits the original's entry.
///
/// # Safety
/// `fcntl(2)`'s contract for `cmd`: `arg` is what that command reads (like glibc, passed on as
/// a pointer-sized value whatever the command).
unsafe fn fcntl_common(real: &RealFn, fd: c_int, cmd: c_int, arg: *mut c_void) -> c_int {
    let Some(p) = real.get() else {
        return no_real();
    };
    // SAFETY: dlsym of an fcntl name has fcntl's signature; the caller's arguments.
    let r = unsafe { core::mem::transmute::<*mut c_void, FcntlFn>(p)(fd, cmd, arg) };
    if r >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) {
        let _errno = sys::ErrnoGuard::save();
        on_dup(fd, r);
    }
    r
}

/// The body of `fcntl` (`csrc/variadic.c`).
///
/// # Safety
/// `fcntl(2)`'s contract for `cmd`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn logtap_hook_fcntl(fd: c_int, cmd: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: the caller's contract is ours.
    unsafe { fcntl_common(&FCNTL, fd, cmd, arg) }
}

/// The body of `fcntl64` (`csrc/variadic.c`).
///
/// # Safety
/// `fcntl(2)`'s contract for `cmd`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn logtap_hook_fcntl64(fd: c_int, cmd: c_int, arg: *mut c_void) -> c_int {
    // SAFETY: the caller's contract is ours.
    unsafe { fcntl_common(&FCNTL64, fd, cmd, arg) }
}

// ---- duplicating and closing ----

/// After a successful `dup*` or `fcntl(F_DUPFD*)`: the copy inherits the entry.
fn on_dup(old: c_int, new: c_int) {
    if fd_table::get(old) != fd_table::get(new) && !hands_off() {
        fd_table::copy(old, new);
    }
    restream(new);
    if streams::concerns(new)
        && fd_table::get(old).is_none()
        && !hands_off()
        && let Some(alias) = streams::alias_for(old, new)
    {
        fd_table::set(old, Some(alias));
    }
}

/// Shared by `creat` and `creat64` (`f` is the real one).
///
/// # Safety
/// `creat(2)`'s contract: `path` is a NUL-terminated string.
unsafe fn creat_common(f: &RealFn, path: *const c_char, mode: libc::mode_t) -> c_int {
    let Some(p) = f.get() else { return no_real() };
    // SAFETY: dlsym of a creat name has creat's signature; the caller's arguments.
    let fd = unsafe { core::mem::transmute::<*mut c_void, CreatFn>(p)(path, mode) };
    // SAFETY: creat succeeded with this path, so it is NUL-terminated.
    unsafe { on_new_fd(fd, path, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) };
    fd
}

/// `creat(2)`.
///
/// # Safety
/// The caller's contract of `creat(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn creat(path: *const c_char, mode: libc::mode_t) -> c_int {
    // SAFETY: the caller's contract of creat(2) is ours.
    unsafe { creat_common(&CREAT, path, mode) }
}

/// `creat64(2)`.
///
/// # Safety
/// The caller's contract of `creat64(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn creat64(path: *const c_char, mode: libc::mode_t) -> c_int {
    // SAFETY: the caller's contract of creat64(2) is ours.
    unsafe { creat_common(&CREAT64, path, mode) }
}

/// `dup(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn dup(old: c_int) -> c_int {
    let Some(p) = DUP.get() else { return no_real() };
    // SAFETY: dlsym("dup") has dup's signature.
    let new = unsafe { core::mem::transmute::<*mut c_void, Int1Fn>(p)(old) };
    if new >= 0 {
        on_dup(old, new);
    }
    new
}

fn before_dup_onto(old: c_int, new: c_int) {
    if old != new && own_fds::is_own(new) && !hands_off() {
        own_fds::relocate_if_own(new);
        crate::sender::ring::refresh_wake_fd();
    }
}

/// `dup2(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    let Some(p) = DUP2.get() else {
        return no_real();
    };
    before_dup_onto(old, new);
    // SAFETY: dlsym("dup2") has dup2's signature.
    let r = unsafe { core::mem::transmute::<*mut c_void, Int2Fn>(p)(old, new) };
    if r >= 0 && old != new {
        on_dup(old, new);
    }
    r
}

/// `dup3(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    let Some(p) = DUP3.get() else {
        return no_real();
    };
    before_dup_onto(old, new);
    // SAFETY: dlsym("dup3") has dup3's signature.
    let r = unsafe { core::mem::transmute::<*mut c_void, Int3Fn>(p)(old, new, flags) };
    if r >= 0 {
        on_dup(old, new);
    }
    r
}

/// `close(2)`. Our own descriptors are not closed (see `own_fds`).
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn close(fd: c_int) -> c_int {
    let Some(p) = CLOSE.get() else {
        return no_real();
    };
    if !guard::held() {
        // (In a vfork child skipping is harmless too: ours are close-on-exec.)
        if own_fds::is_own(fd) {
            crate::debug!("the app closes fd {fd}, which is ours: skipped");
            return 0;
        }
        forget(fd);
    }
    // SAFETY: dlsym("close") has close's signature.
    let r = unsafe { core::mem::transmute::<*mut c_void, Int1Fn>(p)(fd) };
    restream(fd);
    r
}

fn real_close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    match CLOSE_RANGE.get() {
        // SAFETY: dlsym("close_range") has close_range's signature.
        Some(p) => unsafe {
            core::mem::transmute::<*mut c_void, CloseRangeFn>(p)(first, last, flags)
        },
        None => match sys::close_range(first, last, c_uint::try_from(flags).unwrap_or(0)) {
            Ok(()) => 0,
            Err(e) => {
                sys::set_errno(e);
                -1
            }
        },
    }
}

/// `close_range(2)`: closes the range around our own descriptors.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let r = close_range_around_ours(first, last, flags);
    if first <= 2 && last >= 1 && !hands_off() {
        streams::in_close_range(first, last).for_each(reclassify);
    }
    r
}

fn close_range_around_ours(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let cloexec_only = c_uint::try_from(flags).unwrap_or(0) & libc::CLOSE_RANGE_CLOEXEC != 0;
    if cloexec_only || first > last || hands_off() {
        return real_close_range(first, last, flags);
    }
    fd_table::clear_range(first, last);
    let mut from = first;
    for own in own_fds::sorted() {
        let Ok(own) = c_uint::try_from(own) else {
            continue;
        };
        if own < from || own > last {
            continue;
        }
        if own > from {
            let r = real_close_range(from, own.saturating_sub(1), flags);
            if r != 0 {
                return r;
            }
        }
        if own == c_uint::MAX {
            return 0;
        }
        from = own.saturating_add(1);
    }
    if from <= last {
        return real_close_range(from, last, flags);
    }
    0
}

/// The open flags a stdio mode string implies (only the access mode matters here).
///
/// # Safety
/// `mode` is null or a NUL-terminated string.
unsafe fn mode_flags(mode: *const c_char) -> c_int {
    if mode.is_null() {
        return libc::O_RDONLY;
    }
    // SAFETY: fopen's mode is a NUL-terminated string.
    let m = unsafe { CStr::from_ptr(mode) }.to_bytes();
    let plus = m.contains(&b'+');
    match m.first() {
        Some(b'r') if !plus => libc::O_RDONLY,
        Some(b'r') => libc::O_RDWR,
        Some(b'w' | b'a') if plus => libc::O_RDWR,
        Some(b'w' | b'a') => libc::O_WRONLY,
        _ => libc::O_RDONLY,
    }
}

/// The descriptor of a FILE (-1 for null).
///
/// # Safety
/// `f` is null or an open FILE.
unsafe fn file_fd(f: *mut libc::FILE) -> c_int {
    if f.is_null() {
        return -1;
    }
    // SAFETY: a FILE the app holds (or that fopen just returned); fileno is not hooked.
    unsafe { libc::fileno(f) }
}

/// Shared by `fopen` and `fopen64` (`f` is the real one).
///
/// # Safety
/// `fopen(3)`'s contract: `path` and `mode` are NUL-terminated strings.
unsafe fn fopen_common(f: &RealFn, path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    let Some(p) = f.get() else {
        sys::set_errno(libc::ENOSYS);
        return core::ptr::null_mut();
    };
    // SAFETY: dlsym of an fopen name has fopen's signature; the caller's arguments.
    let file = unsafe { core::mem::transmute::<*mut c_void, FopenFn>(p)(path, mode) };
    // SAFETY: `file` is null or the FILE fopen just opened; fopen's path and mode arguments
    // are NUL-terminated.
    unsafe { on_new_fd(file_fd(file), path, mode_flags(mode)) };
    file
}

/// `fopen(3)`.
///
/// # Safety
/// The caller's contract of `fopen(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fopen(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    // SAFETY: the caller's contract of fopen(3) is ours.
    unsafe { fopen_common(&FOPEN, path, mode) }
}

/// `fopen64(3)`.
///
/// # Safety
/// The caller's contract of `fopen64(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fopen64(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    // SAFETY: the caller's contract of fopen64(3) is ours.
    unsafe { fopen_common(&FOPEN64, path, mode) }
}

/// Shared by `freopen` and `freopen64` (`f` is the real one).
///
/// # Safety
/// `freopen(3)`'s contract: `path` null or a NUL-terminated string, `mode` a NUL-terminated
/// string, `stream` an open FILE.
unsafe fn freopen_common(
    f: &RealFn,
    path: *const c_char,
    mode: *const c_char,
    stream: *mut libc::FILE,
) -> *mut libc::FILE {
    let Some(p) = f.get() else {
        sys::set_errno(libc::ENOSYS);
        return core::ptr::null_mut();
    };
    // SAFETY: the caller's open FILE.
    let old_fd = unsafe { file_fd(stream) };
    let old_entry = fd_table::get(old_fd);
    // SAFETY: dlsym of a freopen name has freopen's signature; the caller's arguments.
    let file = unsafe { core::mem::transmute::<*mut c_void, FreopenFn>(p)(path, mode, stream) };
    if hands_off() {
        return file;
    }
    // SAFETY: null or the FILE freopen just returned.
    let new_fd = unsafe { file_fd(file) };
    if old_fd != new_fd {
        fd_table::set(old_fd, None);
    }
    if path.is_null() {
        // Same file, new mode: the classification stays.
        fd_table::set(new_fd, old_entry);
    } else {
        // SAFETY: freopen's path and mode arguments are NUL-terminated.
        unsafe { on_new_fd(new_fd, path, mode_flags(mode)) };
    }
    restream(old_fd);
    restream(new_fd);
    file
}

/// `freopen(3)`.
///
/// # Safety
/// The caller's contract of `freopen(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn freopen(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut libc::FILE,
) -> *mut libc::FILE {
    // SAFETY: the caller's contract of freopen(3) is ours.
    unsafe { freopen_common(&FREOPEN, path, mode, stream) }
}

/// `freopen64(3)`.
///
/// # Safety
/// The caller's contract of `freopen64(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn freopen64(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut libc::FILE,
) -> *mut libc::FILE {
    // SAFETY: the caller's contract of freopen64(3) is ours.
    unsafe { freopen_common(&FREOPEN64, path, mode, stream) }
}

/// `fclose(3)`: the descriptor is forgotten.
///
/// # Safety
/// The caller's contract of `fclose(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fclose(stream: *mut libc::FILE) -> c_int {
    let Some(p) = FCLOSE.get() else {
        return no_real();
    };
    // SAFETY: the caller's open FILE (or null).
    let fd = unsafe { file_fd(stream) };
    // fclose flushes: bytes that inlined stdio macros left in the buffer are tapped first.
    // SAFETY: the app's FILE, still open.
    unsafe { super::stdio::before_fclose(stream) };
    // SAFETY: dlsym("fclose") has fclose's signature; the caller's argument.
    let r = unsafe { core::mem::transmute::<*mut c_void, FcloseFn>(p)(stream) };
    if fd >= 0 && !guard::held() {
        forget(fd);
        restream(fd);
    }
    r
}

/// `daemon(3)`: glibc's moves fd 0-2 onto `/dev/null` with internal calls the hooks do not
/// see, so fd 1 and fd 2 are looked at again in the daemon.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn daemon(nochdir: c_int, noclose: c_int) -> c_int {
    let Some(p) = DAEMON.get() else {
        return no_real();
    };
    // SAFETY: dlsym("daemon") has daemon's signature.
    let r = unsafe { core::mem::transmute::<*mut c_void, Int2Fn>(p)(nochdir, noclose) };
    restream(1);
    restream(2);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fd_paths() {
        let mut b = [0u8; 32];
        let n = proc_fd_path(123, &mut b);
        assert_eq!(&b[..n], b"/proc/self/fd/123\0");
        let n = proc_fd_path(0, &mut b);
        assert_eq!(&b[..n], b"/proc/self/fd/0\0");
    }

    #[test]
    fn stdio_modes() {
        // SAFETY: NUL-terminated literals.
        let flags = |m: &core::ffi::CStr| unsafe { mode_flags(m.as_ptr()) };
        assert_eq!(flags(c"r"), libc::O_RDONLY);
        assert_eq!(flags(c"a"), libc::O_WRONLY);
        assert_eq!(flags(c"w+e"), libc::O_RDWR);
        assert_eq!(flags(c"r+"), libc::O_RDWR);
    }
}
