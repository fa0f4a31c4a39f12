//! A tiny MessagePack writer into a caller's buffer, and a bounded reader over a byte slice.
//!
//! Why not `rmp`: the interceptor encodes HELLO, LOSS and FILE payloads from inside a hooked
//! `write()` — possibly a signal handler — so the writer must never allocate, never panic and
//! never touch std I/O. It writes into a fixed `&mut [u8]` (a stack array) and reports
//! [`Overflow`] when the buffer is too small. The reader serves the agent's decoding of those
//! same payloads: it borrows from the input, checks every declared length against the bytes
//! actually present before using it, and bounds nesting depth, so hostile input costs no
//! allocation and cannot panic.
//!
//! Only the subset the tap payloads need is here: nil, bool, unsigned and signed integers,
//! str, bin, array and map headers. [`Reader::skip`] steps over any value (including floats
//! and ext) so that decoders can ignore keys they do not know.

/// The caller's buffer was too small for what was being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// One MessagePack header — a marker with its length, or a whole scalar — in its smallest form,
/// built on the stack. The one place MessagePack forms are chosen: [`Writer`] copies heads
/// into a fixed buffer (the interceptor), the Forward encoders (`forward::write`) append them
/// to a `Vec` (the agent). Each variant has a fixed size, so that appending one is a copy of a
/// known length (no length-dependent `memcpy` on the agent's per-line path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// A one-byte form (fix types, nil, bools).
    B1([u8; 1]),
    /// A marker and one byte.
    B2([u8; 2]),
    /// A marker and two bytes.
    B3([u8; 3]),
    /// `ext 16`: marker, length, type.
    B4([u8; 4]),
    /// A marker and four bytes.
    B5([u8; 5]),
    /// `ext 32`: marker, length, type.
    B6([u8; 6]),
    /// A marker and eight bytes.
    B9([u8; 9]),
}

