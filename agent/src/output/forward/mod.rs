//! The forward output: chunks to Fluentd / Fluent Bit `in_forward`, at least once.
//!
//! - [`link`] — one task per server keeping its connection up and carrying chunks.
//! - [`connection`] — one connection: connect (TCP/TLS), shared-key handshake, send, replies.
//! - [`retry`] — jittered exponential backoff and the weighted draw.
//!
//! A chunk goes out as the protocol crate frames it ([`PackedForward::frame`]: its entries as
//! PackedForward, or CompressedPackedForward, with its `chunk` id).
//!
//! Every configured server has a link that connects at start and reconnects after its own
//! backoff. Each chunk is assigned to a link that is up and has fewer than
//! `max_chunks_in_flight` chunks unacknowledged, drawn by `weight` among the active servers (Fluentd's semantics); `standby`
//! servers get chunks only while no active server is up. A chunk is settled (its [`Delivery`]
//! acked) only when the server's `{"ack": id}` comes back — or, with `require_ack_response
//! false`, once it is written. When a link fails, its unacknowledged chunks come back and go to
//! the front of the queue, in order, for the next available server. After `retry_limit`
//! resends a chunk is given up (counted as dropped).
//!
//! With `compress gzip`, chunks are compressed on tokio's blocking pool, up to
//! [`ForwardSettings::compressors`] at once (one per core by default): compression is the
//! costliest step of the agent, and one thread would cap its throughput at what one core
//! deflates. Compressed chunks join the queue in the order they came, so they are still sent in
//! order (each is acknowledged on its own, by its `chunk` id).

pub mod connection;
pub mod link;
pub mod retry;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use logtap_protocol::forward::{Compression, PackedForward};
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::connection::{Auth, Connection, ConnectionError};
use self::link::LinkEvent;
use super::Delivery;
use super::{Deliveries, OutputContext, OutputError};
use crate::config::{Compress, Config, ForwardServer, OutputKind};
use crate::metrics::{METRICS, OutputMetrics};

/// Connect (and handshake) timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A server that takes no bytes of a chunk for this long is considered gone.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// First and longest wait before retrying a server.
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The forward output's settings, from the configuration.
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    pub servers: Vec<ForwardServer>,
    /// TLS client configuration when `tls` is on.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub auth: Auth,
    pub require_ack: bool,
    /// A connection whose oldest unacknowledged chunk waited this long is considered broken.
    pub ack_timeout: Duration,
    pub gzip: bool,
    pub retry_limit: Option<u32>,
    /// Chunks sent to one server and not yet acknowledged, at most (`max_chunks_in_flight`).
    pub window: usize,
    /// Chunks compressed at once (gzip only).
    pub compressors: usize,
}

impl ForwardSettings {
    pub fn from_config(c: &Config) -> Result<ForwardSettings, OutputError> {
        let tls = if c.tls {
            let config = crate::tls::client_config(c.tls_ca_file.as_deref(), c.tls_verify)
                .map_err(|e| OutputError::Forward(e.to_string()))?;
            Some(config)
        } else {
            None
        };
        Ok(ForwardSettings {
            servers: c.forward.clone(),
            tls,
            auth: Auth {
                shared_key: c.shared_key.as_ref().map(|k| k.0.clone().into_bytes()),
                self_hostname: c.self_hostname.clone(),
                user: c.username.as_ref().map(|u| {
                    (
                        u.clone(),
                        c.password
                            .as_ref()
                            .map(|p| p.0.clone().into_bytes())
                            .unwrap_or_default(),
                    )
                }),
            },
            require_ack: c.require_ack_response,
            ack_timeout: c.ack_response_timeout.0,
            gzip: c.compress == Compress::Gzip,
            retry_limit: c.retry_limit.0,
            window: c.max_chunks_in_flight.max(1),
            compressors: std::thread::available_parallelism().map_or(2, |n| n.get()),
        })
    }
}

