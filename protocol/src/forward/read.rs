//! A bounds-checked MessagePack cursor over one complete message, used by the parsers.
//!
//! The parsers run after the framing walk (`check.rs`) has framed the message, but the entries of a
//! PackedForward body were never checked (they hide inside a `bin`), so this reader trusts
//! nothing: every read is bounds-checked and returns an error instead of panicking, and no
//! collection is pre-allocated beyond what the remaining bytes could possibly hold.
//! Strings and binaries are zero-copy [`Bytes`] slices of the message.

use bytes::Bytes;

use super::error::DecodeError;

/// Was a string-like object a MessagePack `str` or a `bin`? Kept because peers care (an ack must
/// echo the chunk id with the type it came in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RawKind {
    /// MessagePack `str` (fixstr, str8, str16, str32).
    Str,
    /// MessagePack `bin` (bin8, bin16, bin32).
    Bin,
}

/// Cursor over one message.
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    /// The nesting limit, reported in [`DecodeError::TooDeep`].
    pub(crate) max_depth: usize,
    /// Bytes of decoded structures (`Value`s, `Event`s) this message may still allocate.
    budget: usize,
    /// The whole budget, reported in [`DecodeError::DecodedTooLarge`].
    budget_max: usize,
}

/// The MessagePack family a marker byte belongs to, for error messages.
pub(crate) fn type_name(marker: u8) -> &'static str {
    match marker {
        0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xd3 => "integer",
        0x80..=0x8f | 0xde | 0xdf => "map",
        0x90..=0x9f | 0xdc | 0xdd => "array",
        0xa0..=0xbf | 0xd9..=0xdb => "str",
        0xc0 => "nil",
        0xc2 | 0xc3 => "bool",
        0xc4..=0xc6 => "bin",
        0xc7..=0xc9 | 0xd4..=0xd8 => "ext",
        0xca | 0xcb => "float",
        0xc1 => "invalid marker 0xc1",
    }
}

impl<'a> Reader<'a> {
    /// A reader with an unlimited allocation budget (callers that decode their own bytes).
    pub(crate) fn new(buf: &'a Bytes, max_depth: usize) -> Self {
        Reader {
            buf,
            pos: 0,
            max_depth,
            budget: usize::MAX,
            budget_max: usize::MAX,
        }
    }

    /// Limits what the parsed structures may allocate: `budget` bytes left of `max`.
    pub(crate) fn with_budget(mut self, budget: usize, max: usize) -> Self {
        self.budget = budget;
        self.budget_max = max;
        self
    }

    /// Budget left (passed on to the reader of a PackedForward body).
    pub(crate) fn budget(&self) -> (usize, usize) {
        (self.budget, self.budget_max)
    }

    /// Charges `n` structures of `each` bytes against the budget, before they are allocated.
    /// A `Value` is ~40 bytes where its wire form may be one byte: without this, 64 MiB of `nil`s
    /// would decode into 2.5 GiB.
    #[inline]
    pub(crate) fn charge(&mut self, n: usize, each: usize) -> Result<(), DecodeError> {
        let cost = n.saturating_mul(each);
        if cost > self.budget {
            return Err(DecodeError::DecodedTooLarge {
                max: self.budget_max,
            });
        }
        self.budget -= cost;
        Ok(())
    }

