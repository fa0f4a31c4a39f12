//! Contract 4: the Fluentd Forward protocol v1, both directions.
//!
//! Spec: [Forward Protocol Specification v1](https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1),
//! plus what real peers send beyond it (v1.5 entries and options from Fluent Bit ≥ 5, `str32`
//! PackedForward bodies and multi-member gzip from Fluentd).
//!
//! # Map
//! | file | what |
//! |---|---|
//! | `value.rs` | [`Value`]: MessagePack with `str` and `bin` kept apart, raw bytes never rewritten |
//! | `event_time.rs` | [`EventTime`]: ext type 0 (`fixext 8` or `ext 8`), integer times accepted |
//! | `message.rs` | [`Event`], [`Mode`], [`Options`], [`EventBatch`], [`ClientMessage`], [`ServerMessage`] |
//! | `chunk_id.rs` | [`ChunkId`]: a peer's chunk id kept exactly, or the 16 random bytes logtap sends |
//! | `check.rs` | the non-allocating, resumable framing walk (message length; depth and size caps) |
//! | `read.rs`, `write.rs` | bounds-checked MessagePack reader, `Vec` writers over [`crate::msgpack::Head`] |
//! | `decode.rs` | [`StreamDecoder`]: [`ServerDecoder`] (reads clients) and [`ClientDecoder`] (reads servers), [`DecodeLimits`] |
//! | `gzip.rs` | bounded multi-member gunzip |
//! | `encode.rs` | generic encoders for the four modes ([`encode_message`], [`encode_forward`], [`encode_packed_forward`]) |
//! | `builder.rs` | [`PackedForwardBuilder`] / [`RecordWriter`]: one message in one buffer; [`write_entry`], [`Fields`] and [`PackedForward::frame`]: entries kept apart and framed at send time (the agent's output) |
//! | `handshake.rs` | [`Helo`], [`Ping`], [`Pong`], their digests and verification |
//! | `ack.rs` | [`Ack`] |
//! | `error.rs` | [`DecodeError`] (with [`DecodeError::is_recoverable`]), [`EncodeError`] |
//! | `codec.rs` | feature `codec`: tokio-util codecs `ServerCodec` and `ClientCodec` |
//!
//! # Server side (a forward input)
//! Feed the bytes read from the connection to a [`ServerDecoder`]; for each
//! [`ClientMessage::Events`], answer `batch.ack()` if it is `Some`. With a shared key, send a
//! [`Helo`] first, then check the client's [`Ping`] with [`Ping::verify`] and answer
//! [`Pong::answer`].
//!
//! # Client side (a forward output)
//! Build chunks with [`PackedForwardBuilder`], send them, and read the server's replies with a
//! [`ClientDecoder`]: [`ServerMessage::Helo`] → answer [`Ping::new`], [`ServerMessage::Pong`] →
//! [`Pong::verify`], [`ServerMessage::Ack`] → [`Ack::acknowledges`].
//!
//! ```
//! use bytes::BytesMut;
//! use logtap_protocol::forward::{
//!     Ack, ChunkId, ClientDecoder, ClientMessage, Compression, EventTime, PackedForwardBuilder,
//!     ServerDecoder, ServerMessage,
//! };
//!
//! // Client: one chunk of two records, gzip-compressed, asking for an ack.
//! let mut chunk = PackedForwardBuilder::new("logtap.stdout");
//! chunk.record(EventTime::new(1_700_000_000, 42)).str("message", b"hello").uint("pid", 7);
//! chunk.record(EventTime::new(1_700_000_001, 0)).text_or_bin("message", b"\xff raw");
//! let id = ChunkId::from_random_bytes([7; 16]);
//! let wire = chunk.finish(Some(&id), Compression::Gzip)?;
//!
//! // Server: the bytes may arrive in any pieces.
//! let mut server = ServerDecoder::default();
//! let mut buf = BytesMut::from(&wire[..5]);
//! assert!(server.decode(&mut buf)?.is_none()); // needs more bytes
//! buf.extend_from_slice(&wire[5..]);
//! let Some(ClientMessage::Events(batch)) = server.decode(&mut buf)? else { panic!() };
//! assert_eq!((batch.tag.as_str(), batch.events.len()), ("logtap.stdout", 2));
//! assert_eq!(batch.events[0].record.get("message").and_then(|v| v.as_str()), Some("hello"));
//! let reply = batch.ack().expect("chunk option present").to_vec();
//!
//! // Client: the reply acknowledges our chunk.
//! let mut client = ClientDecoder::default();
//! let Some(ServerMessage::Ack(ack)) = client.decode(&mut BytesMut::from(&reply[..]))? else { panic!() };
//! assert!(ack.acknowledges(&id));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod ack;
mod builder;
mod check;
mod chunk_id;
mod decode;
mod encode;
mod error;
mod event_time;
mod gzip;
mod handshake;
mod message;
mod read;
mod value;
mod write;

#[cfg(feature = "codec")]
mod codec;

pub use ack::Ack;
pub use builder::{
    Fields, PackedForward, PackedForwardBuilder, RecordWriter, write_entry, write_value_entry,
};
pub use check::MAX_DEPTH_LIMIT;
pub use chunk_id::ChunkId;
pub use decode::{ClientDecoder, DecodeLimits, Frame, ServerDecoder, StreamDecoder};
pub use encode::{encode_entry, encode_forward, encode_message, encode_packed_forward};
pub use error::{DecodeError, EncodeError};
pub use event_time::{EVENT_TIME_EXT_TYPE, EventTime};
pub use handshake::{AuthFailure, Helo, Ping, Pong, password_digest, shared_key_digest};
pub use message::{ClientMessage, Compression, Event, EventBatch, Mode, Options, ServerMessage};
pub use read::RawKind;
pub use value::Value;

#[cfg(feature = "codec")]
pub use codec::{ClientCodec, ServerCodec};
