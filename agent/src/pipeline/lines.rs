//! Line assembly: the tapped byte stream of one (pid, stream, file) back into lines.
//!
//! A program's writes do not respect lines: `print` may write one line in two calls, a buffered
//! logger many lines in one. The assembler splits on `\n` (which it drops; every other byte,
//! `\r` included, is kept), holds an unterminated tail, and emits it marked `partial` when
//! - it reaches `max_line_bytes` and more bytes of the same line follow (each cut piece is a
//!   record of exactly `max_line_bytes`; the piece that ends with the newline is not partial),
//! - it has waited `partial_flush` for its newline ([`LineAssembler::flush_stale`]),
//! - the stream ends ([`LineAssembler::finish`]: the process exited without a final newline).
//!
//! So `partial: true` means exactly "this record does not end with a newline the program wrote";
//! concatenating a run of partial records and the next non-partial one gives the line back.
//! A line's time is the time of the write that brought its first byte. The common case — a
//! whole line inside one write — is emitted straight from the write's bytes, without copying.

use std::time::{Duration, Instant};

/// One assembled line (without its newline), borrowed from the assembler or the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// Time (ns since the epoch) of the write that brought the first byte.
    pub time_ns: u64,
    pub bytes: &'a [u8],
    /// The record does not end with a newline the program wrote.
    pub partial: bool,
}

/// Reassembles lines of one byte stream.
#[derive(Debug)]
pub struct LineAssembler {
    pending: Vec<u8>,
    pending_time_ns: u64,
    pending_since: Option<Instant>,
    max_line: usize,
}

/// A pending buffer that grew past this is released after use, so that one long line does not
/// pin memory in each of thousands of idle streams.
const KEEP_CAPACITY: usize = 16 * 1024;

impl LineAssembler {
    /// An assembler cutting lines longer than `max_line` bytes (at least 1).
    pub fn new(max_line: usize) -> LineAssembler {
        LineAssembler {
            pending: Vec::new(),
            pending_time_ns: 0,
            pending_since: None,
            max_line: max_line.max(1),
        }
    }

    /// Feeds the bytes of one write made at `time_ns`; calls `emit` for each finished record.
    pub fn push(
        &mut self,
        time_ns: u64,
        data: &[u8],
        now: Instant,
        emit: &mut impl FnMut(Line<'_>),
    ) {
        let mut rest = data;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            self.feed(time_ns, &rest[..nl], now, emit);
            self.end_line(time_ns, emit);
            rest = &rest[nl + 1..];
        }
        self.feed(time_ns, rest, now, emit);
    }

