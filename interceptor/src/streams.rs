//! Stream identity: whether fd 1 and fd 2 are, right now, the stdout and stderr the tap was
//! set up for.
//!
//! A program's fd 1 is not always its stdout in the sense a user means. Inside a shell script,
//! `x=$(date)` runs `date` with fd 1 on a pipe the shell reads, `echo x >/dev/null` runs the
//! builtin with fd 1 on `/dev/null`, and in `ls | head` only `head` writes to the real stdout.
//! Tapping fd 1 whatever it points to turns all of those into records (and suppressing it
//! loses data the script needs). So the library taps — and suppresses — fd 1 / fd 2 only while
//! they refer to *the* stdout / stderr:
//!
//! - The first tapped process of a tree (no [`ENV`] in its environment) takes the identity of
//!   its own fd 1 and fd 2 — `(st_dev, st_ino)` from `fstat`, which tells apart every pipe,
//!   socket, terminal, device and file — and puts it into [`ENV`], which its descendants inherit
//!   with `LD_PRELOAD`. A descendant reads it instead of looking at its own descriptors.
//! - Every process compares its fd 1 and fd 2 with those identities: at load, and whenever a
//!   hooked call changes them (`dup2`/`dup3`/`fcntl(F_DUPFD*)` onto them, an `open` that returns
//!   1 or 2, `close`, `close_range`, `freopen`, `daemon`). One `fstat` per such change, none per
//!   write.
//! - fd 1 that is the recorded stdout is tapped as stdout; fd 2 that is the recorded stderr as
//!   stderr. A descriptor redirected onto the *other* stream is tapped as that stream, since
//!   that is where its bytes land: `cmd 2>&1` with fd 1 on the real stdout taps cmd's stderr
//!   as stdout (and `1>&2` onto the real stderr taps stdout as stderr). When stdout and stderr
//!   are the same thing (a terminal, `prog >log 2>&1`), each keeps its own stream.
//! - Anything else — a pipe of a command substitution, `/dev/null`, a file, the inner stage of
//!   a pipeline — is not a tapped stream: writes go to it untouched, never suppressed. (A
//!   program that reopens its stdout onto its own log file is a tap-file case: `LLT_TAP_FILE`.)
//!
//! - A descriptor that was moved onto fd 1 or fd 2 with `dup2`/`dup3` and made it the stream
//!   is the same open file: it is tapped as that stream too (an *alias*, kept in the fd table
//!   until it is closed). libuv (node) does exactly this on a terminal: it reopens the tty,
//!   moves the copy onto fd 1, and writes to its own descriptor.
//!
//! Limits: a change of fd 1/2 made with a raw system call (not through libc's `dup2` & co.)
//! is seen at the next hooked change or `exec`, not before; other descriptors onto the real
//! stdout are not compared (e.g. `/dev/stdout` opened by nginx: tap the log file instead).

use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use crate::process::Stream;
use crate::sys;

/// The environment variable that carries the identities to descendants:
/// `<dev>:<ino>,<dev>:<ino>` for stdout and stderr, `-` for one that was not open.
pub const ENV: &str = "LLT_STREAM_IDS";

// The numbers are Contract 2's (`tap::Stream`), so that a stream number read here is the
// one a record carries.
/// Neither stream: not tapped.
pub const NONE: u8 = 0;
/// The recorded stdout.
pub const STDOUT: u8 = Stream::Stdout as u8;
/// The recorded stderr.
pub const STDERR: u8 = Stream::Stderr as u8;
/// A tap file (for [`alias_stream`]'s callers; the fd table says which).
pub const FILE: u8 = Stream::File as u8;

/// A recorded identity.
struct Id {
    known: AtomicBool,
    dev: AtomicU64,
    ino: AtomicU64,
}

impl Id {
    const fn new() -> Id {
        Id {
            known: AtomicBool::new(false),
            dev: AtomicU64::new(0),
            ino: AtomicU64::new(0),
        }
    }

    fn set(&self, id: Option<(u64, u64)>) {
        let (dev, ino) = id.unwrap_or((0, 0));
        self.dev.store(dev, Ordering::Relaxed);
        self.ino.store(ino, Ordering::Relaxed);
        self.known.store(id.is_some(), Ordering::Release);
    }

    fn get(&self) -> Option<(u64, u64)> {
        if !self.known.load(Ordering::Acquire) {
            return None;
        }
        Some((
            self.dev.load(Ordering::Relaxed),
            self.ino.load(Ordering::Relaxed),
        ))
    }

    fn is(&self, id: (u64, u64)) -> bool {
        self.get() == Some(id)
    }
}

/// [stdout, stderr] as recorded by the first process of the tree.
static IDS: [Id; 2] = [Id::new(), Id::new()];

/// Which stream fd 0, 1, 2 is ([`NONE`], [`STDOUT`], [`STDERR`]); only 1 and 2 are used.
static FD_STREAM: [AtomicU8; 3] = [
    AtomicU8::new(NONE),
    AtomicU8::new(NONE),
    AtomicU8::new(NONE),
];

