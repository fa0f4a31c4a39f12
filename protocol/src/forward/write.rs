//! Low-level MessagePack writers that append to a `Vec<u8>`.
//!
//! The encoders, [`RecordWriter`](super::RecordWriter) and the agent's records write straight
//! into one buffer with these, with no intermediate [`Value`](super::Value) tree: that is what
//! makes encoding cheap. The forms themselves are chosen in one place, [`crate::msgpack::Head`]
//! (the smallest form, as every other implementation does), which the interceptor's
//! allocation-free [`Writer`](crate::msgpack::Writer) uses too.

use crate::msgpack::Head;

#[inline]
fn head(buf: &mut Vec<u8>, h: Head) {
    h.append_to(buf);
}

/// Appends an array header for `len` elements.
#[inline]
pub(crate) fn array_len(buf: &mut Vec<u8>, len: u32) {
    head(buf, Head::array(len));
}

/// Appends a map header for `len` key/value pairs.
#[inline]
pub(crate) fn map_len(buf: &mut Vec<u8>, len: u32) {
    head(buf, Head::map(len));
}

/// Appends a `bin` header for `len` bytes.
#[inline]
pub(crate) fn bin_len(buf: &mut Vec<u8>, len: u32) {
    head(buf, Head::bin(len));
}

/// Clamps a Rust length to MessagePack's 32-bit lengths. Callers building our own records never
/// come near 4 GiB (the agent caps lines far below); a longer input is truncated rather than
/// producing an unparseable stream.
#[inline]
fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Appends a `str` (the bytes are written as they are: MessagePack does not validate UTF-8).
#[inline]
pub(crate) fn str(buf: &mut Vec<u8>, s: &[u8]) {
    let len = len32(s.len());
    head(buf, Head::str(len));
    buf.extend_from_slice(&s[..len as usize]);
}

/// Appends a `bin`.
#[inline]
pub(crate) fn bin(buf: &mut Vec<u8>, b: &[u8]) {
    let len = len32(b.len());
    head(buf, Head::bin(len));
    buf.extend_from_slice(&b[..len as usize]);
}

/// Appends an unsigned integer in its smallest form.
#[inline]
pub(crate) fn uint(buf: &mut Vec<u8>, v: u64) {
    head(buf, Head::uint(v));
}

/// Appends a signed integer in its smallest form (non-negative values as unsigned, like msgpack-c).
#[inline]
pub(crate) fn int(buf: &mut Vec<u8>, v: i64) {
    head(buf, Head::int(v));
}

/// Appends `true` or `false`.
#[inline]
pub(crate) fn bool(buf: &mut Vec<u8>, v: bool) {
    head(buf, Head::bool(v));
}

/// Appends an extension object of type `ty`, in the smallest form (fixext when the size allows).
pub(crate) fn ext(buf: &mut Vec<u8>, ty: i8, data: &[u8]) {
    let len = len32(data.len());
    head(buf, Head::ext(ty, len));
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
