//! A test receiver of Contract 2, built from `protocol::tap` and `protocol::ring` only.
//!
//! It listens on a `SOCK_SEQPACKET` socket, accepts every process that connects (checking
//! `SO_PEERCRED`), takes the ring memfd and eventfd that come with a HELLO by `SCM_RIGHTS`,
//! opens a [`Consumer`] on the ring, and collects everything — HELLO/DATA/LOSS/FILE frames and
//! ring records — into a [`Collected`] the tests inspect. One background thread serves it all
//! with `poll`, sleeping on the rings' eventfds like the agent does when idle.
//!
//! Fault tests can [`pause`](TapReceiver::pause) it (it stops reading: sockets and rings fill up,
//! as when the agent is stopped with SIGSTOP), [`stop`](TapReceiver::stop) it (every
//! connection and ring is dropped and the socket removed, as when the agent dies) and start a
//! new one on the same path.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use logtap_protocol::ring::{Consumer, ConsumerOptions, RECORD_CONTINUED, RingCounters};
use logtap_protocol::tap::{self, FLAG_CONTINUED, FileAnnounce, Hello, Kind, Loss};

/// How a record reached the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A ring record.
    Ring,
    /// A DATA frame.
    Frame,
}

/// One tapped piece of output.
#[derive(Debug, Clone)]
pub struct Record {
    /// Writing process.
    pub pid: u32,
    /// 1 stdout, 2 stderr, 3 file.
    pub stream: u8,
    /// Tap file index (stream 3).
    pub file_index: u32,
    /// Per-process sequence number.
    pub seq: u32,
    /// CLOCK_REALTIME of the write.
    pub time_ns: u64,
    /// The write goes on in the next record.
    pub continued: bool,
    /// The bytes.
    pub data: Vec<u8>,
    /// Ring or DATA frame.
    pub via: Via,
}

/// Everything received so far.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// Records in arrival order.
    pub records: Vec<Record>,
    /// HELLOs in arrival order, with the peer's pid from SO_PEERCRED and whether fds came.
    pub hellos: Vec<(u32, Hello, bool)>,
    /// LOSS frames: (pid, counts).
    pub losses: Vec<(u32, Loss)>,
    /// FILE frames: (pid, announcement).
    pub files: Vec<(u32, FileAnnounce)>,
    /// Latest loss counters of every ring seen, by creator pid.
    pub ring_counters: HashMap<u32, RingCounters>,
    /// Protocol errors (bad frames, inconsistent rings).
    pub errors: Vec<String>,
    /// Connections accepted.
    pub connections: usize,
}

impl Collected {
    /// The concatenated bytes of one stream (of one pid, or of all), in arrival order.
    pub fn bytes(&self, pid: Option<u32>, stream: u8) -> Vec<u8> {
        let mut out = Vec::new();
        for r in &self.records {
            if r.stream == stream && pid.is_none_or(|p| p == r.pid) {
                out.extend_from_slice(&r.data);
            }
        }
        out
    }

    /// The complete lines of one stream (all pids), as strings (lossy).
    pub fn lines(&self, stream: u8) -> Vec<String> {
        String::from_utf8_lossy(&self.bytes(None, stream))
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Copies dropped as reported by rings and LOSS frames: (records/frames, bytes).
    pub fn dropped(&self) -> (u64, u64) {
        let mut n = (0, 0);
        for c in self.ring_counters.values() {
            n.0 += c.dropped_records;
            n.1 += c.dropped_bytes;
        }
        for (_, l) in &self.losses {
            n.0 += l.frames;
            n.1 += l.bytes;
        }
        n
    }

    /// Pids that sent a HELLO.
    pub fn hello_pids(&self) -> Vec<u32> {
        self.hellos.iter().map(|(_, h, _)| h.pid).collect()
    }
}

struct Peer {
    fd: OwnedFd,
    pid: u32,
}

struct Ring {
    consumer: Consumer,
    wake: Option<OwnedFd>,
    ino: (u64, u64),
    pid: u32,
}

struct Shared {
    collected: Mutex<Collected>,
    paused: AtomicBool,
    stop: AtomicBool,
}

/// A running receiver. Dropping it stops it.
pub struct TapReceiver {
    path: PathBuf,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

fn cvt(r: i32, what: &str) -> std::io::Result<i32> {
    if r < 0 {
        let e = std::io::Error::last_os_error();
        Err(std::io::Error::new(e.kind(), format!("{what}: {e}")))
    } else {
        Ok(r)
    }
}

fn sockaddr(path: &Path) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: plain old data.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_encoded_bytes();
    assert!(
        bytes.len() < addr.sun_path.len(),
        "socket path too long: {}",
        path.display()
    );
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    (
        addr,
        std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
    )
}

fn listen_seqpacket(path: &Path) -> std::io::Result<OwnedFd> {
    let _ = std::fs::remove_file(path);
    let flags = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: plain syscall; the fd is owned at once below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, flags, 0) };
    let fd = cvt(fd, "socket")?;
    // SAFETY: fresh fd.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let (addr, len) = sockaddr(path);
    // SAFETY: a valid sockaddr_un of `len` bytes.
    let r = unsafe { libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len) };
    cvt(r, "bind")?;
    // SAFETY: plain syscall. The backlog also caps each accepted connection's datagram queue.
    let r = unsafe { libc::listen(fd.as_raw_fd(), 4096) };
    cvt(r, "listen")?;
    Ok(fd)
}

