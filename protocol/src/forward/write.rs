//! Low-level MessagePack writers that append to a `Vec<u8>`.
//!
//! The encoders and the [`PackedForwardBuilder`](super::PackedForwardBuilder) write our own
//! records straight into one buffer with these, with no intermediate [`Value`](super::Value)
//! tree: that is what makes encoding cheap. Every function picks the smallest MessagePack form,
//! as every other implementation does, except where a caller patches a length afterwards.

/// Appends an array header for `len` elements.
pub(crate) fn array_len(buf: &mut Vec<u8>, len: u32) {
    if len < 16 {
        buf.push(0x90 | len as u8);
    } else if len <= u16::MAX as u32 {
        buf.push(0xdc);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(0xdd);
        buf.extend_from_slice(&len.to_be_bytes());
    }
}

/// Appends a map header for `len` key/value pairs.
pub(crate) fn map_len(buf: &mut Vec<u8>, len: u32) {
    if len < 16 {
        buf.push(0x80 | len as u8);
    } else if len <= u16::MAX as u32 {
        buf.push(0xde);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(0xdf);
        buf.extend_from_slice(&len.to_be_bytes());
    }
}

/// Appends a `str` header for `len` bytes.
pub(crate) fn str_len(buf: &mut Vec<u8>, len: u32) {
    if len < 32 {
        buf.push(0xa0 | len as u8);
    } else if len <= u8::MAX as u32 {
        buf.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= u16::MAX as u32 {
        buf.push(0xda);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(0xdb);
        buf.extend_from_slice(&len.to_be_bytes());
    }
}

/// Appends a `bin` header for `len` bytes.
pub(crate) fn bin_len(buf: &mut Vec<u8>, len: u32) {
    if len <= u8::MAX as u32 {
        buf.extend_from_slice(&[0xc4, len as u8]);
    } else if len <= u16::MAX as u32 {
        buf.push(0xc5);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(0xc6);
        buf.extend_from_slice(&len.to_be_bytes());
    }
}

/// Clamps a Rust length to MessagePack's 32-bit lengths. Callers building our own records never
/// come near 4 GiB (the agent caps lines far below); a longer input is truncated rather than
/// producing an unparseable stream.
fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Appends a `str` (the bytes are written as they are: MessagePack does not validate UTF-8).
pub(crate) fn str(buf: &mut Vec<u8>, s: &[u8]) {
    let len = len32(s.len());
    str_len(buf, len);
    buf.extend_from_slice(&s[..len as usize]);
}

/// Appends a `bin`.
pub(crate) fn bin(buf: &mut Vec<u8>, b: &[u8]) {
    let len = len32(b.len());
    bin_len(buf, len);
    buf.extend_from_slice(&b[..len as usize]);
}

/// Appends an unsigned integer in its smallest form.
pub(crate) fn uint(buf: &mut Vec<u8>, v: u64) {
    if v < 128 {
        buf.push(v as u8);
    } else if v <= u8::MAX as u64 {
        buf.extend_from_slice(&[0xcc, v as u8]);
    } else if v <= u16::MAX as u64 {
        buf.push(0xcd);
        buf.extend_from_slice(&(v as u16).to_be_bytes());
    } else if v <= u32::MAX as u64 {
        buf.push(0xce);
        buf.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        buf.push(0xcf);
        buf.extend_from_slice(&v.to_be_bytes());
    }
}

/// Appends a signed integer in its smallest form (non-negative values as unsigned, like msgpack-c).
pub(crate) fn int(buf: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        uint(buf, v as u64);
    } else if v >= -32 {
        buf.push(v as i8 as u8);
    } else if v >= i8::MIN as i64 {
        buf.extend_from_slice(&[0xd0, v as i8 as u8]);
    } else if v >= i16::MIN as i64 {
        buf.push(0xd1);
        buf.extend_from_slice(&(v as i16).to_be_bytes());
    } else if v >= i32::MIN as i64 {
        buf.push(0xd2);
        buf.extend_from_slice(&(v as i32).to_be_bytes());
    } else {
        buf.push(0xd3);
        buf.extend_from_slice(&v.to_be_bytes());
    }
}

