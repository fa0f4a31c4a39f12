//! `LLT_DEBUG_MODE` lines: `[liblogtap DEBUG PID:n] message` on stderr.
//!
//! Why not `eprintln!`: it locks std's stderr, may allocate, and would go through our own
//! `write` hook. A line is formatted with `core::fmt` into a stack buffer (truncated if longer)
//! and written to fd 2 with one raw `write` syscall, so it is allocation-free, lock-free and
//! never tapped. `errno` is preserved. Nothing is written unless debug mode is on.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::sys;

/// Set once by the constructor from `LLT_DEBUG_MODE`.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns debug lines on or off.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether debug lines are written.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A fixed-size line buffer; output past its end is dropped, never an error.
pub struct LineBuf {
    buf: [u8; 512],
    len: usize,
}

impl LineBuf {
    /// An empty buffer.
    pub const fn new() -> LineBuf {
        LineBuf {
            buf: [0; 512],
            len: 0,
        }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Appends raw bytes (truncating at capacity).
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            match self.buf.get_mut(self.len) {
                Some(slot) => {
                    *slot = *b;
                    self.len = self.len.saturating_add(1);
                }
                None => return,
            }
        }
    }
}

impl Default for LineBuf {
    fn default() -> Self {
        LineBuf::new()
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_bytes(s.as_bytes());
        Ok(())
    }
}

/// Writes one debug line built from `args` (call through the [`debug!`](crate::debug!) macro).
pub fn emit(args: fmt::Arguments<'_>) {
    if !enabled() {
        return;
    }
    let _errno = sys::ErrnoGuard::save();
    let mut line = LineBuf::new();
    let _ = write!(line, "[liblogtap DEBUG PID:{}] ", crate::sender::pid());
    let _ = line.write_fmt(args);
    // Keep room for the newline even when the message was truncated.
    if line.len >= line.buf.len() {
        line.len = line.buf.len().saturating_sub(1);
    }
    line.push_bytes(b"\n");
    let _ = sys::write(2, line.as_bytes());
}

/// `debug!("format", args…)`: a debug line when `LLT_DEBUG_MODE` is on.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::debug::enabled() {
            $crate::debug::emit(format_args!($($arg)*));
        }
    };
}

/// Displays a byte string lossily (non-UTF-8 bytes as `?`), without allocating.
pub struct Bytes<'a>(pub &'a [u8]);

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("?")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_buffer_truncates_instead_of_failing() {
        let mut b = LineBuf::new();
        for _ in 0..100 {
            let _ = write!(b, "0123456789");
        }
        assert_eq!(b.as_bytes().len(), 512);
    }

    #[test]
    fn bytes_display_is_lossy() {
        let mut b = LineBuf::new();
        let _ = write!(b, "{}", Bytes(b"a\xffb"));
        assert_eq!(b.as_bytes(), b"a?b");
    }
}
