//! The `LLT_*` environment variables, read once when the library is loaded.
//!
//! The constructor parses the environment (with `getenv`, before `main`) into one [`Config`]
//! kept in a static and published with a Release store; hooks read it without locks. A hook
//! that runs before the constructor (another library's constructor writing to stdout) finds
//! no config and passes the call through untouched.
//!
//! A malformed value never crashes the host program: it gets the default and, in debug mode,
//! one line on stderr naming the variable and what was expected. A malformed `LLT_TAP_INTO`
//! is reported even without debug mode ([`reported_always`]): it silently turns the tap off.
//! Booleans accept
//! `true/false`, `1/0`, `yes/no`, `on/off`, `y/n`, `t/f` in any case; an empty value means the
//! default. Strings are copied into fixed-size arrays: the config allocates nothing.

use crate::statics::{Fill, Published};

/// Longest `LLT_TARGET` path and `LLT_TAP_FILE` list kept.
pub const MAX_VALUE: usize = 4096;

/// Where tapped copies go (`LLT_TARGET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// `file:PATH`: the raw bytes are appended to PATH (the seed's behaviour).
    File,
    /// `socket:PATH`: Contract 2 to the agent listening on PATH.
    Socket,
}

/// How a `socket:` target gets the bytes (`LLT_TRANSPORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Shared-memory ring, control socket for HELLO/LOSS/FILE (default).
    Ring,
    /// One DATA frame per write over the control socket.
    Socket,
}

/// What a tapped write does when the ring is full (`LLT_RING_FULL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingFull {
    /// Wait for room while a live agent drains the ring, bounded (Docker's `mode: blocking`,
    /// the default); see `sender::ring`.
    Block,
    /// Drop the copy and count it at once (Docker's `mode: non-blocking`).
    Drop,
}

/// A byte string in a fixed array.
#[derive(Clone, Copy)]
pub struct FixedBytes<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> FixedBytes<N> {
    /// The empty string.
    pub const fn empty() -> Self {
        FixedBytes {
            buf: [0; N],
            len: 0,
        }
    }

    /// A copy of `v`, or `None` when it does not fit (one byte stays free for a NUL).
    pub fn from_bytes(v: &[u8]) -> Option<Self> {
        let mut out = Self::empty();
        let dst = out.buf.get_mut(..v.len())?;
        if v.len() >= N {
            return None;
        }
        dst.copy_from_slice(v);
        out.len = v.len();
        Some(out)
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// The bytes followed by their NUL terminator (always present: see `from_bytes`).
    pub fn as_bytes_with_nul(&self) -> &[u8] {
        self.buf.get(..=self.len).unwrap_or(&[])
    }
}

/// Everything the variables say.
#[derive(Clone, Copy)]
pub struct Config {
    /// `LLT_TAP_INTO` bit 0: tap fd 1.
    pub tap_stdout: bool,
    /// `LLT_TAP_INTO` bit 1: tap fd 2.
    pub tap_stderr: bool,
    /// `LLT_SUPPRESS_STDOUT`: do not write tapped stdout bytes to fd 1.
    pub suppress_stdout: bool,
    /// `LLT_SUPPRESS_STDERR` (new): the same for fd 2. The seed has no such switch, so stderr
    /// is never suppressed unless asked for by this separate name.
    pub suppress_stderr: bool,
    /// `LLT_SUPPRESS_TAP_FILE`: do not write to tapped files.
    pub suppress_tap_file: bool,
    /// `LLT_TARGET`'s scheme.
    pub target_kind: TargetKind,
    /// `LLT_TARGET`'s path.
    pub target_path: FixedBytes<MAX_VALUE>,
    /// `LLT_PASSIV_ON_START`, milliseconds.
    pub passive_ms: u64,
    /// `LLT_TARGET_1STCONNECT`, seconds.
    pub first_connect_s: u64,
    /// `LLT_TARGET_RECONNECT`, seconds.
    pub reconnect_s: u64,
    /// `LLT_DEBUG_MODE`.
    pub debug: bool,
    /// `LLT_TRANSPORT`.
    pub transport: Transport,
    /// `LLT_RING_SIZE`, bytes of ring data area.
    pub ring_size: usize,
    /// `LLT_RING_FULL`: wait for room (default) or drop when the ring is full.
    pub ring_full: RingFull,
    /// `LLT_TAP_FILE`: `:`-separated paths and glob patterns.
    pub tap_files: FixedBytes<MAX_VALUE>,
    /// `LLT_PYTHONUNBUFFERED` (default true): inject `PYTHONUNBUFFERED=1` when unset.
    pub python_unbuffered: bool,
    /// `LLT_CLOCK`: `auto` (default) stamps records from the TSC where the kernel keeps time
    /// with it (see [`crate::clock`]); `realtime` calls `clock_gettime` for every record.
    pub clock_tsc: bool,
    /// `LLT_TAP_CHILDREN` (default true): programs this one `exec`s load the library too
    /// (`LD_PRELOAD` is inherited). `false` removes the library from the `LD_PRELOAD` the
    /// process hands on, so only this program (and its forked, not exec'd, children) is tapped.
    pub tap_children: bool,
}

/// The seed's defaults.
pub const DEFAULT_TARGET: &[u8] = b"/tmp/liblogtap.log";

impl Config {
    /// The defaults, as a constant (the static starts from it).
    pub const DEFAULT: Config = Config {
        tap_stdout: false,
        tap_stderr: false,
        suppress_stdout: false,
        suppress_stderr: false,
        suppress_tap_file: false,
        target_kind: TargetKind::File,
        target_path: FixedBytes::empty(),
        passive_ms: 0,
        first_connect_s: 5,
        reconnect_s: 30,
        debug: false,
        transport: Transport::Ring,
        ring_size: logtap_protocol::ring::DEFAULT_RING_SIZE,
        ring_full: RingFull::Block,
        tap_files: FixedBytes::empty(),
        python_unbuffered: true,
        clock_tsc: true,
        tap_children: true,
    };

