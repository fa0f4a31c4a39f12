//! The units that travel from the inputs to the outputs.
//!
//! A record is stored in the form the Forward protocol sends it, from the moment it is made:
//! a PackedForward *entry* `[EventTime, {record map}]` (MessagePack). Nothing is re-encoded on
//! the way: [`Entries`] collects entries of one tag (built by a tap peer's task or by the forward
//! input), the batch stage concatenates them into a [`Chunk`], the buffer holds the chunk until
//! every output has delivered it, and the forward output sends `chunk.entries` as is inside
//! `[tag, bin(entries), {chunk, size}]`. The stdout output decodes the entries to JSON.
//!
//! Record map keys (Contract 3): `message` (str, or bin when not UTF-8), `stream`, `file`
//! (file stream only), `pid`, `comm`, `host`, `pod_name`, `namespace`, `container_name`,
//! `node_name` (when known), `container_id` (from the process's cgroup, when known),
//! `meta_claimed` (only when true: the pod names are the process's unverified claims, README
//! "Trust model"), `partial` (only when true).

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;

use crate::input::ring_release::RingPins;

/// The 16 random bytes that name a chunk; sent base64-encoded as the Forward `chunk` option.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkId(pub [u8; 16]);

impl ChunkId {
    /// A fresh random id (getrandom; falls back to time and a counter if the OS refuses).
    pub fn random() -> ChunkId {
        let mut id = [0u8; 16];
        if getrandom::fill(&mut id).is_err() {
            use std::sync::atomic::{AtomicU64, Ordering};
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            id[..8].copy_from_slice(&crate::record::now_ns().to_le_bytes());
            id[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        }
        ChunkId(id)
    }

    /// The id as the Forward protocol's `chunk` option carries it (standard base64).
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

impl std::fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// A run of encoded entries that share one tag: what inputs hand to the batch stage.
#[derive(Debug, Default)]
pub struct Entries {
    /// The tag of every entry in `buf`.
    pub tag: Arc<str>,
    /// Concatenated `[EventTime, map]` MessagePack entries.
    pub buf: Vec<u8>,
    /// How many entries `buf` holds.
    pub records: u32,
    /// The ring positions the entries' records hold until they are safe (tap input only).
    pub pins: RingPins,
}

impl Entries {
    /// An empty run for `tag`.
    pub fn new(tag: Arc<str>) -> Entries {
        Entries {
            tag,
            buf: Vec::new(),
            records: 0,
            pins: RingPins::default(),
        }
    }
}

/// A batch of entries of one tag, the unit of buffering, delivery and acknowledgement.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Unique id; the Forward `chunk` option, the spool file name.
    pub id: ChunkId,
    pub tag: Arc<str>,
    /// Concatenated `[EventTime, map]` entries: the PackedForward payload.
    pub entries: Bytes,
    /// Number of entries.
    pub records: u32,
}

impl Chunk {
    /// Bytes this chunk occupies in the buffer.
    pub fn size(&self) -> usize {
        self.entries.len() + self.tag.len()
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Appends MessagePack to a `Vec<u8>`, always in the smallest form. Writing to a `Vec` cannot
/// fail, so unlike `rmp` these return nothing.
pub mod mp {
    /// Map header.
    pub fn map(buf: &mut Vec<u8>, len: u32) {
        if len < 16 {
            buf.push(0x80 | len as u8);
        } else if len <= u32::from(u16::MAX) {
            buf.push(0xde);
            buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            buf.push(0xdf);
            buf.extend_from_slice(&len.to_be_bytes());
        }
    }

    /// Array header.
    pub fn array(buf: &mut Vec<u8>, len: u32) {
        if len < 16 {
            buf.push(0x90 | len as u8);
        } else if len <= u32::from(u16::MAX) {
            buf.push(0xdc);
            buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            buf.push(0xdd);
            buf.extend_from_slice(&len.to_be_bytes());
        }
    }

    /// `str` with its bytes (the caller vouches for UTF-8 where it matters).
    pub fn str(buf: &mut Vec<u8>, s: &[u8]) {
        let len = s.len();
        if len < 32 {
            buf.push(0xa0 | len as u8);
        } else if len <= 0xff {
            buf.extend_from_slice(&[0xd9, len as u8]);
        } else if len <= 0xffff {
            buf.push(0xda);
            buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            buf.push(0xdb);
            buf.extend_from_slice(&(len as u32).to_be_bytes());
        }
        buf.extend_from_slice(s);
    }

    /// `bin` with its bytes.
    pub fn bin(buf: &mut Vec<u8>, b: &[u8]) {
        bin_header(buf, b.len());
        buf.extend_from_slice(b);
    }

    /// The header of a `bin` of `len` bytes (the bytes follow separately).
    pub fn bin_header(buf: &mut Vec<u8>, len: usize) {
        if len <= 0xff {
            buf.extend_from_slice(&[0xc4, len as u8]);
        } else if len <= 0xffff {
            buf.push(0xc5);
            buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            buf.push(0xc6);
            buf.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }

    /// Non-negative integer.
    pub fn uint(buf: &mut Vec<u8>, v: u64) {
        if v < 128 {
            buf.push(v as u8);
        } else if v <= 0xff {
            buf.extend_from_slice(&[0xcc, v as u8]);
        } else if v <= 0xffff {
            buf.push(0xcd);
            buf.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v <= 0xffff_ffff {
            buf.push(0xce);
            buf.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            buf.push(0xcf);
            buf.extend_from_slice(&v.to_be_bytes());
        }
    }

    /// `true` / `false`.
    pub fn bool(buf: &mut Vec<u8>, v: bool) {
        buf.push(if v { 0xc3 } else { 0xc2 });
    }

    /// Forward EventTime: `fixext8`, type 0, big-endian seconds then nanoseconds.
    pub fn event_time(buf: &mut Vec<u8>, time_ns: u64) {
        let secs = (time_ns / 1_000_000_000) as u32;
        let nanos = (time_ns % 1_000_000_000) as u32;
        buf.extend_from_slice(&[0xd7, 0x00]);
        buf.extend_from_slice(&secs.to_be_bytes());
        buf.extend_from_slice(&nanos.to_be_bytes());
    }

    /// `str` when `b` is UTF-8, `bin` otherwise: bytes are never rewritten.
    pub fn text_or_bin(buf: &mut Vec<u8>, b: &[u8]) {
        if std::str::from_utf8(b).is_ok() {
            str(buf, b);
        } else {
            bin(buf, b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_time_is_fixext8_type0() {
        let mut b = Vec::new();
        mp::event_time(&mut b, 1_700_000_000_123_456_789);
        assert_eq!(
            b,
            [0xd7, 0, 0x65, 0x53, 0xf1, 0x00, 0x07, 0x5b, 0xcd, 0x15],
            "1700000000 s = 0x6553f100, 123456789 ns = 0x075bcd15"
        );
    }

    #[test]
    fn smallest_forms() {
        let mut b = Vec::new();
        mp::str(&mut b, b"hi");
        mp::uint(&mut b, 300);
        mp::bool(&mut b, true);
        mp::text_or_bin(&mut b, &[0xff]);
        assert_eq!(b, [0xa2, b'h', b'i', 0xcd, 0x01, 0x2c, 0xc3, 0xc4, 1, 0xff]);
        let mut long = Vec::new();
        mp::str(&mut long, &[b'a'; 70_000]);
        assert_eq!(&long[..5], &[0xdb, 0, 1, 0x11, 0x70]);
    }

    #[test]
    fn chunk_ids_differ() {
        let a = ChunkId::random();
        let b = ChunkId::random();
        assert_ne!(a, b);
        assert_eq!(a.to_base64().len(), 24);
    }
}
