//! Issue 10, short-lived programs and `LLT_TAP_INTO`: real programs under the real library.
//!
//! - `/bin/echo hello` with only `LD_PRELOAD`, `LLT_TARGET` and `LLT_TAP_INTO=1` set (the seed's
//!   defaults for everything else, `LLT_TARGET_1STCONNECT` included) delivers its record to a
//!   running `logtap agent`;
//! - a program that prints a banner and then sleeps 7 s delivers the banner at once;
//! - an agent that comes up after the program started gets everything: the library retries every
//!   100 ms inside `LLT_TARGET_1STCONNECT`, and — for a program that writes nothing more — makes
//!   one last attempt at exit, handing over its ring;
//! - `LLT_TAP_INTO` takes `none`, `stdout`, `stderr`, `both`; a malformed value is said on
//!   stderr without debug mode, once for a whole process tree.
//!
//! How long exit takes with no agent at all is a bench figure (bench/RESULTS.md), not a test.

mod interceptor_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use interceptor_support::*;
use logtap_tests::agent_harness::Agent;
use logtap_tests::artifacts::{self, TempDir};
use logtap_tests::tap_receiver::TapReceiver;

/// A command with nothing but the library, its target and `LLT_TAP_INTO` from the `LLT_*`
/// family: the seed's defaults for the rest, whatever the test runner's environment holds.
fn seed_defaults(program: &str, target: &str, tap_into: &str) -> Command {
    let mut c = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LLT_") {
            c.env_remove(key);
        }
    }
    c.env("LD_PRELOAD", artifacts::liblogtap())
        .env("LLT_TARGET", target)
        .env("LLT_TAP_INTO", tap_into);
    c
}