    /// Whether anything at all is tapped (otherwise every hook is a pure pass-through).
    pub fn taps_anything(&self) -> bool {
        self.tap_stdout || self.tap_stderr || !self.tap_files.as_bytes().is_empty()
    }
}

/// A variable whose value was rejected, and what was expected instead.
pub type Warning = (&'static str, &'static str);

/// Up to 24 warnings collected while parsing (one per variable at most).
pub struct Warnings {
    items: [Option<Warning>; 24],
}

impl Warnings {
    fn new() -> Warnings {
        Warnings { items: [None; 24] }
    }

    fn push(&mut self, w: Warning) {
        if let Some(slot) = self.items.iter_mut().find(|s| s.is_none()) {
            *slot = Some(w);
        }
    }

    /// The warnings, in order.
    pub fn iter(&self) -> impl Iterator<Item = Warning> + '_ {
        self.items.iter().flatten().copied()
    }
}

/// Whether a malformed value of `name` is reported on stderr even without debug mode: a
/// malformed `LLT_TAP_INTO` silently turns the tap of stdout/stderr off, which nobody would
/// otherwise notice until the logs are missing.
pub fn reported_always(name: &str) -> bool {
    name == "LLT_TAP_INTO"
}

/// What `LLT_TAP_INTO` expects, as a warning says it.
pub const TAP_INTO_EXPECTED: &str = "0/none, 1/stdout, 2/stderr or 3/both";

/// Parses `LLT_TAP_INTO`: the seed's numbers 0–3 (bit 0 stdout, bit 1 stderr) or the words
/// `none`, `stdout`, `stderr`, `both` (any case). Returns (stdout, stderr).
pub fn parse_tap_into(v: &[u8]) -> Option<(bool, bool)> {
    let v = v.trim_ascii();
    const WORDS: [(&[u8], u64); 4] = [(b"none", 0), (b"stdout", 1), (b"stderr", 2), (b"both", 3)];
    let n = match WORDS.iter().find(|(w, _)| v.eq_ignore_ascii_case(w)) {
        Some((_, n)) => *n,
        None => parse_u64(v).filter(|n| *n <= 3)?,
    };
    Some((n & 1 != 0, n & 2 != 0))
}

