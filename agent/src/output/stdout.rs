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

/// Most chunks rendered together.
const MAX_CHUNKS_PER_WRITE: usize = 16;
/// Chunks are gathered for one rendering until they hold this many bytes of entries (chunks of
/// `chunk_limit_size`, 2 MB, are rendered one at a time).
const BATCH_BYTES: usize = 1 << 20;
/// Largest piece of rendered text handed to one write, cut after a record's newline. Tokio
/// writes standard output in pieces of its own (2 MiB) otherwise, and the tapped program's own
/// output to the same file (`logtap run`) could then land inside a record.
const WRITE_MAX: usize = 256 * 1024;

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
        let mut bytes = first.chunk().size();
        batch.push(first);
        while batch.len() < MAX_CHUNKS_PER_WRITE && bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(d) => {
                    bytes += d.chunk().size();
                    batch.push(d);
                }
                Err(_) => break,
            }
        }
        text.clear();
        let mut records = 0u64;
        for d in &batch {
            records += u64::from(json::render_chunk(d.chunk(), &mut text)?);
        }
        let write = async {
            for piece in whole_lines(text.as_bytes(), WRITE_MAX) {
                stdout.write_all(piece).await?;
                stdout.flush().await?;
            }
            Ok::<(), std::io::Error>(())
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

/// `text` in pieces of at most `max` bytes, each ending with a newline (a single longer line is
/// a piece of its own).
fn whole_lines(text: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let window = &rest[..rest.len().min(max)];
        let cut = match window.iter().rposition(|&b| b == b'\n') {
            Some(i) if rest.len() > max => i + 1,
            _ if rest.len() <= max => rest.len(),
            _ => rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| i + 1),
        };
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::whole_lines;

    #[test]
    fn pieces_end_after_a_newline() {
        let text = b"aaaa\nbb\ncccccccc\ndd\n";
        let pieces: Vec<&[u8]> = whole_lines(text, 8).collect();
        assert_eq!(
            pieces,
            [&b"aaaa\nbb\n"[..], b"cccccccc\n", b"dd\n"],
            "a long line whole, the rest cut after newlines"
        );
        assert_eq!(pieces.concat(), text);
        assert_eq!(whole_lines(b"", 8).count(), 0);
    }
}
