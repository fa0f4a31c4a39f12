//! Prove-it 2: a C program compiled with `-O2 -D_FORTIFY_SOURCE=2` under the real library —
//! stdio (printf/puts/fputs/fwrite/fprintf(stderr)/… incl. the `_chk` variants), 8 threads ×
//! 10,000 lines with write/writev, writes from a signal handler, fork and execve — with the
//! ring and with DATA frames.

mod interceptor_support;

use std::collections::HashSet;

use interceptor_support::*;

fn stdio(t: Transport) {
    let s = Setup::new("c-stdio", t);
    let exe = compile("tapprog", s.dir.path());
    let mut cmd = s.command(&exe);
    cmd.arg("stdio").env("LLT_TAP_INTO", "3");
    let out = run(cmd, LIMIT);
    assert_ok(&out);
    // FORTIFY really routed printf through __printf_chk: the symbol is imported.
    let nm = std::process::Command::new("nm")
        .arg("-D")
        .arg(&exe)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&nm.stdout).contains("__printf_chk"));
    assert!(
        s.receiver
            .wait_for(SETTLE, |c| c.bytes(None, STDOUT).len() >= out.stdout.len()
                && c.bytes(None, STDERR).len() >= out.stderr.len())
    );
    let c = s.receiver.snapshot();
    assert_eq!(
        String::from_utf8_lossy(&c.bytes(None, STDOUT)),
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(c.bytes(None, STDERR), out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "printf 42 str\n",
        "puts line\n",
        "fputs line\n",
        "fwrite line\n",
        "c\nd\n",
        "dprintf 1\n",
    ] {
        assert!(
            text.contains(want),
            "{want:?} missing from the app's stdout"
        );
    }
    assert!(text.contains(&format!("big {} end\n", "x".repeat(8999))));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fprintf stderr 7\nfputs stderr\nperror: No such file or directory\n"),
        "{err}"
    );
}

#[test]
fn stdio_ring() {
    stdio(Transport::Ring);
}
#[test]
fn stdio_socket() {
    stdio(Transport::Socket);
}

fn threads(t: Transport) {
    let s = Setup::new("c-threads", t);
    let exe = compile("tapprog", s.dir.path());
    let mut cmd = s.command(&exe);
    // /dev/null for the app's stdout: the test reads the copies only.
    cmd.arg("threads")
        .env("LLT_TAP_INTO", "1")
        .env("LLT_RING_SIZE", "16M");
    let out = run_to_null(cmd);
    assert!(out.success());
    let total = 8 * 10_000;
    // The ring loses nothing. DATA frames are dropped, and counted, when the socket is full
    // (README, `LLT_TRANSPORT=socket`), which a loaded machine can make happen: there every
    // line must arrive or be counted, none lost unreported.
    let counted_loss_allowed = matches!(t, Transport::Socket);
    let accounted = |c: &logtap_tests::tap_receiver::Collected| {
        let dropped = if counted_loss_allowed {
            c.dropped().0 as usize
        } else {
            0
        };
        c.lines(STDOUT).len() + dropped
    };
    let arrived = s.receiver.wait_for(SETTLE, |c| accounted(c) >= total);
    let c = s.receiver.snapshot();
    let lines = c.lines(STDOUT);
    let (dropped, _) = c.dropped();
    assert!(
        arrived,
        "{} of {total} lines arrived, {dropped} reported dropped",
        lines.len()
    );
    assert_eq!(accounted(&c), total, "{dropped} reported dropped");
    let mut seen = HashSet::new();
    for l in &lines {
        let parts: Vec<&str> = l.split(' ').collect();
        assert_eq!(parts.len(), 5, "damaged line {l:?}");
        let (th, i): (u32, u32) = (parts[1].parse().unwrap(), parts[3].parse().unwrap());
        assert_eq!(
            parts[4],
            format!("payload-{:08x}", i.wrapping_mul(2654435761)),
            "damaged line {l:?}"
        );
        assert!(seen.insert((th, i)), "line {l:?} arrived twice");
    }
    assert_eq!(seen.len(), lines.len());
}

