//! The null output: counts and acknowledges every chunk at once (benchmarks, tests).

use std::sync::atomic::Ordering::Relaxed;

use super::{Deliveries, OutputContext, OutputError};
use crate::metrics::METRICS;

/// Runs until the deliveries end or the context aborts.
pub async fn run(mut rx: Deliveries, ctx: OutputContext) -> Result<(), OutputError> {
    let m = METRICS.output(ctx.kind);
    loop {
        let delivery = tokio::select! {
            d = rx.recv() => d,
            () = ctx.abort.cancelled() => None,
        };
        let Some(d) = delivery else { return Ok(()) };
        let c = d.chunk();
        m.records.fetch_add(u64::from(c.records), Relaxed);
        m.bytes.fetch_add(c.entries.len() as u64, Relaxed);
        m.chunks_sent.fetch_add(1, Relaxed);
        m.chunks_acked.fetch_add(1, Relaxed);
        d.ack();
    }
}
