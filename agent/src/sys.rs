//! The agent's only `unsafe`: the few libc calls std and tokio do not wrap.
//!
//! - a `SOCK_SEQPACKET` Unix listener (std and tokio have stream and datagram sockets only),
//!   `accept4`, and `SO_PEERCRED`;
//! - `recvmsg` with `SCM_RIGHTS` (the interceptor passes its ring memfd and eventfd);
//! - `O_NONBLOCK` on a received fd, `kill` (signals passed on to `logtap run`'s child);
//! - `uname` (the hostname) and `statvfs` (is a directory on a `noexec` mount?);
//! - a probe `connect` telling a live tap socket from a stale one, and `syncfs` (the spool);
//! - `SO_PEERPIDFD` and `pidfd_send_signal` (is the peer that connected still alive?) and
//!   `RLIMIT_NOFILE` (raised to the hard limit at start).
//!
//! And, with no `unsafe` at all, systemd's readiness notification ([`notify_ready`]).
//!
//! Every function returns `io::Result` and takes or returns owned/borrowed fds, so callers stay
//! in safe Rust. Each `unsafe` block says why it is sound.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Most file descriptors accepted with one message (HELLO carries two).
pub const MAX_FDS: usize = 4;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The machine's hostname: the `nodename` of `uname(2)` (the UTS namespace's, what `hostname`
/// prints), or `localhost` if it is empty. Not `/proc/sys/kernel/hostname`: the systemd unit's
/// `ProcSubset=pid` hides `/proc/sys`, and the agent would call itself `localhost`.
pub fn hostname() -> String {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is valid for writes; uname fills its fields with NUL-terminated strings.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "localhost".to_owned();
    }
    let name: Vec<u8> = uts
        .nodename
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    let name = String::from_utf8_lossy(&name).trim().to_owned();
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    }
}

/// Whether `path` lies on a filesystem mounted `noexec`, where the dynamic linker cannot map a
/// library (`LD_PRELOAD` then fails with "failed to map segment from shared object").
pub fn is_noexec(path: &Path) -> io::Result<bool> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    // SAFETY: statvfs is plain old data; all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string and `st` is valid for writes.
    check(unsafe { libc::statvfs(c_path.as_ptr(), &mut st) })?;
    Ok(st.f_flag & libc::ST_NOEXEC != 0)
}

/// systemd's readiness protocol (`Type=notify`, `sd_notify(3)`): sends `READY=1` to the datagram
/// socket named by `$NOTIFY_SOCKET`. `Ok(false)` when the variable is unset (not run by systemd,
/// or not as `Type=notify`).
pub fn notify_ready() -> io::Result<bool> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(socket) => notify(&socket, "READY=1").map(|()| true),
        None => Ok(false),
    }
}

/// Sends one `sd_notify` datagram (`state`, e.g. `READY=1`) to `socket`: a path, or `@name` for
/// a socket in the abstract namespace.
pub fn notify(socket: &std::ffi::OsStr, state: &str) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = socket.as_bytes();
    let addr = match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..])?,
        Some(b'/') => SocketAddr::from_pathname(socket)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "NOTIFY_SOCKET={} is neither an absolute path nor @abstract",
                    socket.to_string_lossy()
                ),
            ));
        }
    };
    let sock = UnixDatagram::unbound()?;
    // The manager reads at once; a stuck one must not hold the agent's start up for long.
    sock.set_write_timeout(Some(std::time::Duration::from_secs(2)))?;
    let sent = sock.send_to_addr(state.as_bytes(), &addr)?;
    if sent == state.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "short write to NOTIFY_SOCKET",
        ))
    }
}

/// A non-blocking, close-on-exec `SOCK_SEQPACKET` socket and the address of `path` for it
/// (with its length), for [`seqpacket_listen`] and [`seqpacket_accepts`].
fn seqpacket_socket_for(path: &Path) -> io::Result<(OwnedFd, libc::sockaddr_un, libc::socklen_t)> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "socket path {} is longer than {} bytes",
                path.display(),
                addr.sun_path.len() - 1
            ),
        ));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: plain syscall with constant arguments; the result is checked.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    // SAFETY: `fd` was just returned by socket() and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    Ok((fd, addr, len))
}

