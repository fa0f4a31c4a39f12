//! The streams of one tapped process: tapped bytes → lines → encoded records.
//!
//! A peer's writes arrive per (pid, stream, file index) — from its ring or in DATA frames — and
//! each such stream has its own [`LineAssembler`] and [`StreamContext`] (tag and constant record
//! fields, built on the stream's first write from the peer's HELLO). Finished lines are encoded
//! at once into [`Entries`] per tag, which the peer task hands to the pipeline with
//! [`Streams::take`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logtap_protocol::tap;

use crate::pipeline::enrich::{Enricher, Origin, StreamContext};
use crate::pipeline::lines::{Line, LineAssembler};
use crate::record::Entries;

/// Stream number of the file stream on the wire.
const FILE_STREAM: u8 = 3;
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
    assembler: LineAssembler,
    ctx: StreamContext,
    /// Time of the first part of a write still CONTINUED.
    continued_time: Option<u64>,
}

/// What one peer's streams have produced and hold.
pub struct Streams {
    enricher: Enricher,
    max_line_bytes: usize,
    partial_flush: Duration,
    origin: Option<Origin>,
    files: HashMap<u32, String>,
    /// Per (pid, stream, file index). A process has a handful of streams, so a vector searched
    /// linearly beats hashing the key on every write.
    map: Vec<((u32, u8, u16), StreamState)>,
    out: Vec<Entries>,
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
            origin: None,
            files: HashMap::new(),
            map: Vec::new(),
            out: Vec::new(),
            out_bytes: 0,
            tapped_bytes: 0,
        }
    }

    /// `host` for peers whose HELLO names none: the agent's own.
    pub fn default_host(&self) -> &str {
        &self.enricher.metadata().host
    }

    /// The process as its HELLO described it (None before HELLO).
    pub fn origin(&self) -> Option<&Origin> {
        self.origin.as_ref()
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
    pub fn file(&mut self, index: u32, path: String) -> Result<(), StreamError> {
        if self.files.len() >= MAX_FILES && !self.files.contains_key(&index) {
            return Err(StreamError::TooManyFiles);
        }
        self.files.insert(index, path);
        self.map
            .retain(|&((_, stream, idx), _)| !(stream == FILE_STREAM && u32::from(idx) == index));
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

    /// The bytes of one tapped write (or of one CONTINUED part of it).
    pub fn write(
        &mut self,
        pid: u32,
        stream: u8,
        file: u16,
        continued: bool,
        time_ns: u64,
        bytes: &[u8],
    ) -> Result<(), StreamError> {
        let name = tap::Stream::from_u8(stream)
            .ok_or(StreamError::UnknownStream(stream))?
            .as_str();
        self.tapped_bytes += bytes.len() as u64;
        let Streams {
            map,
            out,
            out_bytes,
            origin,
            files,
            enricher,
            max_line_bytes,
            ..
        } = self;
        let key = (pid, stream, file);
        let i = match map.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None if map.len() >= MAX_STREAMS => return Err(StreamError::TooManyStreams),
            None => {
                let mut o = origin.clone().unwrap_or_default();
                o.pid = pid;
                let path = (stream == FILE_STREAM)
                    .then(|| files.get(&u32::from(file)).cloned().unwrap_or_default());
                let state = StreamState {
                    assembler: LineAssembler::new(*max_line_bytes),
                    ctx: enricher.stream_context(&o, name, path.as_deref()),
                    continued_time: None,
                };
                map.push((key, state));
                map.len() - 1
            }
        };
        let st = &mut map[i].1;
        let time = st.continued_time.unwrap_or(time_ns);
        st.continued_time = continued.then_some(time);
        let StreamState { assembler, ctx, .. } = st;
        assembler.push(time, bytes, Instant::now(), &mut |line| {
            encode(out, out_bytes, ctx, line)
        });
        Ok(())
    }

    /// Sends tails that waited `partial_flush` for their newline, marked partial.
    pub fn flush_stale(&mut self, now: Instant) {
        let Streams {
            map,
            out,
            out_bytes,
            partial_flush,
            ..
        } = self;
        for (_, st) in map.iter_mut() {
            let StreamState { assembler, ctx, .. } = st;
            assembler.flush_stale(now, *partial_flush, &mut |line| {
                encode(out, out_bytes, ctx, line)
            });
        }
    }

    /// The process is gone or the agent stops: pending tails become partial records.
    pub fn finish(&mut self) {
        let Streams {
            map,
            out,
            out_bytes,
            ..
        } = self;
        for (_, st) in map.iter_mut() {
            let StreamState { assembler, ctx, .. } = st;
            assembler.finish(&mut |line| encode(out, out_bytes, ctx, line));
        }
    }

    /// Takes the encoded records gathered so far.
    pub fn take(&mut self) -> Batch {
        let entries = std::mem::take(&mut self.out);
        self.out_bytes = 0;
        Batch {
            records: entries.iter().map(|e| u64::from(e.records)).sum(),
            entries,
            tapped_bytes: std::mem::take(&mut self.tapped_bytes),
        }
    }
}

/// Encodes `line` into the entries of its tag.
fn encode(out: &mut Vec<Entries>, out_bytes: &mut usize, ctx: &StreamContext, line: Line<'_>) {
    let i = match out
        .iter()
        .position(|e| Arc::ptr_eq(&e.tag, &ctx.tag) || e.tag == ctx.tag)
    {
        Some(i) => i,
        None => {
            out.push(Entries::new(Arc::clone(&ctx.tag)));
            out.len() - 1
        }
    };
    let e = &mut out[i];
    let before = e.buf.len();
    Enricher::encode(ctx, line, e);
    *out_bytes += e.buf.len() - before;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::enrich::{Metadata, TagTemplate};

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
        s.write(1, 1, 0, false, 10, b"out-a").unwrap();
        s.write(1, 2, 0, false, 11, b"err\n").unwrap();
        s.write(1, 1, 0, false, 12, b"-b\n").unwrap();
        s.write(1, 3, 0, false, 13, b"file line\n").unwrap();
        s.file(1, "/b.log".into()).unwrap();
        s.write(1, 3, 1, false, 14, b"other file\n").unwrap();
        assert_eq!(
            s.write(1, 9, 0, false, 15, b"x\n"),
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

    #[test]
    fn a_peer_cannot_open_streams_without_bound() {
        let mut s = streams();
        for pid in 0..MAX_STREAMS as u32 {
            s.write(pid, 1, 0, false, 1, b"x").unwrap();
        }
        assert_eq!(
            s.write(u32::MAX, 1, 0, false, 1, b"x"),
            Err(StreamError::TooManyStreams)
        );
        s.write(7, 1, 0, false, 1, b"an existing stream goes on\n")
            .unwrap();
    }

    #[test]
    fn continued_parts_share_the_first_parts_time() {
        let mut s = streams();
        s.write(1, 1, 0, true, 100, b"first half ").unwrap();
        s.write(1, 1, 0, false, 200, b"second half\n").unwrap();
        s.write(1, 1, 0, false, 300, b"next\n").unwrap();
        let batch = s.take();
        let buf = &batch.entries[0].buf;
        // [fixext8 time …]: the first record's seconds/nanos are those of time 100.
        assert_eq!(&buf[2..11], &[0, 0, 0, 0, 0, 0, 0, 0, 100]);
        assert_eq!(batch.records, 2);
    }
}
