//! Runs the real `logtap` binary and talks to it.
//!
//! - [`Agent`] — `logtap agent` as a child process on a socket in a temporary directory; its
//!   stdout (JSON records) is collected by a thread; [`Agent::terminate`] sends SIGTERM and
//!   waits for the exit status. It runs with `LOGTAP_PEER_PID=claimed` (the fake peers below
//!   claim made-up pids) unless the test sets the variable or `--peer-pid`.
//! - [`run`] — `logtap run [ARGS] -- CMD…`, with its exit code and JSON records.
//! - [`TapClient`] — a tapped process in miniature, speaking Contract 2 with `protocol::tap`
//!   and `protocol::ring`: HELLO (optionally with a real ring memfd and eventfd via
//!   `SCM_RIGHTS`), DATA, LOSS and FILE frames, and ring records. Tests use it where the
//!   exact bytes, times and pids must be controlled (and to test the agent without the .so).
//! - [`fake_fluentd`] — a minimal Forward server (acks, handshake, hang-ups) for the forward output.

pub mod fake_fluentd;

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use logtap_protocol::ring::{Producer, RecordMeta, create_ring_memfd};
use logtap_protocol::tap::{self, Header, HelloFields, Kind, Stream};
use serde_json::Value;

use crate::artifacts::{self, TempDir};

/// Records (stdout JSON objects) and other stdout lines of a `logtap` process.
#[derive(Default, Debug)]
pub struct Output {
    /// Lines that parsed as a JSON object with `"source"` — logtap's records.
    pub records: Vec<Value>,
    /// Every other stdout line (e.g. the tapped program's own output in `logtap run`).
    pub other: Vec<String>,
}

fn collect(
    stdout: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<Output>>, std::thread::JoinHandle<()>) {
    let out = Arc::new(Mutex::new(Output::default()));
    let sink = Arc::clone(&out);
    let thread = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line).into_owned();
            let mut o = sink.lock().unwrap();
            match serde_json::from_str::<Value>(&text) {
                Ok(v) if v.get("source").is_some() => o.records.push(v),
                _ => o.other.push(text),
            }
        }
    });
    (out, thread)
}

/// Passes a child's stderr on to ours, line by line, and keeps it for [`Agent::bound_port`].
fn tee_log(stderr: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line);
            eprintln!("{text}");
            let mut log = sink.lock().unwrap();
            log.push_str(&text);
            log.push('\n');
        }
    });
    log
}

/// A running `logtap agent`.
pub struct Agent {
    pub child: Child,
    pub socket: PathBuf,
    pub dir: TempDir,
    out: Arc<Mutex<Output>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Its log (stderr) so far; also passed on to the test's stderr.
    log: Arc<Mutex<String>>,
}