/// A chunk on its way: encoded once, resent as is.
pub struct Flight {
    delivery: Delivery,
    wire: PackedForward,
    attempts: u32,
    sent_at: Instant,
}

/// The output's view of one server's link.
struct LinkState {
    tx: mpsc::Sender<Flight>,
    up: bool,
    /// Chunks assigned to the link and not yet delivered or returned.
    load: usize,
}

/// Runs until the deliveries end and every chunk is settled, or the context aborts.
pub async fn run(
    mut rx: Deliveries,
    ctx: OutputContext,
    settings: ForwardSettings,
) -> Result<(), OutputError> {
    let settings = Arc::new(settings);
    let metrics = METRICS.output(OutputKind::Forward);
    // The links end with the output (their senders drop) or at once on abort.
    let links_abort = ctx.abort.child_token();
    let _stop_links = links_abort.clone().drop_guard();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut links: Vec<LinkState> = (0..settings.servers.len())
        .map(|i| {
            let (tx, link_rx) = mpsc::channel(settings.window);
            tokio::spawn(link::run(
                i,
                Arc::clone(&settings),
                link_rx,
                events_tx.clone(),
                links_abort.clone(),
            ));
            LinkState {
                tx,
                up: false,
                load: 0,
            }
        })
        .collect();
    drop(events_tx);
    let mut pending: VecDeque<Flight> = VecDeque::new();
    // Chunks being compressed, in the order they came: only the front is awaited, so they
    // join `pending` in that order while the others compress meanwhile.
    let mut compressing: VecDeque<(Delivery, Compressing)> = VecDeque::new();
    let compressors = settings.compressors.max(1);
    let mut rx_open = true;
    loop {
        if !rx_open
            && pending.is_empty()
            && compressing.is_empty()
            && links.iter().all(|l| l.load == 0)
        {
            return Ok(());
        }
        while !pending.is_empty() {
            let Some(i) = pick(&links, &settings.servers, settings.window) else {
                break;
            };
            let Some(f) = pending.pop_front() else { break };
            match links[i].tx.try_send(f) {
                Ok(()) => links[i].load += 1,
                Err(e) => {
                    // Full or gone: keep the chunk and wait for the link's news.
                    pending.push_front(e.into_inner());
                    break;
                }
            }
        }
        tokio::select! {
            biased;
            () = ctx.abort.cancelled() => return Ok(()),
            ev = events.recv() => match ev {
                Some(LinkEvent::Up(i)) => links[i].up = true,
                Some(LinkEvent::Delivered(i, f)) => {
                    links[i].load = links[i].load.saturating_sub(1);
                    settle(metrics, f);
                }
                Some(LinkEvent::Down(i, back, _)) => {
                    links[i].up = false;
                    links[i].load = links[i].load.saturating_sub(back.len());
                    requeue(&mut pending, back, settings.retry_limit);
                }
                Some(LinkEvent::Returned(i, back)) => {
                    links[i].load = links[i].load.saturating_sub(back.len());
                    requeue(&mut pending, back, settings.retry_limit);
                }
                None => return Err(OutputError::Forward("every forward link stopped".into())),
            },
            framed = front_framed(&mut compressing), if !compressing.is_empty() => {
                if let Some((delivery, _)) = compressing.pop_front() {
                    pending.push_back(compressed_flight(delivery, framed)?);
                }
            },
            d = rx.recv(), if rx_open && compressing.len() < compressors => match d {
                Some(d) if settings.gzip => {
                    let job = compress(&d, settings.require_ack);
                    compressing.push_back((d, job));
                }
                Some(d) => pending.push_back(flight(d, settings.require_ack)?),
                None => rx_open = false,
            },
        }
    }
}

