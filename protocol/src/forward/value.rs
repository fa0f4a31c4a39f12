//! A MessagePack value that keeps what the Forward protocol cares about.
//!
//! Generic MessagePack crates fold `str` and `bin` together or insist that `str` be UTF-8. A
//! record's `message` may be arbitrary bytes (logtap never rewrites them: Contract 3 sends
//! non-UTF-8 lines as `bin`), and a chunk id must be echoed with its original type, so this
//! [`Value`] keeps `str` and `bin` apart and stores both as raw [`Bytes`] — a `Str` may hold
//! invalid UTF-8 and is re-encoded byte for byte.

use bytes::Bytes;

use super::error::DecodeError;
use super::read::{Int, Reader};
use super::write;

/// One MessagePack object.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `nil`.
    Nil,
    /// `true` / `false`.
    Bool(bool),
    /// A negative integer (non-negative ones decode as [`Value::UInt`]; both encode alike).
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// `float 32`.
    F32(f32),
    /// `float 64`.
    F64(f64),
    /// `str`: bytes as received, not necessarily UTF-8.
    Str(Bytes),
    /// `bin`.
    Bin(Bytes),
    /// `array`.
    Array(Vec<Value>),
    /// `map`, in wire order (keys may repeat and need not be strings).
    Map(Vec<(Value, Value)>),
    /// `ext` of the given type (an EventTime inside a record stays an `Ext(0, ..)`).
    Ext(i8, Bytes),
}

impl Value {
    /// A `str` value from text.
    pub fn str(s: &str) -> Value {
        Value::Str(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// The bytes of a `str` or `bin`.
    pub fn as_raw(&self) -> Option<&[u8]> {
        match self {
            Value::Str(b) | Value::Bin(b) => Some(b),
            _ => None,
        }
    }

    /// The text of a `str` that is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// An integer that fits `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::UInt(v) => Some(v),
            Value::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// In a map, the value of the first key whose `str`/`bin` bytes equal `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(pairs) => pairs
                .iter()
                .find(|(k, _)| k.as_raw() == Some(key.as_bytes()))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Appends this value's MessagePack encoding to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            Value::Nil => buf.push(0xc0),
            Value::Bool(b) => write::bool(buf, *b),
            Value::Int(v) => write::int(buf, *v),
            Value::UInt(v) => write::uint(buf, *v),
            Value::F32(v) => {
                buf.push(0xca);
                buf.extend_from_slice(&v.to_be_bytes());
            }
            Value::F64(v) => {
                buf.push(0xcb);
                buf.extend_from_slice(&v.to_be_bytes());
            }
            Value::Str(s) => write::str(buf, s),
            Value::Bin(b) => write::bin(buf, b),
            Value::Array(items) => {
                write::array_len(buf, len32(items.len()));
                for v in items.iter().take(u32::MAX as usize) {
                    v.encode(buf);
                }
            }
            Value::Map(pairs) => {
                write::map_len(buf, len32(pairs.len()));
                for (k, v) in pairs.iter().take(u32::MAX as usize) {
                    k.encode(buf);
                    v.encode(buf);
                }
            }
            Value::Ext(ty, data) => write::ext(buf, *ty, data),
        }
    }

    /// Decodes one value from the start of `bytes` (a whole object must be there), with nesting
    /// bounded by `max_depth`. Returns the value and the bytes it used.
    pub fn decode(bytes: &Bytes, max_depth: usize) -> Result<(Value, usize), DecodeError> {
        let mut r = Reader::new(bytes, max_depth);
        let v = Value::read(&mut r, max_depth)?;
        Ok((v, bytes.len() - r.remaining()))
    }

    /// Reads an integer object if the marker `m` is one; `Ok(None)` (nothing consumed) if not.
    pub(crate) fn read_int(r: &mut Reader<'_>, m: u8) -> Result<Option<Value>, DecodeError> {
        Ok(r.int(m)?.map(|i| match i {
            Int::UInt(v) => Value::UInt(v),
            Int::Int(v) => Value::Int(v),
        }))
    }

