//! Prove-it 7: hostile-but-normal host behaviour. A daemon that closes every fd above 2 (close
//! loop and close_range) and then opens its own files and sockets never receives a byte from
//! us, and tapping goes on; the agent dying mid-stream never kills a C program with SIGPIPE;
//! `fclose` of the tap file followed by an unrelated `fopen` of the same fd number is not
//! tapped; a 1 MiB single write arrives whole (CONTINUED parts); `errno` after a successful
//! tapped write is what the real call left. Ring and DATA frames.

mod interceptor_support;

use std::process::Stdio;
use std::time::Duration;

use interceptor_support::*;

fn daemon_closing_fds(t: Transport) {
    let s = Setup::new("hostile-daemon", t);
    let exe = compile("daemon", s.dir.path());
    let own = s.path("own.data");
    let mut cmd = s.command(&exe);
    cmd.arg(&own).env("LLT_TAP_INTO", "1");
    let out = run(cmd, LIMIT);
    assert_ok(&out);
    let data = std::fs::read(&own).unwrap();
    assert_eq!(
        data,
        b"own data\n".repeat(200),
        "the daemon's own file got foreign bytes"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dups 1000"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        s.receiver.wait_for(SETTLE, |c| c
            .lines(STDOUT)
            .iter()
            .any(|l| l == "after close 199")),
        "tapping stopped"
    );
    let c = s.receiver.snapshot();
    let mut want: Vec<String> = (0..10).map(|i| format!("before close {i}")).collect();
    want.extend((0..200).map(|i| format!("after close {i}")));
    assert_eq!(c.lines(STDOUT), want);
    // One connection: the daemon's close loop did not take ours away.
    assert_eq!(c.connections, 1);
}

#[test]
fn daemon_closing_every_fd_ring() {
    daemon_closing_fds(Transport::Ring);
}
#[test]
fn daemon_closing_every_fd_socket() {
    daemon_closing_fds(Transport::Socket);
}

fn agent_dies_no_sigpipe(t: Transport) {
    let s = Setup::new("hostile-sigpipe", t);
    let exe = compile("tapprog", s.dir.path());
    let mut cmd = s.command(&exe);
    cmd.args(["keep-writing", "2500"]).env("LLT_TAP_INTO", "1");
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    assert!(s.receiver.wait_for(SETTLE, |c| !c.records.is_empty()));
    std::thread::sleep(Duration::from_millis(300));
    let Setup { dir, receiver, .. } = s;
    receiver.stop();
    let out = wait_output(child, LIMIT);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("survived"));
    drop(dir);
}

#[test]
fn agent_dying_never_sigpipes_the_app_ring() {
    agent_dies_no_sigpipe(Transport::Ring);
}
#[test]
fn agent_dying_never_sigpipes_the_app_socket() {
    agent_dies_no_sigpipe(Transport::Socket);
}

fn fclose_then_reuse(t: Transport) {
    let s = Setup::new("hostile-fclose", t);
    let exe = compile("tapfile", s.dir.path());
    let (tapped, other) = (s.path("tapped.log"), s.path("other.log"));
    let mut cmd = s.command(&exe);
    cmd.arg("fclose-reuse")
        .arg(&tapped)
        .arg(&other)
        .env("LLT_TAP_FILE", &tapped);
    assert_ok(&run(cmd, LIMIT));
    assert!(s.receiver.wait_for(SETTLE, |c| {
        c.lines(FILE).contains(&"tapped line".to_string())
    }));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        s.receiver.snapshot().lines(FILE),
        vec!["tapped line".to_string()]
    );
    assert_eq!(
        std::fs::read_to_string(&other).unwrap(),
        "untapped line\nuntapped write\n"
    );
}

#[test]
fn fclose_then_unrelated_fopen_is_not_tapped_ring() {
    fclose_then_reuse(Transport::Ring);
}
#[test]
fn fclose_then_unrelated_fopen_is_not_tapped_socket() {
    fclose_then_reuse(Transport::Socket);
}

