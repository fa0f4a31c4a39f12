//! Agent end-to-end benchmark: 1,000,000 lines of 100 bytes written into a tap ring → the real
//! `logtap agent` → (null output | forward with ack → an acking receiver that discards).
//!
//! Side by side in one run, interleaved round by round:
//! - baseline `ring only`: the same lines through `protocol::ring` to an in-process consumer
//!   (the floor: what moving the bytes costs without any agent work);
//! - `agent → null`: the agent reads, assembles lines, enriches, batches, and acks at once;
//! - `agent → forward+ack → receiver`: the forward output against an in-process acking receiver;
//! - `agent → forward+ack → logtap → null`: the full path of issue 4, the receiver being a second
//!   `logtap agent` with `--forward-listen` and the null output;
//! - issue 11: the agent holds ring space until records are safe — acknowledged (no spool) or
//!   written to `--storage-path` — so the forward case also runs with `--storage-path`, and both
//!   again against a receiver whose acks come 20 ms late (a WAN round trip): without a spool the
//!   ring then bounds the throughput (protocol crate, `ring`: "What bounds the throughput").
//!
//! For the agent cases it also reports agent CPU-seconds per million lines, peak RSS (VmHWM),
//! idle RSS, and its anonymous memory (`RssAnon`: not the mapped rings) idle and at its peak
//! (sampled every 5 ms); then p50/p99 write-to-ack latency at 10,000 lines/s (the receiver acks on receipt
//! and measures `ack time − write time` of every measured line; 1.5 s of unmeasured filler
//! follows them, so that none waits in the run's final partial chunk).
//!
//! Run: `cargo build --release -p logtap-agent && cargo run --release -p logtap-bench --bin
//! agent_bench` (`LOGTAP_BENCH_ROUNDS=N`, `LOGTAP_BENCH_LINES=N`; `LOGTAP_BENCH_CASES=release`
//! runs only issue 11's rows, `LOGTAP_BENCH_CASES=multiline` only issue 13's (`--multiline` off,
//! write, java), `LOGTAP_BENCH_COMPARE=<logtap binary>` adds them for another
//! build, `LOGTAP_BENCH_RING_KIB=N` sets the tap ring's size). The `logtap` binary is taken
//! from the same directory as this one (`target/release/`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use logtap_bench::{Case, Sample, human, rounds, side_by_side};
use logtap_protocol::forward::{ClientMessage, ServerDecoder};
use logtap_protocol::ring::{
    Consumer, ConsumerOptions, DEFAULT_RING_SIZE, Producer, RecordMeta, create_ring_memfd,
};
use logtap_protocol::tap::{self, Header, HelloFields, Kind};
use logtap_tests::forward_support::{FORWARD_LISTENING, HTTP_LISTENING, wait_bound_port};

pub(crate) type BoxError = Box<dyn std::error::Error>;

pub(crate) const LINE: usize = 100;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `line 0000042 xxxx…\n`, 100 bytes.
pub(crate) fn line(i: u64, buf: &mut Vec<u8>) {
    numbered(b"line", i, buf);
}

/// `<word> <i> xxxx…\n`, 100 bytes.
pub(crate) fn numbered(word: &[u8], i: u64, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(word);
    let _ = write!(buf, " {i:010} ");
    buf.resize(LINE - 1, b'x');
    buf.push(b'\n');
}

fn check(ret: libc::c_int, what: &str) -> Result<libc::c_int, BoxError> {
    if ret < 0 {
        Err(format!("{what}: {}", std::io::Error::last_os_error()).into())
    } else {
        Ok(ret)
    }
}

/// A tapped process in miniature: HELLO with a ring over the agent's SOCK_SEQPACKET socket.
pub(crate) struct Tapper {
    _sock: OwnedFd,
    _eventfd: OwnedFd,
    producer: Producer,
}

