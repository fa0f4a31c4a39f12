//! `LLT_DEBUG_MODE` lines: `[liblogtap DEBUG PID:n] message` on stderr; and the few
//! [`notice`]s written whatever the mode: `[liblogtap] message` (a malformed `LLT_TAP_INTO`).
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
    let mut line = LineBuf::new();
    let _ = write!(line, "[liblogtap DEBUG PID:{}] ", crate::process::pid());
    write_line(line, args);
}

/// Writes `[liblogtap] message` on stderr whatever the debug mode: for the rare problem a
/// user must hear of without having asked (the caller makes sure it is said once). In debug
/// mode the line is the usual debug line instead, so that every line has one prefix.
pub fn notice(args: fmt::Arguments<'_>) {
    if enabled() {
        return emit(args);
    }
    let mut line = LineBuf::new();
    line.push_bytes(b"[liblogtap] ");
    write_line(line, args);
}

/// Reports a malformed value of `name` (one of [`crate::config::reported_always`]) with
/// [`notice`], once per process tree: the value reported is remembered in the environment the
/// programs started from here inherit (`<name>_REPORTED`), so that a shell script's every
/// command does not say it again. Constructor only: it allocates and calls `setenv`.
pub fn report_malformed_once(name: &str, value: &[u8], expected: &str) {
    let Ok(marker) = std::ffi::CString::new(format!("{name}_REPORTED")) else {
        return;
    };
    // SAFETY: a NUL-terminated name; the constructor runs before any other thread.
    let seen = unsafe { libc::getenv(marker.as_ptr()) };
    // SAFETY: getenv returned a NUL-terminated string that lives until the next setenv.
    if !seen.is_null() && unsafe { core::ffi::CStr::from_ptr(seen) }.to_bytes() == value {
        return;
    }
    notice(format_args!(
        "ignoring malformed {name}=\"{}\" (expected {expected}): {}",
        Bytes(value),
        if name == "LLT_TAP_INTO" {
            "stdout and stderr are not tapped"
        } else {
            "using the default"
        }
    ));
    if let Ok(v) = std::ffi::CString::new(value) {
        // SAFETY: NUL-terminated name and value; constructor only (see above).
        unsafe { libc::setenv(marker.as_ptr(), v.as_ptr(), 1) };
    }
}

/// Completes `line` with `args` and a newline and writes it to fd 2 with one raw `write`.
fn write_line(mut line: LineBuf, args: fmt::Arguments<'_>) {
    let _errno = sys::ErrnoGuard::save();
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
