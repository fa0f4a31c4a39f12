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
//! stops draining, its ring fills, and the interceptor counts drops. When the control socket
//! closes (the process exited or crashed) the ring is drained to the end: it outlives the
//! process. A peer that sends a bad frame or whose ring is inconsistent is dropped and
//! counted; the others go on.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use logtap_protocol::ring::{Consumer, ConsumerOptions, RECORD_CONTINUED, RingCounters};
use logtap_protocol::tap::{self, FLAG_CONTINUED, FileAnnounce, Hello, Kind, Loss};
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;

use crate::metrics::{DropReason, METRICS};
use crate::pipeline::Ingest;
use crate::pipeline::enrich::{Enricher, Origin, PodNames, StreamContext};
use crate::pipeline::lines::LineAssembler;
use crate::record::Entries;
use crate::sys;

/// Sweep period while a partial line or an uncommitted reservation waits.
pub const SWEEP_BUSY: Duration = Duration::from_millis(100);
/// Sweep period of an idle peer (wake-ups come from the eventfd).
pub const SWEEP_IDLE: Duration = Duration::from_secs(1);
/// Entries bytes gathered before they are handed to the pipeline mid-drain.
const HANDOFF_BYTES: usize = 64 * 1024;

/// Settings shared by all peers.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    pub max_line_bytes: usize,
    pub partial_flush: Duration,
    pub ring: ConsumerOptions,
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
    #[error("ring rejected: {0}")]
    Ring(#[from] logtap_protocol::ring::RingError),
    #[error("record with unknown stream {0}")]
    Stream(u8),
    #[error("control socket: {0}")]
    Io(#[from] io::Error),
}

/// The per-stream state: key is (pid, stream, file index).
struct StreamState {
    assembler: LineAssembler,
    ctx: StreamContext,
    /// Time of the first part of a write still CONTINUED.
    continued_time: Option<u64>,
}

struct Ring {
    consumer: Consumer,
    seen: RingCounters,
}

/// Everything of a peer but its file descriptors.
struct Peer {
    settings: Arc<PeerSettings>,
    enricher: Enricher,
    origin: Option<Origin>,
    files: HashMap<u32, String>,
    streams: HashMap<(u32, u8, u16), StreamState>,
    ring: Option<Ring>,
    out: Vec<Entries>,
    out_bytes: usize,
    tapped_bytes: u64,
    payload: Vec<u8>,
}

/// Why the peer's loop woke.
enum Wake {
    Control,
    Event,
    Sweep,
    Stop,
}

/// Serves one accepted connection until it closes, is dropped, or the agent stops.
pub async fn run(sock: OwnedFd, settings: Arc<PeerSettings>, enricher: Enricher, ingest: Ingest, stop: CancellationToken) {
    METRICS.peers.fetch_add(1, Relaxed);
    METRICS.peers_total.fetch_add(1, Relaxed);
    let cred = sys::peer_cred(sock.as_fd()).map(|c| c.0).unwrap_or(0);
    let mut peer = Peer {
        settings,
        enricher,
        origin: None,
        files: HashMap::new(),
        streams: HashMap::new(),
        ring: None,
        out: Vec::new(),
        out_bytes: 0,
        tapped_bytes: 0,
        payload: Vec::new(),
    };
    match serve(&mut peer, sock, &ingest, &stop).await {
        Ok(()) => tracing::debug!(pid = peer.pid(), "tap peer finished"),
        Err(e) => {
            METRICS.peers_rejected.fetch_add(1, Relaxed);
            METRICS.dropped(DropReason::BadPeer, 1, 0);
            tracing::warn!(pid = peer.pid(), peer_cred_pid = cred, error = %e, "dropping tap peer");
        }
    }
    // Whatever happened, what was read is delivered.
    peer.finish();
    let _ = peer.handoff(&ingest).await;
    METRICS.peers.fetch_sub(1, Relaxed);
}

async fn serve(peer: &mut Peer, sock: OwnedFd, ingest: &Ingest, stop: &CancellationToken) -> Result<(), PeerError> {
    let sock = sys::register_readable(sock)?;
    let mut evfd: Option<AsyncFd<File>> = None;
    let mut buf = vec![0u8; tap::MAX_FRAME_LEN + 1];
    loop {
        let sweep = if peer.busy() { SWEEP_BUSY } else { SWEEP_IDLE };
        let wake = tokio::select! {
            () = stop.cancelled() => Wake::Stop,
            r = sock.readable() => { r?.clear_ready(); Wake::Control }
            r = readable(evfd.as_ref()) => { r?.clear_ready(); Wake::Event }
            () = tokio::time::sleep(sweep) => Wake::Sweep,
        };
        match wake {
            Wake::Control => {
                let open = read_frames(peer, &sock, &mut evfd, &mut buf)?;
                if !open {
                    // The process is gone (or hung up): its ring still holds what it committed.
                    peer.drain_ring(ingest).await?;
                    return Ok(());
                }
            }
            Wake::Event => {
                if let Some(fd) = &evfd {
                    // Reset the counter; WouldBlock just means another wake-up took it.
                    let _ = fd.get_ref().read(&mut [0u8; 8]);
                }
            }
            Wake::Sweep => peer.sweep(),
            Wake::Stop => {
                // Stop reading new work: take what is queued, drain the ring, end.
                read_frames(peer, &sock, &mut evfd, &mut buf)?;
                peer.drain_ring(ingest).await?;
                return Ok(());
            }
        }
        peer.drain_ring(ingest).await?;
        if peer.handoff(ingest).await.is_err() {
            return Ok(()); // the pipeline is closed: the agent is stopping
        }
    }
}

/// Waits until `fd` is readable; never, if there is none.
async fn readable(fd: Option<&AsyncFd<File>>) -> io::Result<tokio::io::unix::AsyncFdReadyGuard<'_, File>> {
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
        let frame = tap::decode_frame(&buf[..got.len])?;
        let h = frame.header;
        match h.kind {
            Kind::Hello => {
                let hello = Hello::decode(frame.payload)?;
                if let Some(fd) = peer.hello(hello, got.fds)? {
                    sys::set_nonblocking(fd.as_fd())?;
                    *evfd = Some(sys::register_readable(File::from(fd))?);
                }
            }
            _ if peer.origin.is_none() => return Err(PeerError::NoHello(h.kind)),
            Kind::Data => {
                // Writes before this one may still sit in the ring: take them first.
                peer.drain_ring_now()?;
                let stream = h.stream.map(|s| s as u8).unwrap_or(0);
                let continued = h.flags & FLAG_CONTINUED != 0;
                let file = u16::try_from(h.file_index).unwrap_or(u16::MAX);
                peer.write(h.pid, stream, file, continued, h.time_ns, frame.payload)?;
            }
            Kind::Loss => {
                let loss = Loss::decode(frame.payload)?;
                METRICS.dropped(DropReason::InterceptorLoss, loss.frames, loss.bytes);
                tracing::warn!(pid = h.pid, records = loss.frames, bytes = loss.bytes,
                    "the interceptor dropped copies (agent too slow or away)");
            }
            Kind::File => {
                let f = FileAnnounce::decode(frame.payload)?;
                peer.file(f.index, f.path);
            }
        }
    }
}