fn run_to_null(mut cmd: std::process::Command) -> std::process::ExitStatus {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    let mut child = cmd.spawn().unwrap();
    let end = std::time::Instant::now() + LIMIT;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            std::time::Instant::now() < end,
            "program did not finish in time"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn threads_ring() {
    threads(Transport::Ring);
}
#[test]
fn threads_socket() {
    threads(Transport::Socket);
}

fn signal_handler(t: Transport) {
    let s = Setup::new("c-signal", t);
    let out = s.run_tapprog(&["signal"], &[("LLT_TAP_INTO", "1")]);
    assert!(s.wait_stdout(&out));
    let c = s.receiver.snapshot();
    // A handler may run between a write and its tap, so compare the lines, not their order.
    let mut tapped = c.lines(STDOUT);
    let mut written: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    tapped.sort();
    written.sort();
    assert_eq!(tapped, written, "tapped lines differ from the app's output");
    let from_handler = c
        .lines(STDOUT)
        .iter()
        .filter(|l| l.starts_with("from signal handler"))
        .count();
    assert!(from_handler >= 200, "only {from_handler} handler lines");
    // A single-threaded process takes its `seq` with a non-locked `xadd` (one instruction a
    // handler cannot split): still one number per record.
    let mut seqs: Vec<u32> = c.records.iter().map(|r| r.seq).collect();
    let n = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "two records share a sequence number");
}

#[test]
fn signal_handler_ring() {
    signal_handler(Transport::Ring);
}
#[test]
fn signal_handler_socket() {
    signal_handler(Transport::Socket);
}

fn fork_and_exec(t: Transport) {
    let s = Setup::new("c-fork", t);
    let exe = compile("tapprog", s.dir.path());
    let mut cmd = s.command(&exe);
    cmd.arg("fork").env("LLT_TAP_INTO", "1");
    let out = run(cmd, LIMIT);
    assert_ok(&out);
    assert!(
        s.receiver
            .wait_for(SETTLE, |c| c.lines(STDOUT).len() >= 201)
    );
    let c = s.receiver.snapshot();
    for r in &c.records {
        let text = String::from_utf8_lossy(&r.data);
        for l in text.lines() {
            if l.starts_with("parent before fork") {
                continue;
            }
            if let Some(rest) = l
                .strip_prefix("parent ")
                .or_else(|| l.strip_prefix("child "))
            {
                let pid: u32 = rest.split(' ').next().unwrap().parse().unwrap();
                assert_eq!(pid, r.pid, "line {l:?} carried pid {}", r.pid);
            }
        }
    }
    let pids: HashSet<u32> = c.records.iter().map(|r| r.pid).collect();
    assert_eq!(pids.len(), 2, "parent and child");
    let hello_pids: HashSet<u32> = c.hello_pids().into_iter().collect();
    assert_eq!(pids, hello_pids, "each process says HELLO");

    // execve of a child keeps tapping.
    let mut cmd = s.command(&exe);
    cmd.arg("exec").env("LLT_TAP_INTO", "1");
    let out = run(cmd, LIMIT);
    assert_ok(&out);
    assert!(
        s.receiver.wait_for(SETTLE, |c| c
            .lines(STDOUT)
            .iter()
            .any(|l| l.starts_with("exec child"))),
        "the exec'd program was not tapped"
    );
    let c = s.receiver.snapshot();
    let line = c
        .lines(STDOUT)
        .into_iter()
        .find(|l| l.starts_with("exec child"))
        .unwrap();
    let pid: u32 = line.split(' ').nth(2).unwrap().parse().unwrap();
    assert!(
        c.records
            .iter()
            .any(|r| r.pid == pid && String::from_utf8_lossy(&r.data).contains("exec child"))
    );
    assert!(c.hello_pids().contains(&pid));
}

#[test]
fn fork_and_exec_ring() {
    fork_and_exec(Transport::Ring);
}
#[test]
fn fork_and_exec_socket() {
    fork_and_exec(Transport::Socket);
}

/// `LLT_TAP_CHILDREN=false`: the program and its forked children are tapped, a program it
/// `exec`s is not (the library left the `LD_PRELOAD` it inherits); the default taps all.
#[test]
fn tap_children_false_stops_at_exec() {
    let s = Setup::new("c-tap-children", Transport::Ring);
    let env = [("LLT_TAP_INTO", "1"), ("LLT_TAP_CHILDREN", "false")];
    // exec mode: "before exec" from the program, "exec child … says hello" from the exec'd one.
    let out = s.run_tapprog(&["exec"], &env);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("exec child"), "the child ran: {text}");
    assert!(s.receiver.wait_for(SETTLE, |c| {
        c.lines(STDOUT).iter().any(|l| l.starts_with("before exec"))
    }));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let lines = s.receiver.snapshot().lines(STDOUT);
    assert!(
        !lines.iter().any(|l| l.starts_with("exec child")),
        "the exec'd program was tapped: {lines:?}"
    );
    // Forked, not exec'd: still the same program, still tapped.
    s.run_tapprog(&["fork"], &env);
    assert!(
        s.receiver.wait_for(SETTLE, |c| c
            .lines(STDOUT)
            .iter()
            .filter(|l| l.starts_with("child "))
            .count()
            == 100),
        "the forked child was not tapped"
    );
}
