//! The fault suite's machinery (`tests/tests/fault_suite.rs`): a real program under the real
//! `liblogtap.so` → the real `logtap agent` (the *sender*) → a receiving `logtap agent` with the
//! forward input (the *receiver*), each a process the scenario can kill, restart, starve or slow
//! down; every line numbered, every number counted at the end.
//!
//! - [`Program`] — `tests/programs/numbered.c` (compiled on first use) writing `fault <n>` lines.
//! - [`Sender`] — `logtap agent --forward …` on a tap socket: kill -9, restart, peak RSS, log.
//! - [`Receiver`] — `logtap agent --forward-listen … --output stdout` whose records are counted
//!   by number as they are printed (across restarts).
//! - [`FaultProxy`] — a TCP proxy between them that can black-hole the stream or delay the
//!   receiver's acknowledgements.
//! - [`Figures`] — written, delivered, duplicated, lost, peak RSS: printed, and saved as JSON
//!   under `<target>/fault-suite/` for `RELIABILITY.md`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::agent_harness::wait_bounded;
use crate::artifacts::{self, TempDir};

/// How many times each number arrived.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    seen: Vec<u32>,
    /// Every record counted, duplicates included.
    pub total: u64,
}

impl Counts {
    /// Counts the number in a line `fault <n>` (or the JSON record that carries it).
    pub fn see_line(&mut self, line: &str) {
        let Some(at) = line.find("fault ") else {
            return;
        };
        let digits: String = line[at + 6..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(n) = digits.parse::<usize>() {
            if self.seen.len() <= n {
                self.seen.resize(n + 1, 0);
            }
            self.seen[n] += 1;
            self.total += 1;
        }
    }

    /// Adds another count (e.g. the lines found in a file).
    pub fn merge(&mut self, other: &Counts) {
        if self.seen.len() < other.seen.len() {
            self.seen.resize(other.seen.len(), 0);
        }
        for (a, b) in self.seen.iter_mut().zip(&other.seen) {
            *a += b;
        }
        self.total += other.total;
    }

    /// Distinct numbers below `n` that arrived.
    pub fn distinct(&self, n: u64) -> u64 {
        self.seen
            .iter()
            .take(n as usize)
            .filter(|&&c| c > 0)
            .count() as u64
    }

    /// Up to ten numbers below `n` that never arrived.
    pub fn missing(&self, n: u64) -> Vec<u64> {
        (0..n)
            .filter(|&i| self.seen.get(i as usize).is_none_or(|&c| c == 0))
            .take(10)
            .collect()
    }

    /// Counts every `fault <n>` line of a file.
    pub fn of_file(path: &Path) -> Counts {
        let mut c = Counts::default();
        if let Ok(f) = File::open(path) {
            for line in BufReader::new(f).lines().map_while(Result::ok) {
                c.see_line(&line);
            }
        }
        c
    }
}

/// Peak resident set (VmHWM, KiB) of a live process, 0 if gone.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

/// A `… kB` field of `/proc/<pid>/status`, 0 if gone.
pub fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn kill(child: &Child, signal: i32) {
    // SAFETY: kill has no memory effects; the pid is our child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, signal) };
}

/// Whether a `SOCK_SEQPACKET` listener accepts connections at `path`.
pub fn tap_socket_accepts(path: &Path) -> bool {
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: a new descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_un of `len` bytes.
    unsafe { libc::connect(sock.as_raw_fd(), (&raw const addr).cast(), len) == 0 }
}

/// The sending agent: `logtap agent --socket <dir>/tap.sock` plus the scenario's arguments,
/// its stderr appended to `<dir>/sender.log` across incarnations.
pub struct Sender {
    pub socket: PathBuf,
    pub dir: TempDir,
    args: Vec<String>,
    child: Option<Child>,
    peak_kib: u64,
    peak_anon_kib: u64,
    pub incarnations: u32,
}

impl Sender {
    pub fn start(name: &str, args: &[String]) -> Sender {
        let dir = TempDir::new(name);
        let mut s = Sender {
            socket: dir.path().join("tap.sock"),
            dir,
            args: args.to_vec(),
            child: None,
            peak_kib: 0,
            peak_anon_kib: 0,
            incarnations: 0,
        };
        s.spawn();
        s
    }

