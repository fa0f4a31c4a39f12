//! Raw system-call wrappers for the library's own I/O.
//!
//! Why raw: liblogtap exports `write`, `close`, `open`, `fcntl`, … itself, so a call to the
//! libc function of the same name from inside the library would land in our own hook. Every
//! descriptor operation the library performs for itself therefore goes through
//! `libc::syscall(SYS_…)` here, never through an interposed symbol. All of these are
//! async-signal-safe, allocate nothing and cannot panic. They report failure as `Err(errno)`
//! and leave the thread's `errno` changed: callers on a hook path restore it with
//! [`ErrnoGuard`].

use core::ffi::{c_int, c_void};

/// Restores the thread's `errno` when dropped: the app must see the `errno` the real call left.
///
/// It keeps the slot's address as well as the value, so that a save and its restore cost one
/// `__errno_location()` call (a call into libc through the PLT, ≈ 1 ns each on the tapped
/// path) instead of two. The address is the calling thread's errno slot, fixed for the
/// thread's lifetime, and a signal handler running on this thread uses the same slot; the raw
/// pointer makes the guard `!Send`, so it can never be dropped on another thread.
pub struct ErrnoGuard {
    slot: *mut c_int,
    saved: c_int,
}

impl ErrnoGuard {
    /// Saves the current `errno`.
    #[inline]
    pub fn save() -> ErrnoGuard {
        // SAFETY: `__errno_location` returns the calling thread's errno slot, valid (and
        // unmoved) for the thread's lifetime; we read it at once.
        unsafe {
            let slot = libc::__errno_location();
            ErrnoGuard { slot, saved: *slot }
        }
    }
}

impl Drop for ErrnoGuard {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `slot` is this thread's errno slot (see `save`; the guard is `!Send`).
        unsafe { *self.slot = self.saved }
    }
}

/// The thread's `errno`.
#[inline]
pub fn errno() -> c_int {
    // SAFETY: `__errno_location` returns the calling thread's errno slot, valid for the
    // thread's lifetime.
    unsafe { *libc::__errno_location() }
}

/// Sets the thread's `errno`.
#[inline]
pub fn set_errno(value: c_int) {
    // SAFETY: see `errno`.
    unsafe { *libc::__errno_location() = value }
}

/// Turns a raw syscall result into `Ok(value)` or `Err(errno)`.
#[inline]
fn check(r: libc::c_long) -> Result<libc::c_long, c_int> {
    if r < 0 { Err(errno()) } else { Ok(r) }
}

/// Set once the program may have made `rdtsc` fault (`PR_SET_TSC`): the vDSO's
/// `clock_gettime` reads the TSC in user mode too, so from then on the clock is read with the
/// system call itself (slower, but it cannot fault).
static RAW_CLOCK: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Reads the clock through the kernel from now on (see `RAW_CLOCK`).
pub fn use_raw_clock() {
    RAW_CLOCK.store(true, core::sync::atomic::Ordering::SeqCst);
}

/// Whether the clock is read through the kernel (`rdtsc` may fault here).
pub fn raw_clock() -> bool {
    RAW_CLOCK.load(core::sync::atomic::Ordering::Relaxed)
}

/// `CLOCK_REALTIME` in ns since the Unix epoch (vDSO, no syscall — unless `use_raw_clock`),
/// 0 if unavailable.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let r = if RAW_CLOCK.load(core::sync::atomic::Ordering::Relaxed) {
        // SAFETY: `ts` is a valid out pointer for the raw clock_gettime system call.
        unsafe { libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_REALTIME, &raw mut ts) as i32 }
    } else {
        // SAFETY: `ts` is a valid out pointer; clock_gettime is async-signal-safe, not hooked.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) }
    };
    if r != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// `write(2)` on one of our own descriptors; retries `EINTR`.
