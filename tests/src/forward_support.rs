//! Helpers for the Forward protocol tests (`tests/tests/agent_forward_*.rs`).
//!
//! - [`bound_addr`], [`wait_bound_port`] — the address a `logtap` reports it bound (tests give
//!   it port 0); [`ClosedPort`] — a port that refuses connections.
//! - [`TestCa`] — a throw-away CA and a server certificate for `127.0.0.1`/`localhost`
//!   (rcgen), written as PEM files.
//! - [`python`] — runs a Python 3 script with a time limit, with [`FORWARD_PY`] prepended: a
//!   small independent Forward client written with PyPI `msgpack` and the standard library
//!   (`hashlib` for the handshake digests, `ssl`, `gzip`), so the tests do not check logtap
//!   against its own encoder.
//! - [`wait_port`] — waits until something listens on a port.
//! - [`start_receiver`] / [`sender_args`] — the two ends of an agent-to-agent forward chain,
//!   set up the same way by every test file that needs one.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent_harness::Agent;

/// The log message with which `logtap` reports the address its forward input bound
/// (`--forward-listen 127.0.0.1:0` picks a free port; the log line says which).
pub const FORWARD_LISTENING: &str = "forward input listening";
/// The log message with which `logtap` reports the address its HTTP server bound.
pub const HTTP_LISTENING: &str = "HTTP metrics and health listening";

