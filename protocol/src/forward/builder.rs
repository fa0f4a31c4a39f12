//! [`PackedForwardBuilder`]: the agent's fast path from records to a PackedForward chunk.
//!
//! The message `[tag, bin(entries), {size, chunk, compressed?}]` is written into one buffer from
//! the start: the tag and a `bin 32` header are reserved up front, each [`RecordWriter`] appends
//! `[EventTime, {key: value, ...}]` in place (no `Value` tree, no per-record allocation), and
//! [`finish`](PackedForwardBuilder::finish) patches the body length and appends the options. With
//! gzip the entries are compressed into a second buffer once, at the end.
//!
//! A client that keeps entries apart from their message (the agent: entries are made per
//! input, batched, buffered and maybe spooled before they are sent) writes each entry with
//! [`write_entry`] into its own buffer — a map whose field count is known up front, the
//! constant fields pre-encoded once as [`Fields`] — and frames the finished run with
//! [`PackedForward::frame`] at send time, without copying the entries.

use bytes::Bytes;
use flate2::write::GzEncoder;
use std::io::Write;

use super::chunk_id::ChunkId;
use super::error::EncodeError;
use super::event_time::EventTime;
use super::message::{Compression, Options};
use super::value::Value;
use super::write;

/// Builds one (Compressed)PackedForward message for one tag.
#[derive(Debug, Clone)]
pub struct PackedForwardBuilder {
    buf: Vec<u8>,
    /// Offset of the first entry byte (just after the reserved `bin 32` header).
    body_start: usize,
    count: u32,
}

impl PackedForwardBuilder {
    /// A builder for events of `tag`.
    pub fn new(tag: &str) -> Self {
        Self::with_capacity(tag, 4096)
    }

    /// A builder whose buffer starts with room for `capacity` bytes of entries.
    pub fn with_capacity(tag: &str, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + tag.len() + 64);
        write::array_len(&mut buf, 3);
        write::str(&mut buf, tag.as_bytes());
        // `bin 32` with a length patched by `finish`: fixed size, so entries never move.
        buf.extend_from_slice(&[0xc6, 0, 0, 0, 0]);
        let body_start = buf.len();
        PackedForwardBuilder {
            buf,
            body_start,
            count: 0,
        }
    }

    /// Number of entries so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when no entry has been added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of entries so far (uncompressed): what a batcher compares with its chunk size.
    pub fn body_len(&self) -> usize {
        self.buf.len() - self.body_start
    }

    /// Starts the entry `[time, {...}]`; add fields on the returned writer. The record is
    /// complete when the writer is dropped.
    pub fn record(&mut self, time: EventTime) -> RecordWriter<'_> {
        self.count = self.count.saturating_add(1);
        self.buf.push(0x92);
        time.encode(&mut self.buf);
        let header_at = self.buf.len();
        // map 16 with a count patched (and shrunk to a fixmap) when the writer is dropped.
        self.buf.extend_from_slice(&[0xde, 0, 0]);
        RecordWriter {
            buf: &mut self.buf,
            header_at: Some(header_at),
            fields: 0,
            tally: None,
        }
    }

    /// Appends a whole entry from a [`Value`] record (for relaying).
    pub fn push_value(&mut self, time: EventTime, record: &Value) {
        self.count = self.count.saturating_add(1);
        write_value_entry(&mut self.buf, time, record);
    }

    /// The complete message: `[tag, bin(entries), {"size": n, "chunk": id?, "compressed":
    /// "gzip"?}]`.
    pub fn finish(
        mut self,
        chunk: Option<&ChunkId>,
        compression: Compression,
    ) -> Result<Bytes, EncodeError> {
        let body_len = self.body_len();
        let options = Options {
            size: Some(self.count as u64),
            chunk: chunk.cloned(),
            compressed: compression,
            ..Options::default()
        };
        match compression {
            Compression::None => {
                let len = u32::try_from(body_len).map_err(|_| EncodeError::TooLong {
                    what: "PackedForward body",
                    len: body_len,
                })?;
                self.buf[self.body_start - 4..self.body_start].copy_from_slice(&len.to_be_bytes());
                options.encode(&mut self.buf);
                Ok(Bytes::from(self.buf))
            }
            Compression::Gzip => {
                let mut out = Vec::with_capacity(body_len / 4 + self.body_start + 96);
                out.extend_from_slice(&self.buf[..self.body_start]);
                let mut enc = GzEncoder::new(out, flate2::Compression::default());
                enc.write_all(&self.buf[self.body_start..])
                    .map_err(EncodeError::Compress)?;
                let mut out = enc.finish().map_err(EncodeError::Compress)?;
                let gz_len = out.len() - self.body_start;
                let len = u32::try_from(gz_len).map_err(|_| EncodeError::TooLong {
                    what: "gzip body",
                    len: gz_len,
                })?;
                out[self.body_start - 4..self.body_start].copy_from_slice(&len.to_be_bytes());
                options.encode(&mut out);
                Ok(Bytes::from(out))
            }
        }
    }
}

