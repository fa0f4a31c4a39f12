//! The forward input (`--forward-listen ADDR`): Fluentd's `in_forward`, so logtap can relay
//! and receive from fluent-logger, Fluent Bit and Fluentd.
//!
//! - `mod.rs` — [`ForwardInput`]: the TCP listener (connection cap), the UDP heartbeat on the
//!   same port (each datagram is answered with one zero byte, as Fluentd's `in_forward` does),
//!   and the stop used by the agent's drain.
//! - [`connection`] — one client: optional TLS, optional `shared_key` handshake
//!   ([`handshake`]), all four modes, ack after the chunk is buffered.
//! - [`error`] — why a connection ended early (shared by the two).

pub mod connection;
pub mod error;
pub mod handshake;

use std::net::SocketAddr;
use std::sync::Arc;

use logtap_protocol::forward::DecodeLimits;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::pipeline::Ingest;
use crate::tls::{self, TlsError};

/// Clients served at once; more are refused (closed) with a log line.
pub const MAX_CONNECTIONS: usize = 1024;
/// Largest message accepted: Fluentd's default `chunk_limit_size` (8 MiB) twice over. A larger
/// message ends that connection only, with a clear error.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Fluentd's port, used when `--forward-listen` gives none.
pub const DEFAULT_PORT: u16 = 24224;

/// Why the forward input could not start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardInputError {
    #[error("cannot listen on --forward-listen {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot open the UDP heartbeat socket on {addr}: {source}")]
    Heartbeat {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("forward input TLS: {0}")]
    Tls(#[from] TlsError),
}

/// The input's settings.
#[derive(Debug)]
pub struct ForwardInputSettings {
    /// TLS server config (from `forward_listen_tls_cert` / `_key`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Require the handshake with this key.
    pub shared_key: Option<Vec<u8>>,
    /// With `shared_key`: the users who may log in (name, password); none: no user check.
    pub users: Vec<(String, Vec<u8>)>,
    /// Our hostname in HELO/PONG (`self_hostname`).
    pub hostname: String,
    pub limits: DecodeLimits,
    pub max_connections: usize,
}

impl ForwardInputSettings {
    /// From the agent's configuration: `shared_key` and `self_hostname` serve both directions.
    pub fn from_config(config: &Config) -> Result<ForwardInputSettings, ForwardInputError> {
        let tls = match (
            &config.forward_listen_tls_cert,
            &config.forward_listen_tls_key,
        ) {
            (Some(cert), Some(key)) => Some(tls::server_config(cert, key)?),
            _ => None,
        };
        Ok(ForwardInputSettings {
            tls,
            shared_key: config.shared_key.as_ref().map(|k| k.0.as_bytes().to_vec()),
            users: config
                .forward_listen_users
                .iter()
                .map(|u| (u.username.clone(), u.password.0.as_bytes().to_vec()))
                .collect(),
            hostname: config.self_hostname.clone(),
            limits: DecodeLimits {
                max_message_bytes: MAX_MESSAGE_BYTES,
                ..DecodeLimits::default()
            },
            max_connections: MAX_CONNECTIONS,
        })
    }
}

/// The running forward input.
pub struct ForwardInput {
    /// The bound address (the real port when 0 was asked).
    pub addr: SocketAddr,
    stop: CancellationToken,
    clients: TaskTracker,
    acceptor: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
}

/// `HOST:PORT`, `:PORT` or `HOST` (port 24224).
fn listen_address(addr: &str) -> String {
    let addr = addr.trim();
    if let Some(port) = addr.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if addr.parse::<SocketAddr>().is_ok()
        || addr
            .rsplit_once(':')
            .is_some_and(|(h, _)| !h.contains(':') || h.ends_with(']'))
    {
        addr.to_owned()
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    }
}

impl ForwardInput {
    /// Binds TCP and UDP on `addr` and starts serving clients into `ingest`.
    pub async fn start(
        addr: &str,
        settings: ForwardInputSettings,
        ingest: Ingest,
    ) -> Result<ForwardInput, ForwardInputError> {
        let wanted = listen_address(addr);
        let listener =
            TcpListener::bind(&wanted)
                .await
                .map_err(|source| ForwardInputError::Bind {
                    addr: wanted.clone(),
                    source,
                })?;
        let local = listener
            .local_addr()
            .map_err(|source| ForwardInputError::Bind {
                addr: wanted,
                source,
            })?;
        let udp = UdpSocket::bind(local)
            .await
            .map_err(|source| ForwardInputError::Heartbeat {
                addr: local,
                source,
            })?;
        let stop = CancellationToken::new();
        let clients = TaskTracker::new();
        let settings = Arc::new(settings);
        tracing::info!(
            addr = %local,
            tls = settings.tls.is_some(),
            shared_key = settings.shared_key.is_some(),
            "forward input listening"
        );
        let acceptor = tokio::spawn(accept_loop(
            listener,
            settings,
            ingest,
            stop.clone(),
            clients.clone(),
        ));
        let heartbeat = tokio::spawn(heartbeat(udp, stop.clone()));
        Ok(ForwardInput {
            addr: local,
            stop,
            clients,
            acceptor,
            heartbeat,
        })
    }

    /// Stops accepting and ends every client connection (a chunk not yet acknowledged will be
    /// resent by its client); returns when their tasks — and their pipeline handles — are gone.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.acceptor.await;
        let _ = self.heartbeat.await;
        self.clients.close();
        self.clients.wait().await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    settings: Arc<ForwardInputSettings>,
    ingest: Ingest,
    stop: CancellationToken,
    clients: TaskTracker,
) {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: wait a little instead of spinning.
                tracing::warn!(error = %e, "forward input: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!(%peer, max = settings.max_connections, "forward input: too many connections; refusing this one");
            clients.spawn(connection::refuse(tcp));
            continue;
        };
        let (settings, ingest, stop) = (Arc::clone(&settings), ingest.clone(), stop.clone());
        clients.spawn(async move {
            let _slot = slot;
            tracing::debug!(%peer, "forward client connected");
            tokio::select! {
                r = connection::serve(tcp, peer, settings, ingest) => match r {
                    Ok(()) => tracing::debug!(%peer, "forward client disconnected"),
                    Err(e) => tracing::warn!(%peer, error = %e, "forward client dropped"),
                },
                () = stop.cancelled() => {}
            }
        });
    }
}

/// Fluentd's heartbeat: answer every datagram on the port with one zero byte.
async fn heartbeat(udp: UdpSocket, stop: CancellationToken) {
    let mut buf = [0u8; 1024];
    loop {
        let received = tokio::select! {
            r = udp.recv_from(&mut buf) => r,
            () = stop.cancelled() => return,
        };
        match received {
            Ok((_, peer)) => {
                let _ = udp.send_to(&[0u8], peer).await;
            }
            Err(e) => tracing::debug!(error = %e, "heartbeat socket error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::listen_address;

    #[test]
    fn listen_addresses() {
        assert_eq!(listen_address("127.0.0.1:24225"), "127.0.0.1:24225");
        assert_eq!(listen_address(":9"), "0.0.0.0:9");
        assert_eq!(listen_address("localhost"), "localhost:24224");
        assert_eq!(listen_address("[::1]:5"), "[::1]:5");
    }
}
