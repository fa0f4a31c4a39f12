//! The streams of one tapped process: tapped bytes → lines → encoded records.
//!
//! A peer's writes arrive per (pid, stream, file index) — from its ring or in DATA frames — and
//! each such stream has its own [`EventAssembler`] (lines, or multi-line events) and
//! [`StreamContext`] (tag and constant record fields, built on the stream's first write from
//! the peer's HELLO). Finished records are encoded at once into [`Entries`] per tag, which the
//! peer task hands to the pipeline with [`Streams::take`].
//!
//! Ring positions: a write read from the ring comes with its position. Each stream remembers
//! where its pending (unterminated) line started, each run of entries where its oldest line
//! started; [`Streams::pending_floor`] and [`Streams::pin_out`] give them to the ring's release
//! tracker (see [`crate::record::ring_release`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logtap_protocol::tap;

use crate::pipeline::enrich::{Enricher, Origin, StreamContext};
use crate::pipeline::lines::Line;
use crate::pipeline::multiline::{EventAssembler, Multiline};
use crate::record::Entries;
use crate::record::ring_release::RingPin;

/// Stream number of the file stream on the wire (declared once, in [`tap::Stream`]).
const FILE_STREAM: u8 = tap::Stream::File as u8;
/// Most (pid, stream, file) streams one connection may open: each holds a line buffer of up to
/// `max_line_bytes`, and a hostile peer must not make the agent grow without bound.
pub const MAX_STREAMS: usize = 1024;
/// Most tapped files one connection may announce.
pub const MAX_FILES: usize = 4096;

/// Why a peer's write cannot be taken (the peer is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("record with unknown stream {0}")]
    UnknownStream(u8),
    #[error("more than {MAX_STREAMS} (pid, stream, file) streams on one connection")]
    TooManyStreams,
    #[error("more than {MAX_FILES} tapped files announced on one connection")]
    TooManyFiles,
}

struct StreamState {
    assembler: EventAssembler,
    ctx: StreamContext,
    /// Time of the first part of a write still CONTINUED.
    continued_time: Option<u64>,
    /// Ring position of the record that brought the pending line's first byte.
    pending_pos: Option<u64>,
}

impl StreamState {
    /// The pending tail goes out now, as a partial record (the stream ends).
    fn finish_into(
        &mut self,
        out: &mut Vec<Entries>,
        out_pos: &mut Vec<Option<u64>>,
        out_bytes: &mut usize,
    ) {
        let StreamState {
            assembler,
            ctx,
            pending_pos,
            ..
        } = self;
        assembler.finish(&mut |line| encode(out, out_pos, out_bytes, ctx, line, *pending_pos));
        *pending_pos = None;
    }
}

/// What one peer's streams have produced and hold.
pub struct Streams {
    enricher: Enricher,
    max_line_bytes: usize,
    partial_flush: Duration,
    multiline: Arc<Multiline>,
    origin: Option<Origin>,
    files: HashMap<u32, String>,
    /// Per (pid, stream, file index). A process has a handful of streams, so a vector searched
    /// linearly beats hashing the key on every write.
    map: Vec<((u32, u8, u16), StreamState)>,
    out: Vec<Entries>,
    /// Per `out` run: the oldest ring position of its lines not pinned yet.
    out_pos: Vec<Option<u64>>,
    out_bytes: usize,
    tapped_bytes: u64,
}

/// Encoded records ready for the pipeline, with what they count for the metrics.
pub struct Batch {
    pub entries: Vec<Entries>,
    pub records: u64,
    pub tapped_bytes: u64,
}

impl Streams {
    pub fn new(enricher: Enricher, max_line_bytes: usize, partial_flush: Duration) -> Streams {
        Streams {
            enricher,
            max_line_bytes,
            partial_flush,
            multiline: Arc::default(),
            origin: None,
            files: HashMap::new(),
            map: Vec::new(),
            out: Vec::new(),
            out_pos: Vec::new(),
            out_bytes: 0,
            tapped_bytes: 0,
        }
    }

    /// Streams assembled into records by `multiline` (default: one record per line).
    pub fn with_multiline(mut self, multiline: Arc<Multiline>) -> Streams {
        self.multiline = multiline;
        self
    }

    /// `host` for peers whose HELLO names none: the agent's own.
    pub fn default_host(&self) -> &str {
        &self.enricher.metadata().host
    }

    /// The process as its HELLO described it (None before HELLO).
    pub fn origin(&self) -> Option<&Origin> {
        self.origin.as_ref()
    }