/// Creates a non-blocking, close-on-exec `SOCK_SEQPACKET` socket bound to `path` and listening.
/// The caller removes a stale socket file first and sets the file's mode afterwards.
pub fn seqpacket_listen(path: &Path, backlog: i32) -> io::Result<OwnedFd> {
    let (fd, addr, len) = seqpacket_socket_for(path)?;
    // SAFETY: `addr` is a valid sockaddr_un and `len` does not exceed its size.
    check(unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) })?;
    // SAFETY: listen on a socket we own.
    check(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    Ok(fd)
}

/// Accepts one pending connection as a non-blocking, close-on-exec socket.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers are allowed (we do not want the peer address).
    let fd = check(unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: accept4 returned a new fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The connected peer's credentials as the kernel saw them at connect: (pid, uid, gid).
pub fn peer_cred(sock: BorrowedFd<'_>) -> io::Result<(u32, u32, u32)> {
    // SAFETY: ucred is plain old data.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes and `len` is its size.
    check(unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    })?;
    Ok((cred.pid as u32, cred.uid, cred.gid))
}

/// One received datagram.
#[derive(Debug)]
pub struct Received {
    /// Bytes in the caller's buffer; 0 means the peer closed the connection.
    pub len: usize,
    /// The datagram was longer than the buffer (its tail is lost).
    pub truncated: bool,
    /// File descriptors that came with it (`SCM_RIGHTS`), close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// More descriptors were sent than we accept (the kernel closed the excess).
    pub fds_truncated: bool,
}

/// `recvmsg` without blocking; `WouldBlock` when nothing is queued.
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    // u64 alignment suits cmsghdr; the size is CMSG_SPACE(MAX_FDS * sizeof(int)) rounded up.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain old data; zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space =
        unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) } as usize;
    debug_assert!(space <= std::mem::size_of_val(&control));
    msg.msg_controllen = space.min(std::mem::size_of_val(&control));
    // SAFETY: `msg` points at `iov` (our buffer) and `control`, both alive for the call.
    let n = unsafe {
        libc::recvmsg(
            sock.as_raw_fd(),
            &mut msg,
            libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, within
    // msg_controllen; each SCM_RIGHTS payload holds (cmsg_len - CMSG_LEN(0)) / 4 ints that are
    // new descriptors now owned by us.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Received {
        len: n as usize,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        fds,
        fds_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

/// Sets `O_NONBLOCK` on a descriptor we received (the interceptor's eventfd).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we hold; the result is checked.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: as above.
        check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    Ok(())
}

/// Descriptor owners that keep one open descriptor for their whole life (what tokio's
/// `AsyncFd::register` requires).
pub trait OwnsDescriptor: AsRawFd {}
impl OwnsDescriptor for OwnedFd {}
impl OwnsDescriptor for std::fs::File {}

/// Registers a descriptor we own with tokio's reactor for readability.
pub fn register_readable<T: OwnsDescriptor>(inner: T) -> io::Result<tokio::io::unix::AsyncFd<T>> {
    // SAFETY: `T` is an `OwnedFd` or a `File`: it owns one open descriptor, returns that same
    // descriptor from every `as_raw_fd` call, and closes it only when dropped — after the
    // `AsyncFd` that owns it.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE)
    }
    .map_err(io::Error::from)
}

/// Makes glibc's allocator give memory back: at most two arenas (the agent's few threads would
/// otherwise each keep their own), and a fixed mmap threshold, so that chunk-sized buffers
/// (≥ 128 KiB) are mapped and unmapped instead of staying in a heap that only grows. RSS then
/// follows what the buffer holds. No effect with other C libraries.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt only changes allocator parameters; it is called before the runtime
        // starts its threads.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

/// Turns on TCP keepalive (first probe after `idle_secs`, then every 10 s, 3 probes), so a
/// forward connection through a silently dropped NAT or firewall entry is noticed.
pub fn set_tcp_keepalive(sock: BorrowedFd<'_>, idle_secs: i32) -> io::Result<()> {
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: `value` is a live c_int and its size is passed.
        check(unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                level,
                name,
                (&raw const value).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
        .map(|_| ())
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, idle_secs)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 10)?;
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3)
}

/// Sends `signal` to process `pid`.
pub fn kill(pid: u32, signal: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill has no memory effects; a stale pid yields ESRCH.
    check(unsafe { libc::kill(pid, signal) }).map(|_| ())
}

