//! Generic encoders for the four modes, from [`Event`]s and [`Value`]s.
//!
//! These serve relaying and tests; the agent's own output goes through the faster
//! [`PackedForwardBuilder`](super::PackedForwardBuilder), which writes records without building
//! `Value` trees. Entries with [`Event::metadata`] are written in v1.5 form
//! `[[time, metadata], record]` so a relay keeps them; plain `[time, record]` otherwise.

use std::io::Write;

use flate2::write::GzEncoder;

use super::error::EncodeError;
use super::message::{Compression, Event, EventBatch, Mode, Options};
use super::value::Value;
use super::write;

/// Appends one entry, `[time, record]` (or `[[time, metadata], record]`).
pub fn encode_entry(buf: &mut Vec<u8>, event: &Event) {
    write::array_len(buf, 2);
    match &event.metadata {
        Some(meta) => {
            write::array_len(buf, 2);
            event.time.encode(buf);
            meta.encode(buf);
        }
        None => event.time.encode(buf),
    }
    event.record.encode(buf);
}

fn len32(what: &'static str, len: usize) -> Result<u32, EncodeError> {
    u32::try_from(len).map_err(|_| EncodeError::TooLong { what, len })
}

/// Appends Message mode: `[tag, time, record, options?]` (options omitted when empty).
pub fn encode_message(buf: &mut Vec<u8>, tag: &str, event: &Event, options: &Options) {
    let with_options = !options.is_empty();
    write::array_len(buf, 3 + with_options as u32);
    write::str(buf, tag.as_bytes());
    event.time.encode(buf);
    event.record.encode(buf);
    if with_options {
        options.encode(buf);
    }
}

/// Appends Forward mode: `[tag, [entry...], options?]`.
pub fn encode_forward(
    buf: &mut Vec<u8>,
    tag: &str,
    events: &[Event],
    options: &Options,
) -> Result<(), EncodeError> {
    let with_options = !options.is_empty();
    write::array_len(buf, 2 + with_options as u32);
    write::str(buf, tag.as_bytes());
    write::array_len(buf, len32("Forward entries", events.len())?);
    for e in events {
        encode_entry(buf, e);
    }
    if with_options {
        options.encode(buf);
    }
    Ok(())
}

/// Appends (Compressed)PackedForward: `[tag, bin(entries), options?]`. With
/// [`Compression::Gzip`] the body is one gzip member and `compressed: "gzip"` is set in the
/// options written (whatever `options.compressed` says).
pub fn encode_packed_forward(
    buf: &mut Vec<u8>,
    tag: &str,
    events: &[Event],
    options: &Options,
    compression: Compression,
) -> Result<(), EncodeError> {
    let mut entries = Vec::with_capacity(events.len() * 64);
    for e in events {
        encode_entry(&mut entries, e);
    }
    let body = match compression {
        Compression::None => entries,
        Compression::Gzip => gzip(&entries)?,
    };
    let options = Options {
        compressed: compression,
        ..options.clone()
    };
    let with_options = !options.is_empty();
    write::array_len(buf, 2 + with_options as u32);
    write::str(buf, tag.as_bytes());
    write::bin_len(buf, len32("PackedForward body", body.len())?);
    buf.extend_from_slice(&body);
    if with_options {
        options.encode(buf);
    }
    Ok(())
}

/// Compresses `data` as one gzip member (default level, as Fluentd and Fluent Bit use).
pub(crate) fn gzip(data: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::default(),
    );
    enc.write_all(data).map_err(EncodeError::Compress)?;
    enc.finish().map_err(EncodeError::Compress)
}

impl EventBatch {
    /// Appends this batch in its own [`mode`](EventBatch::mode). Message mode holds one event:
    /// a batch of several is written as several Message-mode messages (metadata is dropped, the
    /// mode has no place for it).
    pub fn encode(&self, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        match self.mode {
            Mode::Message => {
                for e in &self.events {
                    encode_message(buf, &self.tag, e, &self.options);
                }
                Ok(())
            }
            Mode::Forward => encode_forward(buf, &self.tag, &self.events, &self.options),
            Mode::PackedForward => encode_packed_forward(
                buf,
                &self.tag,
                &self.events,
                &self.options,
                Compression::None,
            ),
            Mode::CompressedPackedForward => encode_packed_forward(
                buf,
                &self.tag,
                &self.events,
                &self.options,
                Compression::Gzip,
            ),
        }
    }
}

impl Value {
    /// This value's encoding as a new buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode(&mut buf);
        buf
    }
}
