//! Outputs: where buffered chunks go. Each output is a task that receives [`Delivery`]s from
//! the buffer's [`Router`](crate::buffer::Router).
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

pub mod delivery;
pub mod forward;
pub mod json;
pub mod null;
pub mod stdout;

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use self::delivery::Delivery;
use crate::config::{Config, OutputKind};

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

/// Sends one output its chunks (held by the buffer's router).
pub type DeliverySender = mpsc::UnboundedSender<Delivery>;

/// The running outputs.
pub struct OutputSet {
    tasks: Vec<(OutputKind, JoinHandle<Result<(), OutputError>>)>,
    abort: CancellationToken,
}

/// Starts one task per configured output; returns their channels (for the buffer's
/// [`Router`](crate::buffer::Router)) and the running set.
pub fn start(config: &Config) -> Result<(Vec<DeliverySender>, OutputSet), OutputError> {
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
    Ok((senders, OutputSet { tasks, abort }))
}

impl OutputSet {
    /// Waits for every output to finish (their channels end when the last
    /// [`Router`](crate::buffer::Router) is dropped) for at most `grace`, then aborts the rest. Returns whether all finished in time.
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