    /// The agent's own `NODE_NAME`, if it has one.
    pub fn node_name(&self) -> Option<&str> {
        self.enricher.metadata().node_name.as_deref()
    }

    /// A (new) HELLO: later records carry this origin; `files` are indexed in order.
    pub fn set_origin(&mut self, origin: Origin, files: Vec<String>) {
        self.origin = Some(origin);
        for (i, path) in files.into_iter().enumerate() {
            self.files.entry(i as u32).or_insert(path);
        }
        // Contexts are rebuilt with the new origin. Pending tails are kept by being flushed.
        self.finish();
        self.map.clear();
    }

    /// A FILE frame: the file's records made from now on carry this path (and tag).
    /// The same path again (the file reopened) changes nothing: a line the program had begun
    /// goes on. Another path ends the index's streams: their pending tails go out now, as
    /// partial records of the old path, rather than being lost or glued to the new file.
    pub fn file(&mut self, index: u32, path: String) -> Result<(), StreamError> {
        if self.files.get(&index) == Some(&path) {
            return Ok(());
        }
        if self.files.len() >= MAX_FILES && !self.files.contains_key(&index) {
            return Err(StreamError::TooManyFiles);
        }
        let Streams {
            map,
            out,
            out_pos,
            out_bytes,
            files,
            ..
        } = self;
        map.retain_mut(|((_, stream, idx), st)| {
            if !(*stream == FILE_STREAM && u32::from(*idx) == index) {
                return true;
            }
            st.finish_into(out, out_pos, out_bytes);
            false
        });
        files.insert(index, path);
        Ok(())
    }

    /// Whether a line waits for its newline (the sweep must come back soon).
    pub fn has_pending(&self) -> bool {
        self.map.iter().any(|(_, s)| s.assembler.has_pending())
    }

    /// Bytes of encoded entries waiting for [`Streams::take`].
    pub fn out_bytes(&self) -> usize {
        self.out_bytes
    }

    /// The oldest ring position a pending line holds.
    pub fn pending_floor(&self) -> Option<u64> {
        self.map.iter().filter_map(|(_, s)| s.pending_pos).min()
    }

    /// Pins the ring positions of the runs gathered so far (`pin` makes one pin per run).
    pub fn pin_out(&mut self, mut pin: impl FnMut(u64) -> RingPin) {
        for (entries, pos) in self.out.iter_mut().zip(self.out_pos.iter_mut()) {
            if let Some(p) = pos.take() {
                entries.pins.add(pin(p));
            }
        }
    }