/// The fd-table value ("file index") that marks a descriptor other than fd 1/2 as an alias of
/// the tapped stdout; [`ALIAS_STDERR`] of the stderr. Far above any real tap-file index.
pub const ALIAS_STDOUT: u16 = 0xfff0;
/// See [`ALIAS_STDOUT`].
pub const ALIAS_STDERR: u16 = 0xfff1;

/// The stream an fd-table value stands for, if it is an alias rather than a tap file.
#[inline]
pub fn alias_stream(index: u16) -> Option<u8> {
    match index {
        ALIAS_STDOUT => Some(STDOUT),
        ALIAS_STDERR => Some(STDERR),
        _ => None,
    }
}

/// After `dup2(old, new)` / `dup3` onto fd 1 or fd 2 made it a tapped stream: `old` is the same
/// open file, so writes to it land on that stream too — libuv (node) reopens a terminal, moves
/// the new descriptor onto fd 1, and then writes to its own copy. Returns the fd-table value
/// that marks `old` as an alias, if it should be one.
pub fn alias_for(old: i32, new: i32) -> Option<u16> {
    if concerns(old) {
        return None;
    }
    match stream_of(new) {
        STDOUT => Some(ALIAS_STDOUT),
        STDERR => Some(ALIAS_STDERR),
        _ => None,
    }
}

/// The stream fd 1 or fd 2 is right now ([`NONE`] for any other fd).
#[inline]
pub fn stream_of(fd: i32) -> u8 {
    match fd {
        1 => FD_STREAM[1].load(Ordering::Relaxed),
        2 => FD_STREAM[2].load(Ordering::Relaxed),
        _ => NONE,
    }
}

/// Which stream a descriptor with identity `id` is, for fd number `fd` (1 or 2).
fn classify(fd: i32, id: Option<(u64, u64)>) -> u8 {
    let Some(id) = id else { return NONE };
    let [out, err] = &IDS;
    let (own, own_stream, other, other_stream) = if fd == 2 {
        (err, STDERR, out, STDOUT)
    } else {
        (out, STDOUT, err, STDERR)
    };
    if own.is(id) {
        own_stream
    } else if other.is(id) {
        other_stream
    } else {
        NONE
    }
}

/// Looks at fd 1 or fd 2 again (after a hooked call changed it); other fds are ignored.
/// Returns whether the fd's stream changed (the caller then tells the stdio shim).
pub fn evaluate(fd: i32) -> bool {
    let slot = match fd {
        1 => &FD_STREAM[1],
        2 => &FD_STREAM[2],
        _ => return false,
    };
    let _errno = sys::ErrnoGuard::save();
    let stream = classify(fd, sys::dev_ino(fd));
    let old = slot.swap(stream, Ordering::Relaxed);
    if old != stream {
        crate::debug!(
            "fd {fd} is now {}",
            match stream {
                STDOUT => "the tapped stdout",
                STDERR => "the tapped stderr",
                _ => "not a tapped stream",
            }
        );
    }
    old != stream
}

/// Whether a hooked change of `fd` may concern the streams.
#[inline]
pub fn concerns(fd: i32) -> bool {
    fd == 1 || fd == 2
}

/// The fds among 1 and 2 that `close_range(first, last)` closed: to be looked at again.
pub fn in_close_range(first: u32, last: u32) -> impl Iterator<Item = i32> {
    [1i32, 2]
        .into_iter()
        .filter(move |fd| u32::try_from(*fd).is_ok_and(|f| first <= f && f <= last))
}

/// Formats one identity as `<dev>:<ino>` (or `-`) into `out` at `at`; returns the new end.
fn put_id(out: &mut [u8], mut at: usize, id: Option<(u64, u64)>) -> usize {
    let mut put = |b: u8, at: &mut usize| {
        if let Some(s) = out.get_mut(*at) {
            *s = b;
            *at = at.saturating_add(1);
        }
    };
    let Some((dev, ino)) = id else {
        put(b'-', &mut at);
        return at;
    };
    for (i, v) in [dev, ino].into_iter().enumerate() {
        if i == 1 {
            put(b':', &mut at);
        }
        let mut digits = [0u8; 20];
        let mut n = v;
        let mut d = 0usize;
        loop {
            if let Some(s) = digits.get_mut(d) {
                *s = b'0'.saturating_add(u8::try_from(n % 10).unwrap_or(0));
            }
            d = d.saturating_add(1);
            n /= 10;
            if n == 0 || d >= digits.len() {
                break;
            }
        }
        for b in digits.iter().take(d).rev() {
            put(*b, &mut at);
        }
    }
    at
}

/// Parses one `<dev>:<ino>` or `-`; `Err` when malformed.
fn parse_id(s: &[u8]) -> Result<Option<(u64, u64)>, ()> {
    if s == b"-" {
        return Ok(None);
    }
    let mut parts = s.splitn(2, |b| *b == b':');
    let num = |p: Option<&[u8]>| -> Result<u64, ()> {
        let p = p.ok_or(())?;
        if p.is_empty() || p.len() > 20 {
            return Err(());
        }
        let mut v: u64 = 0;
        for b in p {
            let d = b.checked_sub(b'0').filter(|d| *d < 10).ok_or(())?;
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d)))
                .ok_or(())?;
        }
        Ok(v)
    };
    let dev = num(parts.next())?;
    let ino = num(parts.next())?;
    Ok(Some((dev, ino)))
}

