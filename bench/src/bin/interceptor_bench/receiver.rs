//! The bench's own Contract 2 receiver: accepts tap connections, counts DATA bytes and LOSS
//! reports, and drains each process's ring on a thread of its own, as an agent would.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use logtap_protocol::ring::{Consumer, ConsumerOptions};
use logtap_protocol::tap::{self, Kind};

use super::cpu::pin_to;

/// The receiver's nap between drains while the ring is busy (see `drain_ring`).
const NAP_US: u64 = 50;

/// Bytes a receiver got, and bytes the producer reported dropped (ring counters, LOSS frames).
#[derive(Default)]
pub struct Counts {
    pub bytes: AtomicU64,
    pub lost: AtomicU64,
}

/// A minimal Contract 2 receiver that counts the bytes it gets.
pub struct Receiver {
    path: PathBuf,
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn check(r: i32, what: &str) -> i32 {
    if r < 0 {
        eprintln!(
            "interceptor_bench: {what}: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(1);
    }
    r
}

impl Receiver {
    /// Listens on `path`; its threads (and the ring drains they start) run on `cpu` if given.
    pub fn start(path: &Path, cpu: Option<usize>) -> Receiver {
        let _ = std::fs::remove_file(path);
        // SAFETY: plain socket calls on a fresh fd we own.
        let fd = unsafe {
            let fd = check(
                libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0),
                "socket",
            );
            OwnedFd::from_raw_fd(fd)
        };
        // SAFETY: plain old data.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr
            .sun_path
            .iter_mut()
            .zip(path.as_os_str().as_encoded_bytes())
        {
            *d = *s as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        // SAFETY: a valid address of `len` bytes.
        check(
            unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) },
            "bind",
        );
        // SAFETY: plain syscall. The backlog also caps each connection's datagram queue.
        check(unsafe { libc::listen(fd.as_raw_fd(), 4096) }, "listen");
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (Arc::clone(&counts), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            // Threads inherit the affinity of the thread that spawns them.
            if let Some(cpu) = cpu {
                pin_to(cpu);
            }
            accept_loop(fd, &b, &s)
        });
        Receiver {
            path: path.to_path_buf(),
            counts,
            stop,
            thread: Some(thread),
        }
    }

    pub fn target(&self) -> String {
        format!("socket:{}", self.path.display())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn poll_in(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&raw mut p, 1, ms) > 0 }
}

fn accept_loop(listener: OwnedFd, counts: &Arc<Counts>, stop: &Arc<AtomicBool>) {
    let mut workers = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        if !poll_in(listener.as_raw_fd(), 20) {
            continue;
        }
        // SAFETY: accept on our listener; the fd is owned at once.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            continue;
        }
        // SAFETY: fresh fd.
        let conn = unsafe { OwnedFd::from_raw_fd(fd) };
        let (b, s) = (Arc::clone(counts), Arc::clone(stop));
        workers.push(std::thread::spawn(move || serve_connection(conn, &b, &s)));
    }
    for w in workers {
        let _ = w.join();
    }
}

enum Recv {
    Got(usize, Vec<OwnedFd>),
    Empty,
    Closed,
}

/// One datagram and its fds, without blocking.
fn recv_with_fds(fd: i32, buf: &mut [u8]) -> Recv {
    match logtap_tests::scm::recv_datagram(fd, buf) {
        Ok(Some((n, fds))) => Recv::Got(n, fds),
        Ok(None) => Recv::Empty,
        Err(()) => Recv::Closed,
    }
}

fn serve_connection(conn: OwnedFd, counts: &Arc<Counts>, stop: &Arc<AtomicBool>) {
    let mut buf = vec![0u8; tap::MAX_FRAME_LEN];
    let mut ring_thread: Option<std::thread::JoinHandle<()>> = None;
    while !stop.load(Ordering::SeqCst) {
        if !poll_in(conn.as_raw_fd(), 20) {
            continue;
        }
        // Read everything queued before polling again.
        loop {
            let (n, fds) = match recv_with_fds(conn.as_raw_fd(), &mut buf) {
                Recv::Got(n, fds) => (n, fds),
                Recv::Empty => break,
                Recv::Closed => {
                    if let Some(t) = ring_thread {
                        let _ = t.join();
                    }
                    return;
                }
            };
            let Ok(frame) = tap::decode_frame(&buf[..n]) else {
                continue;
            };
            match frame.header.kind {
                Kind::Data => {
                    counts
                        .bytes
                        .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
                }
                Kind::Loss => {
                    if let Ok(loss) = tap::Loss::decode(frame.payload) {
                        counts.lost.fetch_add(loss.bytes, Ordering::Relaxed);
                    }
                }
                Kind::Hello if fds.len() == 2 && ring_thread.is_none() => {
                    let mut it = fds.into_iter();
                    let (memfd, wake) = (it.next(), it.next());
                    if let (Some(memfd), Some(wake)) = (memfd, wake)
                        && let Ok(consumer) = Consumer::open(memfd, ConsumerOptions::default())
                    {
                        let (b, s) = (Arc::clone(counts), Arc::clone(stop));
                        ring_thread = Some(std::thread::spawn(move || {
                            drain_ring(consumer, &wake, &b, &s)
                        }));
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(t) = ring_thread {
        let _ = t.join();
    }
}

fn drain_ring(
    mut consumer: Consumer,
    wake: &OwnedFd,
    counts: &Arc<Counts>,
    stop: &Arc<AtomicBool>,
) {
    let mut payload = Vec::with_capacity(64 * 1024);
    let mut idle_since: Option<Instant> = None;
    loop {
        let mut got = 0u64;
        while let Ok(Some(_)) = consumer.next(&mut payload) {
            got += payload.len() as u64;
        }
        counts.bytes.fetch_add(got, Ordering::Relaxed);
        // The producers' drop counters (ring full), as the agent reports them.
        counts
            .lost
            .fetch_max(consumer.counters().dropped_bytes, Ordering::Relaxed);
        if got > 0 {
            idle_since = None;
            continue;
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        // Batching, as an agent should: nap 50 µs at a time for 1 ms of idleness, and only then
        // sleep on the eventfd. While the producer is busy it so never finds the consumer
        // asleep (no wake-up syscall per write), and the consumer drains in batches instead of
        // fighting the producer for every slot's cache line (measured: spinning costs the
        // producer 2× more). A 1 MiB ring holds 8,192 small records, ~1.5 ms of writes at
        // full speed.
        let idle = idle_since.get_or_insert_with(Instant::now).elapsed();
        if idle < Duration::from_millis(1) {
            std::thread::sleep(Duration::from_micros(NAP_US));
            continue;
        }
        // Like the agent: announce sleep, re-check, sleep on the eventfd.
        if consumer.prepare_sleep() && poll_in(wake.as_raw_fd(), 100) {
            let mut v = 0u64;
            // SAFETY: reading the 8-byte counter into a u64.
            unsafe { libc::read(wake.as_raw_fd(), (&raw mut v).cast(), 8) };
        }
    }
}
