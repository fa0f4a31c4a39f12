//! tokio-util codecs over the [`StreamDecoder`] (feature `codec`).
//!
//! `FramedRead` ends the stream after the first `Err` its decoder returns, but most Forward
//! errors only spoil one message (see [`DecodeError::is_recoverable`]). So the codecs yield
//! `Result<T, DecodeError>` items: an inner `Err` is a rejected message on a connection that
//! stays usable; the outer `Err` (framing lost, I/O) ends the stream.
//!
//! - [`ServerCodec`] (for servers): decodes [`ClientMessage`]s, encodes [`Ack`], [`Helo`], [`Pong`].
//! - [`ClientCodec`] (for clients): decodes [`ServerMessage`]s, encodes prepared messages
//!   ([`Bytes`] from [`PackedForwardBuilder::finish`](super::PackedForwardBuilder::finish)) and
//!   [`Ping`].

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::ack::Ack;
use super::decode::{DecodeLimits, Frame, StreamDecoder};
use super::error::DecodeError;
use super::handshake::{Helo, Ping, Pong};
use super::message::{ClientMessage, ServerMessage};

/// Splits a decode result into "stream goes on" (inner) and "stream ends" (outer) errors.
fn sort<T: Frame>(
    dec: &mut StreamDecoder<T>,
    src: &mut BytesMut,
) -> Result<Option<Result<T, DecodeError>>, DecodeError> {
    match dec.decode(src) {
        Ok(Some(msg)) => Ok(Some(Ok(msg))),
        Ok(None) => Ok(None),
        Err(e) if e.is_recoverable() => Ok(Some(Err(e))),
        Err(e) => Err(e),
    }
}

/// Writes with a scratch `Vec` (the encoders append to `Vec<u8>`), then into the frame buffer.
fn put(dst: &mut BytesMut, encode: impl FnOnce(&mut Vec<u8>)) {
    let mut v = Vec::with_capacity(128);
    encode(&mut v);
    dst.put_slice(&v);
}

/// The server side of a connection.
#[derive(Debug, Clone, Default)]
pub struct ServerCodec {
    decoder: StreamDecoder<ClientMessage>,
}

impl ServerCodec {
    /// A codec with these limits.
    pub fn new(limits: DecodeLimits) -> Self {
        ServerCodec {
            decoder: StreamDecoder::new(limits),
        }
    }
}

impl Decoder for ServerCodec {
    type Item = Result<ClientMessage, DecodeError>;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, DecodeError> {
        sort(&mut self.decoder, src)
    }
}

impl Encoder<&Ack> for ServerCodec {
    type Error = DecodeError;
    fn encode(&mut self, item: &Ack, dst: &mut BytesMut) -> Result<(), DecodeError> {
        put(dst, |v| item.encode(v));
        Ok(())
    }
}

impl Encoder<&Helo> for ServerCodec {
    type Error = DecodeError;
    fn encode(&mut self, item: &Helo, dst: &mut BytesMut) -> Result<(), DecodeError> {
        put(dst, |v| item.encode(v));
        Ok(())
    }
}

impl Encoder<&Pong> for ServerCodec {
    type Error = DecodeError;
    fn encode(&mut self, item: &Pong, dst: &mut BytesMut) -> Result<(), DecodeError> {
        put(dst, |v| item.encode(v));
        Ok(())
    }
}

/// The client side of a connection.
#[derive(Debug, Clone, Default)]
pub struct ClientCodec {
    decoder: StreamDecoder<ServerMessage>,
}

impl ClientCodec {
    /// A codec with these limits.
    pub fn new(limits: DecodeLimits) -> Self {
        ClientCodec {
            decoder: StreamDecoder::new(limits),
        }
    }
}

impl Decoder for ClientCodec {
    type Item = Result<ServerMessage, DecodeError>;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, DecodeError> {
        sort(&mut self.decoder, src)
    }
}

impl Encoder<Bytes> for ClientCodec {
    type Error = DecodeError;
    /// Sends an already-encoded message (a chunk from the builder; resent as is after a retry).
    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), DecodeError> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Encoder<&Ping> for ClientCodec {
    type Error = DecodeError;
    fn encode(&mut self, item: &Ping, dst: &mut BytesMut) -> Result<(), DecodeError> {
        put(dst, |v| item.encode(v));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::{ChunkId, Compression, EventTime, PackedForwardBuilder};

    #[test]
    fn recoverable_errors_are_items_fatal_ones_end_the_stream() {
        let mut chunk = PackedForwardBuilder::new("t");
        chunk.record(EventTime::new(1, 0)).str("message", b"x");
        let id = ChunkId::from_random_bytes([1; 16]);
        let good = chunk.finish(Some(&id), Compression::None).expect("encode");
        let mut src = BytesMut::new();
        src.extend_from_slice(&[0x93, 0xa2, 0xff, 0xfe, 0x01, 0x80]); // invalid UTF-8 tag
        src.extend_from_slice(&good);
        src.extend_from_slice(&[0x93, 0xc1]); // framing lost
        let mut codec = ServerCodec::default();
        assert!(matches!(
            codec.decode(&mut src),
            Ok(Some(Err(DecodeError::InvalidUtf8 { .. })))
        ));
        let Ok(Some(Ok(ClientMessage::Events(batch)))) = codec.decode(&mut src) else {
            panic!("the good message follows")
        };
        assert!(matches!(
            codec.decode(&mut src),
            Err(DecodeError::InvalidMarker { .. })
        ));

        // The ack goes back through the encoder and the client codec reads it.
        let mut wire = BytesMut::new();
        let ack = batch.ack().expect("chunk present");
        Encoder::<&Ack>::encode(&mut codec, &ack, &mut wire).expect("encode ack");
        let mut client = ClientCodec::default();
        let Ok(Some(Ok(ServerMessage::Ack(got)))) = client.decode(&mut wire) else {
            panic!("ack")
        };
        assert!(got.acknowledges(&id));
        let mut out = BytesMut::new();
        Encoder::<Bytes>::encode(&mut client, good.clone(), &mut out).expect("encode chunk");
        assert_eq!(&out[..], &good[..]);
    }
}