/// Parses a boolean; `None` when malformed.
pub fn parse_bool(v: &[u8]) -> Option<bool> {
    const TRUE: [&[u8]; 6] = [b"true", b"1", b"yes", b"on", b"y", b"t"];
    const FALSE: [&[u8]; 6] = [b"false", b"0", b"no", b"off", b"n", b"f"];
    let v = v.trim_ascii();
    if TRUE.iter().any(|t| v.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| v.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

/// Parses a non-negative decimal integer.
pub fn parse_u64(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for b in v {
        let d = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n = n.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(n)
}

/// Parses a size: digits with an optional `k`/`K`/`KiB`/`m`/`M`/`MiB`/`g`/`G`/`GiB` suffix.
pub fn parse_size(v: &[u8]) -> Option<usize> {
    let v = v.trim_ascii();
    let split = v
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(v.len());
    let (digits, suffix) = v.split_at(split);
    let n = parse_u64(digits)?;
    let shift = match suffix.to_ascii_lowercase().as_slice() {
        b"" | b"b" => 0,
        b"k" | b"kb" | b"kib" => 10,
        b"m" | b"mb" | b"mib" => 20,
        b"g" | b"gb" | b"gib" => 30,
        _ => return None,
    };
    let bytes = n.checked_mul(1u64.checked_shl(shift)?)?;
    usize::try_from(bytes).ok()
}

/// Parses `LLT_TARGET`: `file:PATH` or `socket:PATH`.
pub fn parse_target(v: &[u8]) -> Option<(TargetKind, &[u8])> {
    let (kind, path) = if let Some(p) = v.strip_prefix(b"file:") {
        (TargetKind::File, p)
    } else if let Some(p) = v.strip_prefix(b"socket:") {
        (TargetKind::Socket, p)
    } else {
        return None;
    };
    if path.is_empty() || path.contains(&0) {
        return None;
    }
    // A Unix socket path has at most 107 bytes (sun_path is 108 with its NUL).
    if kind == TargetKind::Socket && path.len() > 107 {
        return None;
    }
    Some((kind, path))
}

/// Builds a [`Config`] from `lookup` (a variable's value, if set); rejected values keep the
/// default and are listed in the returned warnings.
pub fn parse<'a>(lookup: impl Fn(&'static str) -> Option<&'a [u8]>) -> (Config, Warnings) {
    let mut c = Config::DEFAULT;
    let mut w = Warnings::new();
    c.target_path = FixedBytes::from_bytes(DEFAULT_TARGET).unwrap_or(FixedBytes::empty());
    let set = |name: &'static str| lookup(name).filter(|v| !v.trim_ascii().is_empty());

    let flag = |name: &'static str, field: &mut bool, w: &mut Warnings| {
        if let Some(v) = set(name) {
            match parse_bool(v) {
                Some(b) => *field = b,
                None => w.push((name, "true or false")),
            }
        }
    };
    flag("LLT_SUPPRESS_STDOUT", &mut c.suppress_stdout, &mut w);
    flag("LLT_SUPPRESS_STDERR", &mut c.suppress_stderr, &mut w);
    flag("LLT_SUPPRESS_TAP_FILE", &mut c.suppress_tap_file, &mut w);
    flag("LLT_DEBUG_MODE", &mut c.debug, &mut w);
    flag("LLT_PYTHONUNBUFFERED", &mut c.python_unbuffered, &mut w);
    flag("LLT_TAP_CHILDREN", &mut c.tap_children, &mut w);

    if let Some(v) = set("LLT_TAP_INTO") {
        match parse_tap_into(v) {
            Some((out, err)) => {
                c.tap_stdout = out;
                c.tap_stderr = err;
            }
            None => w.push(("LLT_TAP_INTO", TAP_INTO_EXPECTED)),
        }
    }
    let mut number = |name: &'static str, field: &mut u64, what: &'static str| {
        if let Some(v) = set(name) {
            match parse_u64(v) {
                Some(n) => *field = n,
                None => w.push((name, what)),
            }
        }
    };
    number(
        "LLT_PASSIV_ON_START",
        &mut c.passive_ms,
        "milliseconds (an integer)",
    );
    number(
        "LLT_TARGET_1STCONNECT",
        &mut c.first_connect_s,
        "seconds (an integer)",
    );
    number(
        "LLT_TARGET_RECONNECT",
        &mut c.reconnect_s,
        "seconds (an integer)",
    );

    if let Some(v) = set("LLT_TARGET") {
        match parse_target(v).and_then(|(k, p)| Some((k, FixedBytes::from_bytes(p)?))) {
            Some((kind, path)) => {
                c.target_kind = kind;
                c.target_path = path;
            }
            None => w.push((
                "LLT_TARGET",
                "file:PATH or socket:PATH (socket path ≤ 107 bytes)",
            )),
        }
    }
    if let Some(v) = set("LLT_CLOCK") {
        let v = v.trim_ascii();
        if v.eq_ignore_ascii_case(b"auto") {
            c.clock_tsc = true;
        } else if v.eq_ignore_ascii_case(b"realtime") {
            c.clock_tsc = false;
        } else {
            w.push(("LLT_CLOCK", "auto or realtime"));
        }
    }
    if let Some(v) = set("LLT_TRANSPORT") {
        let v = v.trim_ascii();
        if v.eq_ignore_ascii_case(b"ring") {
            c.transport = Transport::Ring;
        } else if v.eq_ignore_ascii_case(b"socket") {
            c.transport = Transport::Socket;
        } else {
            w.push(("LLT_TRANSPORT", "ring or socket"));
        }
    }
    if let Some(v) = set("LLT_RING_FULL") {
        let v = v.trim_ascii();
        if v.eq_ignore_ascii_case(b"block") {
            c.ring_full = RingFull::Block;
        } else if v.eq_ignore_ascii_case(b"drop") {
            c.ring_full = RingFull::Drop;
        } else {
            w.push(("LLT_RING_FULL", "block or drop"));
        }
    }
    if let Some(v) = set("LLT_RING_SIZE") {
        match parse_size(v) {
            Some(n)
                if (logtap_protocol::ring::MIN_RING_SIZE
                    ..=logtap_protocol::ring::MAX_RING_SIZE)
                    .contains(&n) =>
            {
                c.ring_size = n
            }
            _ => w.push(("LLT_RING_SIZE", "a size from 64K to 256M, e.g. 1M")),
        }
    }
    if let Some(v) = set("LLT_TAP_FILE") {
        match FixedBytes::from_bytes(v.trim_ascii()) {
            Some(list) => c.tap_files = list,
            None => w.push((
                "LLT_TAP_FILE",
                "a ':'-list of paths shorter than 4096 bytes",
            )),
        }
    }
    (c, w)
}

