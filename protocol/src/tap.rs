//! Contract 2's control frames, version 1: what the interceptor sends the agent over its
//! `SOCK_SEQPACKET` control connection.
//!
//! Every frame is one datagram: a 32-byte little-endian [`Header`], then the payload.
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `LTP1` (the `1` is the version) |
//! | 4 | 1 | kind: 1 HELLO, 2 DATA, 3 LOSS, 4 FILE |
//! | 5 | 1 | stream: 1 stdout, 2 stderr, 3 file (DATA/LOSS), else 0 |
//! | 6 | 2 | flags: bit 0 CONTINUED (the write goes on in the next frame) |
//! | 8 | 4 | pid |
//! | 12 | 4 | seq (per-process counter, wrapping; gaps reveal loss) |
//! | 16 | 8 | time, ns since the Unix epoch (CLOCK_REALTIME at the write) |
//! | 24 | 4 | file index (stream 3), else 0 |
//! | 28 | 4 | payload length |
//!
//! Payloads:
//! - DATA: the written bytes, at most [`MAX_DATA_PAYLOAD`] a frame; a longer write is split
//!   and every frame but the last carries [`FLAG_CONTINUED`]. DATA frames carry the writes of a
//!   process that has no ring (`LLT_TRANSPORT=socket`, or a memfd the kernel refused). A process
//!   with a ring sends even a write larger than one ring record through the ring, as chained
//!   records (`RECORD_CONTINUED` on all but the last, consecutive `seq`), so that it stays in
//!   order with the stream's other writes; Contract 2 in DESIGN.md allowed DATA frames there,
//!   and this is the version-1 behaviour that counts.
//! - Ordering: frames and ring records share one per-process `seq`, so the agent can merge the
//!   two channels back into write order.
//! - HELLO (first frame of every connection): a MessagePack map `{pid, ppid, comm, exe,
//!   hostname, container_id, files: [path…], meta: {…}, version, ring: bool}`. With
//!   `ring: true` the datagram carries, by `SCM_RIGHTS`, the ring's memfd and then an eventfd
//!   the agent uses to wake the producer's consumer side (see [`crate::ring`]).
//! - LOSS: `{frames, bytes}` dropped since the last report.
//! - FILE: `{index, path}`, sent when a tapped file is opened, before its first record.
//!
//! Strings in payloads are MessagePack `str` when valid UTF-8 and `bin` otherwise (paths are
//! bytes); the decoders accept both. Unknown keys are ignored, so later versions may add keys.
//!
//! Encoding never allocates: [`Header::encode`] returns an array and the payload encoders
//! write into the caller's buffer — the interceptor calls them from inside `write()`.
//! Decoding validates everything and is meant for the agent.

use crate::msgpack::{Overflow, ReadError, Reader, Writer};

/// Magic and version of a control frame.
pub const MAGIC: [u8; 4] = *b"LTP1";
/// Length of the fixed header.
pub const HEADER_LEN: usize = 32;
/// Largest DATA payload in one frame; longer writes are split with [`FLAG_CONTINUED`].
pub const MAX_DATA_PAYLOAD: usize = 64 * 1024;
/// Largest payload of a HELLO, LOSS or FILE frame.
pub const MAX_CONTROL_PAYLOAD: usize = 16 * 1024;
/// Largest datagram a receiver must accept.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_DATA_PAYLOAD;
/// Header flag: the write goes on in the next frame.
pub const FLAG_CONTINUED: u16 = 1;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Process description; first frame of every connection.
    Hello = 1,
    /// Bytes of a tapped write (no ring, or a write too large for the ring).
    Data = 2,
    /// Counts of copies dropped since the last report.
    Loss = 3,
    /// A tapped file's index and path.
    File = 4,
}

impl Kind {
    /// The kind for a wire byte.
    pub const fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Hello),
            2 => Some(Kind::Data),
            3 => Some(Kind::Loss),
            4 => Some(Kind::File),
            _ => None,
        }
    }
}

/// Which of the process's outputs a write went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Stream {
    /// File descriptor 1.
    Stdout = 1,
    /// File descriptor 2.
    Stderr = 2,
    /// A tapped log file (the header's file index says which).
    File = 3,
}

impl Stream {
    /// The stream for a wire byte.
    pub const fn from_u8(b: u8) -> Option<Stream> {
        match b {
            1 => Some(Stream::Stdout),
            2 => Some(Stream::Stderr),
            3 => Some(Stream::File),
            _ => None,
        }
    }

    /// The name used in records and tags: `stdout`, `stderr` or `file`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::File => "file",
        }
    }
}

