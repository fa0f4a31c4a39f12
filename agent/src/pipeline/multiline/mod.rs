//! Events, not lines: joining the lines of one multi-line event (a stack trace) into one record.
//!
//! The `multiline` setting chooses, per stream and per tap file, how the bytes of a
//! (pid, stream, file) become records ([`Assembly`]):
//! - `off` (default): one record per line — [`LineAssembler`] exactly as before;
//! - `write`: one record per `write()` that ends with a newline — the event as the program
//!   flushed it. logtap sees each write whole: a ring record is one write, or one part of a
//!   write larger than a record with `CONTINUED` on all parts but the last, so the assembler
//!   knows where each write ends. A write without any newline is joined with the following ones
//!   until one ends with a newline. A write that holds a newline but does not end with one is
//!   a *buffer flush* (stdio's full 4 KiB buffer, cut mid-line): it and the writes that finish
//!   its last line are split into lines — and those lines go through the rules, if any
//!   (`write+java`). The figures behind this choice are in the README's "Multi-line events";
//! - a rule set (`java`, `python`, `go`, `ruby`, or a custom `[[multiline_parser]]`): lines
//!   are joined by Fluent Bit's state machine ([`rules`]); `write+RULES` runs the same machine
//!   over whole writes, so that an event written in one write stays whole and events written
//!   line by line (Java's `printStackTrace`) are joined.
//!
//! The record's text is the event without its final newline (inner newlines kept), its time the
//! time of the write that brought its first byte. An event longer than `max_line_bytes` is cut
//! into pieces of exactly that size marked `partial`, as lines are. A pending event is sent
//! when a rule set's `flush_timeout` passes without a continuation, bytes without their newline
//! after `partial_flush` (marked partial), and everything when the stream ends.
//!
//! One assembler serves one (pid, stream, file index): processes, streams and files are never
//! joined. Threads of one process share a stream; their writes stay apart in `write` mode
//! (each write that ends with a newline is its own unit), and in rule modes an event written
//! in one write is never split by another thread's lines.

pub mod builtin;
pub mod rules;
pub mod setting;

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::lines::{Line, LineAssembler};
use rules::{RuleSet, State, Step};

pub use setting::{Assembly, Multiline, MultilineError, MultilineSpec};

/// Reassembles the records (lines or events) of one byte stream.
#[derive(Debug)]
pub struct EventAssembler {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Lines(LineAssembler),
    Events(Box<Events>),
}

impl EventAssembler {
    /// An assembler for `assembly`, cutting records longer than `max_line` bytes (at least 1).
    pub fn new(assembly: &Assembly, max_line: usize) -> EventAssembler {
        let max = max_line.max(1);
        let inner = if !assembly.write && assembly.rules.is_none() {
            Inner::Lines(LineAssembler::new(max))
        } else {
            Inner::Events(Box::new(Events {
                write: assembly.write,
                max,
                acc: Vec::new(),
                acc_time: 0,
                acc_since: None,
                acc_cut: false,
                acc_fresh: false,
                lines: LineAssembler::new(max),
                lines_fresh: false,
                streaming: false,
                joiner: Joiner {
                    rules: assembly.rules.clone(),
                    state: None,
                    buf: Vec::new(),
                    time: 0,
                    active: false,
                    last: None,
                    max,
                    fresh: false,
                },
            }))
        };
        EventAssembler { inner }
    }

