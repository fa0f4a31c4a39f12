//! `logtap cat [OPTIONS] --tag TAG [HOST:PORT]`: standard input lines → forward events, like
//! `fluent-cat`, but it waits for the server's acks and says so in its exit code.
//!
//! Each line (without its newline) becomes one record `{"message": line}` (a `str`, or `bin`
//! when it is not UTF-8) with the time it was read. Lines are gathered into chunks (by size,
//! or when input pauses for `flush_interval`) and sent through the forward output itself —
//! same TLS, handshake, compression, retries — so `cat` doubles as a probe of a whole path.
//! Exit 0 when every chunk was acknowledged (or written, with `--require-ack-response false`),
//! 1 when not within `--timeout` after the end of input, 2 for a bad configuration.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::buffer::memory::{Admitted, MemoryBuffer};
use crate::config::cli::CatArgs;
use crate::config::{Config, ForwardServer, Mode, OutputKind};
use crate::metrics::{DropReason, METRICS};
use crate::output::{OutputContext, forward};
use logtap_protocol::forward::{EventTime, write_entry};

use crate::record::{Chunk, ChunkId};

/// Chunks are cut at this many bytes of entries.
const CHUNK_BYTES: usize = 256 * 1024;

/// Why `cat` did not deliver.
#[derive(Debug, thiserror::Error)]
pub enum CatError {
    #[error("{0}")]
    Setup(String),
    #[error("reading standard input: {0}")]
    Stdin(std::io::Error),
    #[error("not every chunk was acknowledged within {0:?} (is the server up, and does it ack?)")]
    NotAcked(Duration),
    #[error("{0} records were given up after retry_limit")]
    GaveUp(u64),
    #[error("the forward output failed: {0}")]
    Output(String),
}

/// Runs `logtap cat`.
pub fn main(args: CatArgs) -> ExitCode {
    let mut options = args.options;
    let Some(tag) = options.tag.take() else {
        eprintln!("logtap cat: --tag TAG is required");
        return ExitCode::from(2);
    };
    if let Some(server) = args.server {
        options.forward = Some(vec![server]);
    }
    let explicit = options.forward.is_some();
    options.output = Some(vec![OutputKind::Forward]);
    options.http_listen = Some(crate::config::HttpListen(None));
    if !explicit && options.config.is_none() {
        options.forward = Some(vec![ForwardServer {
            host: "127.0.0.1".into(),
            port: ForwardServer::DEFAULT_PORT,
            weight: ForwardServer::DEFAULT_WEIGHT,
            standby: false,
        }]);
    }
    let config = match Config::resolve(options, Mode::Check) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("logtap cat: {e}");
            return ExitCode::from(2);
        }
    };
    crate::logging::init(config.log_format, &config.log_level);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("logtap cat: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cat(&config, &tag, args.timeout.0)) {
        Ok(records) => {
            eprintln!("logtap cat: {records} records acknowledged");
            ExitCode::SUCCESS
        }
        Err(CatError::Setup(e)) => {
            eprintln!("logtap cat: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("logtap cat: {e}");
            ExitCode::from(1)
        }
    }
}

/// Sends standard input; returns the number of records delivered.
pub async fn cat(config: &Config, tag: &str, ack_timeout: Duration) -> Result<u64, CatError> {
    let settings = forward::ForwardSettings::from_config(config)
        .map_err(|e| CatError::Setup(e.to_string()))?;
    let buffer = Arc::new(MemoryBuffer::new(config.mem_buf_limit.bytes(), None));
    let (tx, rx) = mpsc::unbounded_channel();
    let abort = CancellationToken::new();
    let ctx = OutputContext {
        kind: OutputKind::Forward,
        abort: abort.clone(),
    };
    let mut output = tokio::spawn(forward::run(rx, ctx, settings));
    let tag: Arc<str> = Arc::from(tag);
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut line = Vec::new();
    let mut entries = Vec::with_capacity(CHUNK_BYTES);
    let (mut records, mut total) = (0u32, 0u64);
    loop {
        line.clear();
        // An interactive input that pauses gets its lines sent without waiting for more.
        let read =
            match tokio::time::timeout(config.flush_interval.0, stdin.read_until(b'\n', &mut line))
                .await
            {
                Ok(r) => Some(r.map_err(CatError::Stdin)?),
                Err(_) => None,
            };
        let eof = read == Some(0);
        if read.is_some_and(|n| n > 0) {
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            write_entry(&mut entries, EventTime::now(), 1).text_or_bin("message", text);
            records += 1;
        }
        if records > 0 && (eof || read.is_none() || entries.len() >= CHUNK_BYTES) {
            let chunk = Chunk {
                id: ChunkId::generate(),
                tag: Arc::clone(&tag),
                entries: std::mem::take(&mut entries).into(),
                records,
            };
            total += u64::from(records);
            records = 0;
            let admitted = buffer
                .admit(chunk, None, 1)
                .await
                .map_err(|e| CatError::Output(e.to_string()))?;
            // No store: always in memory.
            if let Admitted::Now(deliveries) = admitted {
                for d in deliveries {
                    let _ = tx.send(d);
                }
            }
        }
        if eof {
            break;
        }
    }
    drop(tx);
    let finished = tokio::time::timeout(ack_timeout, &mut output).await;
    let result = match finished {
        Ok(Ok(Ok(()))) => Ok(total),
        Ok(Ok(Err(e))) => Err(CatError::Output(e.to_string())),
        Ok(Err(e)) => Err(CatError::Output(e.to_string())),
        Err(_) => {
            abort.cancel();
            let _ = output.await;
            Err(CatError::NotAcked(ack_timeout))
        }
    };
    let gave_up = METRICS.dropped_records(DropReason::OutputGaveUp);
    match result {
        Ok(_) if gave_up > 0 => Err(CatError::GaveUp(gave_up)),
        other => other,
    }
}