    /// The bytes of one tapped write (or of one CONTINUED part of it); `pos`: its ring position
    /// (None for a DATA frame).
    #[allow(clippy::too_many_arguments)]
    pub fn write(
        &mut self,
        pid: u32,
        stream: u8,
        file: u16,
        continued: bool,
        time_ns: u64,
        bytes: &[u8],
        pos: Option<u64>,
    ) -> Result<(), StreamError> {
        let name = tap::Stream::from_u8(stream)
            .ok_or(StreamError::UnknownStream(stream))?
            .as_str();
        self.tapped_bytes += bytes.len() as u64;
        let Streams {
            map,
            out,
            out_pos,
            out_bytes,
            origin,
            files,
            enricher,
            max_line_bytes,
            multiline,
            ..
        } = self;
        let key = (pid, stream, file);
        let i = match map.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None if map.len() >= MAX_STREAMS => return Err(StreamError::TooManyStreams),
            None => {
                let mut o = origin.clone().unwrap_or_default();
                if !o.pid_from_kernel {
                    o.pid = pid;
                }
                let path = (stream == FILE_STREAM)
                    .then(|| files.get(&u32::from(file)).cloned().unwrap_or_default());
                let state = StreamState {
                    assembler: EventAssembler::new(
                        multiline.for_stream(name, path.as_deref()),
                        *max_line_bytes,
                    ),
                    ctx: enricher.stream_context(&o, name, path.as_deref()),
                    continued_time: None,
                    pending_pos: None,
                };
                map.push((key, state));
                map.len() - 1
            }
        };
        let st = &mut map[i].1;
        let time = st.continued_time.unwrap_or(time_ns);
        st.continued_time = continued.then_some(time);
        let StreamState {
            assembler,
            ctx,
            pending_pos,
            ..
        } = st;
        // The first line finished by this write started where the pending one did (or here);
        // any line finished consumes all older pending bytes, so what stays pending after one
        // was emitted started in this write.
        let first_line_pos = if assembler.has_pending() {
            pending_pos.or(pos)
        } else {
            pos
        };
        let mut emitted = false;
        assembler.push(time, bytes, !continued, Instant::now(), &mut |line| {
            let at = if emitted { pos } else { first_line_pos };
            emitted = true;
            encode(out, out_pos, out_bytes, ctx, line, at);
        });
        *pending_pos = if !assembler.has_pending() {
            None
        } else if emitted && assembler.pending_is_from_last_push() {
            pos
        } else {
            first_line_pos
        };
        Ok(())
    }

    /// Sends tails that waited `partial_flush` for their newline, marked partial.
    pub fn flush_stale(&mut self, now: Instant) {
        let age = self.partial_flush;
        self.flush_pending(now, age);
    }

    /// Sends every pending tail now, marked partial: the ring it holds is pressured.
    pub fn flush_pending_now(&mut self) {
        self.flush_pending(Instant::now(), Duration::ZERO);
    }

    fn flush_pending(&mut self, now: Instant, age: Duration) {
        let Streams {
            map,
            out,
            out_pos,
            out_bytes,
            ..
        } = self;
        for (_, st) in map.iter_mut() {
            let StreamState {
                assembler,
                ctx,
                pending_pos,
                ..
            } = st;
            assembler.flush_stale(now, age, &mut |line| {
                encode(out, out_pos, out_bytes, ctx, line, *pending_pos)
            });
            if !assembler.has_pending() {
                *pending_pos = None;
            }
        }
    }

    /// The process is gone or the agent stops: pending tails become partial records.
    pub fn finish(&mut self) {
        let Streams {
            map,
            out,
            out_pos,
            out_bytes,
            ..
        } = self;
        for (_, st) in map.iter_mut() {
            st.finish_into(out, out_pos, out_bytes);
        }
    }

    /// Takes the encoded records gathered so far (with the pins [`Streams::pin_out`] gave
    /// them; positions not pinned are dropped with the runs: call `pin_out` first).
    pub fn take(&mut self) -> Batch {
        let entries = std::mem::take(&mut self.out);
        self.out_pos.clear();
        self.out_bytes = 0;
        Batch {
            records: entries.iter().map(|e| u64::from(e.records)).sum(),
            entries,
            tapped_bytes: std::mem::take(&mut self.tapped_bytes),
        }
    }
}