/// One (Compressed)PackedForward message in three parts, `[tag, bin(entries), options]`: the
/// head (array, tag and `bin` header), the body — a run of entries, shared rather than copied,
/// or their gzip — and the option map. A sender writes the three with one vectored write.
#[derive(Debug, Clone)]
pub struct PackedForward {
    /// `[tag, bin header`.
    pub head: Bytes,
    /// The entries, or their gzip.
    pub body: Bytes,
    /// `{"size": n, "chunk": id?, "compressed": "gzip"?}]`.
    pub tail: Bytes,
}

impl PackedForward {
    /// Frames `entries` (a run of `records` entries of `tag`, e.g. written by [`write_entry`]),
    /// asking for an ack when `chunk` is given.
    pub fn frame(
        tag: &str,
        entries: &Bytes,
        records: u32,
        chunk: Option<&ChunkId>,
        compression: Compression,
    ) -> Result<PackedForward, EncodeError> {
        let body = match compression {
            Compression::None => entries.clone(),
            Compression::Gzip => Bytes::from(super::encode::gzip(entries)?),
        };
        let body_len = u32::try_from(body.len()).map_err(|_| EncodeError::TooLong {
            what: "PackedForward body",
            len: body.len(),
        })?;
        let mut head = Vec::with_capacity(tag.len() + 16);
        write::array_len(&mut head, 3);
        write::str(&mut head, tag.as_bytes());
        write::bin_len(&mut head, body_len);
        let options = Options {
            size: Some(u64::from(records)),
            chunk: chunk.cloned(),
            compressed: compression,
            ..Options::default()
        };
        let mut tail = Vec::with_capacity(80);
        options.encode(&mut tail);
        Ok(PackedForward {
            head: head.into(),
            body,
            tail: tail.into(),
        })
    }

    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len() + self.tail.len()
    }

    /// Whether the message is empty (never, for a framed message).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The parts as one contiguous buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        [&self.head[..], &self.body[..], &self.tail[..]].concat()
    }
}

/// Appends the start of one PackedForward entry, `[time, {` with a map header for exactly
/// `fields` key/value pairs, to `buf` (a run of entries); write those fields on the returned
/// writer. Nothing is patched afterwards: this is the agent's per-line path.
#[inline]
pub fn write_entry(buf: &mut Vec<u8>, time: EventTime, fields: u32) -> RecordWriter<'_> {
    write::array_len(buf, 2);
    time.encode(buf);
    write::map_len(buf, fields);
    RecordWriter {
        buf,
        header_at: None,
        fields: 0,
        tally: None,
    }
}

/// Appends one whole PackedForward entry `[time, record]` from a [`Value`] (for relaying).
pub fn write_value_entry(buf: &mut Vec<u8>, time: EventTime, record: &Value) {
    write::array_len(buf, 2);
    time.encode(buf);
    record.encode(buf);
}

/// Key/value pairs encoded once and appended to many records with [`RecordWriter::fields`]
/// (the fields every record of a stream shares).
#[derive(Debug, Clone, Default)]
pub struct Fields {
    buf: Vec<u8>,
    count: u32,
}

impl Fields {
    /// No fields yet.
    pub fn new() -> Fields {
        Fields::default()
    }

    /// Adds fields on the returned writer.
    pub fn add(&mut self) -> RecordWriter<'_> {
        RecordWriter {
            buf: &mut self.buf,
            header_at: None,
            fields: 0,
            tally: Some(&mut self.count),
        }
    }

    /// How many pairs.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The encoded pairs.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Writes the fields of one record; dropping it completes the record.
#[derive(Debug)]
pub struct RecordWriter<'a> {
    buf: &'a mut Vec<u8>,
    /// Where [`PackedForwardBuilder::record`]'s map header waits for its count.
    header_at: Option<usize>,
    fields: u32,
    /// [`Fields::add`]'s count.
    tally: Option<&'a mut u32>,
}

impl RecordWriter<'_> {
    /// Appends pre-encoded fields.
    #[inline]
    pub fn fields(&mut self, fields: &Fields) -> &mut Self {
        self.fields += fields.count;
        self.buf.extend_from_slice(&fields.buf);
        self
    }

    #[inline]
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        self.fields += 1;
        write::str(self.buf, key.as_bytes());
        self.buf
    }

    /// `key: str` (the bytes are written as they are).
    #[inline]
    pub fn str(&mut self, key: &str, value: &[u8]) -> &mut Self {
        write::str(self.key(key), value);
        self
    }

    /// `key: bin`.
    #[inline]
    pub fn bin(&mut self, key: &str, value: &[u8]) -> &mut Self {
        write::bin(self.key(key), value);
        self
    }

    /// `key: str` when `value` is UTF-8, else `key: bin` — Contract 3's rule for `message`:
    /// bytes are never rewritten.
    #[inline]
    pub fn text_or_bin(&mut self, key: &str, value: &[u8]) -> &mut Self {
        if std::str::from_utf8(value).is_ok() {
            self.str(key, value)
        } else {
            self.bin(key, value)
        }
    }

    /// `key: unsigned integer`.
    #[inline]
    pub fn uint(&mut self, key: &str, value: u64) -> &mut Self {
        write::uint(self.key(key), value);
        self
    }

    /// `key: integer`.
    pub fn int(&mut self, key: &str, value: i64) -> &mut Self {
        write::int(self.key(key), value);
        self
    }

    /// `key: bool`.
    #[inline]
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        write::bool(self.key(key), value);
        self
    }

    /// `key: any value`.
    pub fn value(&mut self, key: &str, value: &Value) -> &mut Self {
        value.encode(self.key(key));
        self
    }
}

