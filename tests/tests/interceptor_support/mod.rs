//! Shared by the `interceptor_*` end-to-end tests: running a program under the real
//! `liblogtap.so` against a [`TapReceiver`], once per transport, with a time limit.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use logtap_tests::artifacts::{self, TempDir};
use logtap_tests::tap_receiver::TapReceiver;

/// The two ways a process hands its bytes to the agent (Contract 2); every scenario runs with
/// both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Shared-memory ring + control socket.
    Ring,
    /// DATA frames over the control socket (`LLT_TRANSPORT=socket`).
    Socket,
}

pub const BOTH: [Transport; 2] = [Transport::Ring, Transport::Socket];

impl Transport {
    pub fn env(self) -> &'static str {
        match self {
            Transport::Ring => "ring",
            Transport::Socket => "socket",
        }
    }
}

/// A temp dir with a receiver listening in it.
pub struct Setup {
    pub dir: TempDir,
    pub receiver: TapReceiver,
    pub transport: Transport,
}

impl Setup {
    pub fn new(name: &str, transport: Transport) -> Setup {
        let dir = TempDir::new(&format!("{name}-{}", transport.env()));
        let receiver = TapReceiver::start(&dir.path().join("tap.sock"));
        Setup {
            dir,
            receiver,
            transport,
        }
    }

    /// A command with the library preloaded and pointed at the receiver.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env("LD_PRELOAD", artifacts::liblogtap())
            .env("LLT_TARGET", self.receiver.target())
            .env("LLT_TRANSPORT", self.transport.env())
            .env("LLT_TARGET_1STCONNECT", "0")
            .env("LLT_TARGET_RECONNECT", "1")
            .env(
                "LLT_DEBUG_MODE",
                std::env::var("LLT_TEST_DEBUG").unwrap_or_default(),
            )
            .current_dir(self.dir.path());
        c
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `tests/programs/tapprog.c` (compiled into the temp dir on first use) with `args`
    /// and the extra `env` under the library, within [`LIMIT`]; asserts it exited 0.
    pub fn run_tapprog(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let exe = self.path("tapprog");
        if !exe.exists() {
            compile("tapprog", self.dir.path());
        }
        let mut cmd = self.command(&exe);
        cmd.args(args).envs(env.iter().copied());
        let out = run(cmd, LIMIT);
        assert_ok(&out);
        out
    }

    /// Waits (up to [`SETTLE`]) until the receiver holds as many stdout bytes as `out` shows
    /// the program wrote.
    pub fn wait_stdout(&self, out: &Output) -> bool {
        self.receiver
            .wait_for(SETTLE, |c| c.bytes(None, STDOUT).len() >= out.stdout.len())
    }
}

/// Runs `cmd` to completion within `limit` (killed and failed otherwise).
pub fn run(mut cmd: Command, limit: Duration) -> Output {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let child = cmd.spawn().expect("spawn program");
    wait_output(child, limit)
}

/// Waits for `child` (stdout/stderr piped) within `limit`.
pub fn wait_output(mut child: Child, limit: Duration) -> Output {
    let end = Instant::now() + limit;
    // Drain the pipes on threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = std::io::Read::read_to_end(o, &mut v);
        }
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(e) = err.as_mut() {
            let _ = std::io::Read::read_to_end(e, &mut v);
        }
        v
    });
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("program did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// The real Python interpreter (not a pyenv shim script, which would run bash under the
/// library too).
pub fn python() -> PathBuf {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 must be installed");
    assert!(out.status.success(), "python3 failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Compiles `tests/programs/<name>.c` with `gcc -O2 -D_FORTIFY_SOURCE=2 -pthread` into `dir`.
pub fn compile(name: &str, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("programs")
        .join(format!("{name}.c"));
    artifacts::gcc(
        &src,
        &dir.join(name),
        &["-O2", "-D_FORTIFY_SOURCE=2", "-pthread", "-Wall"],
    )
}

/// Asserts the process ran fine, showing its output otherwise.
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "program failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const FILE: u8 = 3;
pub const LIMIT: Duration = Duration::from_secs(60);
pub const SETTLE: Duration = Duration::from_secs(10);