/// The fixed 32-byte header of a control frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the frame carries.
    pub kind: Kind,
    /// The stream (DATA and LOSS; `None` for the others, 0 on the wire).
    pub stream: Option<Stream>,
    /// [`FLAG_CONTINUED`] or 0.
    pub flags: u16,
    /// The writing process.
    pub pid: u32,
    /// Per-process frame counter, wrapping.
    pub seq: u32,
    /// CLOCK_REALTIME of the write, ns since the Unix epoch.
    pub time_ns: u64,
    /// The tapped file's index (stream 3), else 0.
    pub file_index: u32,
    /// Payload bytes following the header.
    pub payload_len: u32,
}

impl Header {
    /// The header's 32 wire bytes. No allocation, cannot panic.
    pub const fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = MAGIC[0];
        out[1] = MAGIC[1];
        out[2] = MAGIC[2];
        out[3] = MAGIC[3];
        out[4] = self.kind as u8;
        out[5] = match self.stream {
            Some(s) => s as u8,
            None => 0,
        };
        let f = self.flags.to_le_bytes();
        out[6] = f[0];
        out[7] = f[1];
        put_le(&mut out, 8, &self.pid.to_le_bytes());
        put_le(&mut out, 12, &self.seq.to_le_bytes());
        put_le(&mut out, 16, &self.time_ns.to_le_bytes());
        put_le(&mut out, 24, &self.file_index.to_le_bytes());
        put_le(&mut out, 28, &self.payload_len.to_le_bytes());
        out
    }
}

const fn put_le(out: &mut [u8; HEADER_LEN], at: usize, bytes: &[u8]) {
    let mut i = 0;
    while i < bytes.len() {
        out[at + i] = bytes[i];
        i += 1;
    }
}

/// A decoded frame, borrowing its payload from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The validated header.
    pub header: Header,
    /// The payload (exactly `header.payload_len` bytes).
    pub payload: &'a [u8],
}

/// Why a control frame or payload was rejected. The agent counts it and drops that peer only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TapError {
    /// Fewer bytes than a header.
    #[error("control frame of {0} byte(s) is shorter than the 32-byte header")]
    Short(usize),
    /// Not `LTP1`.
    #[error(
        "bad control frame magic {0:02x?} (expected \"LTP1\"): not a logtap peer, or another protocol version"
    )]
    BadMagic([u8; 4]),
    /// Unknown kind byte.
    #[error("unknown control frame kind {0}")]
    UnknownKind(u8),
    /// A stream byte that is not valid for the frame's kind.
    #[error("stream {stream} is not valid in a {kind:?} frame")]
    BadStream {
        /// The frame kind.
        kind: Kind,
        /// The stream byte.
        stream: u8,
    },
    /// Header length field and datagram size disagree.
    #[error("payload length {declared} does not match the {actual} byte(s) after the header")]
    LengthMismatch {
        /// Declared payload length.
        declared: u32,
        /// Bytes actually present.
        actual: usize,
    },
    /// Payload over the cap for its kind.
    #[error("{kind:?} payload of {len} byte(s) exceeds the {max}-byte limit")]
    TooLarge {
        /// The frame kind.
        kind: Kind,
        /// Its payload length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// A payload's MessagePack could not be read.
    #[error("malformed {what} payload: {source}")]
    Payload {
        /// Which payload.
        what: &'static str,
        /// The underlying error.
        source: ReadError,
    },
    /// A required key is absent from a payload.
    #[error("{what} payload lacks the required key {key:?}")]
    MissingKey {
        /// Which payload.
        what: &'static str,
        /// The key.
        key: &'static str,
    },
    /// A number does not fit its field.
    #[error("{what} payload: {key:?} = {value} is out of range")]
    OutOfRange {
        /// Which payload.
        what: &'static str,
        /// The key.
        key: &'static str,
        /// The value.
        value: u64,
    },
    /// The caller's buffer is too small for the payload being encoded.
    #[error("buffer too small to encode the payload")]
    BufferTooSmall,
}