    /// Offset of the cursor from the start of the buffer.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next marker byte, not consumed.
    #[inline]
    pub(crate) fn peek(&self) -> Result<u8, DecodeError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::TruncatedEntries(0))
    }

    /// The next `n` bytes, consumed.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(DecodeError::TruncatedEntries(self.remaining())),
        }
    }

    #[inline]
    fn take_bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        self.take(n)?;
        Ok(self.buf.slice(start..self.pos))
    }

    #[inline]
    fn be(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    #[inline]
    pub(crate) fn raw_bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.take_bytes(n)
    }

    #[inline]
    pub(crate) fn be_u64(&mut self, n: usize) -> Result<u64, DecodeError> {
        self.be(n)
    }

    fn unexpected(&self, what: &'static str, expected: &'static str, marker: u8) -> DecodeError {
        DecodeError::UnexpectedType {
            what,
            expected,
            found: type_name(marker),
        }
    }

    /// Reads an array header; the length is capped by the bytes left (each element takes one).
    pub(crate) fn array_len(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let m = self.peek()?;
        let len = match m {
            0x90..=0x9f => {
                self.pos += 1;
                (m & 0x0f) as u64
            }
            0xdc => {
                self.pos += 1;
                self.be(2)?
            }
            0xdd => {
                self.pos += 1;
                self.be(4)?
            }
            _ => return Err(self.unexpected(what, "array", m)),
        };
        self.bound(usize::try_from(len).unwrap_or(usize::MAX), 1)
    }

    /// Reads a map header; the pair count is capped by the bytes left (each pair takes two).
    pub(crate) fn map_len(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        let m = self.peek()?;
        let len = match m {
            0x80..=0x8f => {
                self.pos += 1;
                (m & 0x0f) as u64
            }
            0xde => {
                self.pos += 1;
                self.be(2)?
            }
            0xdf => {
                self.pos += 1;
                self.be(4)?
            }
            _ => return Err(self.unexpected(what, "map", m)),
        };
        self.bound(usize::try_from(len).unwrap_or(usize::MAX), 2)
    }

    /// A declared element count that the remaining bytes cannot hold is a truncation: reject it
    /// before anyone allocates a `Vec` of that capacity.
    pub(crate) fn bound(&self, len: usize, min_bytes_each: usize) -> Result<usize, DecodeError> {
        if len.saturating_mul(min_bytes_each) > self.remaining() {
            return Err(DecodeError::TruncatedEntries(self.remaining()));
        }
        Ok(len)
    }

    /// Steps back `n` bytes (to re-read a marker just consumed).
    #[inline]
    pub(crate) fn rewind(&mut self, n: usize) {
        self.pos = self.pos.saturating_sub(n);
    }

    /// Reads a `str` or `bin` if the next object is one; `Ok(None)` (nothing consumed) otherwise.
    pub(crate) fn try_raw(&mut self) -> Result<Option<(RawKind, Bytes)>, DecodeError> {
        let m = self.peek()?;
        let (kind, n) = match m {
            0xa0..=0xbf => (RawKind::Str, 0),
            0xd9 => (RawKind::Str, 1),
            0xda => (RawKind::Str, 2),
            0xdb => (RawKind::Str, 4),
            0xc4 => (RawKind::Bin, 1),
            0xc5 => (RawKind::Bin, 2),
            0xc6 => (RawKind::Bin, 4),
            _ => return Ok(None),
        };
        self.pos += 1;
        let len = if n == 0 {
            (m & 0x1f) as u64
        } else {
            self.be(n)?
        };
        let len =
            usize::try_from(len).map_err(|_| DecodeError::TruncatedEntries(self.remaining()))?;
        Ok(Some((kind, self.take_bytes(len)?)))
    }

    /// Reads a `str` or `bin`, as the protocol allows either in most places.
    pub(crate) fn raw_str(&mut self, what: &'static str) -> Result<(RawKind, Bytes), DecodeError> {
        let m = self.peek()?;
        match self.try_raw()? {
            Some(r) => Ok(r),
            None => Err(self.unexpected(what, "str or bin", m)),
        }
    }

    /// Reads a `str` (or `bin`) that must be UTF-8 text.
    pub(crate) fn text(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let (_, b) = self.raw_str(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::InvalidUtf8 { what })
    }

    /// Reads `nil`, if that is what comes next.
    pub(crate) fn try_nil(&mut self) -> Result<bool, DecodeError> {
        if self.peek()? == 0xc0 {
            self.pos += 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// Reads a boolean.
    pub(crate) fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.peek()? {
            0xc2 => {
                self.pos += 1;
                Ok(false)
            }
            0xc3 => {
                self.pos += 1;
                Ok(true)
            }
            m => Err(self.unexpected(what, "bool", m)),
        }
    }

    /// Reads any integer that fits `u64` (negative ones are rejected).
    pub(crate) fn uint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let m = self.peek()?;
        match self.int(m)? {
            Some(Int::UInt(v)) => Ok(v),
            Some(Int::Int(v)) if v >= 0 => Ok(v as u64),
            _ => Err(self.unexpected(what, "non-negative integer", m)),
        }
    }

    /// Reads an integer object if the marker `m` (at the current position) is one; `Ok(None)`
    /// (nothing consumed) if not.
    pub(crate) fn int(&mut self, m: u8) -> Result<Option<Int>, DecodeError> {
        let v = match m {
            0x00..=0x7f => {
                self.advance(1);
                Int::UInt(m as u64)
            }
            0xe0..=0xff => {
                self.advance(1);
                Int::Int(m as i8 as i64)
            }
            0xcc..=0xcf => {
                self.advance(1);
                Int::UInt(self.be_u64(1 << (m - 0xcc))?)
            }
            0xd0..=0xd3 => {
                self.advance(1);
                let v = self.be_i64(1 << (m - 0xd0))?;
                if v >= 0 {
                    Int::UInt(v as u64)
                } else {
                    Int::Int(v)
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(v))
    }

    /// Reads a big-endian signed integer of `n` bytes (1, 2, 4 or 8), sign-extended.
    #[inline]
    pub(crate) fn be_i64(&mut self, n: usize) -> Result<i64, DecodeError> {
        let raw = self.be_u64(n)?;
        let shift = 64 - 8 * n as u32;
        Ok(((raw << shift) as i64) >> shift)
    }

    /// Skips `n` bytes already validated by the caller.
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }
}

/// A MessagePack integer as read: non-negative ones are `UInt` whatever their wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Int {
    UInt(u64),
    Int(i64),
}
