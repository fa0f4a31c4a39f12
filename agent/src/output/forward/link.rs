//! One forward server's link: a task that keeps a connection up and carries the chunks the
//! output assigns to it.
//!
//! Connect (and handshake) → `Up` → send each assigned chunk, match acks → on any failure
//! (connect error, reset, EOF, unexpected reply, send stalled for [`SEND_TIMEOUT`], oldest ack
//! missing for `ack_response_timeout`) hand every unacknowledged chunk back with `Down` and wait out
//! this server's jittered backoff before connecting again. The output decides where returned
//! chunks go next; the link only reports.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use logtap_protocol::forward::ServerMessage;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connection::{Connection, ConnectionError};
use super::retry::Backoff;
use super::{BACKOFF_BASE, BACKOFF_MAX, CONNECT_TIMEOUT, Flight, ForwardSettings, SEND_TIMEOUT};
use crate::config::OutputKind;
use crate::metrics::METRICS;

/// What a link tells the output.
pub enum LinkEvent {
    /// Connected (and authenticated): chunks may be assigned.
    Up(usize),
    /// The connection failed or could not be made; these chunks were not acknowledged.
    Down(usize, Vec<Flight>, ConnectionError),
    /// The server acknowledged this chunk (or took it, without acks).
    Delivered(usize, Flight),
    /// Chunks assigned while the link was going down, returned unsent.
    Returned(usize, Vec<Flight>),
}

/// Runs the link of server `index` until `rx` ends or `abort` fires.
pub async fn run(
    index: usize,
    settings: Arc<ForwardSettings>,
    mut rx: mpsc::Receiver<Flight>,
    events: mpsc::UnboundedSender<LinkEvent>,
    abort: CancellationToken,
) {
    let server = settings.servers[index].clone();
    let gauge = METRICS.upstream(&server.address());
    let metrics = METRICS.output(OutputKind::Forward);
    let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
    loop {
        let opened = tokio::select! {
            () = abort.cancelled() => return,
            r = Connection::open(&server, &settings.auth, settings.tls.as_ref(), CONNECT_TIMEOUT) => r,
        };
        let (error, unacked) = match opened {
            Err(e) => (e, Vec::new()),
            Ok(mut conn) => {
                tracing::info!(server = %conn.server, "forward server connected");
                gauge.store(1, Relaxed);
                let _ = events.send(LinkEvent::Up(index));
                let mut inflight: VecDeque<Flight> = VecDeque::new();
                let error = loop {
                    let ack_due = inflight.front().map(|f| f.sent_at + settings.ack_timeout);
                    tokio::select! {
                        () = abort.cancelled() => return,
                        f = rx.recv() => {
                            let Some(mut f) = f else { return };
                            if f.attempts > 0 {
                                metrics.chunks_retried.fetch_add(1, Relaxed);
                            }
                            f.attempts += 1;
                            let sent = conn.send_wire(&f.wire, SEND_TIMEOUT).await;
                            metrics.chunks_sent.fetch_add(1, Relaxed);
                            f.sent_at = Instant::now();
                            if let Err(e) = sent {
                                inflight.push_back(f);
                                break e;
                            }
                            if settings.require_ack {
                                inflight.push_back(f);
                            } else {
                                backoff.reset();
                                let _ = events.send(LinkEvent::Delivered(index, f));
                            }
                        }
                        r = conn.next_reply() => match r {
                            Ok(ServerMessage::Ack(ack)) => {
                                // Acks may come in any order; one for no chunk of ours is ignored.
                                if let Some(pos) = inflight.iter().position(|f| f.delivery.chunk().id.bytes == ack.chunk.bytes)
                                    && let Some(f) = inflight.remove(pos)
                                {
                                    backoff.reset();
                                    let _ = events.send(LinkEvent::Delivered(index, f));
                                }
                            }
                            Ok(_) => break ConnectionError::Unexpected {
                                server: conn.server.clone(),
                                what: "a handshake message",
                                expected: "an ack",
                            },
                            Err(e) => break e,
                        },
                        () = sleep_until(ack_due) => break ConnectionError::Timeout {
                            server: conn.server.clone(),
                            what: "acknowledge a chunk",
                            limit: settings.ack_timeout,
                        },
                    }
                };
                gauge.store(0, Relaxed);
                (error, inflight.into_iter().collect())
            }
        };
        // Chunks assigned to us but not yet sent go back too: another server may take them.
        let mut unacked = unacked;
        while let Ok(f) = rx.try_recv() {
            unacked.push(f);
        }
        let delay = backoff.fail();
        tracing::warn!(error = %error, unacknowledged = unacked.len(), retry_in_ms = delay.as_millis() as u64,
            "forward server unavailable");
        let _ = events.send(LinkEvent::Down(index, unacked, error));
        tokio::select! {
            () = abort.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        let mut late = Vec::new();
        while let Ok(f) = rx.try_recv() {
            late.push(f);
        }
        if !late.is_empty() {
            let _ = events.send(LinkEvent::Returned(index, late));
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