impl From<Overflow> for TapError {
    fn from(_: Overflow) -> TapError {
        TapError::BufferTooSmall
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

/// Decodes and validates one datagram.
pub fn decode_frame(datagram: &[u8]) -> Result<Frame<'_>, TapError> {
    let (head, payload) = datagram
        .split_at_checked(HEADER_LEN)
        .ok_or(TapError::Short(datagram.len()))?;
    let magic = [head[0], head[1], head[2], head[3]];
    if magic != MAGIC {
        return Err(TapError::BadMagic(magic));
    }
    let kind = Kind::from_u8(head[4]).ok_or(TapError::UnknownKind(head[4]))?;
    let stream = match (kind, head[5]) {
        (Kind::Data | Kind::Loss, s) => {
            Some(Stream::from_u8(s).ok_or(TapError::BadStream { kind, stream: s })?)
        }
        (Kind::Hello | Kind::File, 0) => None,
        (_, s) => return Err(TapError::BadStream { kind, stream: s }),
    };
    let payload_len = le_u32(head, 28);
    if payload_len as usize != payload.len() {
        return Err(TapError::LengthMismatch {
            declared: payload_len,
            actual: payload.len(),
        });
    }
    let max = if kind == Kind::Data {
        MAX_DATA_PAYLOAD
    } else {
        MAX_CONTROL_PAYLOAD
    };
    if payload.len() > max {
        return Err(TapError::TooLarge {
            kind,
            len: payload.len(),
            max,
        });
    }
    let mut time = [0u8; 8];
    time.copy_from_slice(&head[16..24]);
    Ok(Frame {
        header: Header {
            kind,
            stream,
            flags: u16::from_le_bytes([head[6], head[7]]),
            pid: le_u32(head, 8),
            seq: le_u32(head, 12),
            time_ns: u64::from_le_bytes(time),
            file_index: le_u32(head, 24),
            payload_len,
        },
        payload,
    })
}

/// The interceptor's view of its process, for [`encode_hello`].
#[derive(Debug, Clone, Copy)]
pub struct HelloFields<'a> {
    /// Process id.
    pub pid: u32,
    /// Parent's process id.
    pub ppid: u32,
    /// `/proc/self/comm`.
    pub comm: &'a [u8],
    /// `/proc/self/exe`'s target.
    pub exe: &'a [u8],
    /// The host (or pod) name.
    pub hostname: &'a [u8],
    /// Container id from the cgroup, or empty.
    pub container_id: &'a [u8],
    /// liblogtap's version.
    pub version: &'a [u8],
    /// Whether the datagram carries a ring memfd and an eventfd.
    pub ring: bool,
}

/// Writes a HELLO payload into `out`; returns its length. No allocation.
pub fn encode_hello<'a, F, M>(
    out: &mut [u8],
    f: &HelloFields<'_>,
    files: F,
    meta: M,
) -> Result<usize, TapError>
where
    F: IntoIterator<Item = &'a [u8]>,
    F::IntoIter: ExactSizeIterator,
    M: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    M::IntoIter: ExactSizeIterator,
{
    let mut w = Writer::new(out);
    w.map(10)?;
    w.str(b"pid")?;
    w.uint(u64::from(f.pid))?;
    w.str(b"ppid")?;
    w.uint(u64::from(f.ppid))?;
    for (key, value) in [
        (&b"comm"[..], f.comm),
        (b"exe", f.exe),
        (b"hostname", f.hostname),
        (b"container_id", f.container_id),
    ] {
        w.str(key)?;
        w.text(value)?;
    }
    w.str(b"files")?;
    let files = files.into_iter();
    w.array(files.len())?;
    for path in files {
        w.text(path)?;
    }
    w.str(b"meta")?;
    let meta = meta.into_iter();
    w.map(meta.len())?;
    for (k, v) in meta {
        w.text(k)?;
        w.text(v)?;
    }
    w.str(b"version")?;
    w.text(f.version)?;
    w.str(b"ring")?;
    w.bool(f.ring)?;
    Ok(w.len())
}

/// Writes a LOSS payload into `out`; returns its length. No allocation.
pub fn encode_loss(out: &mut [u8], frames: u64, bytes: u64) -> Result<usize, TapError> {
    let mut w = Writer::new(out);
    w.map(2)?;
    w.str(b"frames")?;
    w.uint(frames)?;
    w.str(b"bytes")?;
    w.uint(bytes)?;
    Ok(w.len())
}

/// Writes a FILE payload into `out`; returns its length. No allocation.
pub fn encode_file(out: &mut [u8], index: u32, path: &[u8]) -> Result<usize, TapError> {
    let mut w = Writer::new(out);
    w.map(2)?;
    w.str(b"index")?;
    w.uint(u64::from(index))?;
    w.str(b"path")?;
    w.text(path)?;
    Ok(w.len())
}

/// A decoded HELLO payload (agent side; allocates).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    /// Process id.
    pub pid: u32,
    /// Parent's process id.
    pub ppid: u32,
    /// Command name.
    pub comm: String,
    /// Executable path.
    pub exe: String,
    /// Host name.
    pub hostname: String,
    /// Container id, or empty.
    pub container_id: String,
    /// Tapped file paths and patterns.
    pub files: Vec<String>,
    /// Free-form metadata.
    pub meta: Vec<(String, String)>,
    /// liblogtap's version.
    pub version: String,
    /// Whether a ring memfd and eventfd came with the frame.
    pub ring: bool,
}

