//! The non-allocating "check" pass: how long is the next MessagePack object, if it is all there?
//!
//! The Forward protocol has no length framing: a message ends where its MessagePack object ends.
//! Before parsing (which allocates), the streaming decoder walks the object's structure over the
//! raw bytes with this function: headers only, no allocation, nesting bounded by a fixed-size
//! stack, and every declared length compared with the message cap *before* waiting for the bytes.
//! So a peer that declares a `bin32` of 4 GiB, or an `array32` of 2^32 elements, gets
//! [`DecodeError::MessageTooLarge`] at once, and nothing is ever allocated from a declared length.

use super::error::DecodeError;

/// The deepest nesting the framing pass can track (its stack is a fixed array of this size):
/// the upper bound of [`DecodeLimits::max_depth`](super::DecodeLimits::max_depth).
pub const MAX_DEPTH_LIMIT: usize = 128;

/// Outcome of [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// A whole object of this many bytes starts the buffer.
    Complete(usize),
    /// The object is incomplete: nothing can change before the buffer holds at least `needed`
    /// bytes (a lower bound, which lets the decoder skip re-walking on every small read).
    Incomplete { needed: usize },
}

/// Header of one MessagePack object: bytes of header, bytes of payload, child objects.
struct Header {
    head: u64,
    payload: u64,
    children: u64,
}

/// Reads the header of the object at `buf[pos..]` (`pos < buf.len()`). The inner `Err(needed)`
/// means the header itself is incomplete until the buffer holds `needed` bytes.
fn header(buf: &[u8], pos: usize) -> Result<Result<Header, usize>, DecodeError> {
    let m = buf[pos];
    let fixed = |head: u64, payload: u64, children: u64| {
        Ok(Ok(Header {
            head,
            payload,
            children,
        }))
    };
    // Reads an n-byte big-endian length right after the marker.
    let be = |n: usize| -> Option<u64> {
        let b = buf.get(pos + 1..pos + 1 + n)?;
        Some(b.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    };
    let sized = |n: usize, extra_head: u64, mul: u64, is_container: bool| match be(n) {
        None => Ok(Err(pos + 1 + n)),
        Some(len) => {
            let head = 1 + n as u64 + extra_head;
            if is_container {
                fixed(head, 0, len * mul)
            } else {
                fixed(head, len, 0)
            }
        }
    };
    match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => fixed(1, 0, 0),
        0x80..=0x8f => fixed(1, 0, 2 * (m & 0x0f) as u64),
        0x90..=0x9f => fixed(1, 0, (m & 0x0f) as u64),
        0xa0..=0xbf => fixed(1, (m & 0x1f) as u64, 0),
        0xc4 | 0xd9 => sized(1, 0, 0, false),
        0xc5 | 0xda => sized(2, 0, 0, false),
        0xc6 | 0xdb => sized(4, 0, 0, false),
        // ext 8/16/32: length, then the type byte, then the data.
        0xc7 => sized(1, 1, 0, false),
        0xc8 => sized(2, 1, 0, false),
        0xc9 => sized(4, 1, 0, false),
        0xca => fixed(1, 4, 0),
        0xcb => fixed(1, 8, 0),
        0xcc | 0xd0 => fixed(1, 1, 0),
        0xcd | 0xd1 => fixed(1, 2, 0),
        0xce | 0xd2 => fixed(1, 4, 0),
        0xcf | 0xd3 => fixed(1, 8, 0),
        // fixext 1/2/4/8/16: type byte + data.
        0xd4 => fixed(2, 1, 0),
        0xd5 => fixed(2, 2, 0),
        0xd6 => fixed(2, 4, 0),
        0xd7 => fixed(2, 8, 0),
        0xd8 => fixed(2, 16, 0),
        0xdc => sized(2, 0, 1, true),
        0xdd => sized(4, 0, 1, true),
        0xde => sized(2, 0, 2, true),
        0xdf => sized(4, 0, 2, true),
        0xc1 => Err(DecodeError::InvalidMarker {
            byte: m,
            offset: pos,
        }),
    }
}

/// A resumable walk over the MessagePack object at the start of a growing buffer.
///
/// The walk remembers where it stopped, so a message arriving in many small reads is walked once
/// in total, not once per read (a peer trickling a 64 MiB message of tiny values byte by byte
/// would otherwise cost quadratic CPU). It must be [`reset`](Walker::reset) when the buffer's
/// start moves (after a message is split off), which the decoder does.
#[derive(Debug, Clone)]
pub(crate) struct Walker {
    /// Remaining children of each enclosing container; `pending` is the innermost level's.
    stack: [u64; MAX_DEPTH_LIMIT],
    depth: usize,
    pending: u64,
    /// Start of the next item to walk.
    pos: usize,
    /// Lower bound of the bytes still owed: one per child announced but not yet walked.
    owed_children: u64,
}

impl Default for Walker {
    fn default() -> Self {
        Walker {
            stack: [0; MAX_DEPTH_LIMIT],
            depth: 0,
            pending: 1,
            pos: 0,
            owed_children: 0,
        }
    }
}

impl Walker {
    /// Forgets the walk (the next call starts at offset 0).
    pub(crate) fn reset(&mut self) {
        self.depth = 0;
        self.pending = 1;
        self.pos = 0;
        self.owed_children = 0;
    }

