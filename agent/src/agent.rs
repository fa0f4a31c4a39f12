//! The running agent: inputs → pipeline → buffer → outputs, plus the HTTP endpoint.
//!
//! [`Agent::start`] builds the data path from the back (outputs first, so nothing is accepted
//! before it has somewhere to go); [`Agent::drain`] takes it down from the front, each stage
//! ending when the one before it has: tap input stops and its peers drain their rings → the
//! batch stage sees its last sender go and flushes → the outputs see their channels end and
//! deliver what they hold. The grace period bounds it all. `logtap agent` and `logtap run`
//! both use this.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use crate::buffer::memory::MemoryBuffer;
use crate::config::Config;
use crate::http::{self, Health, HttpServer};
use crate::input::access::AccessPolicy;
use crate::input::forward::{ForwardInput, ForwardInputError, ForwardInputSettings};
use crate::input::identity::IdentitySettings;
use crate::input::peer::PeerSettings;
use crate::input::tap::{SocketAccess, TapInput, TapInputError};
use crate::output::{self, OutputError, OutputSet};
use crate::pipeline::{
    self,
    batch::BatchConfig,
    enrich::{Enricher, Metadata},
};

/// How often losses (LOSS frames, full rings, dropped chunks) are summarised in the log.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Tap(#[from] TapInputError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error(transparent)]
    ForwardInput(#[from] ForwardInputError),
    #[error(transparent)]
    Multiline(#[from] crate::pipeline::multiline::MultilineError),
    #[error(transparent)]
    Spool(#[from] crate::buffer::spool::SpoolError),
}

/// The running agent.
pub struct Agent {
    pub tap: TapInput,
    /// `--forward-listen`, when set.
    pub forward_in: Option<ForwardInput>,
    /// The pipeline's handle for inputs inside this process (`logtap run`'s pipe capture of a
    /// static program); dropped by [`Agent::drain`] before it waits for the batch stage.
    ingest: pipeline::Ingest,
    batch: JoinHandle<()>,
    outputs: OutputSet,
    buffer: Arc<MemoryBuffer>,
    health: Arc<Health>,
    http: Option<HttpServer>,
}

impl Agent {
    /// Starts outputs, pipeline, the tap input on `config.socket`, and HTTP if configured.
    pub async fn start(config: &Config) -> Result<Agent, StartError> {
        let health = Arc::new(Health::default());
        let http = match config.http_listen.0 {
            Some(addr) => Some(http::serve(addr, Arc::clone(&health)).await?),
            None => None,
        };
        let limit = config.mem_buf_limit.bytes();
        let (store, recovered) = match &config.storage_path {
            Some(dir) => {
                let (spool, chunks) =
                    crate::buffer::spool::Spool::open(dir, config.storage_limit.0)?;
                (
                    Some(Arc::new(spool) as Arc<dyn crate::buffer::ChunkStore>),
                    chunks,
                )
            }
            None => (None, Vec::new()),
        };
        let buffer = Arc::new(MemoryBuffer::new(limit, store));
        // Chunks of the previous run (crash or unacked at exit): sent again, oldest first,
        // loaded from disk as memory allows.
        buffer.recover(recovered);
        let (senders, outputs) = output::start(config)?;
        let router = crate::buffer::Router::new(Arc::clone(&buffer), senders);
        let (ingest, batch) = pipeline::start(
            router,
            BatchConfig::new(
                config.flush_interval.0,
                config.chunk_limit_size.bytes(),
                limit,
            ),
        );
        let enricher = Enricher::new(Metadata::from_env(), config.tag.clone());
        let settings = PeerSettings {
            max_line_bytes: config.max_line_bytes.bytes(),
            partial_flush: config.partial_flush.0,
            ring: Default::default(),
            multiline: Arc::new(crate::pipeline::multiline::Multiline::from_config(config)?),
            identity: IdentitySettings {
                peer_meta: config.peer_meta,
                peer_pid: config.peer_pid,
                proc_root: config.proc_root.clone(),
                containers_dir: config.containers_dir.clone(),
            },
            admit: AccessPolicy {
                uids: config.socket_uid.clone(),
                gids: config.socket_gid.clone(),
            },
        };
        let forward_in = match &config.forward_listen {
            Some(addr) => {
                let settings = ForwardInputSettings::from_config(config)?;
                Some(ForwardInput::start(addr, settings, ingest.clone()).await?)
            }
            None => None,
        };
        let tap = TapInput::bind(
            &config.socket,
            SocketAccess {
                mode: config.socket_mode.0,
                owner: config.socket_owner,
                group: config.socket_group,
            },
            settings,
            enricher,
            ingest.clone(),
        )?;
        health.set_ready(true);
        // Lives as long as the runtime: losses are logged at most once per interval.
        tokio::spawn(crate::metrics::report_drops(DROP_REPORT_INTERVAL));
        Ok(Agent {
            tap,
            forward_in,
            ingest,
            batch,
            outputs,
            buffer,
            health,
            http,
        })
    }

    /// A handle on the pipeline for an input inside this process; drop it before [`Agent::drain`]
    /// can finish (the batch stage ends when its last handle is gone).
    pub fn ingest(&self) -> pipeline::Ingest {
        self.ingest.clone()
    }

    /// The HTTP endpoint's address, if it runs.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().map(|h| h.addr)
    }

    /// Stops reading, flushes, and waits for the outputs' acknowledgements, all within `grace`.
    /// Returns whether everything was delivered.
    pub async fn drain(self, grace: Duration) -> bool {
        // Each stage is moved out of `self` as it is taken down; `Agent` has no `Drop`, so
        // these partial moves need no destructuring.
        self.health.set_ready(false);
        let deadline = Instant::now() + grace;
        let started = Instant::now();
        let tap_done = timeout_at(deadline, self.tap.stop()).await.is_ok();
        if let Some(f) = self.forward_in {
            // Its clients' pipeline handles must go before the batch stage can end.
            let _ = timeout_at(deadline, f.stop()).await;
        }
        drop(self.ingest);
        let batch_done = timeout_at(deadline, self.batch).await.is_ok();
        if !(tap_done && batch_done) {
            // Stages are stuck behind a full buffer: free them so they can end.
            self.buffer.close();
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let delivered = self.outputs.finish(remaining).await;
        let clean = tap_done && batch_done && delivered;
        tracing::info!(
            clean,
            elapsed_ms = started.elapsed().as_millis() as u64,
            buffered_bytes = self.buffer.used(),
            "drained"
        );
        drop(self.http);
        clean
    }
}
