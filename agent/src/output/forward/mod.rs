//! The forward output: chunks to Fluentd / Fluent Bit `in_forward`, at least once.
//!
//! - [`connection`] — one connection: connect, shared-key handshake, send, read replies.
//! - [`retry`] — per-server exponential backoff with jitter, weights and standby failover.
//! - [`wire`] — a chunk as PackedForward (or CompressedPackedForward) with its `chunk` id.
//!
//! One connection at a time, to a server picked by [`retry::Servers`]. Chunks are sent in order
//! with up to [`WINDOW`] awaiting their ack. A chunk is settled (its [`Delivery`] acked) only
//! when the server's `{"ack": id}` comes back — or, with `require_ack_response false`, once it
//! is written. A connection error, EOF, an unexpected reply or an ack overdue by
//! [`ACK_TIMEOUT`] closes the connection: every chunk in flight goes back to the front of the
//! queue, in order, to be resent on the next connection (to the next server where there are
//! several). After `retry_limit` resends a chunk is given up (counted as dropped).

pub mod connection;
pub mod retry;
pub mod wire;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::Duration;

use logtap_protocol::forward::{ChunkId, ServerMessage};
use tokio::time::Instant;

use self::connection::{Auth, Connection, ConnectionError};
use self::retry::{Pick, Servers};
use super::{Deliveries, OutputContext, OutputError};
use crate::buffer::memory::Delivery;
use crate::config::{Compress, Config, ForwardServer, OutputKind};
use crate::metrics::{METRICS, OutputMetrics};

/// Chunks sent and not yet acknowledged, at most.
pub const WINDOW: usize = 16;
/// A connection whose oldest unacknowledged chunk waited this long is considered broken.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);
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
    pub gzip: bool,
    pub retry_limit: Option<u32>,
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
            gzip: c.compress == Compress::Gzip,
            retry_limit: c.retry_limit.0,
        })
    }
}

/// A chunk on its way: encoded once, resent as is.
struct Flight {
    delivery: Delivery,
    wire: wire::Wire,
    id: ChunkId,
    attempts: u32,
    sent_at: Instant,
}

/// The output's state between events.
struct Forward<'a> {
    settings: &'a ForwardSettings,
    servers: Servers,
    gauges: Vec<&'static AtomicI64>,
    metrics: &'static OutputMetrics,
    conn: Option<(usize, Connection)>,
    pending: VecDeque<Flight>,
    inflight: VecDeque<Flight>,
}