impl Tapper {
    pub(crate) fn connect(socket: &Path) -> Result<Tapper, BoxError> {
        // SAFETY: plain syscall; checked.
        let ret =
            unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
        let fd = check(ret, "socket")?;
        // SAFETY: a new descriptor nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: all-zero sockaddr_un is valid.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(socket.as_os_str().as_bytes()) {
            *d = *s as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        // SAFETY: addr is a valid sockaddr_un of `len` bytes.
        let ret = unsafe { libc::connect(sock.as_raw_fd(), (&raw const addr).cast(), len) };
        check(ret, "connect")?;
        // `LOGTAP_BENCH_RING_KIB`: another ring size (the interceptor's `LLT_RING_SIZE`).
        let ring = std::env::var("LOGTAP_BENCH_RING_KIB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(DEFAULT_RING_SIZE, |kib| kib * 1024);
        let memfd = create_ring_memfd(ring, std::process::id())?;
        let producer = Producer::map(memfd.as_fd())?;
        // SAFETY: plain syscall; checked.
        let ret = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        let ev = check(ret, "eventfd")?;
        // SAFETY: a new descriptor nobody else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(ev) };
        producer.set_wake_fd(eventfd.as_raw_fd());
        let mut payload = [0u8; 1024];
        let fields = HelloFields {
            pid: std::process::id(),
            ppid: 1,
            comm: b"bench",
            exe: b"/bench",
            hostname: b"bench-host",
            container_id: b"",
            version: b"bench",
            ring: true,
        };
        let n = tap::encode_hello(
            &mut payload,
            &fields,
            std::iter::empty::<&[u8]>(),
            std::iter::empty::<(&[u8], &[u8])>(),
        )?;
        let header = Header {
            kind: Kind::Hello,
            stream: None,
            flags: 0,
            pid: std::process::id(),
            seq: 0,
            time_ns: 0,
            file_index: 0,
            payload_len: n as u32,
        }
        .encode();
        logtap_tests::scm::send_frame(
            sock.as_raw_fd(),
            &header,
            &payload[..n],
            &[memfd.as_raw_fd(), eventfd.as_raw_fd()],
        )
        .map_err(|e| format!("sendmsg: {e}"))?;
        Ok(Tapper {
            _sock: sock,
            _eventfd: eventfd,
            producer,
        })
    }

    /// Pushes one line, waiting while the ring is full (the agent drains it).
    pub(crate) fn write(&self, seq: u32, bytes: &[u8]) {
        let meta = RecordMeta {
            stream: 1,
            flags: 0,
            file_index: 0,
            pid: std::process::id(),
            seq,
            time_ns: now_ns(),
        };
        while self.producer.try_push(&meta, bytes).is_err() {
            thread::yield_now();
        }
    }
}

/// An acking Forward receiver that discards events (and samples write-to-ack latency).
pub(crate) struct Receiver {
    pub(crate) port: u16,
    pub(crate) events: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    pub(crate) fn start(sample_latency: bool) -> Result<Receiver, BoxError> {
        Receiver::start_delayed(sample_latency, Duration::ZERO)
    }

