//! Copies dropped outside the ring, reported to the agent in LOSS frames.
//!
//! A copy is dropped (never for a suppressed stream, which falls back to the real write) when
//! the socket transport has no connection, or the control socket would block. Drops inside the
//! ring (ring full) are counted in the ring's own header with `Producer::note_dropped`, where
//! the agent reads them; so "delivered + ring counters + LOSS frames = written" holds.
//!
//! The counters are two atomics. A report takes them with `swap(0)` and adds them back if the
//! LOSS frame could not be sent, so no drop is forgotten or reported twice.

use core::sync::atomic::{AtomicU64, Ordering};

use logtap_protocol::tap::{self, Header, Kind};

static FRAMES: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// Counts `frames` copies of `bytes` bytes as dropped.
#[inline]
pub fn add(frames: u64, bytes: u64) {
    FRAMES.fetch_add(frames, Ordering::Relaxed);
    BYTES.fetch_add(bytes, Ordering::Relaxed);
}

/// Whether a report is due.
#[inline]
pub fn pending() -> bool {
    FRAMES.load(Ordering::Relaxed) != 0
}

/// Forgets the counts (a forked child reports only its own drops).
pub fn reset() {
    FRAMES.store(0, Ordering::Relaxed);
    BYTES.store(0, Ordering::Relaxed);
}

/// Sends one LOSS frame with the pending counts on `fd`. `Ok(())` when nothing was pending or
/// the frame went out; `Err(errno)` otherwise (the counts are kept for the next try).
pub fn report(fd: i32, now: u64) -> Result<(), i32> {
    let frames = FRAMES.swap(0, Ordering::AcqRel);
    let bytes = BYTES.swap(0, Ordering::AcqRel);
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
                stream: None,
                flags: 0,
                pid: super::pid(),
                seq: super::reserve_seq(1),
                time_ns: now,
                file_index: 0,
                payload_len: u32::try_from(body.len()).unwrap_or(0),
            }
            .encode();
            crate::sys::send_datagram(fd, &[&header, body], &[])
        });
    match sent {
        Ok(_) => {
            crate::debug!("reported {frames} dropped copies ({bytes} bytes) in a LOSS frame");
            Ok(())
        }
        Err(e) => {
            add(frames, bytes);
            Err(e)
        }
    }
}