/// The link for the next chunk: among the active servers that are up and have room, one drawn
/// by weight; `standby` servers only while no active server is up.
fn pick(links: &[LinkState], servers: &[ForwardServer], window: usize) -> Option<usize> {
    let active_up = links.iter().zip(servers).any(|(l, s)| l.up && !s.standby);
    let ready: Vec<usize> = (0..links.len())
        .filter(|&i| links[i].up && links[i].load < window && servers[i].standby != active_up)
        .collect();
    retry::weighted(&ready, |i| servers[i].weight)
}

/// Chunks a link could not deliver go back to the front of the queue, in their order — or are
/// given up once they have been sent more than `retry_limit` times.
fn requeue(pending: &mut VecDeque<Flight>, back: Vec<Flight>, retry_limit: Option<u32>) {
    for f in back.into_iter().rev() {
        if retry_limit.is_some_and(|limit| f.attempts > limit) {
            let c = f.delivery.chunk();
            tracing::error!(chunk = %c.id.as_text(), records = c.records, attempts = f.attempts,
                "retry_limit reached; dropping the chunk");
            f.delivery.give_up();
        } else {
            pending.push_front(f);
        }
    }
}

/// Connects to `server` and runs the handshake (for `logtap check` and `logtap cat`).
pub async fn probe(
    server: &ForwardServer,
    settings: &ForwardSettings,
) -> Result<(), ConnectionError> {
    Connection::open(
        server,
        &settings.auth,
        settings.tls.as_ref(),
        CONNECT_TIMEOUT,
    )
    .await
    .map(drop)
}

/// The chunk of `delivery` framed as it goes on the wire, uncompressed (gzip: [`compress`]).
fn flight(delivery: Delivery, require_ack: bool) -> Result<Flight, OutputError> {
    let chunk = delivery.chunk();
    let id = require_ack.then_some(&chunk.id);
    let wire = PackedForward::frame(
        &chunk.tag,
        &chunk.entries,
        chunk.records,
        id,
        Compression::None,
    )
    .map_err(|e| OutputError::Forward(e.to_string()))?;
    Ok(Flight::new(delivery, wire))
}

impl Flight {
    fn new(delivery: Delivery, wire: PackedForward) -> Flight {
        Flight {
            delivery,
            wire,
            attempts: 0,
            sent_at: Instant::now(),
        }
    }
}

/// A chunk compressed on the blocking pool: its framed message, or why it cannot be framed.
type Compressing = tokio::task::JoinHandle<Result<PackedForward, String>>;

/// Starts compressing and framing the chunk of `delivery` on the blocking pool.
fn compress(delivery: &Delivery, require_ack: bool) -> Compressing {
    let chunk = delivery.chunk();
    let (tag, entries, records) = (Arc::clone(&chunk.tag), chunk.entries.clone(), chunk.records);
    let id = require_ack.then(|| chunk.id.clone());
    tokio::task::spawn_blocking(move || {
        PackedForward::frame(&tag, &entries, records, id.as_ref(), Compression::Gzip)
            .map_err(|e| e.to_string())
    })
}

/// Waits for the oldest chunk being compressed.
async fn front_framed(
    compressing: &mut VecDeque<(Delivery, Compressing)>,
) -> Result<PackedForward, String> {
    match compressing.front_mut() {
        Some((_, job)) => job
            .await
            .unwrap_or_else(|e| Err(format!("the compression task failed: {e}"))),
        None => std::future::pending().await,
    }
}

fn compressed_flight(
    delivery: Delivery,
    framed: Result<PackedForward, String>,
) -> Result<Flight, OutputError> {
    Ok(Flight::new(delivery, framed.map_err(OutputError::Forward)?))
}

fn settle(m: &OutputMetrics, f: Flight) {
    let c = f.delivery.chunk();
    m.records.fetch_add(u64::from(c.records), Relaxed);
    m.bytes.fetch_add(f.wire.len() as u64, Relaxed);
    m.chunks_acked.fetch_add(1, Relaxed);
    f.delivery.ack();
}
