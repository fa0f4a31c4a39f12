//! [`ChunkId`]: the `chunk` option of a message and the `ack` of its answer — a peer's bytes
//! kept exactly, or the 16 random bytes logtap sends.

use base64::Engine as _;
use bytes::Bytes;

use super::read::RawKind;
use super::write;

/// A chunk id as received: its bytes exactly (Fluentd's end in `\n`) and its MessagePack type,
/// because the ack must echo both (Fluent Bit resends a `str` chunk acked with a `bin` id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChunkId {
    /// `str` or `bin`, as the peer sent it.
    pub kind: RawKind,
    /// The exact bytes.
    pub bytes: Bytes,
}

impl ChunkId {
    /// A `str` chunk id with these bytes.
    pub fn new_str(bytes: impl Into<Bytes>) -> Self {
        ChunkId {
            kind: RawKind::Str,
            bytes: bytes.into(),
        }
    }

    /// The id logtap sends: 16 random bytes, base64 (standard alphabet, padded) as a `str`, the
    /// form Fluent Bit uses.
    pub fn from_random_bytes(random: [u8; 16]) -> Self {
        let text = base64::engine::general_purpose::STANDARD.encode(random);
        ChunkId::new_str(text.into_bytes())
    }

    /// A fresh id from the operating system's random source.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b)?;
        Ok(Self::from_random_bytes(b))
    }

    /// A fresh id for a chunk of our own: [`random`](ChunkId::random), or — if the OS refuses
    /// randomness — the time and a process-wide counter, still unique within the process.
    pub fn generate() -> Self {
        let mut b = [0u8; 16];
        if getrandom::fill(&mut b).is_err() {
            use std::sync::atomic::{AtomicU64, Ordering};
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            b[..8].copy_from_slice(&now.to_le_bytes());
            b[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        }
        Self::from_random_bytes(b)
    }

    /// The 16 bytes an id made by [`from_random_bytes`](ChunkId::from_random_bytes) (or
    /// [`random`](ChunkId::random), [`generate`](ChunkId::generate)) carries; `None` for any
    /// other id (a peer's).
    pub fn random_bytes(&self) -> Option<[u8; 16]> {
        if self.kind != RawKind::Str || self.bytes.len() != 24 {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&self.bytes)
            .ok()?;
        raw.try_into().ok()
    }

    /// The id's bytes as text (lossy for a `bin` id that is not UTF-8), for logs.
    pub fn as_text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes)
    }

    /// Appends the id with its own MessagePack type.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        match self.kind {
            RawKind::Str => write::str(buf, &self.bytes),
            RawKind::Bin => write::bin(buf, &self.bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_ids_are_24_base64_chars_and_random() {
        let a = ChunkId::random().expect("OS randomness");
        let b = ChunkId::random().expect("OS randomness");
        assert_eq!(a.kind, RawKind::Str);
        assert_eq!(a.bytes.len(), 24);
        assert!(a.bytes.ends_with(b"=="));
        assert_ne!(a, b);
        let fixed = ChunkId::from_random_bytes([0; 16]);
        assert_eq!(&fixed.bytes[..], b"AAAAAAAAAAAAAAAAAAAAAA==");
        assert_eq!(fixed.random_bytes(), Some([0; 16]));
        let mine = ChunkId::generate();
        assert_ne!(mine, ChunkId::generate());
        let raw = mine.random_bytes().expect("ours");
        assert_eq!(ChunkId::from_random_bytes(raw), mine);
        assert_eq!(ChunkId::new_str(&b"fluentd-id\n"[..]).random_bytes(), None);
    }
}