impl Head {
    /// The header's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Head::B1(b) => b,
            Head::B2(b) => b,
            Head::B3(b) => b,
            Head::B4(b) => b,
            Head::B5(b) => b,
            Head::B6(b) => b,
            Head::B9(b) => b,
        }
    }

    /// A length header: the fix form (`base | len` when `len <= fix_max`), then the 8-, 16- and
    /// 32-bit forms; `None` where the type has no such form.
    #[inline]
    fn sized(fix: Option<(u8, u32)>, m8: Option<u8>, m16: u8, m32: u8, len: u32) -> Head {
        if let Some((base, max)) = fix
            && len <= max
        {
            return Head::B1([base | len as u8]);
        }
        if let Some(m) = m8
            && len <= 0xff
        {
            return Head::B2([m, len as u8]);
        }
        if len <= 0xffff {
            let l = (len as u16).to_be_bytes();
            return Head::B3([m16, l[0], l[1]]);
        }
        let l = len.to_be_bytes();
        Head::B5([m32, l[0], l[1], l[2], l[3]])
    }

    /// An array header for `len` elements.
    #[inline]
    pub fn array(len: u32) -> Head {
        Head::sized(Some((0x90, 15)), None, 0xdc, 0xdd, len)
    }

    /// A map header for `len` key/value pairs.
    #[inline]
    pub fn map(len: u32) -> Head {
        Head::sized(Some((0x80, 15)), None, 0xde, 0xdf, len)
    }

    /// A `str` header for `len` bytes.
    #[inline]
    pub fn str(len: u32) -> Head {
        Head::sized(Some((0xa0, 31)), Some(0xd9), 0xda, 0xdb, len)
    }

    /// A `bin` header for `len` bytes.
    #[inline]
    pub fn bin(len: u32) -> Head {
        Head::sized(None, Some(0xc4), 0xc5, 0xc6, len)
    }

    /// An extension header of type `ty` for `len` bytes (fixext when the size allows).
    #[inline]
    pub fn ext(ty: i8, len: u32) -> Head {
        let ty = ty as u8;
        match len {
            1 => Head::B2([0xd4, ty]),
            2 => Head::B2([0xd5, ty]),
            4 => Head::B2([0xd6, ty]),
            8 => Head::B2([0xd7, ty]),
            16 => Head::B2([0xd8, ty]),
            l if l <= 0xff => Head::B3([0xc7, l as u8, ty]),
            l if l <= 0xffff => {
                let b = (l as u16).to_be_bytes();
                Head::B4([0xc8, b[0], b[1], ty])
            }
            l => {
                let b = l.to_be_bytes();
                Head::B6([0xc9, b[0], b[1], b[2], b[3], ty])
            }
        }
    }

    /// An unsigned integer, whole.
    #[inline]
    pub fn uint(v: u64) -> Head {
        if v < 0x80 {
            Head::B1([v as u8])
        } else if v <= 0xff {
            Head::B2([0xcc, v as u8])
        } else if v <= 0xffff {
            let b = (v as u16).to_be_bytes();
            Head::B3([0xcd, b[0], b[1]])
        } else if v <= 0xffff_ffff {
            let b = (v as u32).to_be_bytes();
            Head::B5([0xce, b[0], b[1], b[2], b[3]])
        } else {
            let b = v.to_be_bytes();
            Head::B9([0xcf, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
        }
    }

    /// A signed integer, whole (non-negative values as unsigned, like msgpack-c).
    #[inline]
    pub fn int(v: i64) -> Head {
        if v >= 0 {
            Head::uint(v as u64)
        } else if v >= -32 {
            Head::B1([v as i8 as u8])
        } else if v >= i64::from(i8::MIN) {
            Head::B2([0xd0, v as i8 as u8])
        } else if v >= i64::from(i16::MIN) {
            let b = (v as i16).to_be_bytes();
            Head::B3([0xd1, b[0], b[1]])
        } else if v >= i64::from(i32::MIN) {
            let b = (v as i32).to_be_bytes();
            Head::B5([0xd2, b[0], b[1], b[2], b[3]])
        } else {
            let b = v.to_be_bytes();
            Head::B9([0xd3, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
        }
    }

    /// `true` / `false`.
    #[inline]
    pub fn bool(v: bool) -> Head {
        Head::B1([if v { 0xc3 } else { 0xc2 }])
    }

    /// Appends the header to `buf` (a copy of the variant's fixed size).
    #[cfg(feature = "forward")]
    #[inline]
    pub fn append_to(self, buf: &mut Vec<u8>) {
        match self {
            Head::B1([b]) => buf.push(b),
            Head::B2(b) => buf.extend_from_slice(&b),
            Head::B3(b) => buf.extend_from_slice(&b),
            Head::B4(b) => buf.extend_from_slice(&b),
            Head::B5(b) => buf.extend_from_slice(&b),
            Head::B6(b) => buf.extend_from_slice(&b),
            Head::B9(b) => buf.extend_from_slice(&b),
        }
    }
}

/// Writes MessagePack into a borrowed byte buffer, never allocating.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer that starts at the beginning of `buf`.
    pub fn new(buf: &'a mut [u8]) -> Writer<'a> {
        Writer { buf, pos: 0 }
    }

    /// How many bytes have been written.
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        let end = self.pos.checked_add(bytes.len()).ok_or(Overflow)?;
        let dst = self.buf.get_mut(self.pos..end).ok_or(Overflow)?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    /// A length header made by `head`; lengths over 32 bits do not fit.
    fn header(&mut self, head: fn(u32) -> Head, len: usize) -> Result<(), Overflow> {
        let len = u32::try_from(len).map_err(|_| Overflow)?;
        self.put(head(len).as_bytes())
    }

    /// A failed value leaves nothing behind: the writer is where it was before it.
    fn undo_on_err(&mut self, start: usize, r: Result<(), Overflow>) -> Result<(), Overflow> {
        if r.is_err() {
            self.pos = start;
        }
        r
    }

    /// nil
    pub fn nil(&mut self) -> Result<(), Overflow> {
        self.put(&[0xc0])
    }

    /// true / false
    pub fn bool(&mut self, v: bool) -> Result<(), Overflow> {
        self.put(Head::bool(v).as_bytes())
    }

    /// An unsigned integer in its shortest form.
    pub fn uint(&mut self, v: u64) -> Result<(), Overflow> {
        self.put(Head::uint(v).as_bytes())
    }

    /// A str (MessagePack's UTF-8 string type). The caller vouches for UTF-8; see [`Writer::text`].
    pub fn str(&mut self, s: &[u8]) -> Result<(), Overflow> {
        let start = self.pos;
        let r = self.header(Head::str, s.len()).and_then(|()| self.put(s));
        self.undo_on_err(start, r)
    }

    /// A bin (raw bytes).
    pub fn bin(&mut self, b: &[u8]) -> Result<(), Overflow> {
        let start = self.pos;
        let r = self.header(Head::bin, b.len()).and_then(|()| self.put(b));
        self.undo_on_err(start, r)
    }

    /// Bytes that are usually text: str when valid UTF-8, bin otherwise (bytes are never rewritten).
    pub fn text(&mut self, b: &[u8]) -> Result<(), Overflow> {
        if core::str::from_utf8(b).is_ok() {
            self.str(b)
        } else {
            self.bin(b)
        }
    }

    /// An array header for `len` elements.
    pub fn array(&mut self, len: usize) -> Result<(), Overflow> {
        self.header(Head::array, len)
    }

    /// A map header for `len` key/value pairs.
    pub fn map(&mut self, len: usize) -> Result<(), Overflow> {
        self.header(Head::map, len)
    }
}

/// Why a MessagePack value could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The input ended inside a value.
    #[error("truncated MessagePack: needed {needed} more byte(s) at offset {offset}")]
    Truncated {
        /// Where the value started.
        offset: usize,
        /// How many more bytes it needs.
        needed: usize,
    },
    /// A value of another type was found.
    #[error("expected {expected} at offset {offset}, found marker 0x{marker:02x}")]
    Type {
        /// What the decoder wanted.
        expected: &'static str,
        /// The marker byte found.
        marker: u8,
        /// Where.
        offset: usize,
    },
    /// Arrays and maps nest deeper than the reader allows.
    #[error("MessagePack nested deeper than {0} levels")]
    TooDeep(usize),
    /// The marker byte 0xc1 is never used by MessagePack.
    #[error("invalid MessagePack marker 0xc1 at offset {0}")]
    InvalidMarker(usize),
    /// A declared element count cannot fit in the remaining input.
    #[error("declared length {declared} at offset {offset} exceeds the {remaining} byte(s) left")]
    LengthExceedsInput {
        /// The declared count.
        declared: u64,
        /// Where.
        offset: usize,
        /// Bytes remaining.
        remaining: usize,
    },
}

/// Nesting depth allowed by [`Reader::skip`].
pub const MAX_DEPTH: usize = 32;

/// Reads MessagePack from a byte slice, borrowing strings from it.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// The current offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        let start = self.pos;
        let end = start.checked_add(n).ok_or(ReadError::Truncated {
            offset: start,
            needed: n,
        })?;
        let out = self.buf.get(start..end).ok_or(ReadError::Truncated {
            offset: start,
            needed: end.saturating_sub(self.buf.len()),
        })?;
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, ReadError> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, ReadError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn peek(&self) -> Result<u8, ReadError> {
        self.buf.get(self.pos).copied().ok_or(ReadError::Truncated {
            offset: self.pos,
            needed: 1,
        })
    }

    fn type_err(&self, expected: &'static str, marker: u8, offset: usize) -> ReadError {
        ReadError::Type {
            expected,
            marker,
            offset,
        }
    }

    /// A length that must fit in what is left (each element takes at least `min_each` bytes).
    fn checked_count(
        &self,
        declared: u64,
        min_each: u64,
        offset: usize,
    ) -> Result<usize, ReadError> {
        let remaining = self.remaining();
        if declared.saturating_mul(min_each) > remaining as u64 {
            return Err(ReadError::LengthExceedsInput {
                declared,
                offset,
                remaining,
            });
        }
        Ok(declared as usize)
    }

    /// An unsigned integer (a non-negative signed one is accepted too).
    pub fn uint(&mut self) -> Result<u64, ReadError> {
        let at = self.pos;
        let m = self.byte()?;
        match m {
            0x00..=0x7f => Ok(u64::from(m)),
            0xcc => self.be(1),
            0xcd => self.be(2),
            0xce => self.be(4),
            0xcf => self.be(8),
            0xd0..=0xd3 => {
                let n = 1usize << (m - 0xd0);
                let raw = self.be(n)?;
                let shift = 64 - 8 * n as u32;
                let v = ((raw << shift) as i64) >> shift;
                u64::try_from(v).map_err(|_| self.type_err("an unsigned integer", m, at))
            }
            _ => Err(self.type_err("an unsigned integer", m, at)),
        }
    }

    /// A bool.
    pub fn bool(&mut self) -> Result<bool, ReadError> {
        let at = self.pos;
        match self.byte()? {
            0xc2 => Ok(false),
            0xc3 => Ok(true),
            m => Err(self.type_err("a bool", m, at)),
        }
    }

    /// A str or a bin, as bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], ReadError> {
        let at = self.pos;
        let m = self.byte()?;
        let len = match m {
            0xa0..=0xbf => u64::from(m & 0x1f),
            0xd9 | 0xc4 => self.be(1)?,
            0xda | 0xc5 => self.be(2)?,
            0xdb | 0xc6 => self.be(4)?,
            _ => return Err(self.type_err("a str or bin", m, at)),
        };
        let n = self.checked_count(len, 1, at)?;
        self.take(n)
    }

    /// An array header: its element count.
    pub fn array(&mut self) -> Result<usize, ReadError> {
        let at = self.pos;
        let m = self.byte()?;
        let len = match m {
            0x90..=0x9f => u64::from(m & 0x0f),
            0xdc => self.be(2)?,
            0xdd => self.be(4)?,
            _ => return Err(self.type_err("an array", m, at)),
        };
        self.checked_count(len, 1, at)
    }

    /// A map header: its pair count.
    pub fn map(&mut self) -> Result<usize, ReadError> {
        let at = self.pos;
        let m = self.byte()?;
        let len = match m {
            0x80..=0x8f => u64::from(m & 0x0f),
            0xde => self.be(2)?,
            0xdf => self.be(4)?,
            _ => return Err(self.type_err("a map", m, at)),
        };
        self.checked_count(len, 2, at)
    }

    /// Steps over one value of any type, nested at most [`MAX_DEPTH`] levels.
    pub fn skip(&mut self) -> Result<(), ReadError> {
        // An explicit stack of "values still to skip" keeps this iterative and bounded.
        let mut pending = [0u64; MAX_DEPTH + 1];
        let mut depth = 0usize;
        pending[0] = 1;
        loop {
            while pending[depth] == 0 {
                if depth == 0 {
                    return Ok(());
                }
                depth -= 1;
            }
            pending[depth] -= 1;
            let at = self.pos;
            let m = self.peek()?;
            let children: u64 = match m {
                0x90..=0x9f | 0xdc | 0xdd => self.array()? as u64,
                0x80..=0x8f | 0xde | 0xdf => 2 * self.map()? as u64,
                0xa0..=0xbf | 0xd9..=0xdb | 0xc4..=0xc6 => {
                    self.bytes()?;
                    0
                }
                0xc1 => return Err(ReadError::InvalidMarker(at)),
                _ => {
                    self.byte()?;
                    let fixed = match m {
                        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 0,
                        0xcc | 0xd0 => 1,
                        0xcd | 0xd1 => 2,
                        0xce | 0xd2 | 0xca => 4,
                        0xcf | 0xd3 | 0xcb => 8,
                        0xd4 => 2,
                        0xd5 => 3,
                        0xd6 => 5,
                        0xd7 => 9,
                        0xd8 => 17,
                        0xc7 => 1 + self.be(1)? as usize,
                        0xc8 => 1 + self.be(2)? as usize,
                        0xc9 => 1 + self.be(4)? as usize,
                        _ => return Err(ReadError::InvalidMarker(at)),
                    };
                    self.take(fixed)?;
                    0
                }
            };
            if children > 0 {
                if depth == MAX_DEPTH {
                    return Err(ReadError::TooDeep(MAX_DEPTH));
                }
                depth += 1;
                pending[depth] = children;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_shortest_forms() {
        let mut buf = [0u8; 64];
        let mut w = Writer::new(&mut buf);
        w.uint(5).unwrap();
        w.uint(200).unwrap();
        w.uint(70_000).unwrap();
        w.uint(u64::MAX).unwrap();
        let n = w.len();
        assert_eq!(
            &buf[..n],
            &[
                5, 0xcc, 200, 0xce, 0, 1, 0x11, 0x70, 0xcf, 255, 255, 255, 255, 255, 255, 255, 255
            ]
        );
    }

    #[test]
    fn str_and_bin_headers() {
        let mut buf = [0u8; 400];
        let mut w = Writer::new(&mut buf);
        w.str(b"abc").unwrap();
        w.str(&[b'x'; 40]).unwrap();
        w.bin(b"\xff").unwrap();
        w.text(b"\xfe").unwrap();
        w.str(&[b'y'; 300]).unwrap();
        let n = w.len();
        assert_eq!(&buf[..4], b"\xa3abc");
        assert_eq!(&buf[4..6], &[0xd9, 40]);
        assert_eq!(&buf[46..49], &[0xc4, 1, 0xff]);
        assert_eq!(&buf[49..52], &[0xc4, 1, 0xfe]);
        assert_eq!(&buf[52..55], &[0xda, 1, 44]);
        assert_eq!(n, 55 + 300);
    }

    #[test]
    fn overflow_is_reported_not_panicked() {
        let mut buf = [0u8; 3];
        let mut w = Writer::new(&mut buf);
        assert_eq!(w.str(b"abcdef"), Err(Overflow));
        assert_eq!(w.uint(u64::MAX), Err(Overflow));
        w.uint(1).unwrap();
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn reader_roundtrip_and_skip() {
        let mut buf = [0u8; 128];
        let mut w = Writer::new(&mut buf);
        w.map(3).unwrap();
        w.str(b"a").unwrap();
        w.uint(300).unwrap();
        w.str(b"nested").unwrap();
        w.array(2).unwrap();
        w.map(1).unwrap();
        w.str(b"k").unwrap();
        w.nil().unwrap();
        w.bool(true).unwrap();
        w.str(b"b").unwrap();
        w.bin(b"\x00\x01").unwrap();
        let n = w.len();
        let mut r = Reader::new(&buf[..n]);
        assert_eq!(r.map().unwrap(), 3);
        assert_eq!(r.bytes().unwrap(), b"a");
        assert_eq!(r.uint().unwrap(), 300);
        assert_eq!(r.bytes().unwrap(), b"nested");
        r.skip().unwrap();
        assert_eq!(r.bytes().unwrap(), b"b");
        assert_eq!(r.bytes().unwrap(), b"\x00\x01");
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn hostile_lengths_are_rejected_before_use() {
        // array32 declaring 2^32-1 elements with nothing behind it.
        let mut r = Reader::new(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            r.array(),
            Err(ReadError::LengthExceedsInput { .. })
        ));
        // str32 declaring 4 GiB.
        let mut r = Reader::new(&[0xdb, 0xff, 0xff, 0xff, 0xff, b'a']);
        assert!(matches!(
            r.bytes(),
            Err(ReadError::LengthExceedsInput { .. })
        ));
        // Truncated uint64.
        let mut r = Reader::new(&[0xcf, 1, 2]);
        assert!(matches!(r.uint(), Err(ReadError::Truncated { .. })));
        // 0xc1 is never valid.
        let mut r = Reader::new(&[0xc1]);
        assert_eq!(r.skip(), Err(ReadError::InvalidMarker(0)));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let deep = [0x91u8; 200];
        let mut r = Reader::new(&deep);
        assert_eq!(r.skip(), Err(ReadError::TooDeep(MAX_DEPTH)));
        let mut ok = vec![0x91u8; MAX_DEPTH];
        ok.push(0xc0);
        assert_eq!(Reader::new(&ok).skip(), Ok(()));
    }

    #[test]
    fn negative_int_is_not_a_uint() {
        let mut r = Reader::new(&[0xd0, 0xff]);
        assert!(matches!(r.uint(), Err(ReadError::Type { .. })));
        let mut r = Reader::new(&[0xd1, 0x00, 0x05]);
        assert_eq!(r.uint().unwrap(), 5);
    }
}