    /// Reads one value; `depth` is how many more container levels are allowed.
    ///
    /// One `match` on the marker, with the forms records are made of (fixstr, positive fixint,
    /// fixmap) first: this is the decoder's hot loop.
    pub(crate) fn read(r: &mut Reader<'_>, depth: usize) -> Result<Value, DecodeError> {
        let m = r.peek()?;
        r.advance(1);
        Ok(match m {
            0xa0..=0xbf => Value::Str(r.raw_bytes((m & 0x1f) as usize)?),
            0x00..=0x7f => Value::UInt(m as u64),
            0x80..=0x8f => Value::read_map(r, (m & 0x0f) as usize, depth)?,
            // str8/16/32 and bin8/16/32: a 1-, 2- or 4-byte big-endian length, then the bytes.
            0xd9..=0xdb => {
                let n = r.be_u64(1 << (m - 0xd9))? as usize;
                Value::Str(r.raw_bytes(n)?)
            }
            0xc4..=0xc6 => {
                let n = r.be_u64(1 << (m - 0xc4))? as usize;
                Value::Bin(r.raw_bytes(n)?)
            }
            0xe0..=0xff => Value::Int(m as i8 as i64),
            0xcc..=0xcf => Value::UInt(r.be_u64(1 << (m - 0xcc))?),
            0xd0..=0xd3 => {
                let v = r.be_i64(1 << (m - 0xd0))?;
                if v >= 0 {
                    Value::UInt(v as u64)
                } else {
                    Value::Int(v)
                }
            }
            0xc0 => Value::Nil,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xca => Value::F32(f32::from_bits(r.be_u64(4)? as u32)),
            0xcb => Value::F64(f64::from_bits(r.be_u64(8)?)),
            0x90..=0x9f => Value::read_array(r, (m & 0x0f) as usize, depth)?,
            0xdc => {
                let n = r.be_u64(2)? as usize;
                Value::read_array(r, n, depth)?
            }
            0xdd => {
                let n = r.be_u64(4)?;
                Value::read_array(r, usize::try_from(n).unwrap_or(usize::MAX), depth)?
            }
            0xde => {
                let n = r.be_u64(2)? as usize;
                Value::read_map(r, n, depth)?
            }
            0xdf => {
                let n = r.be_u64(4)?;
                Value::read_map(r, usize::try_from(n).unwrap_or(usize::MAX), depth)?
            }
            0xd4..=0xd8 | 0xc7..=0xc9 => {
                r.rewind(1);
                let (ty, data) = read_ext(r)?;
                Value::Ext(ty, data)
            }
            0xc1 => {
                return Err(DecodeError::InvalidMarker {
                    byte: m,
                    offset: r.pos() - 1,
                });
            }
        })
    }

    fn read_array(r: &mut Reader<'_>, n: usize, depth: usize) -> Result<Value, DecodeError> {
        let depth = depth
            .checked_sub(1)
            .ok_or(DecodeError::TooDeep { max: r.max_depth })?;
        // Each element takes at least one byte: never reserve more than the bytes left.
        r.bound(n, 1)?;
        r.charge(n, std::mem::size_of::<Value>())?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(Value::read(r, depth)?);
        }
        Ok(Value::Array(items))
    }

    fn read_map(r: &mut Reader<'_>, n: usize, depth: usize) -> Result<Value, DecodeError> {
        let depth = depth
            .checked_sub(1)
            .ok_or(DecodeError::TooDeep { max: r.max_depth })?;
        r.bound(n, 2)?;
        r.charge(n, std::mem::size_of::<(Value, Value)>())?;
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            let k = Value::read(r, depth)?;
            let v = Value::read(r, depth)?;
            pairs.push((k, v));
        }
        Ok(Value::Map(pairs))
    }
}

/// Reads any `ext`/`fixext` object: its type and data.
pub(crate) fn read_ext(r: &mut Reader<'_>) -> Result<(i8, Bytes), DecodeError> {
    let m = r.u8()?;
    let len = match m {
        0xd4..=0xd8 => 1usize << (m - 0xd4),
        0xc7 => r.be_u64(1)? as usize,
        0xc8 => r.be_u64(2)? as usize,
        0xc9 => usize::try_from(r.be_u64(4)?).unwrap_or(usize::MAX),
        _ => {
            return Err(DecodeError::UnexpectedType {
                what: "extension",
                expected: "ext",
                found: super::read::type_name(m),
            });
        }
    };
    let ty = r.u8()? as i8;
    Ok((ty, r.raw_bytes(len)?))
}

fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::str(s)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::UInt(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