    /// A receiver whose acks leave `ack_delay` after the chunk arrived (a round trip).
    fn start_delayed(sample_latency: bool, ack_delay: Duration) -> Result<Receiver, BoxError> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let events = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ev, lat, st) = (
            Arc::clone(&events),
            Arc::clone(&latencies),
            Arc::clone(&stop),
        );
        thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let Ok((sock, _)) = listener.accept() else {
                    thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let (ev, lat, st) = (Arc::clone(&ev), Arc::clone(&lat), Arc::clone(&st));
                thread::spawn(move || {
                    receive(sock, &ev, sample_latency.then_some(&*lat), &st, ack_delay)
                });
            }
        });
        Ok(Receiver {
            port,
            events,
            latencies,
            stop,
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn receive(
    mut sock: TcpStream,
    events: &AtomicU64,
    latencies: Option<&Mutex<Vec<u64>>>,
    stop: &AtomicBool,
    ack_delay: Duration,
) {
    let _ = sock.set_nonblocking(false);
    // Delayed acks: written by a thread when due.
    let delayed = (!ack_delay.is_zero()).then(|| {
        let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
        let mut out = sock.try_clone().ok();
        thread::spawn(move || {
            while let Ok((due, ack)) = rx.recv() {
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                if let Some(o) = out.as_mut()
                    && o.write_all(&ack).is_err()
                {
                    return;
                }
            }
        });
        tx
    });
    let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
    let mut decoder = ServerDecoder::default();
    let mut buf = BytesMut::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 20];
    while !stop.load(Ordering::Relaxed) {
        match sock.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => return,
        }
        while let Ok(Some(msg)) = decoder.decode(&mut buf) {
            let ClientMessage::Events(batch) = msg else {
                continue;
            };
            if let Some(ack) = batch.ack() {
                match &delayed {
                    Some(tx) => {
                        let _ = tx.send((Instant::now() + ack_delay, ack.to_vec()));
                    }
                    None => {
                        let _ = sock.write_all(&ack.to_vec());
                    }
                }
            }
            if let Some(lat) = latencies {
                let now = now_ns();
                let mut l = lat.lock().unwrap_or_else(|e| e.into_inner());
                // Only the measured lines (`line …`), not the filler that follows them.
                l.extend(
                    batch
                        .events
                        .iter()
                        .filter(|e| {
                            e.record
                                .get("message")
                                .and_then(|m| m.as_str())
                                .is_some_and(|m| m.starts_with("line "))
                        })
                        .map(|e| now.saturating_sub(e.time.as_nanos())),
                );
            }
            events.fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        }
    }
}

/// The `logtap` binary beside this one (`target/release/`).
pub(crate) fn own_logtap() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().ok_or("no binary directory")?.join("logtap"))
}

/// A `logtap agent` process.
pub(crate) struct AgentProc {
    child: Child,
    pub(crate) socket: PathBuf,
    http: u16,
    dir: PathBuf,
}

impl AgentProc {
    pub(crate) fn start(args: &[String]) -> Result<AgentProc, BoxError> {
        AgentProc::start_with(&own_logtap()?, args, false)
    }

