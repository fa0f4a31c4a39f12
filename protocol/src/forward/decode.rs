//! The streaming decoder, for both directions of a Forward connection.
//!
//! [`StreamDecoder::decode`] takes the bytes read so far and returns `Ok(None)` until a whole
//! MessagePack object is there; the buffer is advanced only past a complete message, so any split
//! of the stream decodes identically. Each message is first framed by the non-allocating framing
//! walk of `check.rs` (resumed across reads, so a message trickling in costs linear time; it
//! enforces [`DecodeLimits::max_message_bytes`] from declared lengths before waiting for the
//! bytes), then split off as a zero-copy [`Bytes`] and parsed.
//! After a recoverable error (see [`DecodeError::is_recoverable`]) the bad message has been
//! consumed and decoding can go on.
//!
//! Strings and binaries in the decoded events are [`Bytes`] slices of the message: no copy, but
//! they keep the message's memory alive until dropped (copy a field out to keep it long-term).
//!
//! [`ServerDecoder`] reads what clients send (events in all four modes, PING);
//! [`ClientDecoder`] reads what servers send (HELO, PONG, acks).

use std::marker::PhantomData;

use bytes::{Bytes, BytesMut};

use super::ack::Ack;
use super::check::{Check, Walker};
use super::chunk_id::ChunkId;
use super::error::DecodeError;
use super::event_time::EventTime;
use super::gzip::gunzip;
use super::handshake::{Helo, Ping, Pong};
use super::message::{ClientMessage, Compression, Event, EventBatch, Mode, Options, ServerMessage};
use super::read::Reader;
use super::value::Value;

/// Caps applied to every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest message accepted, in bytes. Default 64 MiB: 8× Fluentd's default memory-buffer
    /// `chunk_limit_size` (8 MiB) and 10× Fluent Bit's in_forward `buffer_max_size` (6 MB), so
    /// every default-configured sender fits, while one peer can pin at most this much memory.
    pub max_message_bytes: usize,
    /// Largest decompressed CompressedPackedForward body, in bytes. Default 64 MiB.
    pub max_decompressed_bytes: usize,
    /// Largest in-memory form of one decoded message, in bytes: the `Value`/`Event` structures,
    /// not the string bytes (those share the read buffer). A `Value` takes ~40 bytes where its
    /// wire form may take one, so this bounds what a hostile message of tiny values can cost.
    /// Default 256 MiB; typical records decode to 2–3× their wire size.
    pub max_decoded_bytes: usize,
    /// Deepest nesting of arrays/maps. Default 64, at most
    /// [`MAX_DEPTH_LIMIT`](super::MAX_DEPTH_LIMIT) (real records nest a few levels).
    pub max_depth: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_message_bytes: 64 << 20,
            max_decompressed_bytes: 64 << 20,
            max_decoded_bytes: 256 << 20,
            max_depth: 64,
        }
    }
}

/// A message type the stream decoder can produce.
pub trait Frame: Sized {
    /// Parses one complete message (exactly one MessagePack object).
    fn parse(msg: &Bytes, limits: &DecodeLimits) -> Result<Self, DecodeError>;
}

/// Streaming decoder of a Forward byte stream into `T`s.
#[derive(Debug, Clone)]
pub struct StreamDecoder<T> {
    limits: DecodeLimits,
    /// The framing walk of the pending message, resumed on each call.
    walker: Walker,
    /// The buffer cannot hold a whole message before it has this many bytes (learnt from the
    /// last walk), so small reads into a large payload do not even resume the walk.
    min_needed: usize,
    _frame: PhantomData<fn() -> T>,
}

/// Decodes what clients send: used by servers (logtap's forward input).
pub type ServerDecoder = StreamDecoder<ClientMessage>;
/// Decodes what servers send: used by clients (logtap's forward output).
pub type ClientDecoder = StreamDecoder<ServerMessage>;

impl<T: Frame> Default for StreamDecoder<T> {
    fn default() -> Self {
        Self::new(DecodeLimits::default())
    }
}