    /// The log file of every incarnation.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("sender.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("sender log");
        let child = Command::new(artifacts::logtap_bin())
            .arg("agent")
            .arg("--socket")
            .arg(&self.socket)
            .args(["--http-listen", "off"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the sending agent");
        self.child = Some(child);
        self.incarnations += 1;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !tap_socket_accepts(&self.socket) {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the sending agent exited at start: {status}\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the sending agent did not listen"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Samples the peak RSS of the running incarnation, and its anonymous (private) memory now.
    pub fn sample_rss(&mut self) -> u64 {
        if let Some(c) = &self.child {
            self.peak_kib = self.peak_kib.max(peak_rss_kib(c.id()));
            self.peak_anon_kib = self.peak_anon_kib.max(status_kib(c.id(), "RssAnon:"));
        }
        self.peak_kib
    }

    /// The highest anonymous RSS sampled (KiB): the agent's own memory, without the rings it
    /// maps (shared memory of the tapped programs, which VmHWM counts once touched).
    pub fn peak_anon_kib(&mut self) -> u64 {
        self.sample_rss();
        self.peak_anon_kib
    }

    /// Peak RSS over every incarnation so far (KiB).
    pub fn peak_rss_kib(&mut self) -> u64 {
        self.sample_rss()
    }

    /// SIGKILL, reaped.
    pub fn kill9(&mut self) {
        self.sample_rss();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new incarnation on the same socket, storage and arguments.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// SIGTERM and the exit status.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        self.sample_rss();
        let mut c = self.child.take()?;
        kill(&c, libc::SIGTERM);
        Some(wait_bounded(&mut c, Duration::from_secs(30)))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The receiving agent: `logtap agent --forward-listen 127.0.0.1:<port> --output stdout`,
/// whose printed records are counted by number, across restarts (on the same port: the one
/// the first start bound).
pub struct Receiver {
    pub port: u16,
    dir: TempDir,
    args: Vec<String>,
    child: Option<Child>,
    reader: Option<JoinHandle<()>>,
    counts: Arc<Mutex<Counts>>,
}

impl Receiver {
    /// Starts it and waits until it listens. `port` 0: a port the kernel picks (then
    /// [`Receiver::port`]). `args`: more options (e.g. `--storage-path`).
    pub fn start(name: &str, port: u16, args: &[String]) -> Receiver {
        let mut r = Receiver {
            port,
            dir: TempDir::new(name),
            args: args.to_vec(),
            child: None,
            reader: None,
            counts: Arc::new(Mutex::new(Counts::default())),
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("receiver.log"))
            .expect("receiver log");
        let mut child = Command::new(artifacts::logtap_bin())
            .arg("agent")
            .arg("--socket")
            .arg(self.dir.path().join("tap.sock"))
            .args(["--http-listen", "off", "--output", "stdout"])
            // Warnings, and the line that reports the bound address.
            .args(["--self-hostname", "receiver", "--log-level"])
            .arg("warn,logtap_agent::input::forward=info")
            .arg("--forward-listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start the receiving agent");
        let stdout = child.stdout.take().expect("piped");
        let counts = Arc::clone(&self.counts);
        self.reader = Some(std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                counts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .see_line(&line);
            }
        }));
        self.child = Some(child);
        if self.port == 0 {
            self.port = crate::forward_support::wait_bound_port(
                &self.dir.path().join("receiver.log"),
                crate::forward_support::FORWARD_LISTENING,
            );
        }
        crate::forward_support::wait_port(self.port, Duration::from_secs(20));
    }

    /// SIGKILL; what it printed so far stays counted.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    /// Starts it again on the same port and arguments.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until every number below `n` arrived (in its counts merged with `extra`), at
    /// most `limit`; returns the counts either way.
    pub fn wait_all(&self, n: u64, extra: &Counts, limit: Duration) -> Counts {
        let deadline = Instant::now() + limit;
        loop {
            let mut c = self.counts();
            c.merge(extra);
            if c.distinct(n) == n || Instant::now() > deadline {
                return c;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the final counts.
    pub fn terminate(&mut self) -> Counts {
        if let Some(mut c) = self.child.take() {
            kill(&c, libc::SIGTERM);
            wait_bounded(&mut c, Duration::from_secs(30));
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.counts()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Compiles `tests/programs/numbered.c` into `dir` (once per directory).
pub fn numbered_program(dir: &Path) -> PathBuf {
    let exe = dir.join("numbered");
    if exe.exists() {
        return exe;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("programs/numbered.c");
    artifacts::gcc(&src, &exe, &["-O2", "-Wall"])
}

/// The numbered program under the real library, writing to its stdout (a pipe drained and
/// discarded) or to a file.
pub struct Program {
    child: Child,
    drain: Option<JoinHandle<()>>,
}

impl Program {
    /// `count` lines at `rate` per second (0: as fast as it can) to `target` (`-` = stdout),
    /// tapped into the agent at `socket`; `env`: the tap's settings (`LLT_TAP_INTO`, …).
    pub fn start(
        dir: &Path,
        socket: &Path,
        count: u64,
        rate: u64,
        target: &str,
        env: &[(&str, &str)],
    ) -> Program {
        let exe = numbered_program(dir);
        let mut cmd = Command::new(exe);
        cmd.args([&count.to_string(), &rate.to_string(), target])
            .env("LD_PRELOAD", artifacts::liblogtap())
            .env("LLT_TARGET", format!("socket:{}", socket.display()))
            .env("LLT_TARGET_1STCONNECT", "0")
            .env("LLT_TARGET_RECONNECT", "1")
            .env(
                "LLT_DEBUG_MODE",
                std::env::var("LLT_TEST_DEBUG").unwrap_or_default(),
            )
            .envs(env.iter().copied())
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start the numbered program");
        let mut out = child.stdout.take().expect("piped");
        let drain = std::thread::spawn(move || {
            let mut sink = [0u8; 65536];
            while matches!(out.read(&mut sink), Ok(n) if n > 0) {}
        });
        Program {
            child,
            drain: Some(drain),
        }
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for its exit (at most `limit`); asserts success.
    pub fn wait(mut self, limit: Duration) {
        let status = wait_bounded(&mut self.child, limit);
        if let Some(d) = self.drain.take() {
            let _ = d.join();
        }
        assert!(status.success(), "the numbered program failed: {status}");
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A deterministic pseudo-random sequence (the moments of the kills), seeded from the clock
/// and printed so that a failing run can be replayed (`LOGTAP_FAULT_SEED`).
pub struct Moments(u64);

impl Moments {
    pub fn new(scenario: &str) -> Moments {
        let seed = std::env::var("LOGTAP_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
        eprintln!("{scenario}: LOGTAP_FAULT_SEED={seed}");
        Moments(seed | 1)
    }

    /// A value in `[lo, hi)`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let span = hi.saturating_sub(lo).as_micros().max(1) as u64;
        lo + Duration::from_micros(x % span)
    }
}

/// What a scenario measured.
#[derive(Debug, Clone)]
pub struct Figures {
    pub scenario: &'static str,
    pub written: u64,
    pub delivered: u64,
    pub duplicated: u64,
    pub lost: u64,
    pub peak_rss_kib: u64,
    /// Peak anonymous RSS of the sender (its own memory, rings excluded), when sampled.
    pub peak_anon_kib: u64,
    pub seconds: f64,
    pub note: String,
}

impl Figures {
    /// The figures of `counts` against `written` lines.
    pub fn of(
        scenario: &'static str,
        written: u64,
        counts: &Counts,
        peak_rss_kib: u64,
        started: Instant,
    ) -> Figures {
        let delivered = counts.distinct(written);
        Figures {
            scenario,
            written,
            delivered,
            duplicated: counts.total.saturating_sub(delivered),
            lost: written - delivered,
            peak_rss_kib,
            peak_anon_kib: 0,
            seconds: started.elapsed().as_secs_f64(),
            note: String::new(),
        }
    }

    /// Prints the figures and saves them as `<target>/fault-suite/<scenario>.json`.
    pub fn report(&self) {
        let json = serde_json::json!({
            "scenario": self.scenario,
            "written": self.written,
            "delivered": self.delivered,
            "duplicated": self.duplicated,
            "lost": self.lost,
            "peak_rss_kib": self.peak_rss_kib,
            "peak_anon_kib": self.peak_anon_kib,
            "seconds": (self.seconds * 10.0).round() / 10.0,
            "note": self.note,
        });
        eprintln!("FIGURES {json}");
        let dir = artifacts::profile_dir().join("fault-suite");
        let _ = std::fs::create_dir_all(&dir);
        if let Ok(mut f) = File::create(dir.join(format!("{}.json", self.scenario))) {
            let _ = writeln!(f, "{json}");
        }
    }
}

/// How the proxy treats the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Bytes go both ways (the receiver's replies after the configured delay).
    Pass,
    /// Accepts and reads everything, forwards nothing, never answers.
    BlackHole,
}

/// A TCP proxy in front of a receiver: passes bytes on, delays the receiver's replies (the
/// acks) by a configurable time, or black-holes the stream.
pub struct FaultProxy {
    pub port: u16,
    delay_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free port; connections go to 127.0.0.1:`upstream` (unless black-holed).
    pub fn start(upstream: u16, mode: ProxyMode) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let delay_ms = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, st) = (Arc::clone(&delay_ms), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (d, st) = (Arc::clone(&d), Arc::clone(&st));
                        std::thread::spawn(move || serve(client, upstream, mode, &d, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultProxy {
            port,
            delay_ms,
            stop,
            thread: Some(thread),
        }
    }

    /// Replies from the receiver reach the sender this much later.
    pub fn set_reply_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(client: TcpStream, upstream: u16, mode: ProxyMode, delay: &AtomicU64, stop: &AtomicBool) {
    let _ = client.set_nodelay(true);
    let _ = client.set_read_timeout(Some(Duration::from_millis(50)));
    if mode == ProxyMode::BlackHole {
        let mut c = client;
        let mut buf = [0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            match c.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(_) => return,
            }
        }
        return;
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let _ = server.set_nodelay(true);
    let _ = server.set_read_timeout(Some(Duration::from_millis(10)));
    let (Ok(mut c_in), Ok(mut s_out)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let done = Arc::new(AtomicBool::new(false));
    let up = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !done.load(Ordering::Relaxed) {
                match c_in.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    Err(e) if is_timeout(&e) => {}
                    Err(_) => break,
                }
            }
            done.store(true, Ordering::Relaxed);
            let _ = s_out.shutdown(std::net::Shutdown::Write);
        })
    };
    // Receiver → sender, each read released `delay` after it arrived.
    let (mut s_in, mut c_out) = (server, client);
    let mut queue: std::collections::VecDeque<(Instant, Vec<u8>)> = Default::default();
    let mut buf = [0u8; 65536];
    let mut eof = false;
    while !(stop.load(Ordering::Relaxed) || eof && queue.is_empty()) {
        if !eof {
            match s_in.read(&mut buf) {
                Ok(0) => eof = true,
                Ok(n) => {
                    let due = Instant::now() + Duration::from_millis(delay.load(Ordering::Relaxed));
                    queue.push_back((due, buf[..n].to_vec()));
                }
                Err(e) if is_timeout(&e) => {}
                Err(_) => eof = true,
            }
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
        while queue.front().is_some_and(|(due, _)| *due <= Instant::now()) {
            if let Some((_, bytes)) = queue.pop_front()
                && c_out.write_all(&bytes).is_err()
            {
                done.store(true, Ordering::Relaxed);
                let _ = up.join();
                return;
            }
        }
        if done.load(Ordering::Relaxed) && queue.is_empty() && eof {
            break;
        }
    }
    done.store(true, Ordering::Relaxed);
    let _ = c_out.shutdown(std::net::Shutdown::Both);
    let _ = up.join();
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
