//! The control connection to the agent (`LLT_TARGET=socket:PATH`).
//!
//! State is three atomics, no lock: `STATE` (disconnected / connecting / connected),
//! `LAST_ATTEMPT` and `NEXT_CHECK` (ns timestamps). Writes that find the connection due for an
//! attempt race for it with a CAS on `STATE`; the winner connects, everyone else carries on
//! (ring records wait in the ring; DATA copies are counted as lost, or written for real on a
//! suppressed stream). So a missing agent costs one non-blocking `connect` per
//! `LLT_TARGET_RECONNECT`, never a blocked write.
//!
//! - First attempt: at once, at the first tapped write (which also creates the ring). While
//!   the process has never been connected and is younger than `LLT_TARGET_1STCONNECT` seconds
//!   (the seed's "time for the sidecar to come up": the window in which a missing agent is
//!   expected), a failed attempt is retried every [`FIRST_RETRY_NS`] (100 ms); afterwards every
//!   `LLT_TARGET_RECONNECT` seconds. Attempts ride on tapped writes (no thread, no timer), so a
//!   program that falls silent retries at its next write — or at exit. A forked child tries at
//!   once.
//! - At exit ([`connect_at_exit`]): a process that is not connected but has records waiting in
//!   its ring (or losses to report) makes one more attempt, outside the rate limit, so that the
//!   agent gets the ring (it drains a ring after its process is gone). A non-blocking `connect`
//!   to a missing or dead socket fails in microseconds: exit is never held up for an absent
//!   agent (bench/RESULTS.md).
//! - Connect: non-blocking `SOCK_SEQPACKET` socket, `connect`, HELLO (with the ring's memfd
//!   and eventfd by `SCM_RIGHTS`), pending LOSS, FILE frames for unannounced tap files, then
//!   the socket is `dup3`ed onto our control slot (HELLO is therefore always first on the wire,
//!   even for a thread that sends a DATA frame the moment the slot changes).
//! - Hang-up: noticed without a syscall per write — a `recv(MSG_PEEK)` at most once per
//!   second (by whichever tapped write crosses `NEXT_CHECK`), or an `EPIPE` of a DATA send. One
//!   reconnect attempt follows at once, then one per `LLT_TARGET_RECONNECT`.
//!
//! The DATA frames sent on this connection (`LLT_TRANSPORT=socket`, or no ring) are
//! [`super::frames`]'.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use logtap_protocol::tap::{self, Header, Kind};

use super::hello::{self, Scratch};
use super::loss;
use crate::config::{Config, Transport};
use crate::guard::Guard;
use crate::own_fds::{self, Slot};
use crate::process::{pid, reserve_seq};
use crate::statics::{AtomicState, Claimed};
use crate::{sys, tap_files};

crate::state_enum! {
    /// The control connection's state.
    enum Link {
        /// No agent holds our connection; an attempt is made when due.
        Disconnected = 0,
        /// One thread is connecting (it alone encodes the HELLO).
        Connecting = 1,
        /// An agent holds our connection.
        Connected = 2,
    }
}

/// How often a connected process checks that the agent is still there.
const CHECK_INTERVAL_NS: u64 = 1_000_000_000;
/// How long a write waits for another thread's connect to finish.
const CONNECT_WAIT_NS: u64 = 50_000_000;
/// Retry interval inside the `LLT_TARGET_1STCONNECT` window. A failed attempt (socket,
/// connect refused or no such file, close) costs ≈ 10 µs of the writing thread, so 10 a second
/// cost a chatty program 0.01 % of its time; 100 ms is also the order of a sidecar's start, so
/// a ring that is filling waits at most that long after the agent is there.
pub const FIRST_RETRY_NS: u64 = 100_000_000;

static STATE: AtomicState<Link> = AtomicState::new();
static LAST_ATTEMPT: AtomicU64 = AtomicU64::new(0);
static NEXT_CHECK: AtomicU64 = AtomicU64::new(0);
static LOAD_NS: AtomicU64 = AtomicU64::new(0);
/// Set after a hang-up or a fork: the next attempt is due at once.
static RETRY_NOW: AtomicBool = AtomicBool::new(false);
/// Whether the first attempt's failure was already reported (debug mode).
static FAILURE_REPORTED: AtomicBool = AtomicBool::new(false);
/// Whether this process (this fork generation) was ever connected: the
/// `LLT_TARGET_1STCONNECT` window of short retries applies only before.
static EVER_CONNECTED: AtomicBool = AtomicBool::new(false);