/// Appends `true` or `false`.
pub(crate) fn bool(buf: &mut Vec<u8>, v: bool) {
    buf.push(if v { 0xc3 } else { 0xc2 });
}

/// Appends an extension object of type `ty`, in the smallest form (fixext when the size allows).
pub(crate) fn ext(buf: &mut Vec<u8>, ty: i8, data: &[u8]) {
    let len = len32(data.len());
    match len {
        1 => buf.push(0xd4),
        2 => buf.push(0xd5),
        4 => buf.push(0xd6),
        8 => buf.push(0xd7),
        16 => buf.push(0xd8),
        l if l <= u8::MAX as u32 => buf.extend_from_slice(&[0xc7, l as u8]),
        l if l <= u16::MAX as u32 => {
            buf.push(0xc8);
            buf.extend_from_slice(&(l as u16).to_be_bytes());
        }
        l => {
            buf.push(0xc9);
            buf.extend_from_slice(&l.to_be_bytes());
        }
    }
    buf.push(ty as u8);
    buf.extend_from_slice(&data[..len as usize]);
}

#[cfg(test)]
mod tests {
    use crate::forward::Value;
    use bytes::Bytes;

    fn roundtrip(v: Value, expected_len: usize) {
        let mut buf = Vec::new();
        v.encode(&mut buf);
        assert_eq!(buf.len(), expected_len, "{v:?} -> {buf:02x?}");
        let (back, used) = Value::decode(&Bytes::from(buf), 8).expect("decodes");
        assert_eq!((back, used), (v, expected_len));
    }

    #[test]
    fn integers_use_the_smallest_form_at_every_boundary() {
        for (v, len) in [
            (0u64, 1),
            (127, 1),
            (128, 2),
            (255, 2),
            (256, 3),
            (65_535, 3),
            (65_536, 5),
        ] {
            roundtrip(Value::UInt(v), len);
        }
        roundtrip(Value::UInt(u32::MAX as u64), 5);
        roundtrip(Value::UInt(u32::MAX as u64 + 1), 9);
        roundtrip(Value::UInt(u64::MAX), 9);
        for (v, len) in [
            (-1i64, 1),
            (-32, 1),
            (-33, 2),
            (-128, 2),
            (-129, 3),
            (-32_768, 3),
            (-32_769, 5),
        ] {
            roundtrip(Value::Int(v), len);
        }
        roundtrip(Value::Int(i32::MIN as i64 - 1), 9);
        roundtrip(Value::Int(i64::MIN), 9);
    }

    #[test]
    fn strings_binaries_and_containers_at_boundaries() {
        for (n, head) in [
            (0usize, 1),
            (31, 1),
            (32, 2),
            (255, 2),
            (256, 3),
            (65_535, 3),
            (65_536, 5),
        ] {
            roundtrip(Value::Str(Bytes::from(vec![b'a'; n])), n + head);
        }
        for (n, head) in [(0usize, 2), (255, 2), (256, 3), (65_535, 3), (65_536, 5)] {
            roundtrip(Value::Bin(Bytes::from(vec![0xff; n])), n + head);
        }
        for (n, head) in [(0usize, 1), (15, 1), (16, 3), (65_535, 3), (65_536, 5)] {
            roundtrip(Value::Array(vec![Value::Nil; n]), n + head);
            roundtrip(Value::Map(vec![(Value::Nil, Value::Nil); n]), 2 * n + head);
        }
        for (n, head) in [
            (1usize, 2),
            (2, 2),
            (4, 2),
            (8, 2),
            (16, 2),
            (3, 3),
            (17, 3),
            (256, 4),
            (65_536, 6),
        ] {
            roundtrip(Value::Ext(-3, Bytes::from(vec![1; n])), n + head);
        }
        roundtrip(Value::F32(1.5), 5);
        roundtrip(Value::F64(-2.25), 9);
        roundtrip(Value::Bool(true), 1);
        // Invalid UTF-8 in a `str` is kept and re-encoded as it came.
        roundtrip(Value::Str(Bytes::from_static(b"\xff\xfe")), 3);
    }
}