pub fn write(fd: c_int, buf: &[u8]) -> Result<usize, c_int> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes for the duration of the call.
        let r = unsafe { libc::syscall(libc::SYS_write, fd, buf.as_ptr(), buf.len()) };
        match check(r) {
            Ok(n) => return Ok(usize::try_from(n).unwrap_or(0)),
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `pread(2)` of the app's descriptor into our buffer (reading back what a
/// `copy_file_range`/`sendfile` copied); retries `EINTR`.
pub fn pread(fd: c_int, buf: &mut [u8], offset: i64) -> Result<usize, c_int> {
    loop {
        // SAFETY: `buf` is writable for `buf.len()` bytes for the duration of the call.
        let r =
            unsafe { libc::syscall(libc::SYS_pread64, fd, buf.as_mut_ptr(), buf.len(), offset) };
        match check(r) {
            Ok(n) => return Ok(usize::try_from(n).unwrap_or(0)),
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Whether `[ptr, ptr + len)` can be read, asked of the kernel (no fault here): what a
/// suppressed write checks before the library copies the app's buffer, so that a write from
/// an invalid buffer fails with `EFAULT` as the real call would instead of faulting in the
/// copy. One byte per page is read with `process_vm_readv` on this very process (64 pages per
/// call); where a seccomp profile refuses that call, `mincore` tells at least whether the
/// pages are mapped.
pub fn readable(ptr: *const u8, len: usize) -> bool {
    const PAGE: usize = 4096;
    const BATCH: usize = 64;
    if len == 0 {
        return true;
    }
    let start = ptr as usize;
    let Some(end) = start.checked_add(len) else {
        return false;
    };
    if start == 0 {
        return false;
    }
    let mut page = start & !(PAGE - 1);
    let mut local = [0u8; BATCH];
    let empty = libc::iovec {
        iov_base: core::ptr::null_mut(),
        iov_len: 0,
    };
    while page < end {
        let mut remote = [empty; BATCH];
        let mut k = 0usize;
        for slot in remote.iter_mut() {
            if page >= end {
                break;
            }
            *slot = libc::iovec {
                iov_base: page.max(start) as *mut c_void,
                iov_len: 1,
            };
            page = page.saturating_add(PAGE);
            k = k.saturating_add(1);
        }
        let liov = libc::iovec {
            iov_base: local.as_mut_ptr().cast(),
            iov_len: k,
        };
        // SAFETY: reads at most `k` bytes into `local` (k <= BATCH); the remote addresses are
        // only read by the kernel, which reports a fault instead of taking it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_process_vm_readv,
                getpid(),
                &raw const liov,
                1usize,
                remote.as_ptr(),
                k,
                0usize,
            )
        };
        match check(r) {
            Ok(n) if usize::try_from(n).ok() == Some(k) => {}
            Ok(_) | Err(libc::EFAULT) | Err(libc::ESRCH) => return false,
            Err(_) => return mapped(start, end),
        }
    }
    true
}

/// `mincore` over `[start, end)`: whether every page is mapped.
fn mapped(start: usize, end: usize) -> bool {
    const PAGE: usize = 4096;
    let mut vec = [0u8; 256];
    let mut page = start & !(PAGE - 1);
    while page < end {
        let pages = (end.saturating_sub(page).div_ceil(PAGE)).min(vec.len());
        // SAFETY: `vec` has room for `pages` entries; the kernel checks the address range.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mincore,
                page as *mut c_void,
                pages.saturating_mul(PAGE),
                vec.as_mut_ptr(),
            )
        };
        if r != 0 {
            return false;
        }
        page = page.saturating_add(pages.saturating_mul(PAGE));
    }
    true
}

/// `lseek(2)`: the new position, or the error.
pub fn lseek(fd: c_int, offset: i64, whence: c_int) -> Result<i64, c_int> {
    // SAFETY: plain syscall on integers.
    let r = unsafe { libc::syscall(libc::SYS_lseek, fd, offset, whence) };
    check(r)
}

