//! A chunk on the wire: `[tag, bin(entries), {"size": n, "chunk": id, "compressed": "gzip"?}]`.
//!
//! The chunk's entries are already PackedForward entries (see `record.rs`), so this is a header,
//! the body (gzip-compressed with `compress gzip`: CompressedPackedForward) and the option map.
//! `chunk` is present only when an ack is wanted (`require_ack_response`).

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use logtap_protocol::forward::{ChunkId, Compression, Options};

use crate::record::{Chunk, mp};

/// Encodes `chunk` as one Forward message.
pub fn encode(chunk: &Chunk, id: Option<&ChunkId>, gzip: bool) -> std::io::Result<Bytes> {
    let compressed;
    let body: &[u8] = if gzip {
        let mut enc = GzEncoder::new(Vec::with_capacity(chunk.entries.len() / 4 + 64), flate2::Compression::default());
        enc.write_all(&chunk.entries)?;
        compressed = enc.finish()?;
        &compressed
    } else {
        &chunk.entries
    };
    let options = Options {
        size: Some(u64::from(chunk.records)),
        chunk: id.cloned(),
        compressed: if gzip { Compression::Gzip } else { Compression::None },
        ..Options::default()
    };
    let mut buf = Vec::with_capacity(body.len() + chunk.tag.len() + 80);
    mp::array(&mut buf, 3);
    mp::str(&mut buf, chunk.tag.as_bytes());
    mp::bin(&mut buf, body);
    options.encode(&mut buf);
    Ok(Bytes::from(buf))
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
        Chunk { id: OurId([9; 16]), tag: "logtap.stdout".into(), entries: entries.into(), records: 3 }
    }

    /// What we send, the protocol crate's server decoder (the forward input's) reads back,
    /// with the ack it must answer — plain and gzip.
    #[test]
    fn a_server_decodes_it_and_acks_our_id() {
        for gzip in [false, true] {
            let c = chunk();
            let id = ChunkId::from_random_bytes(c.id.0);
            let wire = encode(&c, Some(&id), gzip).unwrap();
            let mut server = ServerDecoder::default();
            let Some(ClientMessage::Events(batch)) = server.decode(&mut BytesMut::from(&wire[..])).unwrap() else {
                panic!("not events")
            };
            assert_eq!(batch.tag.as_str(), "logtap.stdout");
            assert_eq!(batch.events.len(), 3);
            assert_eq!(batch.events[2].time.as_nanos(), 1_700_000_000_000_000_002);
            assert_eq!(batch.events[1].record.get("message").and_then(|v| v.as_str()), Some("line 1"));
            let ack = batch.ack().expect("chunk option present");
            assert!(ack.acknowledges(&id));
            assert_eq!(std::str::from_utf8(&id.bytes).unwrap(), c.id.to_base64());
        }
        let wire = encode(&chunk(), None, false).unwrap();
        let Some(ClientMessage::Events(batch)) = ServerDecoder::default().decode(&mut BytesMut::from(&wire[..])).unwrap() else {
            panic!()
        };
        assert!(batch.ack().is_none(), "no chunk id: no ack requested");
    }
}
