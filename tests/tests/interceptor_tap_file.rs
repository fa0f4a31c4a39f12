//! Prove-it 3: the tap file followed through `open()`, `dup2`, `close`, a logrotate-style
//! rename and reopen, `fopen()+fprintf` and a relative `openat` — every line arrives; with
//! `LLT_SUPPRESS_TAP_FILE=true` the file does not grow; with no receiver listening the
//! suppressed lines land in the file instead (nothing lost). Ring and DATA frames.

mod interceptor_support;

use interceptor_support::*;

fn expected_lines() -> Vec<String> {
    let mut v = Vec::new();
    for what in [
        "open line",
        "dup2 line",
        "after close line",
        "reopened line",
        "fopen line",
        "relative line",
    ] {
        for i in 0..10 {
            v.push(format!("{what} {i}"));
        }
    }
    v
}

fn run_sequence(s: &Setup, suppress: bool, target: Option<&str>) -> std::path::PathBuf {
    let exe = compile("tapfile", s.dir.path());
    let log = s.path("app.log");
    let mut cmd = s.command(&exe);
    cmd.arg("sequence").arg(&log).arg("relative.log");
    cmd.env(
        "LLT_TAP_FILE",
        format!("{}:{}/rel*.log", log.display(), s.dir.path().display()),
    );
    cmd.env(
        "LLT_SUPPRESS_TAP_FILE",
        if suppress { "true" } else { "false" },
    );
    if let Some(t) = target {
        cmd.env("LLT_TARGET", t);
    }
    assert_ok(&run(cmd, LIMIT));
    log
}

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn every_line_arrives(t: Transport) {
    let s = Setup::new("tapfile", t);
    let log = run_sequence(&s, false, None);
    let want = expected_lines();
    assert!(
        s.receiver
            .wait_for(SETTLE, |c| c.lines(FILE).len() >= want.len()),
        "{:?}",
        s.receiver.snapshot().lines(FILE)
    );
    let c = s.receiver.snapshot();
    assert_eq!(c.lines(FILE), want);
    // The app's files are written as usual.
    assert!(read(&log.with_extension("log.1")).contains("after close line 9"));
    assert!(read(&log).contains("fopen line 9"));
    // Both tap files were announced (HELLO list or FILE frame) with their indexes.
    let announced: Vec<String> = c
        .files
        .iter()
        .map(|(_, f)| f.path.clone())
        .chain(c.hellos.iter().flat_map(|(_, h, _)| h.files.clone()))
        .collect();
    assert!(
        announced.iter().any(|p| p.ends_with("/app.log")),
        "{announced:?}"
    );
    assert!(
        announced.iter().any(|p| p.ends_with("/relative.log")),
        "{announced:?}"
    );
    let rel_index = c
        .files
        .iter()
        .find(|(_, f)| f.path.ends_with("/relative.log"))
        .map(|(_, f)| f.index);
    if let Some(i) = rel_index {
        assert!(
            c.records.iter().any(|r| r.file_index == i
                && String::from_utf8_lossy(&r.data).starts_with("relative line"))
        );
    }
}

#[test]
fn tap_file_every_line_arrives_ring() {
    every_line_arrives(Transport::Ring);
}
#[test]
fn tap_file_every_line_arrives_socket() {
    every_line_arrives(Transport::Socket);
}

fn suppressed_file_does_not_grow(t: Transport) {
    let s = Setup::new("tapfile-suppressed", t);
    let log = run_sequence(&s, true, None);
    let want = expected_lines();
    assert!(
        s.receiver
            .wait_for(SETTLE, |c| c.lines(FILE).len() >= want.len())
    );
    assert_eq!(s.receiver.snapshot().lines(FILE), want);
    for f in [
        log.clone(),
        log.with_extension("log.1"),
        s.path("relative.log"),
    ] {
        assert_eq!(
            std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0),
            0,
            "{} grew",
            f.display()
        );
    }
}

#[test]
fn suppressed_tap_file_does_not_grow_ring() {
    suppressed_file_does_not_grow(Transport::Ring);
}
#[test]
fn suppressed_tap_file_does_not_grow_socket() {
    suppressed_file_does_not_grow(Transport::Socket);
}

fn no_receiver_fails_open(t: Transport) {
    let s = Setup::new("tapfile-noreceiver", t);
    let missing = format!("socket:{}", s.path("nobody-listens.sock").display());
    let log = run_sequence(&s, true, Some(&missing));
    let mut got: Vec<String> = read(&log.with_extension("log.1"))
        .lines()
        .map(str::to_owned)
        .collect();
    got.extend(read(&log).lines().map(str::to_owned));
    got.extend(read(&s.path("relative.log")).lines().map(str::to_owned));
    assert_eq!(
        got,
        expected_lines(),
        "suppressed lines must land in the files when nobody receives them"
    );
}

#[test]
fn no_receiver_suppressed_lines_land_in_the_file_ring() {
    no_receiver_fails_open(Transport::Ring);
}
#[test]
fn no_receiver_suppressed_lines_land_in_the_file_socket() {
    no_receiver_fails_open(Transport::Socket);
}

fn positional_writes(t: Transport) {
    let s = Setup::new("tapfile-positional", t);
    let exe = compile("tapfile", s.dir.path());
    let log = s.path("positional.log");
    let mut cmd = s.command(&exe);
    cmd.arg("positional").arg(&log).env("LLT_TAP_FILE", &log);
    assert_ok(&run(cmd, LIMIT));
    let want = [
        "pwrite line",
        "pwritev line",
        "pwritev2 line",
        "writev line",
        "fcntl dup line",
    ];
    assert!(
        s.receiver
            .wait_for(SETTLE, |c| c.lines(FILE).len() >= want.len())
    );
    assert_eq!(s.receiver.snapshot().lines(FILE), want);
    // Not suppressed: the file holds the same bytes.
    assert_eq!(read(&log), want.map(|l| format!("{l}\n")).concat());
}

#[test]
fn creat_pwrite_pwritev_writev_fcntl_dup_ring() {
    positional_writes(Transport::Ring);
}
#[test]
fn creat_pwrite_pwritev_writev_fcntl_dup_socket() {
    positional_writes(Transport::Socket);
}
