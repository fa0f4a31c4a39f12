//! The seed's variables keep their meaning: `LLT_TARGET=file:` appends the raw bytes,
//! `LLT_SUPPRESS_STDOUT` (fail open without a receiver), `LLT_PASSIV_ON_START`,
//! `LLT_DEBUG_MODE` lines, `PYTHONUNBUFFERED` injection (and `LLT_PYTHONUNBUFFERED=false`).

mod interceptor_support;

use std::process::Command;

use interceptor_support::*;
use logtap_tests::artifacts::{self, TempDir};

fn preloaded(dir: &TempDir, prog: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(prog);
    c.env("LD_PRELOAD", artifacts::liblogtap())
        .current_dir(dir.path());
    for (k, _) in std::env::vars() {
        if k.starts_with("LLT_") || k == "PYTHONUNBUFFERED" {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn file_target_appends_the_raw_bytes() {
    let dir = TempDir::new("seed-file-target");
    let target = dir.path().join("tapped.log");
    std::fs::write(&target, b"existing\n").unwrap();
    let mut c = preloaded(&dir, python());
    c.args([
        "-c",
        "import sys\nprint('out 1')\nprint('err 1', file=sys.stderr)\nprint('out 2')",
    ]);
    c.env("LLT_TAP_INTO", "3")
        .env("LLT_TARGET", format!("file:{}", target.display()));
    let out = run(c, LIMIT);
    assert_ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out 1\nout 2\n");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "existing\nout 1\nerr 1\nout 2\n"
    );
}

fn suppress_stdout(t: Transport) {
    let s = Setup::new("seed-suppress", t);
    let script =
        "import sys\nfor i in range(20): print('line', i)\nprint('to stderr', file=sys.stderr)";
    let mut c = s.command(python());
    c.args(["-c", script])
        .env("LLT_TAP_INTO", "3")
        .env("LLT_SUPPRESS_STDOUT", "true");
    let out = run(c, LIMIT);
    assert_ok(&out);
    assert_eq!(out.stdout, b"", "suppressed stdout must not reach fd 1");
    assert_eq!(
        out.stderr, b"to stderr\n",
        "stderr is not suppressed by LLT_SUPPRESS_STDOUT"
    );
    assert!(s.receiver.wait_for(SETTLE, |c| c.lines(STDOUT).len() >= 20));
    assert_eq!(s.receiver.snapshot().lines(STDOUT).len(), 20);

    // No receiver: fail open, every line reaches fd 1.
    let mut c = s.command(python());
    c.args(["-c", script])
        .env("LLT_TAP_INTO", "3")
        .env("LLT_SUPPRESS_STDOUT", "true");
    c.env(
        "LLT_TARGET",
        format!("socket:{}", s.path("absent.sock").display()),
    );
    let out = run(c, LIMIT);
    assert_ok(&out);
    let want: String = (0..20).map(|i| format!("line {i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);

    // LLT_SUPPRESS_STDERR suppresses fd 2 (and only with it).
    let mut c = s.command(python());
    c.args(["-c", script])
        .env("LLT_TAP_INTO", "3")
        .env("LLT_SUPPRESS_STDERR", "yes");
    let out = run(c, LIMIT);
    assert_ok(&out);
    assert_eq!(out.stderr, b"");
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}

#[test]
fn suppress_stdout_fails_open_ring() {
    suppress_stdout(Transport::Ring);
}
#[test]
fn suppress_stdout_fails_open_socket() {
    suppress_stdout(Transport::Socket);
}

#[test]
fn passive_on_start_taps_nothing_at_first() {
    let s = Setup::new("seed-passive", Transport::Ring);
    let mut c = s.command(python());
    c.args([
        "-c",
        "import time\nprint('early')\ntime.sleep(1.5)\nprint('late')",
    ]);
    c.env("LLT_TAP_INTO", "1")
        .env("LLT_PASSIV_ON_START", "1000");
    let out = run(c, LIMIT);
    assert_ok(&out);
    assert!(
        s.receiver
            .wait_for(SETTLE, |c| c.lines(STDOUT).contains(&"late".to_string()))
    );
    assert_eq!(
        s.receiver.snapshot().lines(STDOUT),
        vec!["late".to_string()]
    );
}

#[test]
fn debug_mode_lines_and_malformed_values() {
    let dir = TempDir::new("seed-debug");
    let mut c = preloaded(&dir, python());
    c.args(["-c", "import os\nprint(os.getpid())"]);
    c.env("LLT_DEBUG_MODE", "TRUE")
        .env("LLT_TAP_INTO", "banana");
    let out = run(c, LIMIT);
    assert_ok(&out);
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr);
    let prefix = format!("[liblogtap DEBUG PID:{pid}] ");
    assert!(err.lines().all(|l| l.starts_with(&prefix)), "{err}");
    assert!(err.contains("liblogtap active (debug mode)"), "{err}");
    assert!(err.contains("ignoring malformed LLT_TAP_INTO"), "{err}");
}

#[test]
fn pythonunbuffered_is_injected_only_when_unset() {
    let dir = TempDir::new("seed-python");
    let show = ["-c", "import os\nprint(os.environ.get('PYTHONUNBUFFERED'))"];
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[], "1"),
        (&[("LLT_PYTHONUNBUFFERED", "false")], "None"),
        (&[("PYTHONUNBUFFERED", "0")], "0"),
    ];
    for (env, want) in cases {
        let mut c = preloaded(&dir, python());
        c.args(show);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = run(c, LIMIT);
        assert_ok(&out);
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want, "{env:?}");
    }
}