    /// `bin agent` with `args`, and with `--storage-path` in its own temporary directory when
    /// `spooled`.
    fn start_with(bin: &Path, args: &[String], spooled: bool) -> Result<AgentProc, BoxError> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "logtap-bench-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        let socket = dir.join("tap.sock");
        let log = dir.join("agent.log");
        let mut all = args.to_vec();
        if spooled {
            all.extend([
                "--storage-path".into(),
                dir.join("spool").display().to_string(),
            ]);
        }
        let child = AgentProc::spawn(bin, &socket, &log, &all)?;
        // The HTTP server listens on port 0; the agent's log says which port it got.
        let http = wait_bound_port(&log, HTTP_LISTENING);
        let agent = AgentProc {
            child,
            socket,
            http,
            dir,
        };
        agent.wait_socket()?;
        Ok(agent)
    }

    fn spawn(bin: &Path, socket: &Path, log: &Path, args: &[String]) -> Result<Child, BoxError> {
        Command::new(bin)
            .arg("agent")
            .arg("--socket")
            .arg(socket)
            .args([
                "--http-listen",
                "127.0.0.1:0",
                "--log-level",
                // Warnings, and the lines that report the bound addresses.
                "warn,logtap_agent::http=info,logtap_agent::input::forward=info",
            ])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start {}: {e} (cargo build --release -p logtap-agent)",
                    bin.display()
                )
                .into()
            })
    }

    fn wait_socket(&self) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.socket.exists() {
            if Instant::now() > deadline {
                return Err("the agent did not create its socket".into());
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// The agent's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (CPU seconds, RSS KiB, peak RSS KiB) from /proc.
    pub(crate) fn usage(&self) -> (f64, u64, u64) {
        let pid = self.child.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        // SAFETY: sysconf has no memory effects.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let cpu = (ticks(11) + ticks(12)) / hz; // utime, stime (fields 14, 15 of stat)
        (cpu, status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"))
    }

    /// A counter from /metrics.
    pub(crate) fn metric(&self, line_prefix: &str) -> u64 {
        let Some((_, text)) = logtap_tests::http::get_local(self.http, "/metrics") else {
            return 0;
        };
        text.lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        // SAFETY: kill has no memory effects; our live child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS:`, `VmHWM:`, `RssAnon:`…), 0 if unreadable.
pub(crate) fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resource use of one agent run.
#[derive(Default, Clone, Copy)]
pub(crate) struct Usage {
    pub(crate) cpu_per_m: f64,
    pub(crate) idle_rss_kib: u64,
    pub(crate) peak_rss_kib: u64,
    /// The agent's anonymous memory when idle before the run (`RssAnon`: not the mapped rings).
    pub(crate) idle_anon_kib: u64,
    /// The highest `RssAnon` sampled every 5 ms during the run (the kernel keeps no peak of it).
    pub(crate) peak_anon_kib: u64,
}

/// Writes `n` lines into a ring read by an agent; waits until `delivered()` reaches `n`.
pub(crate) fn agent_run(
    n: u64,
    agent: &AgentProc,
    delivered: impl Fn() -> u64,
    usage: &mut Vec<Usage>,
) -> Result<Sample, BoxError> {
    thread::sleep(Duration::from_millis(100));
    let (cpu0, idle, _) = agent.usage();
    let pid = agent.pid();
    let idle_anon = status_kib(pid, "RssAnon:");
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = Arc::clone(&sampling);
        thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(Ordering::Relaxed) {
                peak = peak.max(status_kib(pid, "RssAnon:"));
                thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let tapper = Tapper::connect(&agent.socket)?;
    let mut buf = Vec::with_capacity(LINE);
    let start = Instant::now();
    for i in 0..n {
        line(i, &mut buf);
        tapper.write(i as u32, &buf);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered() < n {
        if Instant::now() > deadline {
            return Err(format!("only {} of {n} lines delivered", delivered()).into());
        }
        thread::sleep(Duration::from_millis(2));
    }
    let elapsed = start.elapsed();
    let (cpu1, _, peak) = agent.usage();
    sampling.store(false, Ordering::Relaxed);
    let peak_anon = sampler.join().map_err(|_| "RssAnon sampler panicked")?;
    usage.push(Usage {
        cpu_per_m: (cpu1 - cpu0) * 1e6 / n as f64,
        idle_rss_kib: idle,
        peak_rss_kib: peak,
        idle_anon_kib: idle_anon,
        peak_anon_kib: peak_anon.max(status_kib(pid, "RssAnon:")),
    });
    Ok(Sample {
        items: n,
        bytes: n * LINE as u64,
        elapsed,
    })
}

pub(crate) fn ring_only(n: u64) -> Result<Sample, BoxError> {
    let fd = create_ring_memfd(DEFAULT_RING_SIZE, std::process::id())?;
    let producer = Producer::map(fd.as_fd())?;
    let mut consumer = Consumer::open(fd, ConsumerOptions::default())?;
    let start = Instant::now();
    let reader = thread::spawn(move || {
        let mut payload = Vec::new();
        let mut got = 0;
        while got < n {
            match consumer.next(&mut payload) {
                Ok(Some(_)) => got += 1,
                _ => thread::yield_now(),
            }
        }
    });
    let mut buf = Vec::with_capacity(LINE);
    for i in 0..n {
        line(i, &mut buf);
        let meta = RecordMeta {
            stream: 1,
            flags: 0,
            file_index: 0,
            pid: 1,
            seq: i as u32,
            time_ns: now_ns(),
        };
        while producer.try_push(&meta, &buf).is_err() {
            thread::yield_now();
        }
    }
    reader.join().map_err(|_| "reader panicked")?;
    Ok(Sample {
        items: n,
        bytes: n * LINE as u64,
        elapsed: start.elapsed(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> Result<(), BoxError> {
    let n: u64 = std::env::var("LOGTAP_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rounds = rounds(3);
    let only = std::env::var("LOGTAP_BENCH_CASES").unwrap_or_default();
    if only == "multiline" {
        return multiline_cases(n, rounds);
    }
    if only != "release" {
        main_cases(n, rounds)?;
    }
    release_cases(n, rounds)
}

/// Issue 11: ring space held until the records are safe — acknowledged (no spool) or written
/// to `--storage-path` — on loopback and with 20 ms acknowledgements. With
/// `LOGTAP_BENCH_COMPARE=<another logtap binary>` (e.g. one built before issue 11) each case
/// also runs with that binary, interleaved in the same rounds.
fn release_cases(n: u64, rounds: usize) -> Result<(), BoxError> {
    let fast = Receiver::start(false)?;
    let slow = Receiver::start_delayed(false, Duration::from_millis(20))?;
    // A short flush_interval: at these rates chunks close by size every few milliseconds, and
    // only the run's last, partial chunk would wait for it — up to a second added at random to
    // a 1–5 s run.
    let to = |r: &Receiver| {
        vec![
            "--forward".to_string(),
            format!("127.0.0.1:{}", r.port),
            "--flush-interval".into(),
            "50ms".into(),
        ]
    };
    let mut bins = vec![(String::new(), own_logtap()?)];
    if let Ok(other) = std::env::var("LOGTAP_BENCH_COMPARE") {
        bins.push(("compared binary: ".to_string(), PathBuf::from(other)));
    }
    let mut agents = Vec::new();
    let mut receivers = Vec::new();
    let mut names = Vec::new();
    for (prefix, bin) in &bins {
        for (receiver, spooled, name) in [
            (&fast, false, "agent → forward (ack) → receiver"),
            (
                &fast,
                true,
                "agent --storage-path → forward (ack) → receiver",
            ),
            (&slow, false, "agent → forward (ack 20 ms late) → receiver"),
            (
                &slow,
                true,
                "agent --storage-path → forward (ack 20 ms late) → receiver",
            ),
        ] {
            agents.push(AgentProc::start_with(bin, &to(receiver), spooled)?);
            receivers.push(receiver);
            names.push(format!("{prefix}{name}"));
        }
    }
    let mut usage: Vec<Vec<Usage>> = vec![Vec::new(); agents.len()];
    let fail = |e: BoxError| -> Sample { panic!("benchmark run failed: {e}") };
    {
        let usage_cells: Vec<std::cell::RefCell<&mut Vec<Usage>>> =
            usage.iter_mut().map(std::cell::RefCell::new).collect();
        let mut cases: Vec<Case<'_>> = (0..agents.len())
            .map(|i| {
                let (agent, receiver, cell) = (&agents[i], receivers[i], &usage_cells[i]);
                Case::new(names[i].clone(), move || {
                    let before = receiver.events.load(Ordering::Relaxed);
                    agent_run(
                        n,
                        agent,
                        || receiver.events.load(Ordering::Relaxed) - before,
                        &mut cell.borrow_mut(),
                    )
                    .unwrap_or_else(fail)
                })
            })
            .collect();
        side_by_side(
            &format!(
                "ring space released when safe: {} lines of {LINE} bytes, default 1 MiB ring",
                human(n as f64)
            ),
            rounds,
            &mut cases,
        );
    }
    println!(
        "\n| case | CPU-s per 1M lines (median) | peak RSS (VmHWM) | lines per chunk | chunks spilled |"
    );
    println!("|---|---:|---:|---:|---:|");
    for ((name, u), agent) in names.iter().zip(&usage).zip(&agents) {
        let cpu = median(u.iter().map(|u| u.cpu_per_m).collect());
        let peak = u.iter().map(|u| u.peak_rss_kib).max().unwrap_or(0);
        let chunks = agent.metric("logtap_output_chunks_acked_total{output=\"forward\"}");
        let lines = agent.metric("logtap_output_records_total{output=\"forward\"}");
        let spilled = agent.metric("logtap_storage_spilled_chunks_total");
        println!(
            "| {name} | {cpu:.3} | {:.1} MiB | {:.0} | {spilled} |",
            peak as f64 / 1024.0,
            lines as f64 / chunks.max(1) as f64
        );
    }
    Ok(())
}

/// Issue 13: the cost of `--multiline` per record — the same one-line writes into agents with
/// `off` (lines), `write` (whole writes) and `java` (Fluent Bit's java rules run on every line),
/// each to the null output.
fn multiline_cases(n: u64, rounds: usize) -> Result<(), BoxError> {
    let modes = ["off", "write", "java"];
    let agents = modes
        .iter()
        .map(|m| {
            AgentProc::start(&[
                "--output".into(),
                "null".into(),
                "--multiline".into(),
                (*m).into(),
            ])
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut usage: Vec<Vec<Usage>> = vec![Vec::new(); agents.len()];
    let fail = |e: BoxError| -> Sample { panic!("benchmark run failed: {e}") };
    {
        let key = "logtap_output_records_total{output=\"null\"}";
        let cells: Vec<std::cell::RefCell<&mut Vec<Usage>>> =
            usage.iter_mut().map(std::cell::RefCell::new).collect();
        let mut cases: Vec<Case<'_>> = agents
            .iter()
            .zip(&cells)
            .zip(modes)
            .map(|((agent, cell), mode)| {
                Case::new(format!("agent --multiline {mode} → null"), move || {
                    let before = agent.metric(key);
                    agent_run(
                        n,
                        agent,
                        || agent.metric(key) - before,
                        &mut cell.borrow_mut(),
                    )
                    .unwrap_or_else(fail)
                })
            })
            .collect();
        side_by_side(
            &format!(
                "multiline: {} one-line writes of {LINE} bytes, tap ring → agent → null",
                human(n as f64)
            ),
            rounds,
            &mut cases,
        );
    }
    println!("\n| case | CPU-s per 1M lines (median) |");
    println!("|---|---:|");
    for (mode, u) in modes.iter().zip(&usage) {
        let cpu = median(u.iter().map(|u| u.cpu_per_m).collect());
        println!("| --multiline {mode} | {cpu:.3} |");
    }
    Ok(())
}

fn main_cases(n: u64, rounds: usize) -> Result<(), BoxError> {
    let receiver = Receiver::start(false)?;
    let forward = AgentProc::start(&["--forward".into(), format!("127.0.0.1:{}", receiver.port)])?;
    let null = AgentProc::start(&["--output".into(), "null".into()])?;
    let relay_rx = AgentProc::start(&[
        "--forward-listen".into(),
        "127.0.0.1:0".into(),
        "--output".into(),
        "null".into(),
    ])?;
    let relay_port = wait_bound_port(&relay_rx.dir.join("agent.log"), FORWARD_LISTENING);
    let relay = AgentProc::start(&["--forward".into(), format!("127.0.0.1:{relay_port}")])?;
    let mut null_usage = Vec::new();
    let mut fwd_usage = Vec::new();
    let mut relay_usage = Vec::new();
    let fail = |e: BoxError| -> Sample { panic!("benchmark run failed: {e}") };
    {
        let mut cases = [
            Case::new("ring only (in-process consumer, no agent)", || {
                ring_only(n).unwrap_or_else(fail)
            }),
            Case::new("agent → null output", || {
                let before = null.metric("logtap_output_records_total{output=\"null\"}");
                agent_run(
                    n,
                    &null,
                    || null.metric("logtap_output_records_total{output=\"null\"}") - before,
                    &mut null_usage,
                )
                .unwrap_or_else(fail)
            }),
            Case::new("agent → forward (ack) → receiver", || {
                let before = receiver.events.load(Ordering::Relaxed);
                agent_run(
                    n,
                    &forward,
                    || receiver.events.load(Ordering::Relaxed) - before,
                    &mut fwd_usage,
                )
                .unwrap_or_else(fail)
            }),
            Case::new(
                "agent → forward (ack) → logtap --forward-listen → null",
                || {
                    let key = "logtap_output_records_total{output=\"null\"}";
                    let before = relay_rx.metric(key);
                    agent_run(
                        n,
                        &relay,
                        || relay_rx.metric(key) - before,
                        &mut relay_usage,
                    )
                    .unwrap_or_else(fail)
                },
            ),
        ];
        side_by_side(
            &format!(
                "agent: {} lines of {LINE} bytes, tap ring → agent",
                human(n as f64)
            ),
            rounds,
            &mut cases,
        );
    }
    println!(
        "\n| agent case | CPU-s per 1M lines (median) | idle RSS | peak RSS (VmHWM) | idle RssAnon | peak RssAnon |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, u) in [
        ("→ null", &null_usage),
        ("→ forward (ack) → in-process receiver", &fwd_usage),
        (
            "→ forward (ack) → logtap → null (sender's figures)",
            &relay_usage,
        ),
    ] {
        let cpu = median(u.iter().map(|u| u.cpu_per_m).collect());
        let idle = u.first().map_or(0, |u| u.idle_rss_kib);
        let peak = u.iter().map(|u| u.peak_rss_kib).max().unwrap_or(0);
        let idle_anon = u.first().map_or(0, |u| u.idle_anon_kib);
        let peak_anon = u.iter().map(|u| u.peak_anon_kib).max().unwrap_or(0);
        println!(
            "| {name} | {cpu:.3} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
            idle as f64 / 1024.0,
            peak as f64 / 1024.0,
            idle_anon as f64 / 1024.0,
            peak_anon as f64 / 1024.0
        );
    }
    drop((forward, null, relay, relay_rx));

    // Latency at 10,000 lines/s with the default flush_interval (1 s).
    let (count, p50, p99, max) = latency(10_000, 30_000, 15_000)?;
    println!("\n| latency at 10k lines/s, flush_interval 1s | lines | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| write → ack at receiver | {count} | {:.1} ms | {:.1} ms | {:.1} ms |",
        p50, p99, max
    );
    Ok(())
}

/// Write → ack latency through an agent with the default flush_interval (1 s): `total` measured
/// lines at `rate` lines/s, then `filler` unmeasured lines at the same rate, so that the last
/// measured lines close their chunk by size like the others instead of waiting in the run's
/// final partial chunk for `flush_interval` (which would put 1 s into p99 whenever that chunk
/// holds more than 1 % of the lines). Returns (lines measured, p50, p99, max), in ms.
pub(crate) fn latency(
    rate: u64,
    total: u64,
    filler: u64,
) -> Result<(usize, f64, f64, f64), BoxError> {
    let receiver = Receiver::start(true)?;
    let agent = AgentProc::start(&["--forward".into(), format!("127.0.0.1:{}", receiver.port)])?;
    let tapper = Tapper::connect(&agent.socket)?;
    let start = Instant::now();
    let mut buf = Vec::with_capacity(LINE);
    let period_ns = 1_000_000_000 / rate.max(1);
    for i in 0..total + filler {
        let due = start + Duration::from_nanos(i * period_ns);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        numbered(if i < total { b"line" } else { b"fill" }, i, &mut buf);
        tapper.write(i as u32, &buf);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.events.load(Ordering::Relaxed) < total + filler && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let got = receiver.events.load(Ordering::Relaxed);
    if got < total {
        return Err(
            format!("latency run at {rate} lines/s: only {got} of {total} lines acked").into(),
        );
    }
    let mut lat = receiver
        .latencies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1e6
    };
    Ok((lat.len(), pct(0.5), pct(0.99), pct(1.0)))
}
