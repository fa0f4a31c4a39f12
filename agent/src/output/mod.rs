//! Outputs: where buffered chunks go, and the [`Router`] that hands each chunk to all of them.
//!
//! - [`stdout`] — one JSON object per record on standard output (rendered by [`json`]).
//! - [`null`] — acknowledges at once (benchmarks, tests).
//! - [`forward`] — Fluentd Forward protocol with acks, retries and failover.
//!
//! # Writing an output
//! An output is a task that receives [`Delivery`]s on an unbounded channel (memory is bounded by
//! the buffer's admission, not by the channel) and, for each, delivers `delivery.chunk()` and
//! then calls `delivery.ack()` — or `delivery.give_up()` after its retry limit. It keeps a
//! `Delivery` for as long as the chunk is in flight. When its channel ends (the pipeline has
//! flushed), it finishes what it holds and returns. When [`OutputContext::abort`] fires (the
//! grace period is over), it returns at once; unsettled deliveries are then counted as lost
//! (or stay in the spool). Register it in [`start`] under its [`OutputKind`].

pub mod forward;
pub mod json;
pub mod null;
pub mod stdout;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::buffer::memory::{Admitted, BufferError, Delivery, MemoryBuffer};
use crate::config::{Config, OutputKind};
use crate::record::Chunk;
use crate::record::ring_release::RingPins;

/// Why an output stopped.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("writing to standard output failed: {0}")]
    Stdout(#[source] std::io::Error),
    #[error("{0}")]
    Render(#[from] json::RenderError),
    #[error("the {0} output is not available in this build")]
    Unavailable(&'static str),
    #[error("forward output: {0}")]
    Forward(String),
}

/// What every output task gets besides its deliveries.
#[derive(Clone, Debug)]
pub struct OutputContext {
    pub kind: OutputKind,
    /// Fires when the grace period is over: return now.
    pub abort: CancellationToken,
}

/// Receives the chunks of one output.
pub type Deliveries = mpsc::UnboundedReceiver<Delivery>;

/// Admits chunks into the buffer and gives every output its [`Delivery`].
#[derive(Clone)]
pub struct Router {
    buffer: Arc<MemoryBuffer>,
    outputs: Vec<mpsc::UnboundedSender<Delivery>>,
}

impl Router {
    /// Waits for room in the buffer (or persists the chunk, with `storage_path`), then hands
    /// the chunk to every output. When this returns `Ok`, the chunk is buffered (and persisted,
    /// with `storage_path`): safe to acknowledge upstream. For the forward input.
    pub async fn dispatch(&self, chunk: Chunk) -> Result<(), BufferError> {
        let admitted = self.buffer.admit(chunk, None, self.outputs.len()).await?;
        self.hand_out(admitted);
        Ok(())
    }

    /// [`Router::dispatch`] for a chunk of tapped records: `pins` hold their ring positions
    /// until the chunk is safe (persisted, or settled by every output).
    pub async fn dispatch_pinned(&self, chunk: Chunk, pins: RingPins) -> Result<(), BufferError> {
        let admitted = self
            .buffer
            .admit(chunk, Some(pins), self.outputs.len())
            .await?;
        self.hand_out(admitted);
        Ok(())
    }

    fn hand_out(&self, admitted: Admitted) {
        if let Admitted::Now(deliveries) = admitted {
            send_all(&self.outputs, deliveries);
        }
    }
}

fn send_all(outputs: &[mpsc::UnboundedSender<Delivery>], deliveries: Vec<Delivery>) {
    for (tx, d) in outputs.iter().zip(deliveries) {
        // A stopped output's share stays unsettled (counted when the chunk is released).
        let _ = tx.send(d);
    }
}

/// Feeds the outputs the chunks the buffer spilled to disk, as memory frees up. Holds the
/// outputs' channels weakly, so that they still end when the last [`Router`] is dropped
/// (spilled chunks then stay on disk for the next start).
async fn load_spilled(
    buffer: Arc<MemoryBuffer>,
    outputs: Vec<mpsc::WeakUnboundedSender<Delivery>>,
) {
    while let Some(deliveries) = buffer.next_spilled(outputs.len()).await {
        let strong: Option<Vec<_>> = outputs.iter().map(|w| w.upgrade()).collect();
        match strong {
            Some(strong) => send_all(&strong, deliveries),
            // The outputs are finishing: the chunk stays on disk (its deliveries are dropped
            // unsettled).
            None => return,
        }
    }
}

/// The running outputs.
pub struct OutputSet {
    tasks: Vec<(OutputKind, JoinHandle<Result<(), OutputError>>)>,
    abort: CancellationToken,
}

/// Starts one task per configured output and returns the router that feeds them.
pub fn start(
    config: &Config,
    buffer: Arc<MemoryBuffer>,
) -> Result<(Router, OutputSet), OutputError> {
    let abort = CancellationToken::new();
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    let mut kinds = config.output.clone();
    kinds.dedup();
    for kind in kinds {
        let (tx, rx) = mpsc::unbounded_channel();
        let ctx = OutputContext {
            kind,
            abort: abort.clone(),
        };
        let task = match kind {
            OutputKind::Stdout => tokio::spawn(stdout::run(rx, ctx)),
            OutputKind::Null => tokio::spawn(null::run(rx, ctx)),
            OutputKind::Forward => {
                let settings = forward::ForwardSettings::from_config(config)
                    .map_err(|e| OutputError::Forward(e.to_string()))?;
                tokio::spawn(forward::run(rx, ctx, settings))
            }
        };
        senders.push(tx);
        tasks.push((kind, task));
    }
    if buffer.has_store() {
        let weak = senders.iter().map(|s| s.downgrade()).collect();
        tokio::spawn(load_spilled(Arc::clone(&buffer), weak));
    }
    Ok((
        Router {
            buffer,
            outputs: senders,
        },
        OutputSet { tasks, abort },
    ))
}

impl OutputSet {
    /// Waits for every output to finish (their channels end when the last [`Router`] is
    /// dropped) for at most `grace`, then aborts the rest. Returns whether all finished in time.
    pub async fn finish(self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        let mut clean = true;
        for (kind, mut task) in self.tasks {
            let result = tokio::select! {
                r = &mut task => r,
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(output = kind.as_str(), "grace period over; stopping with chunks unacknowledged");
                    clean = false;
                    self.abort.cancel();
                    task.await
                }
            };
            match result {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    clean = false;
                    tracing::error!(output = kind.as_str(), error = %e, "output failed");
                }
                Err(e) => {
                    clean = false;
                    tracing::error!(output = kind.as_str(), error = %e, "output task panicked");
                }
            }
        }
        clean
    }
}
