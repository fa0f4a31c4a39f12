//! The DATA-frame transport (`LLT_TRANSPORT=socket`, or a ring that cannot be passed): each
//! tapped call's bytes as DATA frames of at most 64 KiB on the control connection
//! ([`super::connection`]), `CONTINUED` on all but the last part of a write.
//!
//! A full control socket is handled like a full ring (see [`super::ring`]): with
//! `LLT_RING_FULL=block` the send waits, bounded by 200 ms without the socket becoming
//! writable (counted the same way); after such a stall later sends try once and do not wait
//! until one goes through again.

use core::sync::atomic::{AtomicBool, Ordering};

use logtap_protocol::tap::{FLAG_CONTINUED, Header, Kind, MAX_DATA_PAYLOAD};

use super::payload::{GATHER_MAX, Payload};
use super::{connection, loss, ring};
use crate::own_fds::{self, Slot};
use crate::process::{Route, pid, reserve_seq};
use crate::sys;

/// One `poll` of a DATA send waiting for a full socket, in ms (= the ring's round cap).
const POLL_ROUND_MS: i32 = 5;
/// Rounds after which a DATA send stops waiting whatever the clock says (a clock stepped
/// back, or a socket that polls writable and still refuses).
const MAX_POLL_ROUNDS: u32 = 1000;

/// Set when a DATA send waited [`ring::STALL_NS`] for a full socket in vain: later sends
/// do not wait until one goes through again (the agent is stopped, dead or overwhelmed).
static SOCKET_STALLED: AtomicBool = AtomicBool::new(false);

/// Sends one DATA frame; on a dead connection marks it lost. When the socket is full and
/// `may_wait`, waits for it to become writable — unless an earlier wait stalled and no send went
/// through since — in `poll` rounds of [`POLL_ROUND_MS`], counted like the ring's
/// (`ring::wait_for_room`): a wait that sees no room for [`ring::STALL_NS`] of
/// rounds (or [`ring::WAIT_MAX_NS`] of wall time) gives up and sets that stall.
fn send_data(fd: i32, header: &Header, chunk: &[u8], may_wait: bool) -> Result<(), i32> {
    use ring::{ROUND_CAP_NS, STALL_NS, WAIT_MAX_NS};
    let bytes = header.encode();
    let mut since: Option<u64> = None;
    let mut stalled = 0u64;
    let mut rounds = 0u32;
    loop {
        match sys::send_datagram(fd, &[&bytes, chunk], &[]) {
            Ok(_) => {
                if SOCKET_STALLED.load(Ordering::Relaxed) {
                    SOCKET_STALLED.store(false, Ordering::Relaxed);
                }
                return Ok(());
            }
            Err(libc::EAGAIN) if may_wait && !SOCKET_STALLED.load(Ordering::Relaxed) => {
                let t0 = sys::now_ns();
                let started = *since.get_or_insert(t0);
                let ready = sys::wait_writable(fd, POLL_ROUND_MS);
                let t1 = sys::now_ns();
                rounds = rounds.saturating_add(1);
                stalled = if ready {
                    0
                } else {
                    stalled.saturating_add(t1.saturating_sub(t0).min(ROUND_CAP_NS))
                };
                // `MAX_POLL_ROUNDS` also ends a socket that polls writable but keeps refusing.
                if stalled >= STALL_NS
                    || t1.saturating_sub(started) >= WAIT_MAX_NS
                    || rounds >= MAX_POLL_ROUNDS
                {
                    SOCKET_STALLED.store(true, Ordering::Relaxed);
                    crate::debug!(
                        "the agent does not read its socket: dropping copies until it does"
                    );
                    return Err(libc::EAGAIN);
                }
            }
            Err(e) => {
                if e != libc::EAGAIN && e != libc::ENOBUFS && e != libc::ENOMEM {
                    connection::hung_up();
                }
                return Err(e);
            }
        }
    }
}

/// The socket transport (or no ring): DATA frames of at most 64 KiB, `CONTINUED` on all but
/// the last part of a write. Returns how many leading bytes were sent.
pub fn deliver_frames(
    route: Route,
    data: &Payload<'_>,
    len: usize,
    now: u64,
    connected: bool,
) -> usize {
    // A small vectored write travels as one frame (and is counted as one when dropped).
    if let Payload::Iov(_) = data
        && len <= GATHER_MAX
    {
        let mut gathered = [0u8; GATHER_MAX];
        if let Some(bytes) = data.gather(len, &mut gathered) {
            return send_frames(route, &Payload::One(bytes), bytes.len(), now, connected);
        }
    }
    send_frames(route, data, len, now, connected)
}

fn send_frames(route: Route, data: &Payload<'_>, len: usize, now: u64, connected: bool) -> usize {
    let k = data.chunk_count(len, MAX_DATA_PAYLOAD);
    let count_loss = |frames: usize, bytes: usize| {
        if !route.suppressed {
            loss::add(
                route.stream as u8,
                u64::try_from(frames).unwrap_or(u64::MAX),
                u64::try_from(bytes).unwrap_or(u64::MAX),
            );
        }
    };
    if !connected {
        count_loss(k, len);
        return 0;
    }
    let _errno = sys::ErrnoGuard::save();
    let fd = own_fds::get(Slot::Control);
    // Report earlier drops before the next data, so the agent sees the gap where it was.
    if loss::pending() && loss::report(fd, now).is_err() {
        count_loss(k, len);
        return 0;
    }
    let seq0 = reserve_seq(u32::try_from(k).unwrap_or(u32::MAX));
    // The parts of a write larger than one frame always wait (bounded), so that a write is not
    // cut in the middle; every send waits with `LLT_RING_FULL=block` (the default).
    let may_wait = k > 1 || ring::blocking();
    let mut sent = 0usize;
    for (i, chunk) in data.chunks(len, MAX_DATA_PAYLOAD).enumerate() {
        let header = Header {
            kind: Kind::Data,
            stream: Some(route.stream),
            flags: if i.saturating_add(1) < k {
                FLAG_CONTINUED
            } else {
                0
            },
            pid: pid(),
            seq: seq0.wrapping_add(u32::try_from(i).unwrap_or(0)),
            time_ns: now,
            file_index: u32::from(route.file_index),
            payload_len: u32::try_from(chunk.len()).unwrap_or(0),
        };
        if send_data(fd, &header, chunk, may_wait).is_err() {
            count_loss(k.saturating_sub(i), len.saturating_sub(sent));
            break;
        }
        sent = sent.saturating_add(chunk.len());
    }
    sent
}

/// In a forked child: the parent's stall says nothing about the child's connection.
pub fn forget_in_child() {
    SOCKET_STALLED.store(false, Ordering::Relaxed);
}