impl Drop for RecordWriter<'_> {
    /// Patches the map header reserved by [`PackedForwardBuilder::record`] with the field count,
    /// in the smallest form: a 1-byte fixmap for < 16 fields (the common case; the fields move
    /// back two bytes), map 16 otherwise, map 32 (two bytes inserted) beyond 65,535 fields.
    #[inline]
    fn drop(&mut self) {
        if let Some(tally) = self.tally.as_deref_mut() {
            *tally += self.fields;
        }
        let Some(at) = self.header_at else { return };
        let n = self.fields;
        if n < 16 {
            self.buf[at] = 0x80 | n as u8;
            self.buf.copy_within(at + 3.., at + 1);
            let len = self.buf.len();
            self.buf.truncate(len - 2);
        } else if n <= u16::MAX as u32 {
            self.buf[at + 1..at + 3].copy_from_slice(&(n as u16).to_be_bytes());
        } else {
            let mut head = [0xdf, 0, 0, 0, 0];
            head[1..].copy_from_slice(&n.to_be_bytes());
            self.buf.splice(at..at + 3, head);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes_of_a_small_chunk() {
        let mut b = PackedForwardBuilder::new("ab");
        b.record(EventTime::new(1, 2))
            .str("m", b"hi")
            .uint("p", 300)
            .bool("x", false);
        b.record(EventTime::new(3, 4));
        let id = ChunkId::new_str(&b"c1"[..]);
        let wire = b.finish(Some(&id), Compression::None).expect("encode");
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[0x93, 0xa2, b'a', b'b', 0xc6, 0, 0, 0, 37][..],
            &[0x92, 0xd7, 0x00, 0, 0, 0, 1, 0, 0, 0, 2, 0x83],
            &[0xa1, b'm', 0xa2, b'h', b'i', 0xa1, b'p', 0xcd, 0x01, 0x2c, 0xa1, b'x', 0xc2],
            &[0x92, 0xd7, 0x00, 0, 0, 0, 3, 0, 0, 0, 4, 0x80],
            &[0x82, 0xa4, b's', b'i', b'z', b'e', 0x02, 0xa5, b'c', b'h', b'u', b'n', b'k', 0xa2, b'c', b'1'],
        ]
        .concat();
        assert_eq!(&wire[..], &expected[..]);
    }

    /// Entries written apart and framed at send time are byte for byte the builder's message.
    #[test]
    fn framed_entries_equal_the_builders_message() {
        let mut shared = Fields::new();
        shared.add().str("s", b"out").uint("p", 300);
        assert_eq!(shared.count(), 2);
        let mut entries = Vec::new();
        let mut b = PackedForwardBuilder::new("ab");
        for (i, msg) in [&b"hi"[..], b"\xff"].into_iter().enumerate() {
            let t = EventTime::new(1, i as u32);
            write_entry(&mut entries, t, 1 + shared.count() + 1)
                .text_or_bin("m", msg)
                .fields(&shared)
                .bool("x", true);
            b.record(t)
                .text_or_bin("m", msg)
                .str("s", b"out")
                .uint("p", 300)
                .bool("x", true);
        }
        let id = ChunkId::from_random_bytes([3; 16]);
        for compression in [Compression::None, Compression::Gzip] {
            let framed = PackedForward::frame(
                "ab",
                &Bytes::from(entries.clone()),
                2,
                Some(&id),
                compression,
            )
            .expect("frame");
            let built = b.clone().finish(Some(&id), compression).expect("finish");
            // The builder reserves a `bin 32` header; framing picks the smallest.
            let decode = |wire: &[u8]| {
                let mut server = super::super::ServerDecoder::default();
                match server.decode(&mut bytes::BytesMut::from(wire)) {
                    Ok(Some(super::super::ClientMessage::Events(batch))) => batch,
                    other => panic!("{other:?}"),
                }
            };
            let (f, m) = (decode(&framed.to_vec()), decode(&built));
            assert!(f.ack().expect("chunk option").acknowledges(&id));
            assert_eq!((f.tag, f.events, f.options), (m.tag, m.events, m.options));
            if compression == Compression::None {
                assert_eq!(&framed.body[..], &entries[..]);
                assert_eq!(&framed.head[..], &[0x93, 0xa2, b'a', b'b', 0xc4, 62][..]);
                assert_eq!(framed.len(), built.len() - 3);
            }
        }
    }
}
