//! The stdout output: one JSON object per record on standard output (see [`super::json`]).
//!
//! This is `logtap run`'s default and the seed sidecar's behaviour (`kubectl logs` of the
//! sidecar shows the app's records as JSON). Chunks waiting in the channel are rendered
//! together into one write; a chunk is acknowledged once its lines are written and flushed.
//! The agent's own log goes to stderr, never here.

use std::sync::atomic::Ordering::Relaxed;

use tokio::io::AsyncWriteExt;

use super::{Deliveries, OutputContext, OutputError, json};
use crate::metrics::METRICS;

/// Most chunks rendered into one write.
const MAX_CHUNKS_PER_WRITE: usize = 16;

/// Runs until the deliveries end or the context aborts.
pub async fn run(mut rx: Deliveries, ctx: OutputContext) -> Result<(), OutputError> {
    let m = METRICS.output(ctx.kind);
    let mut stdout = tokio::io::stdout();
    let mut text = String::new();
    let mut batch = Vec::with_capacity(MAX_CHUNKS_PER_WRITE);
    loop {
        let first = tokio::select! {
            d = rx.recv() => d,
            () = ctx.abort.cancelled() => None,
        };
        let Some(first) = first else { return Ok(()) };
        batch.push(first);
        while batch.len() < MAX_CHUNKS_PER_WRITE {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        text.clear();
        let mut records = 0u64;
        for d in &batch {
            records += u64::from(json::render_chunk(d.chunk(), &mut text)?);
        }
        let write = async {
            stdout.write_all(text.as_bytes()).await?;
            stdout.flush().await
        };
        tokio::select! {
            r = write => r.map_err(OutputError::Stdout)?,
            () = ctx.abort.cancelled() => return Ok(()),
        }
        m.records.fetch_add(records, Relaxed);
        m.bytes.fetch_add(text.len() as u64, Relaxed);
        m.chunks_sent.fetch_add(batch.len() as u64, Relaxed);
        m.chunks_acked.fetch_add(batch.len() as u64, Relaxed);
        for d in batch.drain(..) {
            d.ack();
        }
        if text.capacity() > 1 << 20 {
            text = String::new();
        }
    }
}
