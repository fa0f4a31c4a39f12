//! `logtap run` of a statically linked CMD: no loader runs, so nothing preloads `liblogtap.so`;
//! CMD's stdout and stderr are pipes this process reads instead.
//!
//! Each pipe's bytes go on to `logtap run`'s own stdout or stderr (the program's output reaches
//! the terminal as it would tapped) and through the same line assembly and enrichment as a tap
//! peer's writes ([`Streams`]), so the records are the tapped ones: `stream` kept apart, `pid`
//! and `comm` of CMD. What differs, and is documented: no tap files (`LLT_TAP_FILES` needs the
//! library), a record's time is when the agent read it, not when the program wrote it, and a
//! program's stdout is a pipe, so its C library buffers it in blocks rather than lines.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use logtap_protocol::tap::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::input::streams::Streams;
use crate::metrics::METRICS;
use crate::pipeline::Ingest;
use crate::pipeline::enrich::{Enricher, Metadata, Origin, PodNames};
use crate::pipeline::multiline::Multiline;

/// Bytes read from a pipe at once (the kernel's default pipe buffer).
const READ_CHUNK: usize = 64 * 1024;

/// What the records of one captured process carry.
#[derive(Clone)]
pub struct Capture {
    ingest: Ingest,
    enricher: Enricher,
    multiline: Arc<Multiline>,
    max_line_bytes: usize,
    partial_flush: Duration,
    origin: Origin,
}

impl Capture {
    /// Records of process `pid`, started from `program`, into `ingest`, assembled as `config`
    /// says for tapped streams.
    pub fn new(
        config: &Config,
        ingest: Ingest,
        pid: u32,
        program: &std::ffi::OsStr,
    ) -> Result<Capture, crate::pipeline::multiline::MultilineError> {
        let metadata = Metadata::from_env();
        let meta: Vec<(String, String)> = std::env::vars().collect();
        let origin = Origin {
            pid,
            comm: comm(program),
            host: metadata.host.clone(),
            pod: PodNames::from_meta(&meta),
            container_id: None,
            meta_claimed: false,
            pid_from_kernel: true,
        };
        Ok(Capture {
            ingest,
            enricher: Enricher::new(metadata, config.tag.clone()),
            multiline: Arc::new(Multiline::from_config(config)?),
            max_line_bytes: config.max_line_bytes.bytes(),
            partial_flush: config.partial_flush.0,
            origin,
        })
    }

    /// Reads `pipe` to its end as `stream`, copying every byte to `echo`.
    pub fn spawn<R, W>(&self, pipe: R, echo: W, stream: Stream) -> JoinHandle<()>
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let capture = self.clone();
        tokio::spawn(capture.read(pipe, echo, stream))
    }

    async fn read<R, W>(self, mut pipe: R, mut echo: W, stream: Stream)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let pid = self.origin.pid;
        let mut streams = Streams::new(self.enricher, self.max_line_bytes, self.partial_flush)
            .with_multiline(self.multiline);
        streams.set_origin(self.origin, Vec::new());
        let mut buf = vec![0u8; READ_CHUNK];
        let mut echo_ok = true;
        loop {
            // A tail without its newline goes out, marked partial, after `partial_flush`.
            let wait = if streams.has_pending() {
                self.partial_flush
            } else {
                Duration::from_secs(3600)
            };
            let n = tokio::select! {
                read = pipe.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                },
                () = tokio::time::sleep(wait) => {
                    streams.flush_stale(Instant::now());
                    if !send(&self.ingest, &mut streams).await {
                        return;
                    }
                    continue;
                }
            };
            let bytes = buf.get(..n).unwrap_or_default();
            // The program's own output still reaches ours; a closed stdout (`| head`) does not
            // stop the capture.
            if echo_ok {
                echo_ok = echo.write_all(bytes).await.is_ok() && echo.flush().await.is_ok();
            }
            if streams
                .write(pid, stream as u8, 0, false, now_ns(), bytes, None)
                .is_err()
            {
                break;
            }
            if !send(&self.ingest, &mut streams).await {
                return;
            }
        }
        streams.finish();
        send(&self.ingest, &mut streams).await;
    }
}

/// Hands what `streams` holds to the pipeline; false when it has closed.
async fn send(ingest: &Ingest, streams: &mut Streams) -> bool {
    let batch = streams.take();
    METRICS.records_in.fetch_add(batch.records, Relaxed);
    METRICS.bytes_in.fetch_add(batch.tapped_bytes, Relaxed);
    for entries in batch.entries {
        if ingest.send(entries).await.is_err() {
            return false;
        }
    }
    true
}

/// The name the kernel gives the process at `execve` (`/proc/PID/comm`, what a tapped process's
/// HELLO says): the file name of the program, cut to 15 bytes. Computed rather than read: the
/// child may still be between `fork` and `execve` when it is first seen.
fn comm(program: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let name = std::path::Path::new(program)
        .file_name()
        .map_or(&[][..], |n| n.as_bytes());
    String::from_utf8_lossy(name.get(..15).unwrap_or(name)).into_owned()
}

/// Wall-clock nanoseconds since the epoch: a record's time.
fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_is_the_file_name_cut_to_15_bytes() {
        assert_eq!(comm("/usr/bin/static-prog".as_ref()), "static-prog");
        assert_eq!(comm("a-very-long-program-name".as_ref()), "a-very-long-pro");
    }
}