/// The process-wide config, written once by the constructor.
static CONFIG: Published<Config> = Published::new();

/// Stores the config and publishes it. Called once, by the constructor, before any thread of
/// the program exists that could read it (a second call is ignored).
pub fn install(c: Config) {
    let _ = CONFIG.fill(|| Ok::<_, (Fill, ())>(c));
}

/// The config, once the constructor has run.
#[inline]
pub fn get() -> Option<&'static Config> {
    CONFIG.get()
}

/// `list` (an `LD_PRELOAD` value: entries separated by `:` or spaces) without the entries
/// that name the library `me` (same file name), joined with `:`. Allocates: the constructor
/// only (`init.rs`), never a hook.
pub fn preload_without(list: &[u8], me: &[u8]) -> Vec<u8> {
    let base = |p: &[u8]| -> Vec<u8> { p.rsplit(|&b| b == b'/').next().unwrap_or(p).to_vec() };
    let mine = base(me);
    let mut out = Vec::with_capacity(list.len());
    for entry in list.split(|&b| b == b':' || b == b' ') {
        if entry.is_empty() || base(entry) == mine {
            continue;
        }
        if !out.is_empty() {
            out.push(b':');
        }
        out.extend_from_slice(entry);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'static str, &'a str)]) -> impl Fn(&'static str) -> Option<&'a [u8]> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_bytes())
        }
    }

    #[test]
    fn defaults_are_the_seeds() {
        let (c, w) = parse(env(&[]));
        assert!(!c.tap_stdout && !c.tap_stderr && !c.suppress_stdout);
        assert_eq!(c.target_kind, TargetKind::File);
        assert_eq!(c.target_path.as_bytes(), b"/tmp/liblogtap.log");
        assert_eq!(c.target_path.as_bytes_with_nul(), b"/tmp/liblogtap.log\0");
        assert_eq!((c.first_connect_s, c.reconnect_s, c.passive_ms), (5, 30, 0));
        assert_eq!(c.transport, Transport::Ring);
        assert_eq!(c.ring_full, RingFull::Block);
        assert!(c.python_unbuffered);
        assert_eq!(w.iter().count(), 0);
    }

    #[test]
    fn tap_into_numbers_and_words() {
        for (v, want) in [
            ("0", (false, false)),
            ("1", (true, false)),
            ("2", (false, true)),
            ("3", (true, true)),
            ("none", (false, false)),
            ("stdout", (true, false)),
            (" StdErr ", (false, true)),
            ("BOTH", (true, true)),
        ] {
            let (c, w) = parse(env(&[("LLT_TAP_INTO", v)]));
            assert_eq!((c.tap_stdout, c.tap_stderr), want, "{v}");
            assert_eq!(w.iter().count(), 0, "{v}");
        }
        for v in ["4", "-1", "out", "stdout,stderr", "1 2", "bothx"] {
            let (c, w) = parse(env(&[("LLT_TAP_INTO", v)]));
            assert!(!c.tap_stdout && !c.tap_stderr, "{v}");
            let warned: Vec<_> = w.iter().collect();
            assert_eq!(warned, [("LLT_TAP_INTO", TAP_INTO_EXPECTED)], "{v}");
            assert!(reported_always(warned[0].0));
        }
        assert!(!reported_always("LLT_RING_SIZE"));
    }

    #[test]
    fn ring_full_modes() {
        let (c, _) = parse(env(&[("LLT_RING_FULL", "Drop")]));
        assert_eq!(c.ring_full, RingFull::Drop);
        let (c, _) = parse(env(&[("LLT_RING_FULL", "block")]));
        assert_eq!(c.ring_full, RingFull::Block);
        let (c, w) = parse(env(&[("LLT_RING_FULL", "sometimes")]));
        assert_eq!(c.ring_full, RingFull::Block);
        assert_eq!(
            w.iter().collect::<Vec<_>>(),
            [("LLT_RING_FULL", "block or drop")]
        );
    }

    #[test]
    fn values_are_parsed() {
        let (c, w) = parse(env(&[
            ("LLT_TAP_INTO", "3"),
            ("LLT_SUPPRESS_STDOUT", "YES"),
            ("LLT_SUPPRESS_TAP_FILE", "True"),
            ("LLT_TARGET", "socket:/run/logtap.sock"),
            ("LLT_TARGET_RECONNECT", "2"),
            ("LLT_TRANSPORT", "Socket"),
            ("LLT_RING_SIZE", "256KiB"),
            ("LLT_TAP_FILE", "/var/log/a.log:/var/log/*.log"),
            ("LLT_PYTHONUNBUFFERED", "false"),
            ("LLT_CLOCK", "RealTime"),
            ("LLT_TAP_CHILDREN", "no"),
        ]));
        assert_eq!(w.iter().count(), 0);
        assert!(!c.clock_tsc);
        assert!(!c.tap_children);
        assert!(c.tap_stdout && c.tap_stderr && c.suppress_stdout && c.suppress_tap_file);
        assert!(!c.suppress_stderr);
        assert_eq!(c.target_kind, TargetKind::Socket);
        assert_eq!(c.target_path.as_bytes(), b"/run/logtap.sock");
        assert_eq!(c.reconnect_s, 2);
        assert_eq!(c.transport, Transport::Socket);
        assert_eq!(c.ring_size, 256 * 1024);
        assert_eq!(c.tap_files.as_bytes(), b"/var/log/a.log:/var/log/*.log");
        assert!(!c.python_unbuffered);
    }

    #[test]
    fn garbage_keeps_defaults_and_warns() {
        let long = "x".repeat(5000);
        let (c, w) = parse(env(&[
            ("LLT_TAP_INTO", "7"),
            ("LLT_SUPPRESS_STDOUT", "perhaps"),
            ("LLT_TARGET", "tcp:1.2.3.4"),
            ("LLT_TARGET_1STCONNECT", "-1"),
            ("LLT_TARGET_RECONNECT", "99999999999999999999999"),
            ("LLT_TRANSPORT", "pigeon"),
            ("LLT_RING_SIZE", "12Q"),
            ("LLT_TAP_FILE", &long),
            ("LLT_PASSIV_ON_START", "\u{1F600}"),
            ("LLT_CLOCK", "sundial"),
            ("LLT_TAP_CHILDREN", "some"),
            ("LLT_RING_FULL", "wait"),
        ]));
        assert_eq!(w.iter().count(), 12);
        assert!(c.clock_tsc && c.tap_children);
        assert!(!c.tap_stdout && !c.suppress_stdout);
        assert_eq!(c.target_kind, TargetKind::File);
        assert_eq!((c.first_connect_s, c.reconnect_s, c.passive_ms), (5, 30, 0));
        assert_eq!(c.ring_size, logtap_protocol::ring::DEFAULT_RING_SIZE);
        assert!(c.tap_files.as_bytes().is_empty());
    }

    #[test]
    fn sizes_and_numbers() {
        assert_eq!(parse_size(b"1M"), Some(1 << 20));
        assert_eq!(parse_size(b"65536"), Some(65536));
        assert_eq!(parse_size(b"1x"), None);
        assert_eq!(parse_size(b"99999999999G"), None);
        assert_eq!(parse_u64(b" 42 "), Some(42));
        assert_eq!(parse_u64(b"4 2"), None);
        assert_eq!(parse_bool(b"0"), Some(false));
        assert_eq!(parse_target(b"socket:"), None);
    }

    #[test]
    fn only_this_library_leaves_ld_preload() {
        let me = b"/opt/logtap/liblogtap.so";
        assert_eq!(preload_without(b"/opt/logtap/liblogtap.so", me), b"");
        assert_eq!(
            preload_without(b"/usr/lib/libfoo.so:/opt/logtap/liblogtap.so libbar.so", me),
            b"/usr/lib/libfoo.so:libbar.so"
        );
        // The same library named another way (relative path, other directory).
        assert_eq!(preload_without(b"./liblogtap.so::libx.so", me), b"libx.so");
        assert_eq!(preload_without(b"libliblogtap.so", me), b"libliblogtap.so");
    }
}