    /// Bytes of a line segment that holds no newline.
    fn feed(
        &mut self,
        time_ns: u64,
        mut seg: &[u8],
        now: Instant,
        emit: &mut impl FnMut(Line<'_>),
    ) {
        // Straight from the write while nothing is pending: full pieces that more bytes follow.
        if self.pending.is_empty() {
            while seg.len() > self.max_line {
                emit(Line {
                    time_ns,
                    bytes: &seg[..self.max_line],
                    partial: true,
                });
                seg = &seg[self.max_line..];
            }
        }
        while !seg.is_empty() {
            if self.pending.len() == self.max_line {
                self.emit_pending(true, emit);
            }
            if self.pending.is_empty() {
                self.pending_time_ns = time_ns;
                self.pending_since = Some(now);
            }
            let take = (self.max_line - self.pending.len()).min(seg.len());
            self.pending.extend_from_slice(&seg[..take]);
            seg = &seg[take..];
        }
    }

    /// A newline: the pending bytes (maybe none) plus what `feed` gave are one line.
    fn end_line(&mut self, time_ns: u64, emit: &mut impl FnMut(Line<'_>)) {
        if self.pending_since.is_none() {
            // Nothing pending: an empty line (the segment before it was empty).
            emit(Line {
                time_ns,
                bytes: &[],
                partial: false,
            });
        } else {
            self.emit_pending(false, emit);
        }
    }

    fn emit_pending(&mut self, partial: bool, emit: &mut impl FnMut(Line<'_>)) {
        emit(Line {
            time_ns: self.pending_time_ns,
            bytes: &self.pending,
            partial,
        });
        self.pending.clear();
        self.pending_since = None;
        if self.pending.capacity() > KEEP_CAPACITY {
            self.pending = Vec::new();
        }
    }

    /// Emits the pending tail as partial if it has waited at least `partial_flush`.
    pub fn flush_stale(
        &mut self,
        now: Instant,
        partial_flush: Duration,
        emit: &mut impl FnMut(Line<'_>),
    ) {
        if let Some(since) = self.pending_since
            && now.saturating_duration_since(since) >= partial_flush
        {
            self.emit_pending(true, emit);
        }
    }

    /// The stream ended: emits any pending tail as partial.
    pub fn finish(&mut self, emit: &mut impl FnMut(Line<'_>)) {
        if self.pending_since.is_some() {
            self.emit_pending(true, emit);
        }
    }

    /// Whether bytes wait for their newline.
    pub fn has_pending(&self) -> bool {
        self.pending_since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Out = Vec<(u64, Vec<u8>, bool)>;

    fn run(max: usize, writes: &[(u64, &[u8])]) -> Out {
        let mut a = LineAssembler::new(max);
        let mut out = Vec::new();
        let now = Instant::now();
        for (t, w) in writes {
            a.push(*t, w, now, &mut |l: Line<'_>| {
                out.push((l.time_ns, l.bytes.to_vec(), l.partial))
            });
        }
        a.finish(&mut |l: Line<'_>| out.push((l.time_ns, l.bytes.to_vec(), l.partial)));
        out
    }

    #[test]
    fn splits_and_joins() {
        let out = run(100, &[(1, b"a\nb"), (2, b"c\n\nd\n"), (3, b"tail")]);
        assert_eq!(
            out,
            vec![
                (1, b"a".to_vec(), false),
                (1, b"bc".to_vec(), false),
                (2, b"".to_vec(), false),
                (2, b"d".to_vec(), false),
                (3, b"tail".to_vec(), true),
            ]
        );
    }

    #[test]
    fn long_lines_are_cut_at_max() {
        let out = run(
            4,
            &[
                (1, b"abcdefghij\n"),
                (2, b"wxyz\n"),
                (3, b"12"),
                (4, b"345\n"),
            ],
        );
        assert_eq!(
            out,
            vec![
                (1, b"abcd".to_vec(), true),
                (1, b"efgh".to_vec(), true),
                (1, b"ij".to_vec(), false),
                (2, b"wxyz".to_vec(), false),
                (3, b"1234".to_vec(), true),
                (4, b"5".to_vec(), false),
            ]
        );
    }

    #[test]
    fn stale_tail_is_flushed_partial() {
        let mut a = LineAssembler::new(100);
        let t0 = Instant::now();
        let mut out = Vec::new();
        a.push(7, b"waiting", t0, &mut |_| panic!("nothing complete yet"));
        a.flush_stale(
            t0 + Duration::from_millis(10),
            Duration::from_secs(1),
            &mut |_| panic!("too early"),
        );
        a.flush_stale(
            t0 + Duration::from_secs(1),
            Duration::from_secs(1),
            &mut |l| out.push((l.time_ns, l.bytes.to_vec(), l.partial)),
        );
        assert_eq!(out, vec![(7, b"waiting".to_vec(), true)]);
        assert!(!a.has_pending());
    }

    proptest! {
        /// Any split of the stream into writes gives the same records, and joining the records
        /// of a line gives the line back.
        #[test]
        fn any_split_same_lines(text in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'x'), Just(b'y')], 0..200),
                cuts in proptest::collection::vec(0usize..200, 0..10),
                max in 1usize..20) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(text.len())).collect();
            cuts.push(0);
            cuts.push(text.len());
            cuts.sort_unstable();
            let writes: Vec<(u64, &[u8])> =
                cuts.windows(2).map(|w| (0, &text[w[0]..w[1]])).collect();
            let split = run(max, &writes);
            let whole = run(max, &[(0, &text)]);
            let strip = |v: &Out| v.iter().map(|(_, b, p)| (b.clone(), *p)).collect::<Vec<_>>();
            prop_assert_eq!(strip(&split), strip(&whole));
            let mut joined = Vec::new();
            for (_, b, partial) in &split {
                prop_assert!(b.len() <= max);
                joined.extend_from_slice(b);
                if !partial { joined.push(b'\n'); }
            }
            prop_assert_eq!(joined, text);
        }
    }
}
