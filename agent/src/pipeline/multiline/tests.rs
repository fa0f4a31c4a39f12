use super::*;

type Out = Vec<(u64, String, bool)>;

fn assembly(mode: &str) -> Assembly {
    let m = Multiline::compile(&mode.parse().unwrap(), &[]).unwrap();
    m.for_stream("stdout", None).clone()
}

/// Feeds `writes` (time, bytes, ends_write) and finishes the stream.
fn run(mode: &str, max: usize, writes: &[(u64, &str, bool)]) -> Out {
    let mut a = EventAssembler::new(&assembly(mode), max);
    let mut out = Vec::new();
    let now = Instant::now();
    let mut emit = |l: Line<'_>| {
        out.push((
            l.time_ns,
            String::from_utf8(l.bytes.to_vec()).unwrap(),
            l.partial,
        ))
    };
    for (t, w, end) in writes {
        a.push(*t, w.as_bytes(), *end, now, &mut emit);
    }
    a.finish(&mut emit);
    out
}

fn rec(t: u64, s: &str) -> (u64, String, bool) {
    (t, s.to_owned(), false)
}

#[test]
fn write_mode_keeps_each_write_whole() {
    let jul =
        "Dec 04, 2026 3:03:51 PM Jul main\nSEVERE: failed\njava.lang.X: boom\n\tat a(A.java:3)\n";
    let out = run(
        "write",
        1024,
        &[(1, jul, true), (2, "one\n", true), (3, jul, true)],
    );
    let event = jul.trim_end_matches('\n');
    assert_eq!(out, [rec(1, event), rec(2, "one"), rec(3, event)]);
}

#[test]
fn write_mode_joins_writes_until_a_newline_and_parts_of_a_write() {
    let out = run(
        "write",
        1024,
        &[
            (1, "no newline ", true),
            (2, "yet", true),
            (3, " now\nsecond line\n", true),
            (4, "part one\n", false),
            (5, "part two\n", true),
        ],
    );
    assert_eq!(
        out,
        [
            rec(1, "no newline yet now\nsecond line"),
            rec(4, "part one\npart two")
        ]
    );
}

#[test]
fn write_mode_splits_a_buffer_flush_into_lines() {
    // stdio's full buffer: cut mid-line; the next write finishes the line and ends the run.
    let out = run(
        "write",
        1024,
        &[
            (1, "a\nb\nc", true),
            (2, "c\nd\n", true),
            (3, "e\nf\n", true),
        ],
    );
    assert_eq!(
        out,
        [
            rec(1, "a"),
            rec(1, "b"),
            rec(1, "cc"),
            rec(2, "d"),
            rec(3, "e\nf")
        ]
    );
}

#[test]
fn write_plus_rules_joins_a_buffer_flush_by_the_rules() {
    let out = run(
        "write+go",
        1024,
        &[
            (1, "start\npanic: boom\n\ngorout", true),
            (
                2,
                "ine 1 [running]:\nmain.main()\n\t/m.go:5 +0x1d\nexit status 2\n",
                true,
            ),
        ],
    );
    assert_eq!(
        out,
        [
            rec(1, "start"),
            rec(
                1,
                "panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/m.go:5 +0x1d"
            ),
            rec(2, "exit status 2"),
        ]
    );
}

#[test]
fn write_plus_rules_joins_line_by_line_writes() {
    // Java's printStackTrace: one write per line.
    let out = run(
        "write+java",
        1024,
        &[
            (1, "java.lang.IllegalStateException: boom\n", true),
            (2, "\tat Jul.deep(Jul.java:3)\n", true),
            (3, "\tat Jul.main(Jul.java:13)\n", true),
            (4, "Dec 04\nSEVERE: x\njava.lang.E: y\n\tat a\n", true),
            (5, "plain\n", true),
        ],
    );
    assert_eq!(
        out,
        [
            rec(
                1,
                "java.lang.IllegalStateException: boom\n\tat Jul.deep(Jul.java:3)\n\tat Jul.main(Jul.java:13)"
            ),
            rec(4, "Dec 04\nSEVERE: x\njava.lang.E: y\n\tat a"),
            rec(5, "plain"),
        ]
    );
}

#[test]
fn rules_mode_ignores_write_boundaries() {
    let out = run(
        "python",
        1024,
        &[
            (
                1,
                "ERROR:root:x\nTraceback (most recent call last):\n",
                true,
            ),
            (
                2,
                "  File \"a.py\", line 1, in <module>\n    f()\nValueError: v\n",
                true,
            ),
            (3, "next\n", true),
        ],
    );
    assert_eq!(
        out,
        [
            rec(1, "ERROR:root:x"),
            rec(
                1,
                "Traceback (most recent call last):\n  File \"a.py\", line 1, in <module>\n    f()\nValueError: v"
            ),
            rec(3, "next"),
        ]
    );
}