/// The HELLO's encoding buffer: claimed by the connecting thread (only one thread is
/// `Connecting` at a time, so the claim is always free there).
static SCRATCH: Claimed<Scratch> = Claimed::new(Scratch::new());

/// Records the load time (the origin of `LLT_TARGET_1STCONNECT`).
pub fn set_load_time(now: u64) {
    LOAD_NS.store(now, Ordering::Relaxed);
}

/// Whether an agent holds our connection right now.
#[inline]
pub fn is_connected() -> bool {
    STATE.load(Ordering::Acquire) == Link::Connected
}

fn attempt_due(cfg: &Config, now: u64) -> bool {
    if RETRY_NOW.load(Ordering::Relaxed) {
        return true;
    }
    let last = LAST_ATTEMPT.load(Ordering::Relaxed);
    // The first attempt is at once; `now < last`: the wall clock jumped back, do not wait for
    // it to catch up.
    if last == 0 || now < last {
        return true;
    }
    now >= last.saturating_add(retry_interval(cfg, now))
}

/// The wait after a failed attempt: [`FIRST_RETRY_NS`] inside the `LLT_TARGET_1STCONNECT`
/// window of a process that was never connected, else `LLT_TARGET_RECONNECT`.
fn retry_interval(cfg: &Config, now: u64) -> u64 {
    let window_end = LOAD_NS
        .load(Ordering::Relaxed)
        .saturating_add(cfg.first_connect_s.saturating_mul(1_000_000_000));
    if !EVER_CONNECTED.load(Ordering::Relaxed) && now < window_end {
        FIRST_RETRY_NS
    } else {
        cfg.reconnect_s.saturating_mul(1_000_000_000)
    }
}

/// Keeps the connection alive: connects when due, checks liveness when due. Returns whether
/// the process is connected. Called on tapped writes only; costs two loads normally.
///
/// The normal case (connected, check not due) is inlined into the write path: two loads and
/// compares, no call. Everything else is the out-of-line `maintain_slow`, whose conditions
/// are the same, so the split changes cost only, never behaviour.
#[inline]
pub fn maintain(cfg: &Config, now: u64) -> bool {
    if STATE.load(Ordering::Acquire) == Link::Connected {
        let due = NEXT_CHECK.load(Ordering::Relaxed);
        if now < due && now.saturating_add(CHECK_INTERVAL_NS) >= due {
            return true;
        }
    }
    maintain_slow(cfg, now)
}

#[cold]
#[inline(never)]
fn maintain_slow(cfg: &Config, now: u64) -> bool {
    match STATE.load(Ordering::Acquire) {
        Link::Connected => {
            let due = NEXT_CHECK.load(Ordering::Relaxed);
            if (now >= due || now.saturating_add(CHECK_INTERVAL_NS) < due)
                && NEXT_CHECK
                    .compare_exchange(
                        due,
                        now.saturating_add(CHECK_INTERVAL_NS),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                check(cfg, now);
            }
        }
        Link::Disconnected if attempt_due(cfg, now) => {
            attempt(cfg, now);
        }
        Link::Connecting => wait_while_connecting(),
        _ => {}
    }
    is_connected()
}