fn peer_pid(fd: RawFd) -> u32 {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: valid out pointers of the right size.
    unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    cred.pid as u32
}

fn dev_ino(fd: &OwnedFd) -> (u64, u64) {
    // SAFETY: plain old data and a valid out pointer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::fstat(fd.as_raw_fd(), &raw mut st) };
    (st.st_dev, st.st_ino)
}

impl TapReceiver {
    /// Starts a receiver listening on `path`.
    pub fn start(path: &Path) -> TapReceiver {
        let listener = listen_seqpacket(path).expect("tap receiver: listen");
        let shared = Arc::new(Shared {
            collected: Mutex::new(Collected::default()),
            paused: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("tap-receiver".into())
            .spawn(move || serve(listener, &s))
            .expect("spawn tap receiver");
        TapReceiver {
            path: path.to_path_buf(),
            shared,
            thread: Some(thread),
        }
    }

    /// The socket path (`LLT_TARGET=socket:<path>`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `LLT_TARGET` value for this receiver.
    pub fn target(&self) -> String {
        format!("socket:{}", self.path.display())
    }

    /// Stops reading (connections stay open): like an agent stopped with SIGSTOP.
    pub fn pause(&self) {
        self.shared.paused.store(true, Ordering::SeqCst);
    }

    /// Resumes reading after [`pause`](TapReceiver::pause).
    pub fn resume(&self) {
        self.shared.paused.store(false, Ordering::SeqCst);
    }

    /// A copy of everything collected so far.
    pub fn snapshot(&self) -> Collected {
        self.shared.collected.lock().expect("receiver lock").clone()
    }

    /// Waits until `pred` holds (true) or `timeout` passes (false).
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Collected) -> bool) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if pred(&self.shared.collected.lock().expect("receiver lock")) {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the receiver: every connection and ring is dropped and the socket file removed,
    /// like an agent that died. Returns what it had collected.
    pub fn stop(mut self) -> Collected {
        self.shutdown();
        self.snapshot()
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for TapReceiver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn serve(listener: OwnedFd, shared: &Shared) {
    let mut peers: Vec<Peer> = Vec::new();
    let mut rings: Vec<Ring> = Vec::new();
    let mut buf = vec![0u8; tap::MAX_FRAME_LEN + 64];
    let mut payload = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        if shared.paused.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let mut busy = false;
        // Accept.
        loop {
            // SAFETY: accept4 on our listener; the fd is owned at once.
            let fd = unsafe {
                libc::accept4(
                    listener.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                )
            };
            if fd < 0 {
                break;
            }
            // SAFETY: fresh fd.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let pid = peer_pid(fd.as_raw_fd());
            peers.push(Peer { fd, pid });
            shared.collected.lock().expect("lock").connections += 1;
        }
        // Frames.
        let mut closed = Vec::new();
        for (i, peer) in peers.iter().enumerate() {
            for _ in 0..256 {
                match crate::scm::recv_datagram(peer.fd.as_raw_fd(), &mut buf) {
                    Ok(Some((n, fds))) => {
                        busy = true;
                        handle_frame(&buf[..n], fds, peer.pid, &mut rings, shared);
                    }
                    Ok(None) => break,
                    Err(()) => {
                        closed.push(i);
                        break;
                    }
                }
            }
        }
        for i in closed.into_iter().rev() {
            peers.remove(i);
        }
        // Rings.
        let mut bad = Vec::new();
        for (i, ring) in rings.iter_mut().enumerate() {
            let mut got = Vec::new();
            for _ in 0..4096 {
                match ring.consumer.next(&mut payload) {
                    Ok(Some(meta)) => got.push(Record {
                        pid: meta.pid,
                        stream: meta.stream,
                        file_index: u32::from(meta.file_index),
                        seq: meta.seq,
                        time_ns: meta.time_ns,
                        continued: meta.flags & RECORD_CONTINUED != 0,
                        data: payload.clone(),
                        via: Via::Ring,
                    }),
                    Ok(None) => break,
                    Err(e) => {
                        shared
                            .collected
                            .lock()
                            .expect("lock")
                            .errors
                            .push(format!("ring of pid {}: {e}", ring.pid));
                        bad.push(i);
                        break;
                    }
                }
            }
            busy |= !got.is_empty();
            let mut c = shared.collected.lock().expect("lock");
            c.records.extend(got);
            c.ring_counters
                .insert(ring.consumer.creator_pid(), ring.consumer.counters());
        }
        for i in bad.into_iter().rev() {
            rings.remove(i);
        }
        if busy {
            continue;
        }
        // Idle: sleep on the listener, the peers and the rings' eventfds, like the agent.
        let mut pfds: Vec<libc::pollfd> = Vec::new();
        pfds.push(libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        for p in &peers {
            pfds.push(libc::pollfd {
                fd: p.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let mut may_sleep = true;
        for r in &rings {
            if !r.consumer.prepare_sleep() {
                may_sleep = false;
            }
            if let Some(w) = &r.wake {
                pfds.push(libc::pollfd {
                    fd: w.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        if !may_sleep {
            continue;
        }
        // SAFETY: a valid pollfd array.
        unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 20) };
        for r in &rings {
            if let Some(w) = &r.wake {
                let mut v = 0u64;
                // SAFETY: reading 8 bytes into a u64 from a non-blocking eventfd.
                unsafe { libc::read(w.as_raw_fd(), (&raw mut v).cast(), 8) };
            }
        }
    }
}

fn handle_frame(
    dgram: &[u8],
    fds: Vec<OwnedFd>,
    peer_pid: u32,
    rings: &mut Vec<Ring>,
    shared: &Shared,
) {
    let frame = match tap::decode_frame(dgram) {
        Ok(f) => f,
        Err(e) => {
            shared
                .collected
                .lock()
                .expect("lock")
                .errors
                .push(format!("bad frame from pid {peer_pid}: {e}"));
            return;
        }
    };
    let h = frame.header;
    let mut c = shared.collected.lock().expect("lock");
    match h.kind {
        Kind::Hello => match Hello::decode(frame.payload) {
            Ok(hello) => {
                let with_fds = fds.len() == 2;
                if with_fds && hello.ring {
                    let mut it = fds.into_iter();
                    let (memfd, wake) = (it.next().expect("memfd"), it.next());
                    let ino = dev_ino(&memfd);
                    if !rings.iter().any(|r| r.ino == ino) {
                        match Consumer::open(
                            memfd,
                            ConsumerOptions {
                                stuck_timeout: Duration::from_millis(500),
                            },
                        ) {
                            Ok(consumer) => rings.push(Ring {
                                consumer,
                                wake,
                                ino,
                                pid: hello.pid,
                            }),
                            Err(e) => c.errors.push(format!("ring of pid {}: {e}", hello.pid)),
                        }
                    }
                }
                c.hellos.push((peer_pid, hello, with_fds));
            }
            Err(e) => c.errors.push(format!("HELLO from pid {peer_pid}: {e}")),
        },
        Kind::Data => c.records.push(Record {
            pid: h.pid,
            stream: h.stream.map_or(0, |s| s as u8),
            file_index: h.file_index,
            seq: h.seq,
            time_ns: h.time_ns,
            continued: h.flags & FLAG_CONTINUED != 0,
            data: frame.payload.to_vec(),
            via: Via::Frame,
        }),
        Kind::Loss => match Loss::decode(frame.payload) {
            Ok(l) => c.losses.push((h.pid, l)),
            Err(e) => c.errors.push(format!("LOSS from pid {}: {e}", h.pid)),
        },
        Kind::File => match FileAnnounce::decode(frame.payload) {
            Ok(f) => c.files.push((h.pid, f)),
            Err(e) => c.errors.push(format!("FILE from pid {}: {e}", h.pid)),
        },
    }
}