/// Flushes the file system holding `fd` to its device (`syncfs`).
pub fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: syncfs on a descriptor we borrow has no memory effects.
    check(unsafe { libc::syncfs(fd.as_raw_fd()) }).map(|_| ())
}

/// Whether a `SOCK_SEQPACKET` socket at `path` accepts connections: `Ok(true)` if a connect
/// succeeds (or is merely queued), `Ok(false)` if nothing listens there any more
/// (`ECONNREFUSED`) or the file is gone, `Err` when it cannot be told (e.g. no permission).
pub fn seqpacket_accepts(path: &Path) -> io::Result<bool> {
    let (fd, addr, len) = seqpacket_socket_for(path)?;
    // SAFETY: `addr` is a valid sockaddr_un and `len` does not exceed its size.
    match check(unsafe { libc::connect(fd.as_raw_fd(), (&raw const addr).cast(), len) }) {
        Ok(_) => Ok(true),
        Err(e) => match e.raw_os_error() {
            // A full backlog: somebody listens, just busy.
            Some(libc::EAGAIN | libc::EINPROGRESS) => Ok(true),
            Some(libc::ECONNREFUSED | libc::ENOENT) => Ok(false),
            _ => Err(e),
        },
    }
}

/// `SO_PEERPIDFD` (Linux 6.5): a pidfd of the process that connected, taken at `connect`.
/// The same value on x86_64 and aarch64 (asm-generic); not yet in every `libc` release.
const SO_PEERPIDFD: libc::c_int = 77;

/// A pidfd for the connected peer (`SO_PEERPIDFD`), or `Err` on kernels before 6.5 or when
/// the peer's process is not visible.
pub fn peer_pidfd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` and `len` are valid for writes and `len` is its size.
    check(unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&raw mut fd).cast(),
            &mut len,
        )
    })?;
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: the kernel returned a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the process a pidfd refers to is still alive (signal 0 through the pidfd: ESRCH
/// once it exited, even if its pid was given to another process since).
pub fn pidfd_alive(pidfd: BorrowedFd<'_>) -> bool {
    // SAFETY: signal 0 is only a check; null siginfo is allowed; no memory effects.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    // EPERM: alive, only not ours to signal.
    r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The `RLIMIT_NOFILE` limits: (soft, hard).
pub fn nofile_limit() -> io::Result<(u64, u64)> {
    // SAFETY: rlimit is plain old data.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is valid for writes.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) })?;
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as Go's runtime does at start); returns
/// (soft before, soft now). Only `logtap agent` calls it: `logtap run`'s child would inherit
/// the raised limit, and programs that use `select()` expect at most 1024.
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let (soft, hard) = nofile_limit()?;
    if soft >= hard {
        return Ok((soft, soft));
    }
    let lim = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit; raising the soft limit up to the hard one needs no
    // privilege.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) })?;
    Ok((soft, hard))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn listen_accept_and_credentials() {
        let dir = std::env::temp_dir().join(format!("logtap-sys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = seqpacket_listen(&path, 8).unwrap();
        assert_eq!(
            accept(listener.as_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let long = dir.join("x".repeat(200));
        assert!(seqpacket_listen(&long, 8).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn hostname_is_unames_nodename() {
        let out = std::process::Command::new("uname")
            .arg("-n")
            .output()
            .unwrap();
        let expected = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        assert!(!expected.is_empty());
        assert_eq!(hostname(), expected);
    }

    #[test]
    fn notify_sends_one_datagram_to_a_path_or_an_abstract_name() {
        use std::os::unix::net::UnixDatagram;
        let dir = std::env::temp_dir().join(format!("logtap-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        notify(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("logtap-notify-test-{}", std::process::id());
        let addr = {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap()
        };
        let abstract_receiver = UnixDatagram::bind_addr(&addr).unwrap();
        notify(std::ffi::OsStr::new(&format!("@{name}")), "READY=1").unwrap();
        let n = abstract_receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        assert!(notify(std::ffi::OsStr::new("relative/path"), "READY=1").is_err());
        assert!(notify(dir.join("nobody-listens").as_os_str(), "READY=1").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_build_directory_is_not_noexec_and_a_missing_one_is_an_error() {
        // The noexec case needs a mount: tests/tests/deploy_node.rs makes one.
        assert!(!is_noexec(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap());
        assert!(is_noexec(Path::new("/nonexistent/logtap")).is_err());
    }
}