impl Peer {
    fn pid(&self) -> u32 {
        self.origin.as_ref().map_or(0, |o| o.pid)
    }

    /// Takes a HELLO; returns the eventfd to watch when a ring came with it.
    fn hello(&mut self, hello: Hello, fds: Vec<OwnedFd>) -> Result<Option<OwnedFd>, PeerError> {
        let host = if hello.hostname.is_empty() {
            self.enricher.metadata().host.clone()
        } else {
            hello.hostname.clone()
        };
        tracing::debug!(pid = hello.pid, comm = %hello.comm, ring = hello.ring, "tap peer HELLO");
        let pod = PodNames::from_meta(&hello.meta);
        self.origin = Some(Origin { pid: hello.pid, comm: hello.comm, host, pod });
        for (i, path) in hello.files.into_iter().enumerate() {
            self.files.entry(i as u32).or_insert(path);
        }
        self.streams.clear(); // contexts are rebuilt with the new origin
        if !hello.ring {
            return Ok(None);
        }
        let n = fds.len();
        let mut fds = fds.into_iter();
        let (Some(memfd), Some(eventfd)) = (fds.next(), fds.next()) else {
            return Err(PeerError::MissingRingFds(n));
        };
        let consumer = Consumer::open(memfd, self.settings.ring)?;
        let seen = consumer.counters();
        self.ring = Some(Ring { consumer, seen });
        Ok(Some(eventfd))
    }

    fn file(&mut self, index: u32, path: String) {
        self.files.insert(index, path);
        // Records of this file made from now on carry the new name (and tag).
        self.streams.retain(|&(_, stream, idx), _| !(stream == 3 && u32::from(idx) == index));
    }

    /// Whether something waits for the sweep: a partial line or a ring backlog.
    fn busy(&self) -> bool {
        self.streams.values().any(|s| s.assembler.has_pending())
            || self.ring.as_ref().is_some_and(|r| r.consumer.backlog_slots() > 0)
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        let flush = self.settings.partial_flush;
        let Peer { streams, out, out_bytes, .. } = self;
        for st in streams.values_mut() {
            let StreamState { assembler, ctx, .. } = st;
            assembler.flush_stale(now, flush, &mut |line| {
                let e = entries_for(out, ctx);
                let before = e.buf.len();
                Enricher::encode(ctx, line, e);
                *out_bytes += e.buf.len() - before;
            });
        }
        if let Some(ring) = &mut self.ring {
            let c = ring.consumer.counters();
            let dropped = c.dropped_records.saturating_sub(ring.seen.dropped_records);
            if dropped > 0 {
                let bytes = c.dropped_bytes.saturating_sub(ring.seen.dropped_bytes);
                METRICS.dropped(DropReason::RingFull, dropped, bytes);
                tracing::warn!(pid = self.origin.as_ref().map_or(0, |o| o.pid), records = dropped,
                    "ring full: the process dropped copies of its writes");
            }
            let abandoned = c.abandoned_slots.saturating_sub(ring.seen.abandoned_slots);
            if abandoned > 0 {
                METRICS.dropped(DropReason::RingAbandoned, abandoned, 0);
            }
            ring.seen = c;
        }
    }

