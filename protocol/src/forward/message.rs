//! The Forward protocol's wire types: events, modes, options, chunk ids, and the two directions'
//! message enums.
//!
//! Spec: [Forward Protocol Specification v1](https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1)
//! ("Event Modes", "Option"), plus v1.5's `fluent_signal` and `metadata` options and v1.5's
//! entry form `[[time, {meta}], record]` that Fluent Bit ≥ 5 sends.

use super::ack::Ack;
use super::chunk_id::ChunkId;
use super::event_time::EventTime;
use super::handshake::{Helo, Ping, Pong};
use super::value::Value;
use super::write;

/// One event: a time, a record (a map, in wire order) and, for v1.5 entries, the metadata map.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When it happened.
    pub time: EventTime,
    /// The record (a [`Value::Map`] from every conforming sender).
    pub record: Value,
    /// v1.5 entry metadata (`[[time, {meta}], record]`); `None` for plain `[time, record]`.
    pub metadata: Option<Value>,
}

/// Which of the four event modes a message used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `[tag, time, record, option?]`: one event.
    Message,
    /// `[tag, [[time, record], ...], option?]`.
    Forward,
    /// `[tag, bin|str(concatenated entries), option?]`.
    PackedForward,
    /// PackedForward whose body is gzip (`compressed: "gzip"`).
    CompressedPackedForward,
}

/// The `compressed` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No compression (absent, or `"text"` as Fluentd writes it).
    #[default]
    None,
    /// `"gzip"`: the body is one or more concatenated gzip members.
    Gzip,
}

/// The option map (the last element of every mode).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Options {
    /// `size`: number of events (a hint; Fluentd uses it for metrics).
    pub size: Option<u64>,
    /// `chunk`: present when the client wants an ack.
    pub chunk: Option<ChunkId>,
    /// `compressed`.
    pub compressed: Compression,
    /// Whether `compressed` was present on the wire (`"text"` and absent both mean none).
    pub compressed_present: bool,
    /// v1.5 `fluent_signal` (Fluent Bit sends 0 for logs).
    pub fluent_signal: Option<i64>,
    /// v1.5 `metadata`.
    pub metadata: Option<Value>,
    /// Any other key, kept in wire order.
    pub extra: Vec<(Value, Value)>,
}

impl Options {
    /// True when no option is set (encoders then omit the map).
    pub fn is_empty(&self) -> bool {
        self.size.is_none()
            && self.chunk.is_none()
            && !self.compressed_present
            && self.compressed == Compression::None
            && self.fluent_signal.is_none()
            && self.metadata.is_none()
            && self.extra.is_empty()
    }

    /// Appends the option map.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        let gzip = self.compressed == Compression::Gzip;
        let n = self.size.is_some() as u32
            + self.chunk.is_some() as u32
            + (gzip || self.compressed_present) as u32
            + self.fluent_signal.is_some() as u32
            + self.metadata.is_some() as u32
            + u32::try_from(self.extra.len()).unwrap_or(u32::MAX - 5);
        write::map_len(buf, n);
        if let Some(size) = self.size {
            write::str(buf, b"size");
            write::uint(buf, size);
        }
        if let Some(chunk) = &self.chunk {
            write::str(buf, b"chunk");
            chunk.encode(buf);
        }
        if gzip || self.compressed_present {
            write::str(buf, b"compressed");
            write::str(buf, if gzip { b"gzip" } else { b"text" });
        }
        if let Some(sig) = self.fluent_signal {
            write::str(buf, b"fluent_signal");
            write::int(buf, sig);
        }
        if let Some(meta) = &self.metadata {
            write::str(buf, b"metadata");
            meta.encode(buf);
        }
        for (k, v) in &self.extra {
            k.encode(buf);
            v.encode(buf);
        }
    }
}

/// The events of one message, with its tag, mode and options.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBatch {
    /// The tag (UTF-8, checked on decode).
    pub tag: String,
    /// How the sender framed the events.
    pub mode: Mode,
    /// The events, in order.
    pub events: Vec<Event>,
    /// The options (`Options::default()` when the message had none).
    pub options: Options,
}

impl EventBatch {
    /// The ack the server must send for this message, if the client asked for one.
    pub fn ack(&self) -> Option<Ack> {
        self.options.chunk.clone().map(|chunk| Ack { chunk })
    }
}

/// What a client sends to a server (decoded by the server side).
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum ClientMessage {
    /// Events in any of the four modes.
    Events(EventBatch),
    /// The handshake's PING.
    Ping(Ping),
}

/// What a server sends to a client (decoded by the client side).
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// The handshake's HELO.
    Helo(Helo),
    /// The handshake's PONG.
    Pong(Pong),
    /// `{"ack": chunk}`.
    Ack(Ack),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_encode_only_what_is_set() {
        let mut buf = Vec::new();
        Options::default().encode(&mut buf);
        assert_eq!(buf, [0x80]);
        assert!(Options::default().is_empty());
        let text = Options {
            compressed_present: true,
            ..Options::default()
        };
        assert!(!text.is_empty());
        buf.clear();
        text.encode(&mut buf);
        assert_eq!(buf, b"\x81\xaacompressed\xa4text");
    }
}