/// Runs until the deliveries end and every chunk is settled, or the context aborts.
pub async fn run(
    mut rx: Deliveries,
    ctx: OutputContext,
    settings: ForwardSettings,
) -> Result<(), OutputError> {
    let mut out = Forward {
        servers: Servers::new(&settings.servers, BACKOFF_BASE, BACKOFF_MAX),
        gauges: settings
            .servers
            .iter()
            .map(|s| METRICS.upstream(&s.address()))
            .collect(),
        metrics: METRICS.output(OutputKind::Forward),
        settings: &settings,
        conn: None,
        pending: VecDeque::new(),
        inflight: VecDeque::new(),
    };
    let mut rx_open = true;
    loop {
        if !rx_open && out.pending.is_empty() && out.inflight.is_empty() {
            return Ok(());
        }
        let mut retry_at = None;
        if out.conn.is_none() && !out.pending.is_empty() {
            match out.servers.pick(Instant::now()) {
                Pick::Now(i) => {
                    tokio::select! {
                        () = ctx.abort.cancelled() => return Ok(()),
                        r = Connection::open(out.servers.get(i), &settings.auth, settings.tls.as_ref(), CONNECT_TIMEOUT) => match r {
                            Ok(c) => {
                                tracing::info!(server = %c.server, "forward server connected");
                                out.gauges[i].store(1, Relaxed);
                                out.conn = Some((i, c));
                            }
                            Err(e) => {
                                let delay = out.servers.failed(i, Instant::now());
                                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "forward server unavailable");
                                continue;
                            }
                        }
                    }
                }
                Pick::Wait(t) => retry_at = Some(t),
            }
        }
        if let Err(e) = out.send_window().await {
            out.broken(e);
            continue;
        }
        let ack_deadline = out.inflight.front().map(|f| f.sent_at + ACK_TIMEOUT);
        let timer = [retry_at, ack_deadline].into_iter().flatten().min();
        tokio::select! {
            biased;
            () = ctx.abort.cancelled() => return Ok(()),
            d = rx.recv(), if rx_open => match d {
                Some(d) => out.pending.push_back(flight(d, &settings)?),
                None => rx_open = false,
            },
            r = reply(out.conn.as_mut()) => match r {
                Ok(ServerMessage::Ack(ack)) => out.acked(&ack.chunk),
                Ok(_) => {
                    let server = out.conn.as_ref().map(|(_, c)| c.server.clone()).unwrap_or_default();
                    out.broken(ConnectionError::Unexpected { server, what: "a handshake message", expected: "an ack" });
                }
                Err(e) => out.broken(e),
            },
            () = sleep_until(timer) => {
                if out.inflight.front().is_some_and(|f| f.sent_at + ACK_TIMEOUT <= Instant::now()) {
                    let server = out.conn.as_ref().map(|(_, c)| c.server.clone()).unwrap_or_default();
                    out.broken(ConnectionError::Timeout { server, what: "acknowledge a chunk", limit: ACK_TIMEOUT });
                }
            }
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

fn flight(delivery: Delivery, settings: &ForwardSettings) -> Result<Flight, OutputError> {
    let id = ChunkId::from_random_bytes(delivery.chunk().id.0);
    let wire = wire::encode(
        delivery.chunk(),
        settings.require_ack.then_some(&id),
        settings.gzip,
    )
    .map_err(|e| OutputError::Forward(e.to_string()))?;
    Ok(Flight {
        delivery,
        wire,
        id,
        attempts: 0,
        sent_at: Instant::now(),
    })
}

async fn reply(conn: Option<&mut (usize, Connection)>) -> Result<ServerMessage, ConnectionError> {
    match conn {
        Some((_, c)) => c.next_reply().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

impl Forward<'_> {
    /// Sends queued chunks while connected and the window allows.
    async fn send_window(&mut self) -> Result<(), ConnectionError> {
        let Some((i, conn)) = self.conn.as_mut() else {
            return Ok(());
        };
        while self.inflight.len() < WINDOW {
            let Some(mut f) = self.pending.pop_front() else {
                break;
            };
            if f.attempts > 0 {
                self.metrics.chunks_retried.fetch_add(1, Relaxed);
            }
            f.attempts += 1;
            if let Err(e) = conn.send_wire(&f.wire, SEND_TIMEOUT).await {
                self.pending.push_front(f);
                return Err(e);
            }
            self.metrics.chunks_sent.fetch_add(1, Relaxed);
            if self.settings.require_ack {
                f.sent_at = Instant::now();
                self.inflight.push_back(f);
            } else {
                self.servers.succeeded(*i);
                settle(self.metrics, f);
            }
        }
        Ok(())
    }

    /// An ack arrived: settle the matching chunk (acks may come in any order).
    fn acked(&mut self, id: &ChunkId) {
        match self.inflight.iter().position(|f| f.id.bytes == id.bytes) {
            Some(pos) => {
                if let Some(f) = self.inflight.remove(pos) {
                    if let Some((i, _)) = &self.conn {
                        self.servers.succeeded(*i);
                    }
                    settle(self.metrics, f);
                }
            }
            None => {
                tracing::debug!(chunk = ?id.bytes, "ack for a chunk not in flight (already resent and acked?)")
            }
        }
    }

    /// The connection failed: close it, put its chunks back in order, apply the retry limit.
    fn broken(&mut self, error: ConnectionError) {
        if let Some((i, _)) = self.conn.take() {
            self.gauges[i].store(0, Relaxed);
            let delay = self.servers.failed(i, Instant::now());
            tracing::warn!(error = %error, in_flight = self.inflight.len(), retry_in_ms = delay.as_millis() as u64,
                "forward connection lost; unacknowledged chunks will be resent");
        }
        while let Some(f) = self.inflight.pop_back() {
            self.pending.push_front(f);
        }
        if let Some(limit) = self.settings.retry_limit {
            let mut kept = VecDeque::with_capacity(self.pending.len());
            for f in self.pending.drain(..) {
                if f.attempts > limit {
                    tracing::error!(chunk = ?f.delivery.chunk().id, records = f.delivery.chunk().records,
                        attempts = f.attempts, "retry_limit reached; dropping the chunk");
                    f.delivery.give_up();
                } else {
                    kept.push_back(f);
                }
            }
            self.pending = kept;
        }
    }
}

fn settle(m: &OutputMetrics, f: Flight) {
    let c = f.delivery.chunk();
    m.records.fetch_add(u64::from(c.records), Relaxed);
    m.bytes.fetch_add(f.wire.len() as u64, Relaxed);
    m.chunks_acked.fetch_add(1, Relaxed);
    f.delivery.ack();
}