/// Writes all of `buf` to a regular file (the `file:` target), stopping at the first error.
/// Returns how many bytes were written.
pub fn write_all(fd: c_int, buf: &[u8]) -> usize {
    let mut done = 0usize;
    while let Some(rest) = buf.get(done..) {
        if rest.is_empty() {
            break;
        }
        match write(fd, rest) {
            Ok(0) | Err(_) => break,
            Ok(n) => done = done.saturating_add(n),
        }
    }
    done
}

/// `read(2)`; retries `EINTR`.
pub fn read(fd: c_int, buf: &mut [u8]) -> Result<usize, c_int> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let r = unsafe { libc::syscall(libc::SYS_read, fd, buf.as_mut_ptr(), buf.len()) };
        match check(r) {
            Ok(n) => return Ok(usize::try_from(n).unwrap_or(0)),
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `openat(AT_FDCWD, path, flags | O_CLOEXEC, mode)`; `path` must end with a NUL byte.
pub fn open(path: &[u8], flags: c_int, mode: libc::mode_t) -> Result<c_int, c_int> {
    if path.last() != Some(&0) {
        return Err(libc::EINVAL);
    }
    // SAFETY: `path` is NUL-terminated (checked above) and outlives the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode,
        )
    };
    check(r).map(|fd| c_int::try_from(fd).unwrap_or(-1))
}

/// Reads a whole small file (`/proc/self/comm`, …) into `buf`; returns the length read.
pub fn read_file(path: &[u8], buf: &mut [u8]) -> usize {
    let Ok(fd) = open(path, libc::O_RDONLY, 0) else {
        return 0;
    };
    let mut done = 0usize;
    while let Some(rest) = buf.get_mut(done..) {
        match read(fd, rest) {
            Ok(0) | Err(_) => break,
            Ok(n) => done = done.saturating_add(n),
        }
    }
    close(fd);
    done.min(buf.len())
}

/// `readlink(2)` relative to the cwd; `path` must end with NUL. Returns the length.
pub fn readlink(path: &[u8], buf: &mut [u8]) -> usize {
    if path.last() != Some(&0) {
        return 0;
    }
    // SAFETY: NUL-terminated path; `buf` valid for `buf.len()` bytes of writes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_readlinkat,
            libc::AT_FDCWD,
            path.as_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    check(r)
        .ok()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
        .min(buf.len())
}