impl<T: Frame> StreamDecoder<T> {
    /// A decoder with these limits.
    pub fn new(limits: DecodeLimits) -> Self {
        StreamDecoder {
            limits,
            walker: Walker::default(),
            min_needed: 0,
            _frame: PhantomData,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &DecodeLimits {
        &self.limits
    }

    /// Decodes the next message from `buf`: `Ok(None)` when more bytes are needed (nothing
    /// consumed), `Ok(Some(_))` with the message consumed, or an error (consumed too when
    /// [`DecodeError::is_recoverable`]; after any other error, drop the connection).
    ///
    /// Call it again after every message: one read may hold several. A decoder belongs to one
    /// byte stream (it remembers how many bytes the pending message needs at least).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<T>, DecodeError> {
        if buf.len() < self.min_needed {
            return Ok(None);
        }
        let walked = self
            .walker
            .check(buf, self.limits.max_message_bytes, self.limits.max_depth);
        match walked {
            Ok(Check::Incomplete { needed }) => {
                self.min_needed = needed;
                Ok(None)
            }
            Ok(Check::Complete(len)) => {
                self.walker.reset();
                self.min_needed = 0;
                let msg = buf.split_to(len).freeze();
                T::parse(&msg, &self.limits).map(Some)
            }
            Err(e) => {
                // Fatal: nothing consumed; a caller that goes on anyway starts a fresh walk.
                self.walker.reset();
                self.min_needed = 0;
                Err(e)
            }
        }
    }
}

impl Frame for ClientMessage {
    fn parse(msg: &Bytes, limits: &DecodeLimits) -> Result<Self, DecodeError> {
        let mut r = Reader::new(msg, limits.max_depth)
            .with_budget(limits.max_decoded_bytes, limits.max_decoded_bytes);
        let n = r.array_len("Forward message")?;
        if !(2..=6).contains(&n) {
            return Err(DecodeError::BadArrayLength {
                what: "Forward message",
                len: n as u64,
                expected: "2 to 4 elements (or 6 for PING)",
            });
        }
        let (_, tag) = r.raw_str("tag")?;
        if n == 6 && &tag[..] == b"PING" {
            return Ping::read_body(&mut r).map(ClientMessage::Ping);
        }
        if n > 4 {
            return Err(DecodeError::BadArrayLength {
                what: "Forward message",
                len: n as u64,
                expected: "2 to 4 elements",
            });
        }
        let tag = String::from_utf8(tag.to_vec())
            .map_err(|_| DecodeError::InvalidUtf8 { what: "tag" })?;
        read_events(&mut r, tag, n, limits).map(ClientMessage::Events)
    }
}

/// Reads the elements after the tag: the mode is told by the second element's type.
fn read_events(
    r: &mut Reader<'_>,
    tag: String,
    n: usize,
    limits: &DecodeLimits,
) -> Result<EventBatch, DecodeError> {
    let m = r.peek()?;
    let two_or_three = |len| {
        if len == 2 || len == 3 {
            Ok(())
        } else {
            Err(DecodeError::BadArrayLength {
                what: "Forward/PackedForward message",
                len: len as u64,
                expected: "2 or 3 elements",
            })
        }
    };
    if matches!(m, 0x90..=0x9f | 0xdc | 0xdd) {
        two_or_three(n)?;
        let count = r.array_len("Forward entries")?;
        r.charge(count, std::mem::size_of::<Event>())?;
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            events.push(read_entry(r)?);
        }
        let options = if n == 3 {
            read_options(r)?
        } else {
            Options::default()
        };
        return Ok(EventBatch {
            tag,
            mode: Mode::Forward,
            events,
            options,
        });
    }
    if let Some((_, body)) = r.try_raw()? {
        two_or_three(n)?;
        let options = if n == 3 {
            read_options(r)?
        } else {
            Options::default()
        };
        let (mode, entries) = match options.compressed {
            Compression::Gzip => (
                Mode::CompressedPackedForward,
                Bytes::from(gunzip(&body, limits.max_decompressed_bytes)?),
            ),
            Compression::None => (Mode::PackedForward, body),
        };
        let events = read_packed_entries(&entries, options.size, r.budget(), limits)?;
        return Ok(EventBatch {
            tag,
            mode,
            events,
            options,
        });
    }
    if n < 3 {
        return Err(DecodeError::BadArrayLength {
            what: "Message mode",
            len: n as u64,
            expected: "3 or 4 elements",
        });
    }
    let time = read_time(r)?;
    let record = read_record(r)?;
    let options = if n == 4 {
        read_options(r)?
    } else {
        Options::default()
    };
    Ok(EventBatch {
        tag,
        mode: Mode::Message,
        events: vec![Event {
            time,
            record,
            metadata: None,
        }],
        options,
    })
}

/// Reads the concatenated entries of a PackedForward body, within what is left of the
/// message's allocation `budget` (left, max).
fn read_packed_entries(
    body: &Bytes,
    size_hint: Option<u64>,
    (budget, max): (usize, usize),
    limits: &DecodeLimits,
) -> Result<Vec<Event>, DecodeError> {
    let mut r = Reader::new(body, limits.max_depth).with_budget(budget, max);
    // The smallest entry, `[0, {}]`, takes 3 bytes: never trust `size` beyond what the body
    // and the budget can hold.
    let each = std::mem::size_of::<Event>();
    let cap = size_hint
        .unwrap_or(0)
        .min(body.len() as u64 / 3)
        .min((budget / each) as u64) as usize;
    let mut events = Vec::with_capacity(cap);
    while r.remaining() > 0 {
        r.charge(1, each)?;
        events.push(read_entry(&mut r)?);
    }
    Ok(events)
}