/// Parses the value of [`ENV`].
pub fn parse(v: &[u8]) -> Option<[Option<(u64, u64)>; 2]> {
    let mut it = v.splitn(2, |b| *b == b',');
    let out = parse_id(it.next()?).ok()?;
    let err = parse_id(it.next()?).ok()?;
    Some([out, err])
}

/// Formats [`ENV`]'s value, NUL-terminated, into `buf`; returns the length without the NUL.
pub fn format(ids: [Option<(u64, u64)>; 2], buf: &mut [u8; 96]) -> usize {
    let mut at = put_id(buf, 0, ids[0]);
    if let Some(s) = buf.get_mut(at) {
        *s = b',';
        at = at.saturating_add(1);
    }
    at = put_id(buf, at, ids[1]);
    if let Some(s) = buf.get_mut(at) {
        *s = 0;
    }
    at
}

/// Constructor: takes the identities from `inherited` (the value of [`ENV`], if set and well
/// formed), or else from this process's own fd 1 and fd 2 — then it is the first tapped
/// process of its tree and returns the value its descendants must inherit. The caller then
/// classifies fd 1 and fd 2 ([`evaluate`]).
pub fn init(inherited: Option<&[u8]>, out: &mut [u8; 96]) -> Option<usize> {
    let (ids, first) = match inherited.and_then(parse) {
        Some(ids) => (ids, false),
        None => ([sys::dev_ino(1), sys::dev_ino(2)], true),
    };
    let [o, e] = &IDS;
    o.set(ids[0]);
    e.set(ids[1]);
    first.then(|| format(ids, out))
}

#[cfg(test)]
pub(crate) fn set_for_test(ids: [Option<(u64, u64)>; 2]) {
    let [o, e] = &IDS;
    o.set(ids[0]);
    e.set(ids[1]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_value_round_trips() {
        let mut buf = [0u8; 96];
        for ids in [
            [Some((64769, 1234567)), Some((0, 0))],
            [None, Some((u64::MAX, u64::MAX))],
            [None, None],
        ] {
            let n = format(ids, &mut buf);
            assert_eq!(buf[n], 0);
            assert_eq!(parse(&buf[..n]), Some(ids), "{:?}", &buf[..n]);
        }
        let n = format([Some((12, 34)), None], &mut buf);
        assert_eq!(&buf[..n], b"12:34,-");
    }

    #[test]
    fn malformed_env_values_are_refused() {
        for v in [
            &b""[..],
            b"12:34",
            b"12:34,",
            b"12,34:5",
            b"x:1,-",
            b"1:2:3,-",
            b"99999999999999999999999:1,-",
            b"-,- ",
        ] {
            assert_eq!(parse(v), None, "{}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn aliases_are_only_made_for_other_descriptors_onto_a_stream() {
        assert_eq!(alias_stream(ALIAS_STDOUT), Some(STDOUT));
        assert_eq!(alias_stream(ALIAS_STDERR), Some(STDERR));
        assert_eq!(alias_stream(3), None);
        FD_STREAM[1].store(STDOUT, Ordering::Relaxed);
        FD_STREAM[2].store(NONE, Ordering::Relaxed);
        assert_eq!(alias_for(18, 1), Some(ALIAS_STDOUT));
        assert_eq!(alias_for(18, 2), None, "fd 2 is not a stream now");
        assert_eq!(alias_for(2, 1), None, "fd 1/2 are never aliases");
        FD_STREAM[2].store(STDERR, Ordering::Relaxed);
        assert_eq!(alias_for(20, 2), Some(ALIAS_STDERR));
        FD_STREAM[1].store(NONE, Ordering::Relaxed);
        FD_STREAM[2].store(NONE, Ordering::Relaxed);
    }

    #[test]
    fn classification_prefers_the_fds_own_stream() {
        set_for_test([Some((1, 10)), Some((1, 20))]);
        assert_eq!(classify(1, Some((1, 10))), STDOUT);
        assert_eq!(classify(2, Some((1, 20))), STDERR);
        // 2>&1 onto the real stdout: stdout; 1>&2 onto the real stderr: stderr.
        assert_eq!(classify(2, Some((1, 10))), STDOUT);
        assert_eq!(classify(1, Some((1, 20))), STDERR);
        assert_eq!(classify(1, Some((1, 30))), NONE);
        assert_eq!(classify(1, None), NONE);
        // Both the same terminal: each keeps its own.
        set_for_test([Some((5, 7)), Some((5, 7))]);
        assert_eq!(classify(1, Some((5, 7))), STDOUT);
        assert_eq!(classify(2, Some((5, 7))), STDERR);
        // Not open in the first process: never tapped.
        set_for_test([None, Some((5, 7))]);
        assert_eq!(classify(1, Some((0, 0))), NONE);
    }
}