/// Encodes `line` (whose first byte came from the ring at `pos`) into the entries of its tag.
fn encode(
    out: &mut Vec<Entries>,
    out_pos: &mut Vec<Option<u64>>,
    out_bytes: &mut usize,
    ctx: &StreamContext,
    line: Line<'_>,
    pos: Option<u64>,
) {
    let i = match out
        .iter()
        .position(|e| Arc::ptr_eq(&e.tag, &ctx.tag) || e.tag == ctx.tag)
    {
        Some(i) => i,
        None => {
            out.push(Entries::new(Arc::clone(&ctx.tag)));
            out_pos.push(None);
            out.len() - 1
        }
    };
    if let Some(p) = pos {
        let oldest = &mut out_pos[i];
        *oldest = Some(oldest.map_or(p, |o| o.min(p)));
    }
    let e = &mut out[i];
    let before = e.buf.len();
    Enricher::encode(ctx, line, e);
    *out_bytes += e.buf.len() - before;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TagTemplate;
    use crate::pipeline::enrich::Metadata;

    fn streams() -> Streams {
        let e = Enricher::new(
            Metadata::default(),
            TagTemplate::parse("t.{stream}.{file}").unwrap(),
        );
        let mut s = Streams::new(e, 1024, Duration::from_secs(1));
        s.set_origin(
            Origin {
                pid: 1,
                comm: "c".into(),
                host: "h".into(),
                ..Origin::default()
            },
            vec!["/a.log".into()],
        );
        s
    }

    #[test]
    fn streams_are_kept_apart_and_tagged() {
        let mut s = streams();
        s.write(1, 1, 0, false, 10, b"out-a", None).unwrap();
        s.write(1, 2, 0, false, 11, b"err\n", None).unwrap();
        s.write(1, 1, 0, false, 12, b"-b\n", None).unwrap();
        s.write(1, 3, 0, false, 13, b"file line\n", None).unwrap();
        s.file(1, "/b.log".into()).unwrap();
        s.write(1, 3, 1, false, 14, b"other file\n", None).unwrap();
        assert_eq!(
            s.write(1, 9, 0, false, 15, b"x\n", None),
            Err(StreamError::UnknownStream(9))
        );
        let batch = s.take();
        assert_eq!(batch.records, 4);
        assert_eq!(batch.tapped_bytes, 5 + 4 + 3 + 10 + 11);
        let tags: Vec<&str> = batch.entries.iter().map(|e| &*e.tag).collect();
        assert_eq!(
            tags,
            ["t.stderr.", "t.stdout.", "t.file./a.log", "t.file./b.log"]
        );
        assert_eq!(s.out_bytes(), 0);
    }

    /// Whether `needle` occurs in `hay` (the encoded entries hold each message as a string).
    fn holds(hay: &[u8], needle: &str) -> bool {
        hay.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    #[test]
    fn a_reopened_file_keeps_its_pending_line_and_a_renamed_one_flushes_it() {
        let mut s = streams();
        s.write(1, 3, 0, false, 1, b"begun ", None).unwrap();
        s.file(0, "/a.log".into()).unwrap(); // reopened: same path
        s.write(1, 3, 0, false, 2, b"and ended\n", None).unwrap();
        s.write(1, 3, 0, false, 3, b"cut by a new path", None)
            .unwrap();
        s.file(0, "/c.log".into()).unwrap();
        s.write(1, 3, 0, false, 4, b"new file\n", None).unwrap();
        let batch = s.take();
        let runs: Vec<(&str, u32)> = batch.entries.iter().map(|e| (&*e.tag, e.records)).collect();
        assert_eq!(runs, [("t.file./a.log", 2), ("t.file./c.log", 1)]);
        let (a, c) = (&batch.entries[0].buf, &batch.entries[1].buf);
        assert!(
            holds(a, "begun and ended"),
            "the reopened file's line goes on"
        );
        assert!(
            holds(a, "cut by a new path"),
            "the old path's tail is flushed under it"
        );
        assert!(holds(c, "new file") && !holds(c, "cut by"));
    }

    #[test]
    fn a_peer_cannot_open_streams_without_bound() {
        let mut s = streams();
        for pid in 0..MAX_STREAMS as u32 {
            s.write(pid, 1, 0, false, 1, b"x", None).unwrap();
        }
        assert_eq!(
            s.write(u32::MAX, 1, 0, false, 1, b"x", None),
            Err(StreamError::TooManyStreams)
        );
        s.write(7, 1, 0, false, 1, b"an existing stream goes on\n", None)
            .unwrap();
    }

    #[test]
    fn lines_carry_the_position_of_their_first_record() {
        let mut s = streams();
        s.write(1, 1, 0, false, 1, b"a", Some(10)).unwrap();
        assert_eq!(s.pending_floor(), Some(10));
        s.write(1, 2, 0, false, 1, b"err\n", Some(12)).unwrap();
        s.write(1, 1, 0, false, 1, b"b\nc", Some(14)).unwrap();
        assert_eq!(s.pending_floor(), Some(14), "the tail `c` started in 14");
        s.write(1, 1, 0, false, 1, b"\n", None).unwrap(); // a DATA frame ends it
        assert_eq!(s.pending_floor(), None);
        s.write(1, 1, 0, false, 1, b"d", None).unwrap();
        s.write(1, 1, 0, false, 1, b"e", Some(20)).unwrap();
        assert_eq!(s.pending_floor(), Some(20), "ring bytes joined a DATA tail");
        let mut pins = Vec::new();
        s.pin_out(|p| {
            pins.push(p);
            crate::record::ring_release::RingPin::for_test(p)
        });
        // stderr's run (made first): 12; stdout's: "ab" from 10, "c" from 14 → 10.
        assert_eq!(pins, [12, 10]);
        s.flush_pending_now();
        assert_eq!(s.pending_floor(), None);
        let mut pins = Vec::new();
        s.pin_out(|p| {
            pins.push(p);
            crate::record::ring_release::RingPin::for_test(p)
        });
        assert_eq!(pins, [20], "the flushed partial line keeps its position");
        let batch = s.take();
        assert_eq!(batch.records, 4, "err, ab, c, de");
    }

    #[test]
    fn continued_parts_share_the_first_parts_time() {
        let mut s = streams();
        s.write(1, 1, 0, true, 100, b"first half ", None).unwrap();
        s.write(1, 1, 0, false, 200, b"second half\n", None)
            .unwrap();
        s.write(1, 1, 0, false, 300, b"next\n", None).unwrap();
        let batch = s.take();
        let buf = &batch.entries[0].buf;
        // [fixext8 time …]: the first record's seconds/nanos are those of time 100.
        assert_eq!(&buf[2..11], &[0, 0, 0, 0, 0, 0, 0, 0, 100]);
        assert_eq!(batch.records, 2);
    }
}