/// Reads an event's time. A time of 0 seconds — `nil`, integer 0, or an EventTime whose
/// seconds are 0 — means "not stamped": the event gets the time of arrival, as in Fluentd's
/// in_forward (`time = Engine.now if time.to_i == 0`, see fluent/fluentd#1276), so that a
/// client that leaves the time to the server is not filed under 1970.
fn read_time(r: &mut Reader<'_>) -> Result<EventTime, DecodeError> {
    let t = EventTime::read(r)?;
    Ok(if t.secs == 0 { EventTime::now() } else { t })
}

/// Reads `[time, record]` or v1.5's `[[time, {meta}], record]`.
fn read_entry(r: &mut Reader<'_>) -> Result<Event, DecodeError> {
    let len = r.array_len("entry")?;
    if len != 2 {
        return Err(DecodeError::BadArrayLength {
            what: "entry",
            len: len as u64,
            expected: "[time, record]",
        });
    }
    let (time, metadata) = if matches!(r.peek()?, 0x90..=0x9f | 0xdc | 0xdd) {
        let len = r.array_len("entry header")?;
        if len != 2 {
            return Err(DecodeError::BadArrayLength {
                what: "v1.5 entry header",
                len: len as u64,
                expected: "[time, metadata]",
            });
        }
        let time = read_time(r)?;
        let depth = r.max_depth;
        (time, Some(Value::read(r, depth)?))
    } else {
        (read_time(r)?, None)
    };
    Ok(Event {
        time,
        record: read_record(r)?,
        metadata,
    })
}

fn read_record(r: &mut Reader<'_>) -> Result<Value, DecodeError> {
    let m = r.peek()?;
    if !matches!(m, 0x80..=0x8f | 0xde | 0xdf) {
        return Err(DecodeError::UnexpectedType {
            what: "record",
            expected: "map",
            found: super::read::type_name(m),
        });
    }
    let depth = r.max_depth;
    Value::read(r, depth)
}

/// Reads the option map (`nil` is taken as no options).
fn read_options(r: &mut Reader<'_>) -> Result<Options, DecodeError> {
    let mut o = Options::default();
    if r.try_nil()? {
        return Ok(o);
    }
    let n = r.map_len("options")?;
    let depth = r.max_depth;
    for _ in 0..n {
        let key = Value::read(r, depth)?;
        match key.as_raw() {
            Some(b"size") => o.size = Some(r.uint("option size")?),
            Some(b"chunk") => {
                let (kind, bytes) = r.raw_str("option chunk")?;
                o.chunk = Some(ChunkId { kind, bytes });
            }
            Some(b"compressed") => {
                let c = r.text("option compressed")?;
                o.compressed_present = true;
                o.compressed = match c.as_str() {
                    "gzip" => Compression::Gzip,
                    "text" => Compression::None,
                    _ => return Err(DecodeError::UnknownCompression(c)),
                };
            }
            Some(b"fluent_signal") => {
                let v = Value::read(r, depth)?;
                o.fluent_signal = Some(match v {
                    Value::Int(i) => i,
                    Value::UInt(u) => i64::try_from(u).unwrap_or(i64::MAX),
                    _ => {
                        return Err(DecodeError::UnexpectedType {
                            what: "option fluent_signal",
                            expected: "integer",
                            found: "other",
                        });
                    }
                });
            }
            Some(b"metadata") => o.metadata = Some(Value::read(r, depth)?),
            _ => {
                let v = Value::read(r, depth)?;
                o.extra.push((key, v));
            }
        }
    }
    Ok(o)
}

impl Frame for ServerMessage {
    fn parse(msg: &Bytes, limits: &DecodeLimits) -> Result<Self, DecodeError> {
        let mut r = Reader::new(msg, limits.max_depth)
            .with_budget(limits.max_decoded_bytes, limits.max_decoded_bytes);
        match r.peek()? {
            0x80..=0x8f | 0xde | 0xdf => Ack::read(&mut r).map(ServerMessage::Ack),
            0x90..=0x9f | 0xdc | 0xdd => {
                let n = r.array_len("server message")?;
                let (_, kind) = r.raw_str("server message type")?;
                match (&kind[..], n) {
                    (b"HELO", 2) => Helo::read_body(&mut r).map(ServerMessage::Helo),
                    (b"PONG", 5) => Pong::read_body(&mut r).map(ServerMessage::Pong),
                    _ => Err(DecodeError::UnexpectedMessage(
                        "server sent an array that is neither HELO nor PONG",
                    )),
                }
            }
            _ => Err(DecodeError::UnexpectedMessage(
                "server sent neither a map (ack) nor an array (HELO/PONG)",
            )),
        }
    }
}
