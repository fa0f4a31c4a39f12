//! One tapped process (a "peer"): its control connection, its ring, its line assemblers.
//!
//! Each peer is one lightweight task. It wakes when
//! - the control socket is readable: HELLO (with the ring memfd and eventfd), DATA (writes
//!   without a ring, or too large for it), LOSS, FILE frames;
//! - the peer's eventfd is written (a producer committed while we announced sleep);
//! - its sweep timer fires: every [`SWEEP_BUSY`] while something waits (a partial line, a
//!   reservation not yet committed), else every [`SWEEP_IDLE`] as a safety net;
//! - the agent stops.
//!
//! Draining is synchronous (shared memory) and bounded per pass, then the entries go to the
//! pipeline with an `await` — the backpressure point: a peer whose entries cannot be taken
//! stops draining and its ring fills. A process whose ring is full waits for room while the
//! ring makes progress (`LLT_RING_FULL=block`, the default): its `tail` moves, or the agent's
//! keeper thread beats the ring's heartbeat while the agent delivers (see
//! [`crate::record::ring_release`]); once the agent has made no progress for 5 s, the heartbeat stops
//! and the interceptor drops and counts. Drops are
//! counted in the metrics and logged per peer, with the process's pid and comm
//! ([`super::drop_log`]). When the control socket
//! closes (the process exited or crashed) the ring is drained to the end: it outlives the
//! process. A peer that sends a bad frame or whose ring is inconsistent is dropped and
//! counted; the others go on.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use logtap_protocol::ring::ConsumerOptions;
use logtap_protocol::tap::{self, FLAG_CONTINUED, FileAnnounce, Hello, Kind, Loss};
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;

use super::access::{META_CONTRADICTED, PID_MISMATCH, PID_NOT_VISIBLE};
use super::drop_log::DropLog;
use super::identity::{Identity, IdentitySettings, PeerMeta, PeerPid};
use super::ring_reader::{Pass, PassError, RingReader};
use super::streams::{StreamError, Streams};
use crate::metrics::{DropReason, METRICS};
use crate::pipeline::Ingest;
use crate::pipeline::enrich::{Enricher, Origin, PodNames};
use crate::pipeline::multiline::Multiline;
use crate::sys;

/// Sweep period while a partial line or an uncommitted reservation waits.
pub const SWEEP_BUSY: Duration = Duration::from_millis(100);
/// Sweep period of an idle peer (wake-ups come from the eventfd).
pub const SWEEP_IDLE: Duration = Duration::from_secs(1);
/// After a pass that found records, the peer polls the ring this often, for [`LINGER_ROUNDS`]
/// empty rounds, before it announces sleep. A busy process thus pays no eventfd write per
/// `write()` (measured: 30× the untapped cost without lingering, 1.7× with), at the price of
/// at most a few milliseconds of latency.
const LINGER: Duration = Duration::from_millis(1);
/// Empty polls before a lingering peer goes back to sleeping on its eventfd.
const LINGER_ROUNDS: u8 = 3;
/// A pass that found this many records means the process writes faster than a [`LINGER`]
/// pause can afford (a 1 MiB ring holds 8,192 small records, ≈ 2 ms of a full-speed write
/// loop): the peer then drains again as soon as the runtime lets it, instead of sleeping.
const HOT_RECORDS: u64 = 512;
/// Entries bytes gathered before they are handed to the pipeline mid-drain.
const HANDOFF_BYTES: usize = 64 * 1024;

/// Settings shared by all peers.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    pub max_line_bytes: usize,
    pub partial_flush: Duration,
    pub ring: ConsumerOptions,
    /// How each stream's bytes become records (lines, or multi-line events).
    pub multiline: Arc<Multiline>,
    /// How peers' pids and pod names are checked (`peer_pid`, `peer_meta`).
    pub identity: IdentitySettings,
    /// Who is served, checked at accept (`socket_uid`, `socket_gid`).
    pub admit: super::access::AccessPolicy,
}