fn text(r: &mut Reader<'_>, what: &'static str) -> Result<String, TapError> {
    let b = r
        .bytes()
        .map_err(|source| TapError::Payload { what, source })?;
    Ok(String::from_utf8_lossy(b).into_owned())
}

fn uint32(r: &mut Reader<'_>, what: &'static str, key: &'static str) -> Result<u32, TapError> {
    let v = r
        .uint()
        .map_err(|source| TapError::Payload { what, source })?;
    u32::try_from(v).map_err(|_| TapError::OutOfRange {
        what,
        key,
        value: v,
    })
}

/// Walks a payload map, handing each key to `field`, which reads the value or returns
/// `Ok(false)` to have it skipped.
fn each_key<'a>(
    payload: &'a [u8],
    what: &'static str,
    mut field: impl FnMut(&[u8], &mut Reader<'a>) -> Result<bool, TapError>,
) -> Result<(), TapError> {
    let err = |source| TapError::Payload { what, source };
    let mut r = Reader::new(payload);
    let n = r.map().map_err(err)?;
    for _ in 0..n {
        let key = r.bytes().map_err(err)?;
        if !field(key, &mut r)? {
            r.skip().map_err(err)?;
        }
    }
    Ok(())
}

impl Hello {
    /// Decodes a HELLO payload. `pid` is required; other keys default when absent.
    pub fn decode(payload: &[u8]) -> Result<Hello, TapError> {
        const W: &str = "HELLO";
        let mut h = Hello::default();
        let mut seen_pid = false;
        each_key(payload, W, |key, r| {
            let pe = |source| TapError::Payload { what: W, source };
            match key {
                b"pid" => {
                    h.pid = uint32(r, W, "pid")?;
                    seen_pid = true;
                }
                b"ppid" => h.ppid = uint32(r, W, "ppid")?,
                b"comm" => h.comm = text(r, W)?,
                b"exe" => h.exe = text(r, W)?,
                b"hostname" => h.hostname = text(r, W)?,
                b"container_id" => h.container_id = text(r, W)?,
                b"version" => h.version = text(r, W)?,
                b"ring" => h.ring = r.bool().map_err(pe)?,
                b"files" => {
                    let n = r.array().map_err(pe)?;
                    h.files = (0..n).map(|_| text(r, W)).collect::<Result<_, _>>()?;
                }
                b"meta" => {
                    let n = r.map().map_err(pe)?;
                    h.meta = (0..n)
                        .map(|_| Ok((text(r, W)?, text(r, W)?)))
                        .collect::<Result<_, TapError>>()?;
                }
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        if !seen_pid {
            return Err(TapError::MissingKey {
                what: W,
                key: "pid",
            });
        }
        Ok(h)
    }
}

/// A decoded LOSS payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loss {
    /// Copies (writes or frames) dropped.
    pub frames: u64,
    /// Bytes dropped.
    pub bytes: u64,
}

impl Loss {
    /// Decodes a LOSS payload; absent keys count as 0.
    pub fn decode(payload: &[u8]) -> Result<Loss, TapError> {
        const W: &str = "LOSS";
        let mut l = Loss::default();
        each_key(payload, W, |key, r| {
            let pe = |source| TapError::Payload { what: W, source };
            match key {
                b"frames" => l.frames = r.uint().map_err(pe)?,
                b"bytes" => l.bytes = r.uint().map_err(pe)?,
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(l)
    }
}

/// A decoded FILE payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileAnnounce {
    /// The file index used in DATA frames and ring records.
    pub index: u32,
    /// The file's path as opened.
    pub path: String,
}

impl FileAnnounce {
    /// Decodes a FILE payload; both keys are required.
    pub fn decode(payload: &[u8]) -> Result<FileAnnounce, TapError> {
        const W: &str = "FILE";
        let (mut index, mut path) = (None, None);
        each_key(payload, W, |key, r| {
            match key {
                b"index" => index = Some(uint32(r, W, "index")?),
                b"path" => path = Some(text(r, W)?),
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(FileAnnounce {
            index: index.ok_or(TapError::MissingKey {
                what: W,
                key: "index",
            })?,
            path: path.ok_or(TapError::MissingKey {
                what: W,
                key: "path",
            })?,
        })
    }
}

#[cfg(test)]
#[path = "tap_tests.rs"]
mod tests;