    /// Drains the ring to empty, handing entries to the pipeline as they accumulate.
    async fn drain_ring(&mut self, ingest: &Ingest) -> Result<(), PeerError> {
        loop {
            let more = self.drain_pass()?;
            if self.out_bytes >= HANDOFF_BYTES && self.handoff(ingest).await.is_err() {
                return Ok(());
            }
            if !more {
                return Ok(());
            }
            tokio::task::yield_now().await;
        }
    }

    /// Drains without handing off (before a DATA frame, to keep write order).
    fn drain_ring_now(&mut self) -> Result<(), PeerError> {
        while self.drain_pass()? {}
        Ok(())
    }

    /// Reads records until the ring is empty (returns false) or a hand-off is due (true).
    fn drain_pass(&mut self) -> Result<bool, PeerError> {
        let Some(mut ring) = self.ring.take() else { return Ok(false) };
        let mut payload = std::mem::take(&mut self.payload);
        let result = loop {
            match ring.consumer.next(&mut payload) {
                Ok(Some(m)) => {
                    let continued = m.flags & RECORD_CONTINUED != 0;
                    if let Err(e) = self.write(m.pid, m.stream, m.file_index, continued, m.time_ns, &payload) {
                        break Err(e);
                    }
                    if self.out_bytes >= HANDOFF_BYTES {
                        break Ok(true);
                    }
                }
                Ok(None) => {
                    if ring.consumer.prepare_sleep() {
                        break Ok(false);
                    }
                }
                Err(e) => break Err(PeerError::Ring(e)),
            }
        };
        self.payload = payload;
        if result.is_ok() {
            self.ring = Some(ring);
        }
        result
    }

    /// The bytes of one tapped write (or one part of it).
    fn write(&mut self, pid: u32, stream: u8, file: u16, continued: bool, time_ns: u64, bytes: &[u8]) -> Result<(), PeerError> {
        let name = match tap::Stream::from_u8(stream) {
            Some(s) => s.as_str(),
            None => return Err(PeerError::Stream(stream)),
        };
        self.tapped_bytes += bytes.len() as u64;
        let Peer { streams, out, out_bytes, origin, files, enricher, settings, .. } = self;
        let st = streams.entry((pid, stream, file)).or_insert_with(|| {
            let mut o = origin.clone().unwrap_or_default();
            o.pid = pid;
            let path = (stream == 3).then(|| files.get(&u32::from(file)).cloned().unwrap_or_default());
            StreamState {
                assembler: LineAssembler::new(settings.max_line_bytes),
                ctx: enricher.stream_context(&o, name, path.as_deref()),
                continued_time: None,
            }
        });
        let time = st.continued_time.unwrap_or(time_ns);
        st.continued_time = continued.then_some(time);
        let StreamState { assembler, ctx, .. } = st;
        assembler.push(time, bytes, Instant::now(), &mut |line| {
            let e = entries_for(out, ctx);
            let before = e.buf.len();
            Enricher::encode(ctx, line, e);
            *out_bytes += e.buf.len() - before;
        });
        Ok(())
    }

    /// The process is gone or the agent stops: pending tails become partial records.
    fn finish(&mut self) {
        let Peer { streams, out, .. } = self;
        for st in streams.values_mut() {
            let StreamState { assembler, ctx, .. } = st;
            assembler.finish(&mut |line| Enricher::encode(ctx, line, entries_for(out, ctx)));
        }
    }

    /// Sends the gathered entries to the pipeline (waits while it is full).
    async fn handoff(&mut self, ingest: &Ingest) -> Result<(), crate::pipeline::Closed> {
        let records: u64 = self.out.iter().map(|e| u64::from(e.records)).sum();
        METRICS.records_in.fetch_add(records, Relaxed);
        METRICS.bytes_in.fetch_add(std::mem::take(&mut self.tapped_bytes), Relaxed);
        self.out_bytes = 0;
        for entries in self.out.drain(..) {
            ingest.send(entries).await?;
        }
        Ok(())
    }
}

/// The entries being gathered for the tag of `ctx`.
fn entries_for<'a>(out: &'a mut Vec<Entries>, ctx: &StreamContext) -> &'a mut Entries {
    let i = match out.iter().position(|e| Arc::ptr_eq(&e.tag, &ctx.tag) || e.tag == ctx.tag) {
        Some(i) => i,
        None => {
            out.push(Entries::new(Arc::clone(&ctx.tag)));
            out.len() - 1
        }
    };
    &mut out[i]
}