/// Why a peer was dropped.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("bad control frame: {0}")]
    Frame(#[from] tap::TapError),
    #[error("control frame of more than {} bytes", tap::MAX_FRAME_LEN)]
    Oversized,
    #[error("{0:?} frame before HELLO")]
    NoHello(Kind),
    #[error("HELLO announces a ring but carries {0} file descriptor(s), not 2")]
    MissingRingFds(usize),
    #[error("HELLO's descriptors were cut: the agent is out of file descriptors (RLIMIT_NOFILE)")]
    FdLimit,
    #[error("HELLO claims pid {claimed}, the kernel says {kernel} (SO_PEERCRED)")]
    PidMismatch { claimed: u32, kernel: u32 },
    #[error("ring rejected: {0}")]
    Ring(#[from] logtap_protocol::ring::RingError),
    #[error(transparent)]
    Pass(#[from] PassError),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
}

/// Everything of a peer but its file descriptors.
struct Peer {
    settings: Arc<PeerSettings>,
    streams: Streams,
    ring: Option<RingReader>,
    /// The next `seq` expected from the process (frames and ring records share the sequence).
    expected: Option<u32>,
    drops: DropLog,
    /// What the kernel (and the kubelet) say of the peer, read at accept.
    identity: Identity,
}

/// Why the peer's loop woke.
enum Wake {
    Control,
    Event,
    Sweep,
    Stop,
}

/// Serves one accepted connection until it closes, is dropped, or the agent stops.
pub async fn run(
    sock: OwnedFd,
    settings: Arc<PeerSettings>,
    enricher: Enricher,
    ingest: Ingest,
    stop: CancellationToken,
) {
    METRICS.peers.fetch_add(1, Relaxed);
    METRICS.peers_total.fetch_add(1, Relaxed);
    let identity = read_identity(&sock, &settings.identity);
    let cred = identity.kernel.pid;
    let streams = Streams::new(enricher, settings.max_line_bytes, settings.partial_flush)
        .with_multiline(Arc::clone(&settings.multiline));
    let mut peer = Peer {
        settings,
        streams,
        ring: None,
        expected: None,
        drops: DropLog::default(),
        identity,
    };
    match serve(&mut peer, sock, &ingest, &stop).await {
        Ok(()) => tracing::debug!(pid = peer.pid(), "tap peer finished"),
        Err(PeerError::PidMismatch { claimed, kernel }) => {
            METRICS.peers_rejected.fetch_add(1, Relaxed);
            METRICS.peers_pid_mismatch.fetch_add(1, Relaxed);
            METRICS.dropped(DropReason::BadPeer, 1, 0);
            if let Some(n) = PID_MISMATCH.hit(Instant::now()) {
                tracing::warn!(
                    claimed_pid = claimed,
                    peer_cred_pid = kernel,
                    uid = peer.identity.kernel.uid,
                    peers = n,
                    "dropping tap peer: its HELLO claims another process's pid \
                     (logtap_tap_peers_pid_mismatch_total; logged at most once per 10 s)"
                );
            }
        }
        // Counted and said (once per interval) where the descriptors were found cut.
        Err(PeerError::FdLimit) => {}
        Err(e) => {
            METRICS.peers_rejected.fetch_add(1, Relaxed);
            METRICS.dropped(DropReason::BadPeer, 1, 0);
            tracing::warn!(pid = peer.pid(), peer_cred_pid = cred, error = %e, "dropping tap peer");
        }
    }
    // Whatever happened, what was read is delivered.
    peer.sweep(); // and the ring's drops since the last sweep are counted: nobody reads them later
    peer.log_drops(true);
    peer.streams.finish();
    let _ = peer.handoff(&ingest).await;
    METRICS.peers.fetch_sub(1, Relaxed);
}

async fn serve(
    peer: &mut Peer,
    sock: OwnedFd,
    ingest: &Ingest,
    stop: &CancellationToken,
) -> Result<(), PeerError> {
    let sock = sys::register_readable(sock)?;
    let mut evfd: Option<AsyncFd<File>> = None;
    let mut buf = vec![0u8; tap::MAX_FRAME_LEN + 1];
    let mut lingers_left: u8 = 0;
    let mut hot = false;
    let mut last_sweep = Instant::now();
    loop {
        let sweep = if lingers_left > 0 {
            LINGER
        } else if peer.busy() {
            SWEEP_BUSY
        } else {
            SWEEP_IDLE
        };
        let wake = if hot && !stop.is_cancelled() {
            // Give the other tasks their turn, then read what the socket queued (without
            // waiting) and drain again; partial lines and losses still get their sweep.
            tokio::task::yield_now().await;
            if last_sweep.elapsed() >= SWEEP_BUSY {
                peer.sweep();
                last_sweep = Instant::now();
            }
            Wake::Control
        } else {
            tokio::select! {
                () = stop.cancelled() => Wake::Stop,
                r = sock.readable() => { r?.clear_ready(); Wake::Control }
                r = readable(evfd.as_ref()) => { r?.clear_ready(); Wake::Event }
                () = tokio::time::sleep(sweep) => Wake::Sweep,
            }
        };
        let mut open = true;
        match wake {
            Wake::Control => open = read_frames(peer, &sock, &mut evfd, &mut buf)?,
            Wake::Event => {
                if let Some(fd) = &evfd {
                    // Reset the counter; WouldBlock just means another wake-up took it.
                    let _ = fd.get_ref().read(&mut [0u8; 8]);
                }
            }
            Wake::Sweep if lingers_left > 0 && last_sweep.elapsed() < SWEEP_BUSY => {}
            Wake::Sweep => {
                peer.sweep();
                last_sweep = Instant::now();
            }
            Wake::Stop => {
                // Stop reading new work: take what is queued, drain the ring, end.
                read_frames(peer, &sock, &mut evfd, &mut buf)?;
                open = false;
            }
        }
        // The last lingering round (and every pass of a sleeping peer) announces sleep.
        let read_before = peer.ring.as_mut().map_or(0, |r| {
            r.set_lingering(lingers_left > 1);
            r.records_read()
        });
        // A closed peer's ring still holds what it committed: drain it to the end first.
        if !drain(peer, &sock, &mut evfd, &mut buf, ingest, open).await? {
            return Ok(());
        }
        let found = peer
            .ring
            .as_ref()
            .map_or(0, |r| r.records_read().saturating_sub(read_before));
        hot = found >= HOT_RECORDS;
        lingers_left = if found > 0 {
            LINGER_ROUNDS
        } else {
            lingers_left.saturating_sub(1)
        };
        if peer.handoff(ingest).await.is_err() {
            return Ok(()); // the pipeline is closed: the agent is stopping
        }
    }
}

/// Drains the ring; on a `seq` gap reads the control socket first (while it is open), since a
/// frame sent before the held record may fill it. Returns whether the socket is still open.
async fn drain(
    peer: &mut Peer,
    sock: &AsyncFd<OwnedFd>,
    evfd: &mut Option<AsyncFd<File>>,
    buf: &mut [u8],
    ingest: &Ingest,
    mut open: bool,
) -> Result<bool, PeerError> {
    while peer.drain_ring(ingest).await? {
        if open {
            open = read_frames(peer, sock, evfd, buf)?;
        }
        if let Some(ring) = peer.ring.as_mut() {
            ring.gap_checked();
        }
    }
    Ok(open)
}

/// Waits until `fd` is readable; never, if there is none.
async fn readable(
    fd: Option<&AsyncFd<File>>,
) -> io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, File>> {
    match fd {
        Some(fd) => fd.readable().await,
        None => std::future::pending().await,
    }
}

/// Reads every queued frame. Returns `Ok(false)` when the peer closed the connection.
fn read_frames(
    peer: &mut Peer,
    sock: &AsyncFd<OwnedFd>,
    evfd: &mut Option<AsyncFd<File>>,
    buf: &mut [u8],
) -> Result<bool, PeerError> {
    loop {
        let got = match sys::recv_with_fds(sock.get_ref().as_fd(), buf) {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if got.len == 0 && got.fds.is_empty() {
            return Ok(false);
        }
        if got.truncated || got.len > tap::MAX_FRAME_LEN {
            return Err(PeerError::Oversized);
        }
        if got.fds_truncated && got.fds.len() < sys::MAX_FDS {
            // Room for more, yet cut (MSG_CTRUNC): the kernel could not install them (EMFILE).
            // A peer that sent more than MAX_FDS is cut too, with MAX_FDS received: not this.
            super::capacity::limit_reached("descriptors passed with a HELLO were cut");
            return Err(PeerError::FdLimit);
        }
        let frame = tap::decode_frame(&buf[..got.len])?;
        let h = frame.header;
        tracing::trace!(seq = h.seq, kind = ?h.kind, expected = ?peer.expected, "frame");
        peer.saw(h.seq);
        match h.kind {
            Kind::Hello => {
                let hello = Hello::decode(frame.payload)?;
                if let Some(fd) = peer.hello(hello, got.fds)? {
                    sys::set_nonblocking(fd.as_fd())?;
                    *evfd = Some(sys::register_readable(File::from(fd))?);
                }
            }
            _ if peer.streams.origin().is_none() => return Err(PeerError::NoHello(h.kind)),
            Kind::Data => {
                // Writes before this one may still sit in the ring: take them first.
                peer.drain_before(h.seq)?;
                let stream = h.stream.map(|s| s as u8).unwrap_or(0);
                let continued = h.flags & FLAG_CONTINUED != 0;
                let file = u16::try_from(h.file_index).unwrap_or(u16::MAX);
                peer.streams.write(
                    h.pid,
                    stream,
                    file,
                    continued,
                    h.time_ns,
                    frame.payload,
                    None,
                )?;
            }
            Kind::Loss => {
                let loss = Loss::decode(frame.payload)?;
                METRICS.dropped(DropReason::InterceptorLoss, loss.frames, loss.bytes);
                peer.drops.loss_frame(loss.frames, loss.bytes);
                peer.log_drops(false);
            }
            Kind::File => {
                let f = FileAnnounce::decode(frame.payload)?;
                peer.streams.file(f.index, f.path)?;
            }
        }
    }
}

/// Reads the peer's credentials and, where its pid is visible, its container (see
/// [`super::identity`]). The pidfd the kernel took at connect makes the cgroup read safe from
/// pid reuse; on kernels without `SO_PEERPIDFD` (before 6.5) the read happens right at accept,
/// a window of microseconds.
fn read_identity(sock: &OwnedFd, settings: &IdentitySettings) -> Identity {
    let cred = sys::peer_cred(sock.as_fd()).unwrap_or((0, u32::MAX, u32::MAX));
    if cred.0 == 0 {
        METRICS.peers_pid_not_visible.fetch_add(1, Relaxed);
        if let Some(n) = PID_NOT_VISIBLE.hit(Instant::now()) {
            let then = match settings.peer_meta {
                PeerMeta::Trust => "their HELLO pids are taken as claimed",
                PeerMeta::Verify => {
                    "their HELLO pids are taken as claimed and their pod names marked \
                     meta_claimed (run the agent with hostPID, or shareProcessNamespace)"
                }
            };
            tracing::info!(
                peers = n,
                "tap peers in a PID namespace the agent cannot see (SO_PEERCRED pid 0): {then}"
            );
        }
    }
    let pidfd = sys::peer_pidfd(sock.as_fd()).ok();
    Identity::read(settings, cred, || {
        pidfd.as_ref().is_none_or(|fd| sys::pidfd_alive(fd.as_fd()))
    })
}

impl Peer {
    fn pid(&self) -> u32 {
        self.streams.origin().map_or(0, |o| o.pid)
    }

    /// Takes a HELLO; returns the eventfd to watch when a ring came with it.
    fn hello(&mut self, hello: Hello, fds: Vec<OwnedFd>) -> Result<Option<OwnedFd>, PeerError> {
        let host = if hello.hostname.is_empty() {
            self.streams.default_host().to_owned()
        } else {
            hello.hostname.clone()
        };
        tracing::debug!(pid = hello.pid, comm = %hello.comm, ring = hello.ring, "tap peer HELLO");
        let settings = &self.settings.identity;
        let kernel = &self.identity.kernel;
        let pid_from_kernel = settings.peer_pid == PeerPid::Kernel && kernel.pid != 0;
        if pid_from_kernel && hello.pid != kernel.pid {
            return Err(PeerError::PidMismatch {
                claimed: hello.pid,
                kernel: kernel.pid,
            });
        }
        let agent_node = self.streams.node_name().map(str::to_owned);
        let decided = self.identity.pod_names(
            settings.peer_meta,
            PodNames::from_meta(&hello.meta),
            agent_node.as_deref(),
        );
        if decided.contradicted {
            METRICS.peers_meta_contradicted.fetch_add(1, Relaxed);
            if let Some(n) = META_CONTRADICTED.hit(Instant::now()) {
                tracing::warn!(
                    pid = kernel.pid,
                    container_id = self.identity.kernel.container_id.as_deref().unwrap_or(""),
                    peers = n,
                    "a tap peer's POD_NAME/POD_NAMESPACE/CONTAINER_NAME contradict its \
                     container's (kubelet names): its records carry the verified names \
                     (logtap_tap_peers_meta_contradicted_total; logged at most once per 10 s)"
                );
            }
        }
        if decided.claimed {
            METRICS.peers_meta_claimed.fetch_add(1, Relaxed);
        }
        self.streams.set_origin(
            Origin {
                pid: hello.pid,
                comm: hello.comm,
                host,
                pod: decided.pod,
                container_id: self.identity.kernel.container_id.clone(),
                meta_claimed: decided.claimed,
                pid_from_kernel,
            },
            hello.files,
        );
        if !hello.ring {
            return Ok(None);
        }
        let n = fds.len();
        let mut fds = fds.into_iter();
        let (Some(memfd), Some(eventfd)) = (fds.next(), fds.next()) else {
            return Err(PeerError::MissingRingFds(n));
        };
        if let Some(old) = self.ring.as_mut() {
            // A second ring on one connection: what the old one brought is pinned to it.
            old.hand_off(&mut self.streams);
        }
        self.ring = Some(RingReader::open(memfd, self.settings.ring)?);
        Ok(Some(eventfd))
    }

    /// A frame with this `seq` was read: the ring's records after it are in order.
    fn saw(&mut self, seq: u32) {
        let next = seq.wrapping_add(1);
        if self
            .expected
            .is_none_or(|e| (next.wrapping_sub(e) as i32) > 0)
        {
            self.expected = Some(next);
        }
    }

    /// Whether something waits for the sweep: a partial line or a ring backlog.
    fn busy(&self) -> bool {
        self.streams.has_pending() || self.ring.as_ref().is_some_and(RingReader::has_backlog)
    }

    fn sweep(&mut self) {
        self.streams.flush_stale(Instant::now());
        if let Some(ring) = &mut self.ring {
            let new = ring.report_losses();
            self.drops.ring(new);
        }
        self.log_drops(false);
    }

    /// Logs the drops learnt since the last line (rate-limited; all of them when `last_call`).
    fn log_drops(&mut self, last_call: bool) {
        let (pid, comm) = self
            .streams
            .origin()
            .map_or((0, ""), |o| (o.pid, o.comm.as_str()));
        self.drops.flush(pid, comm, Instant::now(), last_call);
    }

    /// Drains the ring, handing entries to the pipeline as they accumulate. Returns `true` when
    /// it stopped at a `seq` gap (read the socket, then call again).
    async fn drain_ring(&mut self, ingest: &Ingest) -> Result<bool, PeerError> {
        loop {
            let Some(ring) = self.ring.as_mut() else {
                return Ok(false);
            };
            match ring.pass(&mut self.streams, &mut self.expected, None, HANDOFF_BYTES)? {
                Pass::Empty | Pass::Reached => return Ok(false),
                Pass::Gap => return Ok(true),
                Pass::Handoff => {
                    if self.handoff(ingest).await.is_err() {
                        return Ok(false);
                    }
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// Applies the ring's records written before `seq` (a DATA frame's), keeping write order.
    fn drain_before(&mut self, seq: u32) -> Result<(), PeerError> {
        if let Some(ring) = self.ring.as_mut() {
            ring.pass(&mut self.streams, &mut self.expected, Some(seq), usize::MAX)?;
        }
        Ok(())
    }

    /// Sends the gathered entries to the pipeline (waits while it is full), their ring
    /// positions pinned, and lets the ring go as far as the peer holds nothing any more. A line
    /// still waiting for its newline that holds a pressured ring goes out as partial.
    async fn handoff(&mut self, ingest: &Ingest) -> Result<(), crate::pipeline::Closed> {
        loop {
            let flush = self
                .ring
                .as_mut()
                .is_some_and(|r| r.hand_off(&mut self.streams));
            let batch = self.streams.take();
            METRICS.records_in.fetch_add(batch.records, Relaxed);
            METRICS.bytes_in.fetch_add(batch.tapped_bytes, Relaxed);
            let pressured = self.ring.as_ref().is_some_and(|r| r.tracker().pressured());
            for mut entries in batch.entries {
                entries.pressured = pressured;
                ingest.send(entries).await?;
            }
            if !flush {
                return Ok(());
            }
            tracing::debug!(
                pid = self.pid(),
                "ring more than half held by a line waiting for its newline: sent as partial"
            );
            self.streams.flush_pending_now();
        }
    }
}