/// `close(2)` of one of our own descriptors (never the app's).
pub fn close(fd: c_int) {
    if fd >= 0 {
        // SAFETY: plain syscall; closing a descriptor we own.
        unsafe { libc::syscall(libc::SYS_close, fd) };
    }
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, min)`.
pub fn dup_cloexec_at_least(fd: c_int, min: c_int) -> Result<c_int, c_int> {
    // SAFETY: plain syscall on integers.
    let r = unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_DUPFD_CLOEXEC, min) };
    check(r).map(|fd| c_int::try_from(fd).unwrap_or(-1))
}

/// `dup3(old, new, O_CLOEXEC)`: atomically replaces `new` with a copy of `old`.
pub fn dup3_cloexec(old: c_int, new: c_int) -> Result<(), c_int> {
    // SAFETY: plain syscall on integers.
    let r = unsafe { libc::syscall(libc::SYS_dup3, old, new, libc::O_CLOEXEC) };
    check(r).map(|_| ())
}

/// `fstat(2)`'s (device, inode) pair, to tell whether a descriptor is still the one we made.
pub fn dev_ino(fd: c_int) -> Option<(u64, u64)> {
    // SAFETY: `stat` is plain old data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: valid out pointer; plain syscall.
    let r = unsafe { libc::syscall(libc::SYS_fstat, fd, &raw mut st) };
    check(r).ok().map(|_| (st.st_dev, st.st_ino))
}

/// The soft `RLIMIT_NOFILE`, or `None`.
pub fn nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out pointer; pid 0 = this process; no new limit is set.
    let r = unsafe {
        libc::syscall(
            libc::SYS_prlimit64,
            0,
            libc::RLIMIT_NOFILE,
            core::ptr::null::<libc::rlimit>(),
            &raw mut lim,
        )
    };
    check(r).ok().map(|_| lim.rlim_cur)
}

/// The calling process's id (raw: glibc no longer caches it, and the atfork handler needs
/// the child's real pid).
pub fn getpid() -> u32 {
    // SAFETY: plain syscall without arguments.
    let r = unsafe { libc::syscall(libc::SYS_getpid) };
    u32::try_from(r).unwrap_or(0)
}

/// The parent's process id.
pub fn getppid() -> u32 {
    // SAFETY: plain syscall without arguments.
    let r = unsafe { libc::syscall(libc::SYS_getppid) };
    u32::try_from(r).unwrap_or(0)
}

/// A non-blocking, close-on-exec `AF_UNIX` `SOCK_SEQPACKET` socket.
pub fn seqpacket_socket() -> Result<c_int, c_int> {
    // SAFETY: plain syscall on integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_socket,
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    let fd = check(r).map(|fd| c_int::try_from(fd).unwrap_or(-1))?;
    if fd > 2 {
        return Ok(fd);
    }
    // The app closed one of 0-2: never hold that number, even for the moment of a connect (a
    // write of the app's to fd 1 would reach our socket).
    let moved = dup_cloexec_at_least(fd, 3);
    close(fd);
    moved
}

/// Asks for a large send buffer (4 MiB, capped by the kernel at `wmem_max` unless the
/// process may force it): bursts of DATA frames then wait in the socket instead of failing
/// with `EAGAIN`. Best effort.
pub fn enlarge_send_buffer(fd: c_int) {
    let size: c_int = 4 << 20;
    let len = core::mem::size_of::<c_int>() as libc::socklen_t;
    for opt in [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF] {
        // SAFETY: a valid int option value of the given length.
        let r = unsafe {
            libc::syscall(
                libc::SYS_setsockopt,
                fd,
                libc::SOL_SOCKET,
                opt,
                &raw const size,
                len,
            )
        };
        if r == 0 {
            return;
        }
    }
}

/// `connect(2)` to a Unix socket path (no NUL needed; at most 107 bytes). Non-blocking socket:
/// a Unix connect completes or fails at once.
pub fn connect_unix(fd: c_int, path: &[u8]) -> Result<(), c_int> {
    // SAFETY: `sockaddr_un` is plain old data; all-zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if path.is_empty() || path.len() >= addr.sun_path.len() {
        return Err(libc::ENAMETOOLONG);
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(path.iter()) {
        *dst = *src as libc::c_char;
    }
    let len = core::mem::size_of::<libc::sockaddr_un>();
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    let r = unsafe { libc::syscall(libc::SYS_connect, fd, &raw const addr, len) };
    check(r).map(|_| ())
}

/// `sendmsg(fd, iov, fds by SCM_RIGHTS, MSG_DONTWAIT | MSG_NOSIGNAL)`: one datagram, never
/// blocks, never raises SIGPIPE. `fds` holds at most two descriptors.
pub fn send_datagram(fd: c_int, parts: &[&[u8]], fds: &[c_int]) -> Result<usize, c_int> {
    let mut iov = [libc::iovec {
        iov_base: core::ptr::null_mut(),
        iov_len: 0,
    }; 4];
    let mut n_iov = 0usize;
    for (slot, part) in iov.iter_mut().zip(parts.iter()) {
        slot.iov_base = part.as_ptr().cast_mut().cast::<c_void>();
        slot.iov_len = part.len();
        n_iov = n_iov.saturating_add(1);
    }
    // Control buffer for up to two fds: CMSG_SPACE(8) = 24 bytes; u64 keeps it aligned.
    let mut cbuf = [0u64; 4];
    // SAFETY: `msghdr` is plain old data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { core::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = n_iov;
    let n_fds = fds.len().min(2);
    if n_fds > 0 {
        // At most 2 × 4 bytes.
        let data_len = if n_fds == 2 { 8u32 } else { 4u32 };
        msg.msg_control = cbuf.as_mut_ptr().cast::<c_void>();
        // SAFETY: CMSG_SPACE is a pure computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(data_len) } as usize;
        // SAFETY: msg_control points at `cbuf` (32 bytes ≥ CMSG_SPACE(8) = 24), so the first
        // header and its data fit; CMSG_FIRSTHDR/CMSG_DATA compute pointers inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            if cmsg.is_null() {
                return Err(libc::EINVAL);
            }
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as usize;
            let data = libc::CMSG_DATA(cmsg).cast::<c_int>();
            for (i, f) in fds.iter().take(n_fds).enumerate() {
                data.add(i).write_unaligned(*f);
            }
        }
    }
    loop {
        // SAFETY: `msg` and everything it points to live until the call returns.
        let r = unsafe {
            libc::syscall(
                libc::SYS_sendmsg,
                fd,
                &raw const msg,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        match check(r) {
            Ok(n) => return Ok(usize::try_from(n).unwrap_or(0)),
            Err(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Whether the peer of a connected socket hung up: `recv(MSG_PEEK | MSG_DONTWAIT)` returns 0
/// at EOF, `EAGAIN` while the connection lives.
pub fn peer_hung_up(fd: c_int) -> bool {
    let mut byte = 0u8;
    // SAFETY: one byte of valid buffer; MSG_PEEK consumes nothing.
    let r = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            &raw mut byte,
            1usize,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
            core::ptr::null_mut::<libc::sockaddr>(),
            core::ptr::null_mut::<libc::socklen_t>(),
        )
    };
    match check(r) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e != libc::EAGAIN && e != libc::EINTR,
    }
}

/// Waits up to `timeout_ms` for `fd` to become writable.
pub fn wait_writable(fd: c_int, timeout_ms: c_int) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: libc::time_t::from(timeout_ms / 1000),
        tv_nsec: libc::c_long::from(timeout_ms % 1000).saturating_mul(1_000_000),
    };
    // SAFETY: one valid pollfd; a valid timespec; no signal mask change.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ppoll,
            &raw mut p,
            1usize,
            &raw const ts,
            core::ptr::null::<libc::sigset_t>(),
            0usize,
        )
    };
    r > 0 && p.revents & libc::POLLOUT != 0
}

/// Sleeps `ns` nanoseconds (used only while a large write waits for ring space).
pub fn sleep_ns(ns: u64) {
    let ts = libc::timespec {
        tv_sec: libc::time_t::try_from(ns / 1_000_000_000).unwrap_or(0),
        tv_nsec: libc::c_long::try_from(ns % 1_000_000_000).unwrap_or(0),
    };
    // SAFETY: valid timespec; no remainder wanted.
    unsafe {
        libc::syscall(
            libc::SYS_nanosleep,
            &raw const ts,
            core::ptr::null_mut::<libc::timespec>(),
        )
    };
}

/// `sched_yield(2)`: lets the thread we wait for run.
pub fn yield_now() {
    // SAFETY: plain syscall without arguments.
    unsafe { libc::syscall(libc::SYS_sched_yield) };
}

/// A non-blocking, close-on-exec eventfd.
pub fn eventfd() -> Result<c_int, c_int> {
    // SAFETY: plain syscall on integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_eventfd2,
            0,
            libc::EFD_CLOEXEC | libc::EFD_NONBLOCK,
        )
    };
    check(r).map(|fd| c_int::try_from(fd).unwrap_or(-1))
}

/// `close_range(first, last, flags)`.
pub fn close_range(first: u32, last: u32, flags: u32) -> Result<(), c_int> {
    // SAFETY: plain syscall on integers.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    check(r).map(|_| ())
}