fn one_mib_write(t: Transport) {
    let s = Setup::new("hostile-1mib", t);
    let exe = compile("tapprog", s.dir.path());
    let mut cmd = s.command(&exe);
    cmd.arg("bigwrite").env("LLT_TAP_INTO", "1");
    let out = run(cmd, LIMIT);
    assert_ok(&out);
    assert_eq!(out.stdout.len(), 1 << 20);
    assert!(
        s.receiver
            .wait_for(SETTLE, |c| c.bytes(None, STDOUT).len() >= 1 << 20)
    );
    let c = s.receiver.snapshot();
    assert!(
        c.bytes(None, STDOUT) == out.stdout,
        "the 1 MiB write did not arrive intact"
    );
    let parts: Vec<_> = c.records.iter().filter(|r| r.stream == STDOUT).collect();
    assert!(parts.len() >= 16, "{} parts", parts.len());
    assert!(
        parts[..parts.len() - 1].iter().all(|r| r.continued) && !parts[parts.len() - 1].continued
    );
    assert!(parts.iter().all(|r| r.data.len() <= 64 * 1024));
    assert!(
        parts
            .windows(2)
            .all(|w| w[1].seq == w[0].seq.wrapping_add(1)),
        "parts are consecutive"
    );
}

#[test]
fn one_mib_write_arrives_whole_ring() {
    one_mib_write(Transport::Ring);
}
#[test]
fn one_mib_write_arrives_whole_socket() {
    one_mib_write(Transport::Socket);
}

fn errno_preserved(t: Transport, with_receiver: bool) {
    let s = Setup::new("hostile-errno", t);
    let exe = compile("tapprog", s.dir.path());
    let mut cmd = s.command(&exe);
    cmd.arg("errno").env("LLT_TAP_INTO", "3");
    if !with_receiver {
        // Every connect attempt fails (ENOENT) inside the hook: errno must not show it.
        cmd.env(
            "LLT_TARGET",
            format!("socket:{}", s.path("missing.sock").display()),
        )
        .env("LLT_TARGET_RECONNECT", "0");
    }
    let out = run(cmd, LIMIT);
    assert_ok(&out);
    if with_receiver {
        assert!(
            s.receiver
                .wait_for(SETTLE, |c| c.lines(STDOUT).len() >= 100)
        );
    }
}

#[test]
fn errno_is_what_the_real_call_left_ring() {
    errno_preserved(Transport::Ring, true);
    errno_preserved(Transport::Ring, false);
}
#[test]
fn errno_is_what_the_real_call_left_socket() {
    errno_preserved(Transport::Socket, true);
    errno_preserved(Transport::Socket, false);
}

fn vfork_child_closing_fds(t: Transport) {
    let s = Setup::new("hostile-vfork", t);
    let log = s.path("app.log");
    // CPython's subprocess spawns with vfork() where it can, and the child closes every fd
    // above 2 (close_range) before exec — in the parent's memory. The parent's tap file
    // must stay tapped.
    let script = format!(
        "import subprocess\nf = open({:?}, 'a', buffering=1)\nf.write('before\\n')\n\
         for _ in range(3): subprocess.run(['/bin/true'], close_fds=True)\nf.write('after\\n')\n",
        log.display().to_string()
    );
    let mut cmd = s.command(python());
    cmd.args(["-c", &script]).env("LLT_TAP_FILE", &log);
    assert_ok(&run(cmd, LIMIT));
    assert!(
        s.receiver
            .wait_for(SETTLE, |c| c.lines(FILE).contains(&"after".to_string())),
        "{:?}",
        s.receiver.snapshot().lines(FILE)
    );
    assert_eq!(
        s.receiver.snapshot().lines(FILE),
        vec!["before".to_string(), "after".to_string()]
    );
}

#[test]
fn vfork_child_closing_fds_keeps_the_parent_tapping_ring() {
    vfork_child_closing_fds(Transport::Ring);
}
#[test]
fn vfork_child_closing_fds_keeps_the_parent_tapping_socket() {
    vfork_child_closing_fds(Transport::Socket);
}

/// A program that forbids itself `rdtsc` (`prctl(PR_SET_TSC, PR_TSC_SIGSEGV)`, as some sandboxes
/// do) between tapped writes: the library, which stamps records from the TSC where it can,
/// must notice (its `prctl` hook) and never make the program fault; every line arrives.
fn rdtsc_forbidden_midway(t: Transport) {
    let s = Setup::new("hostile-notsc", t);
    let out = s.run_tapprog(&["notsc"], &[("LLT_TAP_INTO", "1")]);
    assert!(s.wait_stdout(&out));
    // printf's lines reach the pipe when stdio flushes at exit, the tap sees them when they
    // are printed: compare the lines, not their order.
    let mut tapped = s.receiver.snapshot().lines(STDOUT);
    let mut written: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(written.len(), 201, "the program ran to its end");
    tapped.sort();
    written.sort();
    assert_eq!(tapped, written);
}

#[test]
fn rdtsc_forbidden_midway_ring() {
    rdtsc_forbidden_midway(Transport::Ring);
}
#[test]
fn rdtsc_forbidden_midway_socket() {
    rdtsc_forbidden_midway(Transport::Socket);
}
