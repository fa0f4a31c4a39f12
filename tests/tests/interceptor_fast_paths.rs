//! The hook path's fast paths, each against a real C program under the real library (ring and
//! socket transport):
//! - printf on a fully buffered FILE is tapped from the FILE's own buffer; every buffering
//!   mode (full, a tiny 100-byte buffer, line, none), lines of every length (up to 6,000
//!   bytes: the buffer fills in mid-call and the shim formats again), and 4 threads printing
//!   at once must give the tap exactly the bytes of the FILE, in the FILE's order;
//! - record timestamps come from the TSC where the kernel keeps time with it: each must lie
//!   within the `CLOCK_REALTIME` reads the program took around its write, across the
//!   library's 1 ms re-anchoring, and never decrease; `LLT_CLOCK=realtime` likewise.
//!
//! (The third fast path, a single-threaded process's non-locked `seq` increment, is checked by
//! `interceptor_c_program`'s signal-handler test: unique `seq` while a handler writes.)

mod interceptor_support;

use std::collections::HashSet;

use interceptor_support::*;

fn tapped_equals_written(mode: &str, t: Transport) {
    let s = Setup::new(&format!("printf-{mode}"), t);
    let out = s.run_tapprog(
        &["printf-modes", mode],
        &[("LLT_TAP_INTO", "1"), ("LLT_RING_SIZE", "4M")],
    );
    assert!(out.stdout.ends_with(b"end\n"));
    assert!(s.wait_stdout(&out), "not every byte arrived");
    let c = s.receiver.snapshot();
    assert_eq!(c.dropped(), (0, 0));
    let tapped = c.bytes(None, STDOUT);
    if tapped != out.stdout {
        let at = tapped
            .iter()
            .zip(&out.stdout)
            .position(|(a, b)| a != b)
            .unwrap_or(tapped.len().min(out.stdout.len()));
        panic!(
            "{mode}: tapped {} bytes, written {}; first difference at {at}: tapped {:?} written {:?}",
            tapped.len(),
            out.stdout.len(),
            String::from_utf8_lossy(&tapped[at.saturating_sub(20)..(at + 40).min(tapped.len())]),
            String::from_utf8_lossy(
                &out.stdout[at.saturating_sub(20)..(at + 40).min(out.stdout.len())]
            ),
        );
    }
}

#[test]
fn printf_fully_buffered_ring() {
    tapped_equals_written("full", Transport::Ring);
}
#[test]
fn printf_fully_buffered_socket() {
    tapped_equals_written("full", Transport::Socket);
}
#[test]
fn printf_tiny_buffer_ring() {
    tapped_equals_written("small", Transport::Ring);
}
#[test]
fn printf_tiny_buffer_socket() {
    tapped_equals_written("small", Transport::Socket);
}
#[test]
fn printf_line_buffered_ring() {
    tapped_equals_written("line", Transport::Ring);
}
#[test]
fn printf_unbuffered_ring() {
    tapped_equals_written("none", Transport::Ring);
}
#[test]
fn printf_unbuffered_socket() {
    tapped_equals_written("none", Transport::Socket);
}

fn printf_threads(t: Transport) {
    let s = Setup::new("printf-threads", t);
    let out = s.run_tapprog(
        &["printf-threads"],
        &[("LLT_TAP_INTO", "1"), ("LLT_RING_SIZE", "4M")],
    );
    assert!(s.wait_stdout(&out));
    let c = s.receiver.snapshot();
    // The FILE lock orders the tap like the FILE: the same bytes in the same order.
    assert_eq!(
        c.bytes(None, STDOUT),
        out.stdout,
        "tapped bytes differ from the FILE's"
    );
    let lines: HashSet<String> = c.lines(STDOUT).into_iter().collect();
    assert_eq!(lines.len(), 4 * 2000, "a line is missing, doubled or torn");
}

#[test]
fn printf_threads_ring() {
    printf_threads(Transport::Ring);
}
#[test]
fn printf_threads_socket() {
    printf_threads(Transport::Socket);
}

fn clocksource_is_tsc() -> bool {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .is_ok_and(|s| s.trim() == "tsc")
}

fn timestamps(t: Transport, clock: Option<&str>) {
    let s = Setup::new("clock", t);
    let n = 3000usize;
    let mut env = vec![("LLT_TAP_INTO", "1"), ("LLT_DEBUG_MODE", "1")];
    env.extend(clock.map(|c| ("LLT_CLOCK", c)));
    let out = s.run_tapprog(&["clock", &n.to_string()], &env);
    let err = String::from_utf8_lossy(&out.stderr);
    // The debug line says which clock the library chose; on a TSC machine the default must
    // really be the TSC path (or this test would not test it).
    let expect = match clock {
        Some("realtime") => "clock realtime",
        _ if clocksource_is_tsc() => "clock tsc",
        _ => "clock realtime",
    };
    assert!(err.contains(expect), "expected {expect:?} in: {err}");
    assert!(s.receiver.wait_for(SETTLE, |c| c.lines(STDOUT).len() >= n));
    let c = s.receiver.snapshot();
    let mut bounds = vec![(0u64, 0u64); n];
    for l in err.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        if let [i, a, b] = f[..]
            && let (Ok(i), Ok(a), Ok(b)) = (i.parse::<usize>(), a.parse(), b.parse())
        {
            bounds[i] = (a, b);
        }
    }
    assert!(bounds.iter().all(|&(a, b)| a > 0 && b >= a));
    // Interpolation error is well under a microsecond; slewing after a re-anchor is bounded
    // by 100 µs. A broken conversion is off by far more.
    let tolerance = 200_000u64;
    let mut last = 0u64;
    let mut worst = 0u64;
    let mut seen = 0usize;
    for r in c.records.iter().filter(|r| r.stream == STDOUT) {
        let text = String::from_utf8_lossy(&r.data);
        let i: usize = text
            .trim()
            .strip_prefix("tick ")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("unexpected record {text:?}"));
        let (a, b) = bounds[i];
        let off = a.saturating_sub(r.time_ns).max(r.time_ns.saturating_sub(b));
        worst = worst.max(off);
        assert!(
            off <= tolerance,
            "record {i} stamped {} ns, written between {a} and {b}",
            r.time_ns
        );
        assert!(r.time_ns >= last, "stamp of record {i} went back");
        last = r.time_ns;
        seen += 1;
    }
    assert_eq!(seen, n);
    eprintln!("worst distance to the program's own clock reads: {worst} ns");
}

#[test]
fn timestamps_match_realtime_ring() {
    timestamps(Transport::Ring, None);
}
#[test]
fn timestamps_match_realtime_socket() {
    timestamps(Transport::Socket, None);
}
#[test]
fn timestamps_with_llt_clock_realtime() {
    timestamps(Transport::Ring, Some("realtime"));
}
