//! Issue 10, no silent loss: a burst far larger than the ring, against the real `logtap`.
//!
//! - `logtap run -- seq 1 1000000` delivers 1,000,000 records, every number once, and says
//!   nothing on stderr: by default (`LLT_RING_FULL=block`) a write that finds the ring full
//!   waits while the agent drains;
//! - the same burst into a `logtap agent` sidecar with the default 1 MiB ring: 1,000,000
//!   records in, nothing dropped (its `/metrics`);
//! - with `LLT_RING_FULL=drop` and a 64 KiB ring, `logtap run` states on stderr how many
//!   records (and bytes) were dropped and why, and delivered + dropped = written, in records
//!   and in bytes; `logtap agent` logs the drops with the process's pid and comm.
//!
//! The program's own stdout and the JSON records share `logtap run`'s stdout, so it goes to a
//! file (a write to a file is never cut by another one's, unlike a pipe's) and the records are
//! found by their `"source":"logtap"`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use logtap_tests::artifacts::{self, TempDir};
use logtap_tests::forward_support::{HTTP_LISTENING, wait_bound_port};

const LIMIT: Duration = Duration::from_secs(120);

/// A program writing `line NNNNNNN\n` N times, one `write()` each: one record per line, so
/// records and lines count the same.
const LINES_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    char line[64];
    for (long i = 0; i < n; i++) {
        int len = snprintf(line, sizeof line, "line %07ld\n", i);
        if (write(1, line, (size_t)len) != len) return 2;
    }
    return 0;
}
"#;

fn line_len() -> u64 {
    "line 0000000\n".len() as u64
}

fn compile_lines(dir: &Path) -> PathBuf {
    let src = dir.join("lines.c");
    std::fs::write(&src, LINES_C).unwrap();
    artifacts::gcc(&src, &dir.join("lines"), &["-O2", "-Wall", "-Werror"])
}

/// Waits for `child` within [`LIMIT`].
fn wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pid {} still running after {LIMIT:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `logtap run [args] -- command` with stdout into a file and stderr captured; returns
/// (exit status, stdout, stderr).
fn logtap_run(
    dir: &Path,
    args: &[&str],
    command: &[&str],
    env: &[(&str, &str)],
) -> (std::process::ExitStatus, String, String) {
    let out_path = dir.join("run.out");
    let err_path = dir.join("run.err");
    let mut cmd = Command::new(artifacts::logtap_bin());
    cmd.arg("run").args(args).arg("--").args(command);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LLT_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap());
    let mut child = cmd.spawn().expect("start logtap run");
    let status = wait(&mut child);
    (
        status,
        std::fs::read_to_string(out_path).unwrap(),
        std::fs::read_to_string(err_path).unwrap(),
    )
}

/// The `message` of every record in `out` (JSON objects among the program's own lines).
fn messages(out: &str) -> Vec<&str> {
    const KEY: &str = "\"message\":\"";
    out.match_indices("\"source\":\"logtap\"")
        .map(|(at, _)| {
            // The record's own message comes before its source field.
            let start = out[..at].rfind(KEY).expect("a message") + KEY.len();
            let end = start + out[start..].find('"').expect("message ends");
            &out[start..end]
        })
        .collect()
}