impl Agent {
    /// `/bin/sh -c script` under the real liblogtap.so, tapping into this agent's socket
    /// (socket transport, stdout and stderr into the tap only, no first-connect wait).
    pub fn tapped_shell(&self, script: &str) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script])
            .env("LD_PRELOAD", artifacts::liblogtap())
            .env("LLT_TARGET", format!("socket:{}", self.socket.display()))
            .env("LLT_TAP_INTO", "3")
            .env("LLT_TARGET_1STCONNECT", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// Starts `logtap agent --socket <tmp>/tap.sock --http-listen off` plus `args`, and waits
    /// until the socket exists.
    pub fn start(name: &str, args: &[&str]) -> Agent {
        Agent::start_with_env(name, args, &[])
    }

    /// [`Agent::start`] with extra environment variables (`LOGTAP_*` settings).
    pub fn start_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Agent {
        Agent::start_configured(name, args, env, |_| {})
    }

    /// [`Agent::start_with_env`], with `configure` applied to the command last (limits set in
    /// `pre_exec`, another uid…).
    pub fn start_configured(
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> Agent {
        let dir = TempDir::new(name);
        let socket = dir.path().join("tap.sock");
        let mut cmd = Command::new(artifacts::logtap_bin());
        // [`TapClient`]s speak for made-up pids (4242, 10, 11…): the agent must take the HELLO
        // pid as claimed. Tests of the pid check (peer_identity.rs) pass `kernel` back.
        cmd.env("LOGTAP_PEER_PID", "claimed");
        cmd.envs(env.iter().copied());
        cmd.arg("agent").arg("--socket").arg(&socket);
        if !args.contains(&"--http-listen") {
            cmd.args(["--http-listen", "off"]);
        }
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("start logtap agent");
        let (out, reader) = collect(child.stdout.take().unwrap());
        let log = tee_log(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("logtap agent exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "logtap agent did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent {
            child,
            socket,
            dir,
            out,
            reader: Some(reader),
            log,
        }
    }

    /// The port of the address that the agent's log line `message` reports (waits for it):
    /// how a test that gave a listen address of port 0 learns the port.
    pub fn bound_port(&self, message: &str) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.log.lock().unwrap().clone();
            if let Some(addr) = crate::forward_support::bound_addr(&log, message) {
                return addr.port();
            }
            assert!(
                Instant::now() < deadline,
                "logtap agent did not log `{message} addr=…` within 20 s (is --log-level at least info?)"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (at most `limit`) for a line of the agent's log containing every one of `words`
    /// and returns it; panics naming the words if none comes.
    pub fn wait_log_line(&self, words: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.log.lock().unwrap().clone();
            if let Some(line) = log.lines().find(|l| words.iter().all(|w| l.contains(w))) {
                return line.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "logtap agent logged no line with {words:?} within {limit:?}; its log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The port of `--forward-listen` (see [`Agent::bound_port`]).
    pub fn forward_port(&self) -> u16 {
        self.bound_port(crate::forward_support::FORWARD_LISTENING)
    }

    /// The port of `--http-listen` (see [`Agent::bound_port`]).
    pub fn http_port(&self) -> u16 {
        self.bound_port(crate::forward_support::HTTP_LISTENING)
    }

    /// Records received so far.
    pub fn records(&self) -> Vec<Value> {
        self.out.lock().unwrap().records.clone()
    }

    /// Waits until at least `n` records arrived (panics after `limit`).
    pub fn wait_records(&self, n: usize, limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let r = self.records();
            if r.len() >= n {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} records after {limit:?}",
                r.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM, waits (bounded) for the exit; returns the status and every record.
    pub fn terminate(mut self) -> (ExitStatus, Vec<Value>) {
        // SAFETY: kill has no memory effects; the pid is our live child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = wait_bounded(&mut self.child, Duration::from_secs(20));
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let records = self.out.lock().unwrap().records.clone();
        (status, records)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` to exit; kills it and panics after `limit`.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `logtap run <args> -- <command>`: returns the exit status and stdout.
pub fn run(args: &[&str], command: &[&str], env: &[(&str, &str)]) -> (ExitStatus, Output) {
    let mut cmd = Command::new(artifacts::logtap_bin());
    cmd.arg("run").args(args).arg("--").args(command);
    cmd.envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("start logtap run");
    let (out, reader) = collect(child.stdout.take().unwrap());
    let status = wait_bounded(&mut child, Duration::from_secs(60));
    reader.join().unwrap();
    let out = std::mem::take(&mut *out.lock().unwrap());
    (status, out)
}

fn check(ret: libc::c_int, what: &str) -> libc::c_int {
    assert!(ret >= 0, "{what}: {}", std::io::Error::last_os_error());
    ret
}

/// A fake tapped process speaking Contract 2 to the agent.
pub struct TapClient {
    sock: OwnedFd,
    pub pid: u32,
    seq: u32,
    /// The ring's producer, eventfd and memfd (kept to pass the same ring again on reconnect).
    ring: Option<(Producer, OwnedFd, OwnedFd)>,
}

impl TapClient {
    /// Connects to the agent's socket.
    pub fn connect(socket: &Path, pid: u32) -> TapClient {
        // SAFETY: plain syscall; the result is checked.
        let ret =
            unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
        let fd = check(ret, "socket");
        // SAFETY: fd is new and ours.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: zeroed sockaddr_un is valid.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(socket.as_os_str().as_bytes()) {
            *d = *s as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        // SAFETY: addr is a valid sockaddr_un of `len` bytes.
        let ret = unsafe { libc::connect(sock.as_raw_fd(), (&raw const addr).cast(), len) };
        check(ret, "connect");
        TapClient {
            sock,
            pid,
            seq: 0,
            ring: None,
        }
    }

    fn send(&mut self, header: Header, payload: &[u8], fds: &[RawFd]) {
        let head = header.encode();
        if let Err(e) = crate::scm::send_frame(self.sock.as_raw_fd(), &head, payload, fds) {
            panic!("sendmsg: {e}");
        }
    }

    fn header(
        &mut self,
        kind: Kind,
        stream: Option<Stream>,
        flags: u16,
        time_ns: u64,
        file_index: u32,
        len: usize,
    ) -> Header {
        self.seq = self.seq.wrapping_add(1);
        Header {
            kind,
            stream,
            flags,
            pid: self.pid,
            seq: self.seq,
            time_ns,
            file_index,
            payload_len: len as u32,
        }
    }

    /// Sends HELLO; with `ring_bytes`, creates a sealed ring and passes it with an eventfd.
    pub fn hello(&mut self, comm: &str, ring_bytes: Option<usize>, files: &[&str]) {
        self.hello_meta(comm, ring_bytes, files, &[]);
    }

    /// [`TapClient::hello`] with HELLO `meta` pairs (e.g. `POD_NAME`).
    pub fn hello_meta(
        &mut self,
        comm: &str,
        ring_bytes: Option<usize>,
        files: &[&str],
        meta: &[(&str, &str)],
    ) {
        let mut payload = vec![0u8; tap::MAX_CONTROL_PAYLOAD];
        let fields = HelloFields {
            pid: self.pid,
            ppid: 1,
            comm: comm.as_bytes(),
            exe: b"/usr/bin/test",
            hostname: b"test-host",
            container_id: b"",
            version: b"test",
            ring: ring_bytes.is_some(),
        };
        let files: Vec<&[u8]> = files.iter().map(|f| f.as_bytes()).collect();
        let meta: Vec<(&[u8], &[u8])> = meta
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        let n = tap::encode_hello(&mut payload, &fields, files, meta).unwrap();
        let h = self.header(Kind::Hello, None, 0, 0, 0, n);
        match ring_bytes {
            None => self.send(h, &payload[..n], &[]),
            Some(bytes) => {
                let memfd = create_ring_memfd(bytes, self.pid).unwrap();
                let producer = Producer::map(std::os::fd::AsFd::as_fd(&memfd)).unwrap();
                // SAFETY: plain syscall; the result is checked.
                let ret = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
                let ev = check(ret, "eventfd");
                // SAFETY: ev is new and ours.
                let ev = unsafe { OwnedFd::from_raw_fd(ev) };
                producer.set_wake_fd(ev.as_raw_fd());
                self.send(h, &payload[..n], &[memfd.as_raw_fd(), ev.as_raw_fd()]);
                self.ring = Some((producer, ev, memfd));
            }
        }
    }

    /// Like a process whose agent restarted: connects to `socket` and sends HELLO with the
    /// same ring and eventfd as before (records committed meanwhile are still in it).
    pub fn reconnect(mut self, socket: &Path) -> TapClient {
        let ring = self.ring.take().expect("hello with a ring first");
        let mut c = TapClient::connect(socket, self.pid);
        c.seq = self.seq;
        c.hello_with_fds("reconnected", &[ring.2.as_raw_fd(), ring.1.as_raw_fd()]);
        c.ring = Some(ring);
        c
    }

    /// Sends a HELLO announcing a ring but passing the given descriptors (hostile-peer tests).
    pub fn hello_with_fds(&mut self, comm: &str, fds: &[RawFd]) {
        let mut payload = vec![0u8; tap::MAX_CONTROL_PAYLOAD];
        let fields = HelloFields {
            pid: self.pid,
            ppid: 1,
            comm: comm.as_bytes(),
            exe: b"/usr/bin/test",
            hostname: b"test-host",
            container_id: b"",
            version: b"test",
            ring: true,
        };
        let n = tap::encode_hello(
            &mut payload,
            &fields,
            std::iter::empty::<&[u8]>(),
            std::iter::empty::<(&[u8], &[u8])>(),
        )
        .unwrap();
        let h = self.header(Kind::Hello, None, 0, 0, 0, n);
        self.send(h, &payload[..n], fds);
    }

    /// Sends the bytes of one write as a DATA frame.
    pub fn data(&mut self, stream: Stream, time_ns: u64, bytes: &[u8], continued: bool) {
        let flags = if continued { tap::FLAG_CONTINUED } else { 0 };
        let h = self.header(Kind::Data, Some(stream), flags, time_ns, 0, bytes.len());
        self.send(h, bytes, &[]);
    }

    /// The next record's metadata (a new `seq`).
    fn next_meta(&mut self, stream: Stream, time_ns: u64) -> RecordMeta {
        self.seq = self.seq.wrapping_add(1);
        RecordMeta {
            stream: stream as u8,
            flags: 0,
            file_index: 0,
            pid: self.pid,
            seq: self.seq,
            time_ns,
        }
    }

    /// Pushes one write into the ring (panics if there is no ring or it is full).
    pub fn ring_write(&mut self, stream: Stream, time_ns: u64, bytes: &[u8]) {
        let meta = self.next_meta(stream, time_ns);
        let (producer, _, _) = self.ring.as_ref().expect("hello with a ring first");
        producer.try_push(&meta, bytes).unwrap();
    }

    /// A DATA frame for a tapped file's write (`file_index`) or any stream, with CONTINUED.
    pub fn data_to(
        &mut self,
        stream: Stream,
        file_index: u16,
        continued: bool,
        time_ns: u64,
        bytes: &[u8],
    ) {
        let flags = if continued { tap::FLAG_CONTINUED } else { 0 };
        let h = self.header(
            Kind::Data,
            Some(stream),
            flags,
            time_ns,
            u32::from(file_index),
            bytes.len(),
        );
        self.send(h, bytes, &[]);
    }

    /// The ring record of the same write as [`TapClient::data_to`] (panics if there is no ring
    /// or it is full).
    pub fn ring_write_to(
        &mut self,
        stream: Stream,
        file_index: u16,
        continued: bool,
        time_ns: u64,
        bytes: &[u8],
    ) {
        let mut meta = self.next_meta(stream, time_ns);
        meta.file_index = file_index;
        meta.flags = if continued {
            logtap_protocol::ring::RECORD_CONTINUED
        } else {
            0
        };
        let (producer, _, _) = self.ring.as_ref().expect("hello with a ring first");
        producer.try_push(&meta, bytes).unwrap();
    }

    /// Pushes one write into the ring, retrying while it is full (up to `limit`).
    pub fn ring_write_wait(&mut self, stream: Stream, time_ns: u64, bytes: &[u8], limit: Duration) {
        let meta = self.next_meta(stream, time_ns);
        let (producer, _, _) = self.ring.as_ref().expect("hello with a ring first");
        let deadline = Instant::now() + limit;
        while producer.try_push(&meta, bytes).is_err() {
            assert!(Instant::now() < deadline, "ring stayed full for {limit:?}");
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Closes the control connection (as a process that exits does) and keeps the ring.
    pub fn hang_up(&self) {
        // SAFETY: shutdown on our own socket; no memory effects.
        unsafe { libc::shutdown(self.sock.as_raw_fd(), libc::SHUT_RDWR) };
    }

    /// Words (8 bytes) of the ring claimed and not yet released by the agent (`head - tail`).
    pub fn ring_backlog(&self) -> u64 {
        let (producer, _, _) = self.ring.as_ref().expect("hello with a ring first");
        producer.backlog_words()
    }

    /// Reports dropped copies.
    pub fn loss(&mut self, stream: Stream, frames: u64, bytes: u64) {
        let mut payload = [0u8; 64];
        let n = tap::encode_loss(&mut payload, frames, bytes).unwrap();
        let h = self.header(Kind::Loss, Some(stream), 0, 0, 0, n);
        self.send(h, &payload[..n], &[]);
    }

    /// Announces a tapped file.
    pub fn file(&mut self, index: u32, path: &str) {
        let mut payload = [0u8; 4096];
        let n = tap::encode_file(&mut payload, index, path.as_bytes()).unwrap();
        let h = self.header(Kind::File, None, 0, 0, 0, n);
        self.send(h, &payload[..n], &[]);
    }

    /// Sends raw bytes as one datagram (for bad-frame tests).
    pub fn raw(&mut self, datagram: &[u8]) {
        // SAFETY: the buffer is valid for its length.
        let ret = unsafe {
            libc::send(
                self.sock.as_raw_fd(),
                datagram.as_ptr().cast(),
                datagram.len(),
                libc::MSG_NOSIGNAL,
            )
        } as i32;
        check(ret, "send");
    }
}