    /// Feeds the bytes of one write (or of one part of it: `ends_write` is false on all parts
    /// but the last) made at `time_ns`; calls `emit` for each finished record.
    pub fn push(
        &mut self,
        time_ns: u64,
        data: &[u8],
        ends_write: bool,
        now: Instant,
        emit: &mut impl FnMut(Line<'_>),
    ) {
        match &mut self.inner {
            Inner::Lines(l) => l.push(time_ns, data, now, emit),
            Inner::Events(e) => e.push(time_ns, data, ends_write, now, emit),
        }
    }

    /// Sends what waited too long: bytes without their newline after `partial_flush` (marked
    /// partial), an event no line continued for its rule set's `flush_timeout`. A zero
    /// `partial_flush` sends everything pending at once (the ring it holds is pressured).
    pub fn flush_stale(
        &mut self,
        now: Instant,
        partial_flush: Duration,
        emit: &mut impl FnMut(Line<'_>),
    ) {
        match &mut self.inner {
            Inner::Lines(l) => l.flush_stale(now, partial_flush, emit),
            Inner::Events(e) => e.flush_stale(now, partial_flush, emit),
        }
    }

    /// The stream ended: sends everything pending.
    pub fn finish(&mut self, emit: &mut impl FnMut(Line<'_>)) {
        match &mut self.inner {
            Inner::Lines(l) => l.finish(emit),
            Inner::Events(e) => {
                e.flush_stale(Instant::now(), Duration::ZERO, emit);
            }
        }
    }

    /// Whether bytes wait (for their newline, or for an event's next line).
    pub fn has_pending(&self) -> bool {
        match &self.inner {
            Inner::Lines(l) => l.has_pending(),
            Inner::Events(e) => e.has_pending(),
        }
    }

    /// Whether every byte still pending came with the last [`EventAssembler::push`] (so the
    /// pending record starts in that write's ring record, not in an older one).
    pub fn pending_is_from_last_push(&self) -> bool {
        match &self.inner {
            // A line assembler emits all older bytes before it keeps new ones.
            Inner::Lines(_) => true,
            Inner::Events(e) => {
                (e.acc_since.is_none() || e.acc_fresh)
                    && (!e.lines.has_pending() || e.lines_fresh)
                    && (!e.joiner.active || e.joiner.fresh)
            }
        }
    }
}

/// The event modes' state.
#[derive(Debug)]
struct Events {
    write: bool,
    max: usize,
    /// `write` mode: bytes of the current write and of earlier writes that had no newline.
    acc: Vec<u8>,
    acc_time: u64,
    acc_since: Option<Instant>,
    /// Pieces of `acc` were already sent (it exceeded `max`).
    acc_cut: bool,
    acc_fresh: bool,
    /// Lines of a byte stream: every line in rule modes; a buffer flush's in `write` mode.
    lines: LineAssembler,
    lines_fresh: bool,
    /// `write` mode: inside a buffer flush, until a write ends with a newline.
    streaming: bool,
    joiner: Joiner,
}

impl Events {
    fn push(
        &mut self,
        time_ns: u64,
        data: &[u8],
        ends_write: bool,
        now: Instant,
        emit: &mut impl FnMut(Line<'_>),
    ) {
        self.acc_fresh = self.acc_since.is_none();
        self.joiner.fresh = !self.joiner.active;
        let Events {
            lines,
            joiner,
            lines_fresh,
            ..
        } = self;
        if !self.write || self.streaming {
            let mut emitted = false;
            *lines_fresh = !lines.has_pending();
            lines.push(time_ns, data, now, &mut |line| {
                emitted = true;
                joiner.line(line, now, emit)
            });
            *lines_fresh |= emitted;
            if self.write && ends_write && !lines.has_pending() {
                self.streaming = false;
            }
            return;
        }
        if self.acc_since.is_none() {
            self.acc_time = time_ns;
            self.acc_since = Some(now);
            self.acc_cut = false;
        }
        self.acc.extend_from_slice(data);
        while self.acc.len() > self.max {
            self.joiner.flush(emit);
            emit(Line {
                time_ns: self.acc_time,
                bytes: &self.acc[..self.max],
                partial: true,
            });
            self.acc.drain(..self.max);
            self.acc_cut = true;
        }
        if !ends_write {
            return;
        }
        if let Some((&b'\n', unit)) = self.acc.split_last() {
            if self.acc_cut {
                // The rest of an event already sent in pieces: its last piece.
                self.joiner.flush(emit);
                emit(Line {
                    time_ns: self.acc_time,
                    bytes: unit,
                    partial: false,
                });
            } else {
                self.joiner.unit(self.acc_time, unit, now, emit);
            }
            self.reset_acc();
        } else if memchr::memchr(b'\n', &self.acc).is_some() {
            // A buffer flush cut mid-line: a byte stream from here until a write ends a line.
            self.streaming = true;
            let acc = std::mem::take(&mut self.acc);
            let Events { lines, joiner, .. } = self;
            lines.push(self.acc_time, &acc, now, &mut |line| {
                joiner.line(line, now, emit)
            });
            self.lines_fresh = true;
            self.acc = acc;
            self.reset_acc();
        }
    }

    fn reset_acc(&mut self) {
        self.acc.clear();
        self.acc_since = None;
        self.acc_cut = false;
        if self.acc.capacity() > KEEP_CAPACITY {
            self.acc = Vec::new();
        }
    }

    fn flush_stale(
        &mut self,
        now: Instant,
        partial_flush: Duration,
        emit: &mut impl FnMut(Line<'_>),
    ) {
        let all = partial_flush.is_zero();
        if let Some(since) = self.acc_since
            && (all || now.saturating_duration_since(since) >= partial_flush)
        {
            self.joiner.flush(emit);
            let (bytes, partial) = match self.acc.split_last() {
                Some((&b'\n', rest)) => (rest, false),
                _ => (&self.acc[..], true),
            };
            emit(Line {
                time_ns: self.acc_time,
                bytes,
                partial,
            });
            self.reset_acc();
        }
        let Events { lines, joiner, .. } = self;
        lines.flush_stale(now, partial_flush, &mut |line| joiner.line(line, now, emit));
        if !lines.has_pending() {
            self.streaming = false;
        }
        let timeout = if all {
            Duration::ZERO
        } else {
            self.joiner.timeout()
        };
        if let Some(last) = self.joiner.last
            && now.saturating_duration_since(last) >= timeout
        {
            self.joiner.flush(emit);
        }
    }

    fn has_pending(&self) -> bool {
        self.acc_since.is_some() || self.lines.has_pending() || self.joiner.active
    }
}

/// A pending buffer that grew past this is released after use (as in [`LineAssembler`]).
const KEEP_CAPACITY: usize = 16 * 1024;

/// Joins units (lines, or whole writes) into events by a rule set; without one, each unit is
/// an event.
#[derive(Debug)]
struct Joiner {
    rules: Option<Arc<RuleSet>>,
    state: Option<State>,
    buf: Vec<u8>,
    time: u64,
    /// An event is pending (it may be empty: an empty line).
    active: bool,
    /// When the pending event last grew.
    last: Option<Instant>,
    max: usize,
    /// The pending event began in the current push.
    fresh: bool,
}

impl Joiner {
    fn timeout(&self) -> Duration {
        self.rules
            .as_ref()
            .map_or(Duration::ZERO, |r| r.flush_timeout())
    }

    /// A line from the line assembler: pieces of an over-long or unterminated line bypass the
    /// rules (they are sent as they are, after the pending event).
    fn line(&mut self, line: Line<'_>, now: Instant, emit: &mut impl FnMut(Line<'_>)) {
        if line.partial {
            self.flush(emit);
            emit(line);
        } else {
            self.unit(line.time_ns, line.bytes, now, emit);
        }
    }

    /// A unit (without its final newline; inner newlines kept) written at `time`.
    fn unit(&mut self, time: u64, unit: &[u8], now: Instant, emit: &mut impl FnMut(Line<'_>)) {
        let Some(rules) = self.rules.clone() else {
            self.begin(time, now);
            self.append(unit, emit);
            self.flush(emit);
            return;
        };
        let mut lines = unit.split(|&b| b == b'\n');
        let first = lines.next().unwrap_or_default();
        match rules.step(self.active.then_some(self.state).flatten(), first) {
            Step::Continue(next) => {
                self.append(b"\n", emit);
                self.state = Some(next);
            }
            Step::Start(next) => {
                self.flush(emit);
                self.begin(time, now);
                self.state = Some(next);
            }
            Step::Alone => {
                self.flush(emit);
                self.begin(time, now);
                self.state = None;
            }
        }
        self.append(unit, emit);
        self.last = Some(now);
        // The unit's other lines only move the machine: a unit is never split.
        for line in lines {
            self.state = match rules.step(self.state, line) {
                Step::Continue(next) | Step::Start(next) => Some(next),
                Step::Alone => None,
            };
        }
        if matches!(self.state, None | Some(0)) {
            self.flush(emit);
        }
    }

    fn begin(&mut self, time: u64, now: Instant) {
        self.active = true;
        self.fresh = true;
        self.time = time;
        self.last = Some(now);
    }

    /// Appends to the pending event; full pieces of `max` bytes are sent as partial.
    fn append(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(Line<'_>)) {
        while self.buf.len() + bytes.len() > self.max {
            let take = self.max - self.buf.len();
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            emit(Line {
                time_ns: self.time,
                bytes: &self.buf,
                partial: true,
            });
            self.buf.clear();
        }
        self.buf.extend_from_slice(bytes);
    }

    fn flush(&mut self, emit: &mut impl FnMut(Line<'_>)) {
        if self.active {
            emit(Line {
                time_ns: self.time,
                bytes: &self.buf,
                partial: false,
            });
            self.buf.clear();
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            }
        }
        self.active = false;
        self.last = None;
        self.state = None;
    }
}

#[cfg(test)]
mod tests;