#[test]
fn events_longer_than_max_are_cut_into_partial_pieces() {
    let out = run("write", 8, &[(1, "0123456789\nabcdef\n", true)]);
    assert_eq!(
        out,
        [
            (1, "01234567".to_owned(), true),
            (1, "89\nabcde".to_owned(), true),
            rec(1, "f")
        ]
    );
    let out = run("java", 8, &[(1, "a.Error:\n\tat b\n\tat c\nend\n", true)]);
    let joined: String = out.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(joined, "a.Error:\n\tat b\n\tat cend");
    assert!(out.iter().all(|(_, s, _)| s.len() <= 8));
    assert_eq!(out.last(), Some(&rec(1, "end")));
}

#[test]
fn pending_events_wait_for_their_timeout_and_tails_for_partial_flush() {
    let mut a = EventAssembler::new(&assembly("java"), 1024);
    let t0 = Instant::now();
    let mut out: Vec<(String, bool)> = Vec::new();
    a.push(1, b"x.Exception: a\n\tat b\n", true, t0, &mut |_| {
        panic!("the event may go on")
    });
    assert!(a.has_pending());
    let second = Duration::from_secs(1);
    a.flush_stale(t0 + second, second, &mut |_| panic!("4 s not passed"));
    a.flush_stale(t0 + 4 * second, second, &mut |l| {
        out.push((String::from_utf8_lossy(l.bytes).into(), l.partial))
    });
    assert_eq!(out, [("x.Exception: a\n\tat b".to_owned(), false)]);
    assert!(!a.has_pending());

    let mut w = EventAssembler::new(&assembly("write"), 1024);
    w.push(1, b"no newline", true, t0, &mut |_| panic!("waits"));
    w.flush_stale(t0 + second, second, &mut |l| {
        out.push((String::from_utf8_lossy(l.bytes).into(), l.partial))
    });
    assert_eq!(out[1], ("no newline".to_owned(), true));
}

#[test]
fn off_is_the_line_assembler() {
    let out = run("off", 1024, &[(1, "a\nb", true), (2, "c\n", true)]);
    assert_eq!(out, [rec(1, "a"), rec(1, "bc")]);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    /// Pieces that make the rules move: starts, continuations, plain text, newlines.
    fn piece() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("\n"),
            Just("x"),
            Just("a.Exception: m"),
            Just("\tat f"),
            Just("Traceback (most recent call last):"),
            Just("  File \"a\""),
            Just("panic: p"),
            Just("goroutine 1 [running]:"),
            Just("E: v"),
        ]
    }

    proptest! {
        /// In every mode, for any split into writes (and parts of writes), no byte is lost,
        /// added or reordered: the records, each non-partial one followed by the newline it
        /// ended with, give the stream back; none is longer than `max`, none is timed after
        /// the write of its first byte.
        #[test]
        fn records_give_the_stream_back(
            pieces in proptest::collection::vec(piece(), 0..60),
            cuts in proptest::collection::vec((0usize..400, any::<bool>()), 0..12),
            max in 1usize..40,
            mode in prop_oneof![Just("write"), Just("java"), Just("python"), Just("go"),
                                Just("write+java"), Just("write+go")],
        ) {
            let text: String = pieces.concat();
            let mut cuts: Vec<(usize, bool)> =
                cuts.into_iter().map(|(c, e)| (c.min(text.len()), e)).collect();
            cuts.sort_unstable();
            cuts.push((text.len(), true));
            let mut writes = Vec::new();
            let mut from = 0;
            for (to, ends) in cuts {
                writes.push((from as u64, &text[from..to], ends));
                from = to;
            }
            let out = run(mode, max, &writes);
            let mut joined = String::new();
            for (t, s, partial) in &out {
                prop_assert!(s.len() <= max, "{mode}: {s:?} longer than {max}");
                // Times are the writes' offsets: a record is never later than its first byte.
                prop_assert!(*t as usize <= joined.len(), "{mode}: {s:?} at {t}");
                joined.push_str(s);
                if !partial {
                    joined.push('\n');
                }
            }
            prop_assert_eq!(joined, text);
        }
    }
}

/// The ring position a pending event holds is the one of its first write: the stream asks
/// whether what is pending came with the last push only.
#[test]
fn pending_bytes_know_whether_they_came_with_the_last_push() {
    let now = Instant::now();
    let mut a = EventAssembler::new(&assembly("java"), 1024);
    a.push(1, b"x.Exception: a\n", true, now, &mut |_| {});
    assert!(a.has_pending() && a.pending_is_from_last_push());
    a.push(2, b"\tat b\n", true, now, &mut |_| {});
    assert!(
        !a.pending_is_from_last_push(),
        "the event began one write earlier"
    );
    let mut sent = Vec::new();
    a.push(3, b"y.Exception: c\n", true, now, &mut |l| {
        sent.push(l.time_ns)
    });
    assert_eq!(sent, [1]);
    assert!(a.pending_is_from_last_push(), "the old event was sent");

    let mut w = EventAssembler::new(&assembly("write"), 1024);
    w.push(1, b"no newline ", true, now, &mut |_| {});
    w.push(2, b"yet", true, now, &mut |_| {});
    assert!(!w.pending_is_from_last_push());
    w.push(3, b" done\n", true, now, &mut |_| {});
    assert!(!w.has_pending());
}