/// The address that the last line of `log` containing `message` reports: `addr=IP:PORT` in
/// `logtap`'s text log, `"addr":"IP:PORT"` with `--log-format json`.
pub fn bound_addr(log: &str, message: &str) -> Option<SocketAddr> {
    let line = log.lines().rev().find(|l| l.contains(message))?;
    let (_, rest) = line
        .split_once("addr=")
        .or_else(|| line.split_once("\"addr\":\""))?;
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"')
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The port that a `logtap` writing its log to the file `log` reports for `message` (waits at
/// most 20 s): for a process started with a listen address of port 0.
pub fn wait_bound_port(log: &Path, message: &str) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = bound_addr(&text, message) {
            return addr.port();
        }
        assert!(
            Instant::now() < deadline,
            "logtap did not log `{message} addr=…` within 20 s in {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A TCP port on 127.0.0.1 that refuses connections for as long as the guard lives: a socket
/// bound to it that never listens, so no other test can take the port meanwhile.
pub struct ClosedPort {
    _socket: std::os::fd::OwnedFd,
    pub port: u16,
}

impl ClosedPort {
    pub fn new() -> ClosedPort {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_in is plain old data; all-zero is valid.
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_in of `len` bytes; port 0 lets the kernel choose.
        let r = unsafe { libc::bind(fd, (&raw const addr).cast(), len) };
        assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
        let mut len = len;
        // SAFETY: `addr` and `len` are valid for writes of a sockaddr_in.
        let r = unsafe { libc::getsockname(fd, (&raw mut addr).cast(), &mut len) };
        assert_eq!(r, 0, "getsockname: {}", std::io::Error::last_os_error());
        ClosedPort {
            _socket: socket,
            port: u16::from_be(addr.sin_port),
        }
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        ClosedPort::new()
    }
}

/// Waits (at most `limit`) until a TCP connect to 127.0.0.1:`port` succeeds.
pub fn wait_port(port: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `logtap agent` as a forward receiver on 127.0.0.1:`port` (0: a port the kernel picks,
/// then [`Agent::forward_port`]) that prints its records on stdout and flushes every 50 ms,
/// with `extra` arguments after those, and waits (at most `limit`) until the port accepts, so
/// the test can send at once.
pub fn start_receiver(name: &str, port: u16, extra: &[&str], limit: Duration) -> Agent {
    start_receiver_env(name, port, extra, &[], limit)
}

/// [`start_receiver`] with extra environment variables.
pub fn start_receiver_env(
    name: &str,
    port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> Agent {
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "--forward-listen",
        listen.as_str(),
        "--output",
        "stdout",
        "--flush-interval",
        "50ms",
    ];
    args.extend_from_slice(extra);
    let agent = Agent::start_with_env(name, &args, env);
    wait_port(agent.forward_port(), limit);
    agent
}

/// The arguments of a `logtap` that forwards to `server` (`host:port`), flushing every 50 ms,
/// as host `sender`; callers append their own.
pub fn sender_args(server: &str) -> Vec<&str> {
    vec![
        "--output",
        "forward",
        "--forward",
        server,
        "--flush-interval",
        "50ms",
        "--self-hostname",
        "sender",
    ]
}

/// A CA and a server certificate signed by it, as PEM files in `dir`.
pub struct TestCa {
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

impl TestCa {
    /// Creates `<name>-ca.pem`, `<name>-cert.pem`, `<name>-key.pem` in `dir`.
    pub fn create(dir: &Path, name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("logtap test CA {name}"));
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).unwrap();
        let t = TestCa {
            ca_pem: dir.join(format!("{name}-ca.pem")),
            cert_pem: dir.join(format!("{name}-cert.pem")),
            key_pem: dir.join(format!("{name}-key.pem")),
        };
        std::fs::write(&t.ca_pem, ca_cert.pem()).unwrap();
        std::fs::write(&t.cert_pem, cert.pem()).unwrap();
        std::fs::write(&t.key_pem, key.serialize_pem()).unwrap();
        t
    }
}

/// What a Python script printed and how it ended.
#[derive(Debug)]
pub struct PyResult {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `FORWARD_PY + script` with `args` (in `sys.argv[1:]`), killed after `limit`.
pub fn python(script: &str, args: &[&str], limit: Duration) -> PyResult {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(format!("{FORWARD_PY}\n{script}"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("python script did not finish within {limit:?}:\n{script}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    PyResult {
        success: status.success(),
        stdout,
        stderr,
    }
}

/// An independent Forward client in Python (msgpack + standard library).
pub const FORWARD_PY: &str = r#"
import gzip, hashlib, os, socket, ssl, struct, sys, time
import msgpack

def event_time(secs, nanos):
    return msgpack.ExtType(0, struct.pack('>II', secs, nanos))

def connect(port, ca=None, timeout=10):
    s = socket.create_connection(('127.0.0.1', port), timeout=timeout)
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
        s = ctx.wrap_socket(s, server_hostname='127.0.0.1')
    return s

class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.unpacker = msgpack.Unpacker(raw=False)
    def next(self):
        for obj in self.unpacker:
            return obj
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError('server closed the connection')
            self.unpacker.feed(data)
            for obj in self.unpacker:
                return obj

def handshake(sock, reader, key, hostname, user='', password=''):
    helo = reader.next()
    assert helo[0] == 'HELO', helo
    nonce = helo[1]['nonce']
    if isinstance(nonce, str): nonce = nonce.encode()
    auth = helo[1].get('auth', b'')
    if isinstance(auth, str): auth = auth.encode()
    salt = os.urandom(16).hex().encode()
    digest = hashlib.sha512(salt + hostname.encode() + nonce + key.encode()).hexdigest()
    # The user digest, as fluent-plugin-secure-forward / Fluentd's out_forward compute it.
    login = hashlib.sha512(auth + user.encode() + password.encode()).hexdigest() if auth else ''
    sock.sendall(msgpack.packb(['PING', hostname, salt, digest, user, login], use_bin_type=True))
    pong = reader.next()
    assert pong[0] == 'PONG', pong
    if pong[1]:
        expected = hashlib.sha512(salt + pong[3].encode() + nonce + key.encode()).hexdigest()
        assert pong[4] == expected, 'server digest mismatch'
    return pong

def entries(records, secs=1700000000):
    return b''.join(msgpack.packb([event_time(secs, n), r], use_bin_type=True) for n, r in records)

def packed(tag, body, chunk=None, compressed=None, as_str=False):
    opts = {'size': 1}
    if chunk is not None: opts['chunk'] = chunk
    if compressed: opts['compressed'] = compressed
    if as_str:
        # str32 holding raw (non-UTF-8) entry bytes, as Fluentd writes PackedForward.
        return b'\x93' + msgpack.packb(tag) + b'\xdb' + struct.pack('>I', len(body)) + body + msgpack.packb(opts)
    return msgpack.packb([tag, body, opts], use_bin_type=True)
"#;
