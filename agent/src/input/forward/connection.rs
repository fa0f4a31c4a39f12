//! One client connection of the forward input: TLS, handshake, decode, queue, ack.
//!
//! Messages of all four modes are decoded by the streaming [`ServerDecoder`] (any split of the
//! stream decodes the same; sizes are capped before allocation). Each message's events are
//! re-encoded as entries `[time, record]` — tag and EventTime kept, so logtap can relay — and:
//! - with a `chunk` option, put into the buffer as one chunk ([`Ingest::send_chunk`]) and only
//!   then acknowledged with the same id and type: an acked chunk is in the agent's buffer (on
//!   disk with `storage_path`), so the client may forget it;
//! - without, handed to the batch stage like tapped lines ([`Ingest::send`]).
//!
//! A message over the size cap, or bytes that are not the Forward protocol, end this connection
//! only, with a log line naming the client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::BytesMut;
use logtap_protocol::forward::{ClientMessage, EventBatch, ServerDecoder, write_value_entry};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::ForwardInputSettings;
use super::error::{HANDSHAKE_TIMEOUT, InputConnError};
use super::handshake;
use crate::metrics::METRICS;
use crate::pipeline::Ingest;
use crate::record::{Chunk, ChunkId, Entries};

/// Serves one accepted TCP connection (TLS first when configured).
pub async fn serve(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    settings: Arc<ForwardInputSettings>,
    ingest: Ingest,
) -> Result<(), InputConnError> {
    let _ = tcp.set_nodelay(true);
    match &settings.tls {
        None => serve_stream(tcp, &settings, &ingest).await,
        Some(config) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(config));
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                .await
                .map_err(|_| InputConnError::Timeout {
                    what: "TLS handshake",
                })?
                .map_err(InputConnError::Tls)?;
            tracing::debug!(%peer, "TLS established");
            serve_stream(tls, &settings, &ingest).await
        }
    }
}

async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    settings: &ForwardInputSettings,
    ingest: &Ingest,
) -> Result<(), InputConnError> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut dec = ServerDecoder::new(settings.limits);
    if let Some(key) = &settings.shared_key {
        let hs = handshake::accept(
            &mut rd,
            &mut wr,
            &mut buf,
            &mut dec,
            key,
            &settings.users,
            &settings.hostname,
        );
        tokio::time::timeout(HANDSHAKE_TIMEOUT, hs)
            .await
            .map_err(|_| InputConnError::Timeout {
                what: "shared_key handshake",
            })??;
    }
    loop {
        loop {
            let before = buf.len();
            let decoded = dec.decode(&mut buf);
            METRICS
                .bytes_in
                .fetch_add((before - buf.len()) as u64, Relaxed);
            match decoded {
                Ok(None) => break,
                Ok(Some(ClientMessage::Events(batch))) => queue(batch, ingest, &mut wr).await?,
                Ok(Some(ClientMessage::Ping(_))) => return Err(InputConnError::UnexpectedPing),
                Err(e) if e.is_recoverable() => {
                    // The bad message was consumed; it is not acknowledged, the rest goes on.
                    tracing::warn!(error = %e, "forward input: skipped one unreadable message");
                }
                Err(e) => return Err(e.into()),
            }
        }
        buf.reserve(64 * 1024);
        if rd.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Re-encodes a message's events as entries and queues them; acks once they are buffered.
async fn queue<W: AsyncWrite + Unpin>(
    batch: EventBatch,
    ingest: &Ingest,
    wr: &mut W,
) -> Result<(), InputConnError> {
    let records = u32::try_from(batch.events.len())
        .map_err(|_| InputConnError::TooManyEvents(batch.events.len()))?;
    let ack = batch.ack();
    let mut entries = Vec::with_capacity(batch.events.len() * 96);
    for e in &batch.events {
        // Output form is plain `[time, record]` (v1.5 entry metadata is not relayed).
        write_value_entry(&mut entries, e.time, &e.record);
    }
    METRICS.records_in.fetch_add(u64::from(records), Relaxed);
    let tag: Arc<str> = Arc::from(batch.tag);
    match ack {
        Some(ack) => {
            if records > 0 {
                let chunk = Chunk {
                    id: ChunkId::generate(),
                    tag,
                    entries: entries.into(),
                    records,
                };
                ingest.send_chunk(chunk).await?;
            }
            wr.write_all(&ack.to_vec()).await?;
            wr.flush().await?;
        }
        None => {
            ingest
                .send(Entries {
                    tag,
                    buf: entries,
                    records,
                    pins: Default::default(),
                    pressured: false,
                })
                .await
                .map_err(|_| InputConnError::ShuttingDown)?;
        }
    }
    Ok(())
}

/// Reads what is left of a connection's input, ignoring it, then closes (used to refuse a
/// connection over the cap politely: the client sees EOF, not a reset mid-write).
pub async fn refuse(mut tcp: tokio::net::TcpStream) {
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut sink)).await;
}
