//! A chunk on the wire: `[tag, bin(entries), {"size": n, "chunk": id, "compressed": "gzip"?}]`.
//!
//! The chunk's entries are already PackedForward entries (see `record.rs`), so a message is a
//! small head, the body — the chunk's own bytes, shared, not copied (gzip-compressed with
//! `compress gzip`: CompressedPackedForward) — and the option map. The three parts go out with
//! one vectored write. `chunk` is present only when an ack is wanted (`require_ack_response`).

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use logtap_protocol::forward::{ChunkId, Compression, Options};

use crate::record::{Chunk, mp};

/// One Forward message in three parts.
#[derive(Debug, Clone)]
pub struct Wire {
    pub head: Bytes,
    pub body: Bytes,
    pub tail: Bytes,
}

impl Wire {
    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len() + self.tail.len()
    }

    /// Whether the message is empty (never, for an encoded chunk).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The parts as one contiguous buffer (tests, small messages).
    pub fn to_vec(&self) -> Vec<u8> {
        [&self.head[..], &self.body[..], &self.tail[..]].concat()
    }
}

/// Encodes `chunk` as one Forward message.
pub fn encode(chunk: &Chunk, id: Option<&ChunkId>, gzip: bool) -> std::io::Result<Wire> {
    let body = if gzip {
        let mut enc = GzEncoder::new(
            Vec::with_capacity(chunk.entries.len() / 4 + 64),
            flate2::Compression::default(),
        );
        enc.write_all(&chunk.entries)?;
        Bytes::from(enc.finish()?)
    } else {
        chunk.entries.clone()
    };
    let options = Options {
        size: Some(u64::from(chunk.records)),
        chunk: id.cloned(),
        compressed: if gzip {
            Compression::Gzip
        } else {
            Compression::None
        },
        ..Options::default()
    };
    let mut head = Vec::with_capacity(chunk.tag.len() + 16);
    mp::array(&mut head, 3);
    mp::str(&mut head, chunk.tag.as_bytes());
    mp::bin_header(&mut head, body.len());
    let mut tail = Vec::with_capacity(80);
    options.encode(&mut tail);
    Ok(Wire {
        head: head.into(),
        body,
        tail: tail.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ChunkId as OurId;
    use bytes::BytesMut;
    use logtap_protocol::forward::{ClientMessage, ServerDecoder};

    fn chunk() -> Chunk {
        let mut entries = Vec::new();
        for i in 0..3u64 {
            mp::array(&mut entries, 2);
            mp::event_time(&mut entries, 1_700_000_000_000_000_000 + i);
            mp::map(&mut entries, 1);
            mp::str(&mut entries, b"message");
            mp::str(&mut entries, format!("line {i}").as_bytes());
        }
        Chunk {
            id: OurId([9; 16]),
            tag: "logtap.stdout".into(),
            entries: entries.into(),
            records: 3,
        }
    }

    /// What we send, the protocol crate's server decoder (the forward input's) reads back,
    /// with the ack it must answer — plain and gzip.
    #[test]
    fn a_server_decodes_it_and_acks_our_id() {
        for gzip in [false, true] {
            let c = chunk();
            let id = ChunkId::from_random_bytes(c.id.0);
            let wire = encode(&c, Some(&id), gzip).unwrap().to_vec();
            let mut server = ServerDecoder::default();
            let Some(ClientMessage::Events(batch)) =
                server.decode(&mut BytesMut::from(&wire[..])).unwrap()
            else {
                panic!("not events")
            };
            assert_eq!(batch.tag.as_str(), "logtap.stdout");
            assert_eq!(batch.events.len(), 3);
            assert_eq!(batch.events[2].time.as_nanos(), 1_700_000_000_000_000_002);
            assert_eq!(
                batch.events[1]
                    .record
                    .get("message")
                    .and_then(|v| v.as_str()),
                Some("line 1")
            );
            let ack = batch.ack().expect("chunk option present");
            assert!(ack.acknowledges(&id));
            assert_eq!(std::str::from_utf8(&id.bytes).unwrap(), c.id.to_base64());
        }
        let wire = encode(&chunk(), None, false).unwrap().to_vec();
        let Some(ClientMessage::Events(batch)) = ServerDecoder::default()
            .decode(&mut BytesMut::from(&wire[..]))
            .unwrap()
        else {
            panic!()
        };
        assert!(batch.ack().is_none(), "no chunk id: no ack requested");
    }
}