    /// Continues the walk over `buf` (the same bytes as before, possibly more of them).
    ///
    /// Errors: [`DecodeError::InvalidMarker`] (0xc1), [`DecodeError::TooDeep`] (more than
    /// `max_depth` nested containers, capped at [`MAX_DEPTH_LIMIT`]), and
    /// [`DecodeError::MessageTooLarge`] as soon as the declared lengths (each child counted as at
    /// least one byte) exceed `max_len`.
    pub(crate) fn check(
        &mut self,
        buf: &[u8],
        max_len: usize,
        max_depth: usize,
    ) -> Result<Check, DecodeError> {
        let max_depth = max_depth.min(MAX_DEPTH_LIMIT);
        let max = max_len as u64;
        loop {
            let pos = self.pos;
            if pos >= buf.len() {
                return Ok(Check::Incomplete { needed: pos + 1 });
            }
            let h = match header(buf, pos)? {
                Ok(h) => h,
                Err(needed) => return Ok(Check::Incomplete { needed }),
            };
            // The item was owed one byte by its parent; it now owes its own children.
            let owed = self
                .owed_children
                .saturating_sub(1)
                .saturating_add(h.children);
            let end = (pos as u64)
                .saturating_add(h.head)
                .saturating_add(h.payload);
            let at_least = end.saturating_add(owed);
            if at_least > max {
                return Err(DecodeError::MessageTooLarge {
                    needed: at_least,
                    max: max_len,
                });
            }
            // `end <= max <= usize::MAX` from here on.
            let end = end as usize;
            if end > buf.len() {
                // Nothing committed: the walk resumes at this item's header.
                return Ok(Check::Incomplete { needed: end });
            }
            if h.children > 0 && self.depth >= max_depth {
                return Err(DecodeError::TooDeep { max: max_depth });
            }
            self.pos = end;
            self.owed_children = owed;
            self.pending -= 1;
            if h.children > 0 {
                self.stack[self.depth] = self.pending;
                self.depth += 1;
                self.pending = h.children;
            }
            while self.pending == 0 {
                if self.depth == 0 {
                    return Ok(Check::Complete(self.pos));
                }
                self.depth -= 1;
                self.pending = self.stack[self.depth];
            }
        }
    }
}

/// Walks the MessagePack object at the start of `buf` from scratch (see [`Walker::check`]).
#[cfg(test)]
pub(crate) fn check(buf: &[u8], max_len: usize, max_depth: usize) -> Result<Check, DecodeError> {
    Walker::default().check(buf, max_len, max_depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_and_containers() {
        assert_eq!(check(&[0x01], 100, 8).ok(), Some(Check::Complete(1)));
        assert_eq!(
            check(&[0x92, 0x01, 0xa1, b'x', 0xff], 100, 8).ok(),
            Some(Check::Complete(4))
        );
        assert_eq!(
            check(&[0x92, 0x01], 100, 8).ok(),
            Some(Check::Incomplete { needed: 3 })
        );
        assert_eq!(
            check(&[0x81, 0x90, 0x80], 100, 8).ok(),
            Some(Check::Complete(3))
        );
        assert_eq!(
            check(&[0xc4, 0x03, 1], 100, 8).ok(),
            Some(Check::Incomplete { needed: 5 })
        );
        assert_eq!(
            check(&[0xd9], 100, 8).ok(),
            Some(Check::Incomplete { needed: 2 })
        );
        assert_eq!(
            check(&[], 100, 8).ok(),
            Some(Check::Incomplete { needed: 1 })
        );
    }

    #[test]
    fn huge_declared_lengths_fail_before_the_bytes() {
        for head in [
            &[0xc6, 0xff, 0xff, 0xff, 0xff][..],
            &[0xdb, 0xff, 0xff, 0xff, 0xff],
            &[0xdd, 0xff, 0xff, 0xff, 0xff],
            &[0xdf, 0xff, 0xff, 0xff, 0xff],
            &[0xc9, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(matches!(
                check(head, 1 << 20, 8),
                Err(DecodeError::MessageTooLarge { .. })
            ));
        }
    }

    #[test]
    fn depth_is_bounded() {
        let deep = vec![0x91u8; 10_000];
        assert!(matches!(
            check(&deep, 1 << 20, 64),
            Err(DecodeError::TooDeep { max: 64 })
        ));
        assert!(matches!(
            check(&deep, 1 << 20, 100_000),
            Err(DecodeError::TooDeep {
                max: MAX_DEPTH_LIMIT
            })
        ));
        let mut ok = vec![0x91u8; 64];
        ok.push(0xc0);
        assert_eq!(check(&ok, 1 << 20, 64).ok(), Some(Check::Complete(65)));
    }

    #[test]
    fn a_resumed_walk_equals_a_fresh_one() {
        // [1, "ab", {2: [nil, nil]}, bin(3)] fed one byte at a time.
        let msg = [
            0x94, 0x01, 0xa2, b'a', b'b', 0x81, 0x02, 0x92, 0xc0, 0xc0, 0xc4, 3, 7, 8, 9,
        ];
        let mut w = Walker::default();
        for n in 0..msg.len() {
            let resumed = w.check(&msg[..n], 100, 8).ok();
            assert_eq!(resumed, check(&msg[..n], 100, 8).ok(), "prefix {n}");
            assert!(matches!(resumed, Some(Check::Incomplete { needed }) if needed > n));
        }
        assert_eq!(w.check(&msg, 100, 8).ok(), Some(Check::Complete(msg.len())));
    }

    #[test]
    fn invalid_marker() {
        assert!(matches!(
            check(&[0x92, 0xc1], 100, 8),
            Err(DecodeError::InvalidMarker {
                byte: 0xc1,
                offset: 1
            })
        ));
    }
}