/// The first number after `what` in `text`.
fn number_after(text: &str, what: &str) -> u64 {
    let at = text
        .find(what)
        .unwrap_or_else(|| panic!("{what:?} in {text}"))
        + what.len();
    let digits: String = text[at..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

#[test]
fn run_seq_one_million_delivers_every_record() {
    let dir = TempDir::new("burst-run");
    let (status, out, err) = logtap_run(dir.path(), &[], &["seq", "1", "1000000"], &[]);
    assert!(status.success(), "{status}\n{err}");
    assert!(!err.contains("dropped"), "{err}");
    let got = messages(&out);
    assert_eq!(got.len(), 1_000_000, "records; stderr: {err}");
    assert!(
        got.iter().zip(1..).all(|(m, i)| m.parse::<u64>() == Ok(i)),
        "every number once, in order"
    );
}

/// The sidecar: `logtap agent` (stdout output into a file, metrics on), `seq` under the
/// library with the default ring and the seed's defaults but `LLT_TARGET` and `LLT_TAP_INTO`.
#[test]
fn agent_sidecar_takes_the_same_burst_with_the_default_ring() {
    let dir = TempDir::new("burst-agent");
    let sock = dir.path().join("tap.sock");
    let out_path = dir.path().join("agent.out");
    let log = dir.path().join("agent.log");
    let mut agent = Command::new(artifacts::logtap_bin())
        .args(["agent", "--output", "stdout", "--socket"])
        .arg(&sock)
        .args(["--http-listen", "127.0.0.1:0"])
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let port = wait_bound_port(&log, HTTP_LISTENING);
    let deadline = Instant::now() + Duration::from_secs(20);
    while logtap_tests::http::get_local(port, "/readyz").is_none_or(|(s, _)| s != 200) {
        assert!(Instant::now() < deadline, "agent not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut app = Command::new("seq");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LLT_") {
            app.env_remove(key);
        }
    }
    let status = app
        .args(["1", "1000000"])
        .env("LD_PRELOAD", artifacts::liblogtap())
        .env("LLT_TARGET", format!("socket:{}", sock.display()))
        .env("LLT_TAP_INTO", "1")
        .stdout(Stdio::null())
        .spawn()
        .map(|mut c| wait(&mut c))
        .unwrap();
    assert!(status.success());
    let metric = |body: &str, name: &str| -> u64 {
        body.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<u64>().ok())
            .sum()
    };
    let deadline = Instant::now() + LIMIT;
    let body = loop {
        let (_, body) = logtap_tests::http::get_local(port, "/metrics").unwrap();
        if metric(&body, "logtap_input_records_total") >= 1_000_000
            || metric(&body, "logtap_dropped_records_total") > 0
            || Instant::now() > deadline
        {
            break body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // SAFETY: kill(2) has no memory effects; the pid is our unreaped child.
    unsafe { libc::kill(agent.id() as libc::pid_t, libc::SIGTERM) };
    assert!(wait(&mut agent).success());
    assert_eq!(
        metric(&body, "logtap_input_records_total"),
        1_000_000,
        "{body}"
    );
    assert_eq!(metric(&body, "logtap_dropped_records_total"), 0, "{body}");
    let out = std::fs::read_to_string(&out_path).unwrap();
    let got = messages(&out);
    assert_eq!(got.len(), 1_000_000, "records written by the stdout output");
    assert!(got.iter().zip(1..).all(|(m, i)| m.parse::<u64>() == Ok(i)));
}

#[test]
fn drop_mode_states_the_drops_and_everything_adds_up() {
    let dir = TempDir::new("burst-drop");
    let exe = compile_lines(dir.path());
    let n: u64 = 200_000;
    let (status, out, err) = logtap_run(
        dir.path(),
        &[],
        &[exe.to_str().unwrap(), &n.to_string()],
        &[("LLT_RING_FULL", "drop"), ("LLT_RING_SIZE", "64K")],
    );
    assert!(status.success(), "{status}\n{err}");
    let got = messages(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    let line = lines[0];
    assert!(line.starts_with("logtap: "), "{line}");
    assert!(line.contains("ring full"), "says why: {line}");
    let dropped = number_after(line, "logtap: dropped ");
    let dropped_bytes = number_after(line, "writes (");
    assert!(
        dropped > 0,
        "a 64 KiB ring cannot take {n} lines at full speed: {line}"
    );
    assert_eq!(
        got.len() as u64 + dropped,
        n,
        "delivered + dropped = written: {line}"
    );
    let delivered_bytes: u64 = got.iter().map(|m| m.len() as u64 + 1).sum();
    assert_eq!(delivered_bytes + dropped_bytes, n * line_len(), "{line}");
    // What was delivered is whole lines, each once, in order.
    let numbers: Vec<u64> = got
        .iter()
        .map(|m| m.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "in order, once");
}

/// `logtap agent` says what a process dropped, with its pid and comm.
#[test]
fn agent_logs_drops_with_the_pid_and_comm() {
    let dir = TempDir::new("burst-agent-log");
    let exe = compile_lines(dir.path());
    let sock = dir.path().join("tap.sock");
    let err_path = dir.path().join("agent.err");
    let mut agent = Command::new(artifacts::logtap_bin())
        .args([
            "agent",
            "--output",
            "null",
            "--http-listen",
            "off",
            "--socket",
        ])
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut app = Command::new(&exe)
        .arg("100000")
        .env("LD_PRELOAD", artifacts::liblogtap())
        .env("LLT_TARGET", format!("socket:{}", sock.display()))
        .env("LLT_TAP_INTO", "1")
        .env("LLT_RING_FULL", "drop")
        .env("LLT_RING_SIZE", "64K")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = app.id();
    assert!(wait(&mut app).success());
    let want = format!("pid={pid} comm=\"lines\"");
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = std::fs::read_to_string(&err_path).unwrap();
        if log.contains(&want) || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = agent.kill();
    let _ = agent.wait();
    let line = log
        .lines()
        .find(|l| l.contains(&want))
        .unwrap_or_else(|| panic!("no drop line for {want}: {log}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("dropped records"), "{line}");
    assert!(number_after(line, " ring_full=") > 0, "{line}");
}
