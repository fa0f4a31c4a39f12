//! The bytes of one tapped call, borrowed from the app: one buffer (`write`, `pwrite`, stdio)
//! or an iovec array (`writev`, `pwritev`). [`Payload::chunks`] cuts the first `len` bytes into
//! pieces of at most `max` bytes that never cross an iovec boundary, without copying; a small
//! vectored write is first gathered into a stack buffer so that it travels as one record.

use core::ffi::c_void;

/// Vectored writes up to this size are gathered into one record.
pub const GATHER_MAX: usize = 512;

/// Borrowed bytes of a tapped call.
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    /// One contiguous buffer.
    One(&'a [u8]),
    /// An iovec array whose buffers the kernel just read (so they are valid).
    Iov(&'a [libc::iovec]),
}

fn iov_bytes(v: &libc::iovec) -> &[u8] {
    if v.iov_base.is_null() || v.iov_len == 0 {
        return &[];
    }
    // SAFETY: the app passed this iovec to writev/pwritev, which read `iov_len` bytes at
    // `iov_base`; they stay valid for the duration of the hook that borrows them.
    unsafe { core::slice::from_raw_parts(v.iov_base.cast_const().cast::<u8>(), v.iov_len) }
}

impl<'a> Payload<'a> {
    /// Total bytes.
    pub fn len(&self) -> usize {
        match self {
            Payload::One(b) => b.len(),
            Payload::Iov(v) => v.iter().fold(0usize, |n, i| n.saturating_add(i.iov_len)),
        }
    }

    /// Whether the kernel says every byte can be read (the iovec array too): see
    /// [`crate::sys::readable`]. One system call per 64 pages.
    pub fn readable(&self) -> bool {
        match *self {
            Payload::One(b) => crate::sys::readable(b.as_ptr(), b.len()),
            Payload::Iov(v) => {
                crate::sys::readable(v.as_ptr().cast(), core::mem::size_of_val(v))
                    && v.iter()
                        .all(|i| crate::sys::readable(i.iov_base.cast_const().cast(), i.iov_len))
            }
        }
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The segments, in order.
    fn segments(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let (one, iov): (Option<&'a [u8]>, &'a [libc::iovec]) = match *self {
            Payload::One(b) => (Some(b), &[]),
            Payload::Iov(v) => (None, v),
        };
        one.into_iter().chain(iov.iter().map(iov_bytes))
    }

    /// Copies the first `len` bytes into `buf` if they fit; returns the gathered slice.
    pub fn gather<'b>(&self, len: usize, buf: &'b mut [u8]) -> Option<&'b [u8]> {
        let mut at = 0usize;
        for seg in self.segments() {
            if at >= len {
                break;
            }
            // An empty segment (a zero-length iovec) is skipped, not the end.
            let want = len.saturating_sub(at).min(seg.len());
            if want == 0 {
                continue;
            }
            let dst = buf.get_mut(at..at.checked_add(want)?)?;
            dst.copy_from_slice(seg.get(..want)?);
            at = at.saturating_add(want);
        }
        buf.get(..at)
    }

    /// The first `len` bytes in pieces of at most `max` bytes (max ≥ 1).
    pub fn chunks(&self, len: usize, max: usize) -> impl Iterator<Item = &'a [u8]> + 'a {
        let max = max.max(1);
        let mut left = len;
        self.segments().flat_map(move |seg| {
            let take = seg.len().min(left);
            left = left.saturating_sub(take);
            seg.get(..take).unwrap_or(&[]).chunks(max)
        })
    }

    /// How many pieces [`Payload::chunks`] yields.
    pub fn chunk_count(&self, len: usize, max: usize) -> usize {
        self.chunks(len, max).count()
    }
}

/// An iovec for `buf` (for the real `writev` fallback of a suppressed stream).
pub fn iovec_of(buf: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast::<c_void>(),
        iov_len: buf.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_len_max_and_segments() {
        let a = b"hello ".to_vec();
        let b = b"world".to_vec();
        let iov = [iovec_of(&a), iovec_of(&b)];
        let p = Payload::Iov(&iov);
        assert_eq!(p.len(), 11);
        let parts: Vec<&[u8]> = p.chunks(9, 4).collect();
        assert_eq!(parts, vec![&b"hell"[..], b"o ", b"wor"]);
        assert_eq!(p.chunk_count(9, 4), 3);
        let mut buf = [0u8; 16];
        assert_eq!(p.gather(11, &mut buf), Some(&b"hello world"[..]));
        let mut small = [0u8; 4];
        assert_eq!(p.gather(11, &mut small), None);
        let one = Payload::One(b"abc");
        assert_eq!(one.chunks(3, 100).collect::<Vec<_>>(), vec![&b"abc"[..]]);
        assert_eq!(one.chunks(0, 100).count(), 0);
    }

    #[test]
    fn empty_iovecs_do_not_end_the_gathering() {
        let a = b"ab".to_vec();
        let iov = [
            libc::iovec {
                iov_base: core::ptr::null_mut(),
                iov_len: 0,
            },
            iovec_of(&a),
            iovec_of(&[]),
            iovec_of(b"c"),
        ];
        let p = Payload::Iov(&iov);
        let mut buf = [0u8; 16];
        assert_eq!(p.gather(3, &mut buf), Some(&b"abc"[..]));
        assert_eq!(p.chunks(3, 100).collect::<Vec<_>>().concat(), b"abc");
    }
}
