//! Helpers of the Forward interop tests: run the Python scripts in `tests/python/` with a time
//! limit, and fail loudly (never skip) when python3 or its modules are missing.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest any Python helper may run.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Path of a script in `tests/python/`.
pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(name)
}

/// Fails loudly when the interop prerequisites are missing.
pub fn require_python() {
    let out = Command::new("python3")
        .args(["-c", "import msgpack, fluent.sender"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "python3 lacks the interop modules ({}): run `python3 -m pip install msgpack fluent-logger`",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => {
            panic!("python3 is required for the Forward interop tests and could not be run: {e}")
        }
    }
}

/// Runs python3 with `args`, feeding `stdin`, killing it after [`TIMEOUT`]; returns stdout.
pub fn run_python(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    require_python();
    let mut child = Command::new("python3")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&data));
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).map(|_| v)
    });
    let status = wait(&mut child);
    writer
        .join()
        .expect("writer thread")
        .expect("write python stdin");
    let out = reader
        .join()
        .expect("reader thread")
        .expect("read python stdout");
    if !status.success() {
        let mut err = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut err)
            .ok();
        panic!("python3 {args:?} failed ({status}): {err}");
    }
    out
}

/// Waits for `child` at most [`TIMEOUT`], killing it (and failing the test) after that.
pub fn wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(s) = child.try_wait().expect("wait python3") {
            return s;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("python3 did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
