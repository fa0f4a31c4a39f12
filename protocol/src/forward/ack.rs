//! The ack: `{"ack": <chunk id>}`, the server's receipt for a message that carried `chunk`.
//!
//! Per the [Forward Protocol Specification v1, "Response"](https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1#response),
//! the server answers with the same chunk value. logtap echoes it with the MessagePack type it came
//! in (Fluent Bit resends a `str` chunk acked with a `bin` id) and, as a client, compares ids byte
//! for byte (Fluentd's ids end in a newline that must not be trimmed).

use super::chunk_id::ChunkId;
use super::error::DecodeError;
use super::read::Reader;
use super::write;

/// A server's acknowledgement of one chunk.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ack {
    /// The acknowledged chunk id, with its original type.
    pub chunk: ChunkId,
}

impl Ack {
    /// Appends `{"ack": chunk}` with the chunk's own type.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        write::map_len(buf, 1);
        write::str(buf, b"ack");
        self.chunk.encode(buf);
    }

    /// The encoded ack as a new buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(8 + self.chunk.bytes.len());
        self.encode(&mut buf);
        buf
    }

    /// Client side: does this ack acknowledge `sent`? Bytes must be equal; the type may differ
    /// (be lenient in what we accept).
    pub fn acknowledges(&self, sent: &ChunkId) -> bool {
        self.chunk.bytes == sent.bytes
    }

    /// Parses a reply map; other keys are ignored, a map without `ack` is
    /// [`DecodeError::AckMissing`].
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.map_len("server reply")?;
        let mut found = None;
        for _ in 0..n {
            let key = r.try_raw()?;
            if found.is_none() && matches!(&key, Some((_, k)) if &k[..] == b"ack") {
                let (kind, bytes) = r.raw_str("ack chunk id")?;
                found = Some(Ack {
                    chunk: ChunkId { kind, bytes },
                });
            } else {
                if key.is_none() {
                    let depth = r.max_depth;
                    super::value::Value::read(r, depth)?;
                }
                let depth = r.max_depth;
                super::value::Value::read(r, depth)?;
            }
        }
        found.ok_or(DecodeError::AckMissing)
    }
}
