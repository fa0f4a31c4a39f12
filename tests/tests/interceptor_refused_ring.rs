//! What the library does when the agent refuses its ring — a library and an agent of releases
//! with different ring layouts (layout version 3 against a version-2 agent, or the reverse):
//! the agent reads the HELLO, finds a ring it cannot read, says so in its log and hangs up
//! (`agent_tap::a_ring_of_another_layout_version_is_refused_by_name` tests that side). Here a
//! stand-in agent does exactly that to the real library under a real program: it accepts,
//! reads the HELLO (with the ring's memfd) and closes. The program does not notice: it exits
//! normally, at once, its own output intact; the library keeps handing its ring over (it
//! cannot tell a refusal from an agent restarting) and never falls back to DATA frames. A
//! *suppressed* stream, though, loses the copies that went into the ring (a known gap, pinned
//! down below).

mod interceptor_support;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use interceptor_support::*;
use logtap_tests::artifacts::{self, TempDir};

/// A `SOCK_SEQPACKET` listener that accepts every connection, reads its first packet (the
/// HELLO) and hangs up, counting the HELLOs that came with file descriptors (a ring's memfd
/// and eventfd). Stops when dropped.
struct RefusingAgent {
    hellos_with_fds: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RefusingAgent {
    fn start(path: &Path) -> RefusingAgent {
        // SAFETY: plain socket syscalls on fds we own; the address is a zeroed sockaddr_un
        // with the path copied in (checked to fit).
        let listener = unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
            assert!(fd >= 0, "socket");
            let fd = OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            let bytes = path.as_os_str().as_bytes();
            assert!(bytes.len() < addr.sun_path.len());
            for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
                *d = *s as libc::c_char;
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            assert_eq!(
                libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len),
                0,
                "bind"
            );
            assert_eq!(libc::listen(fd.as_raw_fd(), 16), 0, "listen");
            fd
        };
        let hellos_with_fds = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (hellos, stop) = (Arc::clone(&hellos_with_fds), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut pfd = libc::pollfd {
                        fd: listener.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    if unsafe { libc::poll(&mut pfd, 1, 20) } <= 0 {
                        continue;
                    }
                    // SAFETY: accept on our listener; the new fd is owned at once.
                    let conn = unsafe {
                        let fd = libc::accept4(
                            listener.as_raw_fd(),
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_CLOEXEC,
                        );
                        if fd < 0 {
                            continue;
                        }
                        OwnedFd::from_raw_fd(fd)
                    };
                    if read_hello_has_fds(&conn) {
                        hellos.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(conn); // the hang-up a refusing agent answers with
                }
            })
        };
        RefusingAgent {
            hellos_with_fds,
            stop,
            thread: Some(thread),
        }
    }

    fn hellos_with_fds(&self) -> u64 {
        self.hellos_with_fds.load(Ordering::Relaxed)
    }
}

impl Drop for RefusingAgent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one packet (waiting up to 2 s) and whether it carried file descriptors (which are
/// closed with the received message's fds).
fn read_hello_has_fds(conn: &OwnedFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: conn.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, 2_000) } <= 0 {
        return false;
    }
    let mut buf = [0u8; 4096];
    let mut cmsg = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr pointing at our live buffers; recvmsg fills them.
    let (n, fds) = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cmsg);
        let n = libc::recvmsg(conn.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        let mut fds = Vec::new();
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<i32>();
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        (n, fds)
    };
    n > 0 && !fds.is_empty()
}

/// Python writing `n` numbered lines, one `write` each (unbuffered), with a pause in the middle
/// (so that the library notices the hang-up and reconnects at least once); exits normally (the
/// library's destructor runs). `suppress`: `LLT_SUPPRESS_STDOUT=true`.
fn writer(sock: &Path, n: u32, suppress: bool) -> Command {
    let mut c = Command::new(python());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LLT_") {
            c.env_remove(key);
        }
    }
    c.env("LD_PRELOAD", artifacts::liblogtap())
        .env("LLT_TARGET", format!("socket:{}", sock.display()))
        .env("LLT_TAP_INTO", "1")
        .env(
            "LLT_SUPPRESS_STDOUT",
            if suppress { "true" } else { "false" },
        )
        .env("LLT_TARGET_RECONNECT", "1")
        .env("PYTHONUNBUFFERED", "1")
        .args([
            "-c",
            &format!(
                "import time\nfor i in range({n}):\n    print(f'line {{i}}')\n    \
                 if i == {half}: time.sleep(1.3)\n",
                half = n / 2
            ),
        ]);
    c
}

/// Runs the writer against a refusing agent; returns its stdout lines, sorted, and the HELLOs
/// with a ring the agent saw.
fn run_refused(name: &str, n: u32, suppress: bool) -> (Vec<String>, u64) {
    let dir = TempDir::new(name);
    let sock = dir.path().join("agent.sock");
    let agent = RefusingAgent::start(&sock);
    let started = Instant::now();
    let out = run(writer(&sock, n, suppress), LIMIT);
    assert_ok(&out);
    // The 1.3 s pause, plus little: no 200 ms stall per write, no wait for room.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort_unstable();
    (lines, agent.hellos_with_fds())
}

fn all_lines(n: u32) -> Vec<String> {
    let mut want: Vec<String> = (0..n).map(|i| format!("line {i}")).collect();
    want.sort_unstable();
    want
}

#[test]
fn a_refused_ring_costs_the_program_nothing_and_is_handed_over_again() {
    let (lines, hellos) = run_refused("refused-ring", 400, false);
    assert_eq!(lines, all_lines(400), "the program's own output is intact");
    assert!(hellos >= 2, "{hellos} HELLOs with a ring");
}

/// The known gap (RELIABILITY.md, "What is not covered"): a suppressed stream's copies go into
/// the ring while the library believes itself connected — which, against a refusing agent that
/// accepts every connection, is nearly all the time (it reconnects at once after a hang-up, and
/// its exit attempt connects too) — and are neither written nor delivered: the write-back at
/// exit runs only when no agent holds the connection. If this test fails, the gap is closed:
/// turn the assertion around and update RELIABILITY.md and the ring's docs.
#[test]
fn a_suppressed_stream_under_a_refusing_agent_loses_what_went_into_the_ring() {
    let (lines, hellos) = run_refused("refused-ring-suppressed", 400, true);
    assert!(hellos >= 2, "{hellos} HELLOs with a ring");
    assert!(
        lines.len() < 400,
        "all 400 suppressed lines came out: the gap is closed ({} lines)",
        lines.len()
    );
}
