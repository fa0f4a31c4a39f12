//! The errors of the Forward protocol: one decode enum, classified for the caller.
//!
//! A server reading a client (or a client reading a server) must decide, for every error, whether
//! the byte stream is still framed — then it drops the one bad message and keeps the connection —
//! or whether the framing is lost and only closing the connection is safe.
//! [`DecodeError::is_recoverable`] makes that decision in one exhaustive `match`, so adding a
//! variant forces the author to classify it.

use std::io;

/// Why a Forward message could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The transport failed (only produced by the tokio-util codecs).
    #[error("I/O error while reading the Forward stream: {0}")]
    Io(#[from] io::Error),

    /// A byte that no MessagePack object may start with (0xc1, or garbage): framing is lost.
    #[error(
        "invalid MessagePack marker 0x{byte:02x} at offset {offset}: the peer is not speaking the Forward protocol (or the stream is corrupt)"
    )]
    InvalidMarker {
        /// The marker byte found.
        byte: u8,
        /// Its offset from the start of the message.
        offset: usize,
    },

    /// Containers nested deeper than the configured limit.
    #[error(
        "MessagePack nesting deeper than {max} levels; raise DecodeLimits::max_depth if this peer is legitimate"
    )]
    TooDeep {
        /// The configured limit.
        max: usize,
    },

    /// One message declares (or has reached) more bytes than the configured cap. Detected from
    /// the declared lengths, before the bytes arrive and before anything is allocated.
    #[error(
        "Forward message needs at least {needed} bytes, over the cap of {max} bytes; raise DecodeLimits::max_message_bytes (the sender's chunk_limit_size must fit)"
    )]
    MessageTooLarge {
        /// Bytes the message needs at least.
        needed: u64,
        /// The configured cap.
        max: usize,
    },

    /// A well-formed MessagePack object of the wrong type where the protocol expects another.
    #[error("{what}: expected {expected}, found {found}")]
    UnexpectedType {
        /// What was being read (e.g. "tag", "event time").
        what: &'static str,
        /// What the protocol allows there.
        expected: &'static str,
        /// What the peer sent.
        found: &'static str,
    },

    /// An array of a length the protocol does not allow there.
    #[error("{what}: array of {len} elements is not allowed here ({expected})")]
    BadArrayLength {
        /// What was being read.
        what: &'static str,
        /// The length found.
        len: u64,
        /// What the protocol allows.
        expected: &'static str,
    },

    /// Text that must be UTF-8 (a tag, a hostname, an option) is not.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 {
        /// What was being read.
        what: &'static str,
    },

    /// An EventTime extension that is not ext type 0 with 8 bytes, or a negative/overlong integer time.
    #[error("invalid event time: {reason}")]
    InvalidEventTime {
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The `compressed` option names an algorithm other than `gzip` or `text`.
    #[error("unsupported compression {0:?}: only \"gzip\" and \"text\" exist in Forward v1")]
    UnknownCompression(String),

    /// The gzip body of a CompressedPackedForward message is corrupt.
    #[error("corrupt gzip body in CompressedPackedForward: {0}")]
    Gzip(#[source] io::Error),

    /// The gzip body expands beyond the configured cap (a gzip bomb, or a huge chunk).
    #[error(
        "gzip body expands to more than {max} bytes; raise DecodeLimits::max_decompressed_bytes if the sender's chunks are that large"
    )]
    DecompressedTooLarge {
        /// The configured cap.
        max: usize,
    },

    /// The decoded form of one message (its `Value`s and `Event`s, not counting string bytes,
    /// which share the input buffer) would exceed the configured cap.
    #[error(
        "decoding this Forward message would take more than {max} bytes of memory (a message of many tiny values?); raise DecodeLimits::max_decoded_bytes if the sender is legitimate"
    )]
    DecodedTooLarge {
        /// The configured cap.
        max: usize,
    },

    /// The entries of a (Compressed)PackedForward body (or a buffer given to a one-shot parser)
    /// end in the middle of an object.
    #[error(
        "truncated MessagePack inside a PackedForward body: the last {0} bytes do not form a whole object"
    )]
    TruncatedEntries(usize),

    /// A message whose first element names a handshake message the receiving side does not
    /// expect (e.g. a client sending HELO), or a server reply that is none of HELO/PONG/ack.
    #[error("unexpected message: {0}")]
    UnexpectedMessage(&'static str),

    /// A server reply map without the `ack` key: the chunk must be resent.
    #[error("server reply has no \"ack\" key; the chunk is not acknowledged and must be resent")]
    AckMissing,
}

impl DecodeError {
    /// True when the stream is still correctly framed after this error: the bad message has been
    /// consumed from the buffer and decoding may continue with the next one (keep the
    /// connection). False when the connection must be dropped.
    pub fn is_recoverable(&self) -> bool {
        match self {
            // Framing lost, or we refuse to buffer/skip the rest of the message.
            DecodeError::Io(_)
            | DecodeError::InvalidMarker { .. }
            | DecodeError::TooDeep { .. }
            | DecodeError::MessageTooLarge { .. } => false,
            // The message was a complete MessagePack object and has been consumed.
            DecodeError::UnexpectedType { .. }
            | DecodeError::BadArrayLength { .. }
            | DecodeError::InvalidUtf8 { .. }
            | DecodeError::InvalidEventTime { .. }
            | DecodeError::UnknownCompression(_)
            | DecodeError::Gzip(_)
            | DecodeError::DecompressedTooLarge { .. }
            | DecodeError::DecodedTooLarge { .. }
            | DecodeError::TruncatedEntries(_)
            | DecodeError::UnexpectedMessage(_)
            | DecodeError::AckMissing => true,
        }
    }
}

/// Why a Forward message could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The gzip encoder failed (it writes into memory, so this means a bug or exhausted memory).
    #[error("gzip compression of a PackedForward body failed: {0}")]
    Compress(#[source] io::Error),
    /// A length does not fit MessagePack's 32-bit lengths.
    #[error("{what} is {len} bytes/elements, over MessagePack's 4 GiB limit; send smaller chunks")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length.
        len: usize,
    },
}
