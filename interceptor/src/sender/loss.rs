//! Copies dropped outside the ring, reported to the agent in LOSS frames.
//!
//! A copy is dropped (never for a suppressed stream, which falls back to the real write) when
//! the socket transport has no connection, or the control socket would block. Drops inside the
//! ring (ring full) are counted in the ring's own header with `Producer::note_dropped`, where
//! the agent reads them; so "delivered + ring counters + LOSS frames = written" holds.
//!
//! The counters are two atomics per stream (LOSS frames name their stream; the file stream's
//! counts cover all tap files, with file index 0). A report takes them with `swap(0)` and adds them back if the
//! LOSS frame could not be sent, so no drop is forgotten or reported twice.

use core::sync::atomic::{AtomicU64, Ordering};

use logtap_protocol::tap::{self, Header, Kind, Stream};

/// Per stream (index = stream − 1): stdout, stderr, file (all tap files together).
static FRAMES: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
static BYTES: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

fn slot(stream: u8) -> usize {
    usize::from(stream.clamp(1, 3)).saturating_sub(1)
}

/// Counts `frames` copies of `bytes` bytes of `stream` as dropped.
#[inline]
pub fn add(stream: u8, frames: u64, bytes: u64) {
    if let (Some(f), Some(b)) = (FRAMES.get(slot(stream)), BYTES.get(slot(stream))) {
        f.fetch_add(frames, Ordering::Relaxed);
        b.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Whether a report is due.
#[inline]
pub fn pending() -> bool {
    FRAMES.iter().any(|f| f.load(Ordering::Relaxed) != 0)
}

/// Forgets the counts (a forked child reports only its own drops).
pub fn reset() {
    for a in FRAMES.iter().chain(BYTES.iter()) {
        a.store(0, Ordering::Relaxed);
    }
}

/// Sends one LOSS frame per stream with pending counts on `fd`. `Ok(())` when nothing was
/// pending or the frames went out; `Err(errno)` otherwise (unsent counts are kept).
pub fn report(fd: i32, now: u64) -> Result<(), i32> {
    for (i, (f, b)) in FRAMES.iter().zip(BYTES.iter()).enumerate() {
        let stream = u8::try_from(i.saturating_add(1)).unwrap_or(1);
        report_stream(fd, now, stream, f, b)?;
    }
    Ok(())
}

fn report_stream(fd: i32, now: u64, stream: u8, f: &AtomicU64, b: &AtomicU64) -> Result<(), i32> {
    let frames = f.swap(0, Ordering::AcqRel);
    let bytes = b.swap(0, Ordering::AcqRel);
    if frames == 0 && bytes == 0 {
        return Ok(());
    }
    let mut payload = [0u8; 64];
    let sent = tap::encode_loss(&mut payload, frames, bytes)
        .map_err(|_| libc::EOVERFLOW)
        .and_then(|n| {
            let body = payload.get(..n).unwrap_or(&[]);
            let header = Header {
                kind: Kind::Loss,
                stream: Stream::from_u8(stream),
                flags: 0,
                pid: crate::process::pid(),
                seq: crate::process::reserve_seq(1),
                time_ns: now,
                file_index: 0,
                payload_len: u32::try_from(body.len()).unwrap_or(0),
            }
            .encode();
            crate::sys::send_datagram(fd, &[&header, body], &[])
        });
    match sent {
        Ok(_) => {
            crate::debug!(
                "reported {frames} dropped copies ({bytes} bytes) of stream {stream} in a LOSS frame"
            );
            Ok(())
        }
        Err(e) => {
            f.fetch_add(frames, Ordering::Relaxed);
            b.fetch_add(bytes, Ordering::Relaxed);
            Err(e)
        }
    }
}