/// One connection attempt, if no other thread makes one right now. Returns whether this
/// thread made it.
fn attempt(cfg: &Config, now: u64) -> bool {
    if STATE
        .compare_exchange(
            Link::Disconnected,
            Link::Connecting,
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_err()
    {
        return false;
    }
    RETRY_NOW.store(false, Ordering::Relaxed);
    LAST_ATTEMPT.store(now.max(1), Ordering::Relaxed);
    let ok = connect(cfg, now);
    if ok {
        EVER_CONNECTED.store(true, Ordering::Relaxed);
    }
    STATE.store(
        if ok {
            Link::Connected
        } else {
            Link::Disconnected
        },
        Ordering::Release,
    );
    true
}

/// Another thread is connecting (a few syscalls, well under a millisecond): wait for it,
/// bounded, rather than drop this write's copy. A signal handler that interrupted the
/// connecting thread itself gives up after the bound.
fn wait_while_connecting() {
    let end = sys::now_ns().saturating_add(CONNECT_WAIT_NS);
    while STATE.load(Ordering::Acquire) == Link::Connecting && sys::now_ns() < end {
        sys::yield_now();
    }
}

/// The periodic check of a connected process: hang-up, pending LOSS, unannounced files.
fn check(cfg: &Config, now: u64) {
    let _errno = sys::ErrnoGuard::save();
    own_fds::verify();
    super::ring::refresh_wake_fd();
    let fd = own_fds::get(Slot::Control);
    if fd < 0 || sys::peer_hung_up(fd) {
        hung_up();
        // Try again right away: a restarted agent may already be listening.
        maintain(cfg, now);
        return;
    }
    let _ = loss::report(fd, now);
    announce_files(fd, now);
}

/// Marks the connection lost. The dead socket stays in its slot until a reconnect replaces
/// it, so its number is never handed to the app while a thread may still send on it.
pub fn hung_up() {
    if STATE
        .compare_exchange(
            Link::Connected,
            Link::Disconnected,
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_ok()
    {
        RETRY_NOW.store(true, Ordering::Relaxed);
        crate::debug!("the agent hung up; reconnecting");
    }
}

fn connect(cfg: &Config, now: u64) -> bool {
    let _errno = sys::ErrnoGuard::save();
    // Hooks pass through while a thread holds the guard, so only library code reaches here
    // with it held — the destructor's `connect_at_exit`: keep theirs.
    let _guard = if crate::guard::held() {
        None
    } else {
        match Guard::enter() {
            Some(g) => Some(g),
            None => return false,
        }
    };
    let ring = match cfg.transport {
        Transport::Ring => super::ring::get_or_create(cfg).is_some(),
        Transport::Socket => false,
    };
    let path = cfg.target_path.as_bytes();
    let sock = match sys::seqpacket_socket() {
        Ok(s) => s,
        Err(e) => {
            crate::debug!("cannot create a socket (errno {e})");
            return false;
        }
    };
    sys::enlarge_send_buffer(sock);
    if let Err(e) = sys::connect_unix(sock, path) {
        sys::close(sock);
        if !FAILURE_REPORTED.swap(true, Ordering::Relaxed) {
            crate::debug!(
                "cannot connect to target socket {} (errno {e}); retrying every {} ms until {} s after start, then every {} s",
                crate::debug::Bytes(path),
                FIRST_RETRY_NS / 1_000_000,
                cfg.first_connect_s,
                cfg.reconnect_s
            );
        }
        return false;
    }
    let sent = match SCRATCH.try_claim() {
        Some(mut scratch) => send_hello(sock, &mut scratch, ring, now),
        None => Err(libc::EBUSY),
    };
    if let Err(e) = sent {
        sys::close(sock);
        crate::debug!("cannot send HELLO (errno {e})");
        return false;
    }
    let _ = loss::report(sock, now);
    announce_files(sock, now);
    match own_fds::install(Slot::Control, sock) {
        Ok(_) => {
            FAILURE_REPORTED.store(false, Ordering::Relaxed);
            NEXT_CHECK.store(now.saturating_add(CHECK_INTERVAL_NS), Ordering::Relaxed);
            crate::debug!(
                "Successfully connected to target socket{}.",
                if ring { " (ring)" } else { " (DATA frames)" }
            );
            true
        }
        Err(_) => false,
    }
}

fn send_hello(sock: i32, scratch: &mut Scratch, ring: bool, now: u64) -> Result<(), i32> {
    tap_files::reset_announced();
    // Offer the ring only with both of its descriptors (one may have been lost, see
    // `own_fds::verify`); without them the process falls back to DATA frames.
    let (memfd, efd) = super::ring::fds();
    let fds = [memfd, efd];
    let ring = ring && memfd >= 0 && efd >= 0;
    let (len, files) = hello::encode(scratch, ring).map_err(|_| libc::EOVERFLOW)?;
    let payload = scratch.payload.get(..len).unwrap_or(&[]);
    let header = Header {
        kind: Kind::Hello,
        stream: None,
        flags: 0,
        pid: pid(),
        seq: reserve_seq(1),
        time_ns: now,
        file_index: 0,
        payload_len: u32::try_from(len).unwrap_or(0),
    }
    .encode();
    let fds: &[i32] = if ring { &fds } else { &[] };
    sys::send_datagram(sock, &[&header, payload], fds)?;
    for i in 0..files {
        tap_files::set_announced(i, true);
    }
    Ok(())
}

/// Sends a FILE frame for every tap file the agent does not know yet on this connection.
fn announce_files(fd: i32, now: u64) {
    for (index, path) in tap_files::unannounced() {
        if send_file(fd, index, path, now).is_err() {
            return;
        }
    }
}

fn send_file(fd: i32, index: usize, path: &[u8], now: u64) -> Result<(), i32> {
    let mut payload = [0u8; tap_files::MAX_PATH + 32];
    let n = tap::encode_file(&mut payload, u32::try_from(index).unwrap_or(0), path)
        .map_err(|_| libc::EOVERFLOW)?;
    let body = payload.get(..n).unwrap_or(&[]);
    let header = Header {
        kind: Kind::File,
        stream: None,
        flags: 0,
        pid: pid(),
        seq: reserve_seq(1),
        time_ns: now,
        file_index: u32::try_from(index).unwrap_or(0),
        payload_len: u32::try_from(n).unwrap_or(0),
    }
    .encode();
    sys::send_datagram(fd, &[&header, body], &[])?;
    tap_files::set_announced(index, true);
    Ok(())
}

/// A new tap file was registered: announce it now if connected (else the next HELLO will).
pub fn file_opened(index: u16) {
    if !is_connected() {
        return;
    }
    let _errno = sys::ErrnoGuard::save();
    let index = usize::from(index);
    if let Some(path) = tap_files::path(index) {
        let _ = send_file(own_fds::get(Slot::Control), index, path, sys::now_ns());
    }
}

/// At exit, not connected: one attempt outside the rate limit when the agent has something
/// to get — records waiting in the ring (it drains the ring after we are gone) or losses to
/// report. Bounded: a non-blocking `connect` and a few non-blocking sends.
pub fn connect_at_exit(cfg: &Config) {
    if is_connected() {
        // Is that agent still there? (Its death may not have been noticed yet: the check runs
        // at most once a second, on a write.) One recv(MSG_PEEK), at exit only.
        let fd = own_fds::get(Slot::Control);
        if fd >= 0 && !sys::peer_hung_up(fd) {
            return;
        }
        hung_up();
    }
    let waiting = super::ring::get().is_some_and(|p| p.backlog_words() > 0);
    if !waiting && !loss::pending() {
        return;
    }
    let now = sys::now_ns();
    if !attempt(cfg, now) {
        // Another thread is connecting right now: give it the usual bounded wait.
        wait_while_connecting();
    }
    if is_connected() {
        crate::debug!("connected at exit: the agent drains the ring");
    } else {
        crate::debug!(
            "no agent at exit: the ring's records are not delivered (suppressed ones are written where the program wrote them)"
        );
    }
}

/// At exit: report pending losses, waiting briefly for socket buffer space.
pub fn flush_at_exit() {
    if !is_connected() || !loss::pending() {
        return;
    }
    let _errno = sys::ErrnoGuard::save();
    let fd = own_fds::get(Slot::Control);
    for _ in 0..5 {
        if loss::report(fd, sys::now_ns()).is_ok() {
            return;
        }
        if !sys::wait_writable(fd, 20) {
            continue;
        }
    }
}

/// In a forked child: our copy of the parent's connection is closed; connect anew at once.
pub fn forget_in_child() {
    own_fds::close_slot(Slot::Control);
    STATE.store(Link::Disconnected, Ordering::Release);
    LAST_ATTEMPT.store(0, Ordering::Relaxed);
    RETRY_NOW.store(true, Ordering::Relaxed);
    FAILURE_REPORTED.store(false, Ordering::Relaxed);
    EVER_CONNECTED.store(false, Ordering::Relaxed);
}