fn messages(agent: &Agent) -> Vec<String> {
    agent
        .records()
        .iter()
        .map(|r| r["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn echo_under_the_seed_defaults_reaches_a_running_agent() {
    let agent = Agent::start("connect-echo", &["--output", "stdout"]);
    let target = format!("socket:{}", agent.socket.display());
    let mut cmd = seed_defaults("/bin/echo", &target, "1");
    cmd.arg("hello");
    let out = run(cmd, LIMIT);
    assert_ok(&out);
    assert_eq!(out.stdout, b"hello\n");
    let records = agent.wait_records(1, SETTLE);
    assert_eq!(records[0]["message"], "hello");
    assert_eq!(records[0]["comm"], "echo");
}

#[test]
fn a_banner_arrives_at_once_though_the_program_then_sleeps() {
    let agent = Agent::start("connect-banner", &["--output", "stdout"]);
    let target = format!("socket:{}", agent.socket.display());
    let mut cmd = seed_defaults("sh", &target, "1");
    cmd.args(["-c", "echo banner; exec sleep 7"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    // Well before the 7 s are over (and before LLT_TARGET_1STCONNECT's 5 s).
    let records = agent.wait_records(1, Duration::from_secs(4));
    let took = started.elapsed();
    assert!(child.try_wait().unwrap().is_none(), "still sleeping");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(records[0]["message"], "banner");
    assert!(took < Duration::from_secs(4), "{took:?}");
}

/// The agent comes up 600 ms after the program started writing: the library retries every
/// 100 ms inside the `LLT_TARGET_1STCONNECT` window (default 5 s), and the lines written before
/// it connected wait in the ring.
#[test]
fn an_agent_that_comes_up_late_gets_every_line() {
    let dir = TempDir::new("connect-late");
    let sock = dir.path().join("tap.sock");
    let mut cmd = seed_defaults("sh", &format!("socket:{}", sock.display()), "1");
    let script = "i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo line $i; sleep 0.05; done";
    cmd.args(["-c", script]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let receiver = TapReceiver::start(&sock);
    let out = wait_output(child, LIMIT);
    assert_ok(&out);
    let want: Vec<String> = (1..=40).map(|i| format!("line {i}")).collect();
    assert!(
        receiver.wait_for(SETTLE, |c| c.lines(STDOUT).len() >= want.len()),
        "{:?}",
        receiver.snapshot().lines(STDOUT)
    );
    assert_eq!(receiver.snapshot().lines(STDOUT), want);
    assert_eq!(receiver.snapshot().dropped(), (0, 0));
}

/// The program writes once while no agent listens, then only sleeps and exits: with no write
/// to retry on, its exit makes one more attempt and hands the ring over. (Python: it leaves
/// through `exit()`, which runs the library's destructor; dash ends with `_exit()` and runs
/// none, and a shell that `exec`s its last command replaces itself: see the README.)
#[test]
fn exit_hands_the_ring_to_an_agent_that_came_up_meanwhile() {
    let dir = TempDir::new("connect-exit");
    let sock = dir.path().join("tap.sock");
    let py = python();
    let mut cmd = seed_defaults(
        py.to_str().unwrap(),
        &format!("socket:{}", sock.display()),
        "1",
    );
    cmd.args(["-c", "import time\nprint('early')\ntime.sleep(1)"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let receiver = TapReceiver::start(&sock);
    let out = wait_output(child, LIMIT);
    assert_ok(&out);
    assert!(
        receiver.wait_for(SETTLE, |c| c.lines(STDOUT) == ["early"]),
        "{:?}",
        receiver.snapshot()
    );
    let c = receiver.snapshot();
    assert!(c.hellos.iter().all(|(_, h, fds)| h.ring && *fds));
}

/// The same when the process leaves without the destructor: `_exit` (dash ends that way) and
/// `exec` (a script's last command; the ring's memfd is close-on-exec) hand the ring over too.
#[test]
fn exit_and_exec_without_destructor_hand_the_ring_over() {
    for (name, tail) in [
        ("_exit", "os._exit(0)"),
        ("execv", "os.execv('/bin/true', ['true'])"),
        ("execlp", "os.execlp('true', 'true')"),
    ] {
        let dir = TempDir::new("connect-exec");
        let sock = dir.path().join("tap.sock");
        let py = python();
        let mut cmd = seed_defaults(
            py.to_str().unwrap(),
            &format!("socket:{}", sock.display()),
            "1",
        );
        cmd.args([
            "-c",
            &format!("import os, time\nprint('early {name}')\ntime.sleep(1)\n{tail}"),
        ]);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let receiver = TapReceiver::start(&sock);
        let out = wait_output(child, LIMIT);
        assert_ok(&out);
        let want = format!("early {name}");
        assert!(
            receiver.wait_for(SETTLE, |c| c.lines(STDOUT) == [want.as_str()]),
            "{name}: {:?}",
            receiver.snapshot()
        );
    }
}

/// A suppressed stream whose records an agent took but never made safe (its Forward server
/// is down, no spool) and that then died: when the program exits with no agent, those records
/// are written to the program's stdout after all (fail open) — nothing the program printed is
/// lost. Its stdout is a file here, read once it has exited.
#[test]
fn suppressed_records_an_agent_never_made_safe_are_written_out_at_exit() {
    let mut agent = Agent::start(
        "connect-writeback",
        // Port 1 on loopback refuses: nothing is ever acknowledged, so nothing is released.
        &["--output", "forward", "--forward", "127.0.0.1:1"],
    );
    let dir = TempDir::new("connect-writeback-app");
    let out_path = dir.path().join("stdout.txt");
    let go = dir.path().join("go");
    let py = python();
    let mut cmd = seed_defaults(
        py.to_str().unwrap(),
        &format!("socket:{}", agent.socket.display()),
        "1",
    );
    cmd.env("LLT_SUPPRESS_STDOUT", "true").args([
        "-c",
        &format!(
            "import os, time\nfor i in range(5): print(f'kept {{i}}')\n\
             while not os.path.exists({:?}): time.sleep(0.05)\n",
            go.display()
        ),
    ]);
    cmd.stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    // The agent holds the five records (read, never acknowledged), then dies.
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        std::fs::read(&out_path).unwrap().is_empty(),
        "suppressed while the agent held them"
    );
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    std::fs::write(&go, b"").unwrap();
    let out = wait_output(child, LIMIT);
    assert_ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(&out_path).unwrap()),
        "kept 0\nkept 1\nkept 2\nkept 3\nkept 4\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(&out_path).unwrap()),
        "kept 0\nkept 1\nkept 2\nkept 3\nkept 4\n"
    );
}

/// Without any agent the program runs as it would untapped (its exit attempt fails at once).
#[test]
fn no_agent_at_all_changes_nothing_for_the_program() {
    let dir = TempDir::new("connect-none");
    let sock = dir.path().join("nobody.sock");
    let mut cmd = seed_defaults("sh", &format!("socket:{}", sock.display()), "3");
    cmd.args(["-c", "echo out; echo err >&2; exit 7"]);
    let out = run(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
}

#[test]
fn tap_into_takes_words() {
    let s = Setup::new("connect-words", Transport::Ring);
    let cases = [
        ("none", false, false),
        ("stdout", true, false),
        ("StdErr", false, true),
        ("both", true, true),
    ];
    for (word, out, err) in cases {
        let mut cmd = seed_defaults("sh", &s.receiver.target(), word);
        cmd.args(["-c", &format!("echo out-{word}; echo err-{word} >&2")]);
        let got = run(cmd, LIMIT);
        assert_ok(&got);
        assert!(got.stderr.starts_with(b"err-"), "no notice: {got:?}");
        if out || err {
            let want = if out {
                format!("out-{word}")
            } else {
                format!("err-{word}")
            };
            let stream = if out { STDOUT } else { STDERR };
            assert!(
                s.receiver
                    .wait_for(SETTLE, |c| c.lines(stream).contains(&want)),
                "{word}"
            );
        }
        // Give a wrongly tapped line the time to arrive before looking for it.
        std::thread::sleep(Duration::from_millis(200));
        let c = s.receiver.snapshot();
        assert_eq!(
            c.lines(STDOUT).contains(&format!("out-{word}")),
            out,
            "{word}"
        );
        assert_eq!(
            c.lines(STDERR).contains(&format!("err-{word}")),
            err,
            "{word}"
        );
    }
}

/// A malformed `LLT_TAP_INTO` taps nothing — and says so, without debug mode, in one line for
/// the whole tree of processes (a shell and the programs it runs).
#[test]
fn a_malformed_tap_into_is_said_once_per_process_tree() {
    let s = Setup::new("connect-malformed", Transport::Ring);
    let mut cmd = seed_defaults("sh", &s.receiver.target(), "stdout,stderr");
    cmd.args(["-c", "echo a; /bin/echo b; sh -c 'echo c >&2'"]);
    let out = run(cmd, LIMIT);
    assert_ok(&out);
    assert_eq!(out.stdout, b"a\nb\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err,
        "[liblogtap] ignoring malformed LLT_TAP_INTO=\"stdout,stderr\" (expected 0/none, \
         1/stdout, 2/stderr or 3/both): stdout and stderr are not tapped\nc\n"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(s.receiver.snapshot().records.is_empty());
}

/// Short programs one after the other, each under the seed defaults: each one's line arrives.
#[test]
fn several_short_programs_in_a_row_each_deliver() {
    let agent = Agent::start("connect-many", &["--output", "stdout"]);
    let target = format!("socket:{}", agent.socket.display());
    for i in 0..5 {
        let mut cmd = seed_defaults("/bin/echo", &target, "stdout");
        cmd.arg(format!("short {i}"));
        let out = run(cmd, LIMIT);
        assert_ok(&out);
    }
    agent.wait_records(5, SETTLE);
    let mut got = messages(&agent);
    got.sort();
    let want: Vec<String> = (0..5).map(|i| format!("short {i}")).collect();
    assert_eq!(got, want);
}
