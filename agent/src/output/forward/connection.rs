//! One connection to a forward server: connect (TCP, optionally TLS), the optional shared-key
//! handshake, sending messages, and reading the server's replies (acks).
//!
//! The stream is a boxed `AsyncRead + AsyncWrite`, so TLS wraps the TCP stream without the rest
//! of the output knowing. Replies are decoded with the protocol crate's streaming
//! [`ClientDecoder`]; [`Connection::next_reply`] is cancel-safe (it can sit in a `select!`).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use logtap_protocol::forward::{ClientDecoder, DecodeError, Helo, Ping, ServerMessage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::ForwardServer;

/// A byte stream to a server (TCP, or TLS over TCP).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Credentials for the handshake (Fluentd's `<security>` / Fluent Bit's `shared_key`).
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub shared_key: Option<Vec<u8>>,
    pub self_hostname: String,
    pub user: Option<(String, Vec<u8>)>,
}

/// Why a connection failed. Every variant means "close it, resend its chunks elsewhere or later".
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("cannot connect to {server}: {source}")]
    Connect {
        server: String,
        source: std::io::Error,
    },
    #[error("TLS with {server} failed: {source}")]
    Tls {
        server: String,
        source: std::io::Error,
    },
    #[error("bad TLS server name for {server}: {message}")]
    TlsName { server: String, message: String },
    #[error("{server} did not {what} within {limit:?}")]
    Timeout {
        server: String,
        what: &'static str,
        limit: Duration,
    },
    #[error("connection to {server} failed: {source}")]
    Io {
        server: String,
        source: std::io::Error,
    },
    #[error("{server} closed the connection")]
    Closed { server: String },
    #[error("unreadable reply from {server}: {source}")]
    Decode { server: String, source: DecodeError },
    #[error(
        "handshake with {server} failed: {reason} (check shared_key, self_hostname, username, password)"
    )]
    Auth { server: String, reason: String },
    #[error("{server} sent {what}, expected {expected}")]
    Unexpected {
        server: String,
        what: &'static str,
        expected: &'static str,
    },
}

/// An open connection.
pub struct Connection {
    stream: Box<dyn Stream>,
    decoder: ClientDecoder,
    rbuf: BytesMut,
    pub server: String,
}

impl Connection {
    /// Connects (TLS when `tls` is given), and runs the handshake when a shared key is
    /// configured; all within `timeout`.
    pub async fn open(
        server: &ForwardServer,
        auth: &Auth,
        tls: Option<&Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Result<Connection, ConnectionError> {
        let name = server.address();
        let opened = tokio::time::timeout(
            timeout,
            Connection::open_inner(server, auth, tls, name.clone()),
        )
        .await;
        opened.map_err(|_| ConnectionError::Timeout {
            server: name,
            what: "connect and handshake",
            limit: timeout,
        })?
    }

    async fn open_inner(
        server: &ForwardServer,
        auth: &Auth,
        tls: Option<&Arc<rustls::ClientConfig>>,
        name: String,
    ) -> Result<Connection, ConnectionError> {
        let tcp = TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(|source| ConnectionError::Connect {
                server: name.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        // Keepalive: an idle connection to a server that vanished is noticed within ~1 min.
        let _ = crate::sys::set_tcp_keepalive(std::os::fd::AsFd::as_fd(&tcp), 30);
        let stream: Box<dyn Stream> =
            match tls {
                None => Box::new(tcp),
                Some(config) => {
                    let sni = crate::tls::server_name(&server.host).map_err(|e| {
                        ConnectionError::TlsName {
                            server: name.clone(),
                            message: e.to_string(),
                        }
                    })?;
                    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                    let tls = connector.connect(sni, tcp).await.map_err(|source| {
                        ConnectionError::Tls {
                            server: name.clone(),
                            source,
                        }
                    })?;
                    Box::new(tls)
                }
            };
        let mut conn = Connection {
            stream,
            decoder: ClientDecoder::default(),
            rbuf: BytesMut::with_capacity(4096),
            server: name,
        };
        if let Some(key) = &auth.shared_key {
            conn.handshake(key, auth).await?;
        }
        Ok(conn)
    }

    /// HELO → PING → PONG (Forward protocol v1 "Handshake Messages").
    async fn handshake(&mut self, key: &[u8], auth: &Auth) -> Result<(), ConnectionError> {
        let helo: Helo = match self.next_reply().await? {
            ServerMessage::Helo(h) => h,
            other => return Err(self.unexpected(&other, "HELO")),
        };
        let mut salt = [0u8; 16];
        let _ = getrandom::fill(&mut salt);
        let salt_hex: String = salt.iter().map(|b| format!("{b:02x}")).collect();
        let user = auth.user.as_ref().map(|(u, p)| (u.as_str(), p.as_slice()));
        let ping = Ping::new(&helo, &auth.self_hostname, key, salt_hex.as_bytes(), user);
        let mut buf = Vec::with_capacity(256);
        ping.encode(&mut buf);
        self.send(&buf).await?;
        let pong = match self.next_reply().await? {
            ServerMessage::Pong(p) => p,
            other => return Err(self.unexpected(&other, "PONG")),
        };
        pong.verify(&ping, &helo, key)
            .map_err(|e| ConnectionError::Auth {
                server: self.server.clone(),
                reason: if pong.reason.is_empty() {
                    e.to_string()
                } else {
                    format!("{e}: {}", pong.reason)
                },
            })
    }

    fn unexpected(&self, got: &ServerMessage, expected: &'static str) -> ConnectionError {
        let what = match got {
            ServerMessage::Helo(_) => "HELO (the server requires a shared_key)",
            ServerMessage::Pong(_) => "PONG",
            ServerMessage::Ack(_) => "an ack",
        };
        ConnectionError::Unexpected {
            server: self.server.clone(),
            what,
            expected,
        }
    }

    /// Writes one chunk's message with one vectored write where the stream supports it. A
    /// server that stops reading for `limit` (its window full) fails the connection.
    pub async fn send_wire(
        &mut self,
        wire: &logtap_protocol::forward::PackedForward,
        limit: Duration,
    ) -> Result<(), ConnectionError> {
        use bytes::Buf;
        let mut parts = wire
            .head
            .clone()
            .chain(wire.body.clone())
            .chain(wire.tail.clone());
        let server = self.server.clone();
        let stream = &mut self.stream;
        let write = async {
            stream.write_all_buf(&mut parts).await?;
            stream.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Ok(r) => r.map_err(|source| ConnectionError::Io { server, source }),
            Err(_) => Err(ConnectionError::Timeout {
                server,
                what: "accept a chunk",
                limit,
            }),
        }
    }

    /// Writes one complete message.
    pub async fn send(&mut self, wire: &[u8]) -> Result<(), ConnectionError> {
        let server = &self.server;
        let io = |source| ConnectionError::Io {
            server: server.clone(),
            source,
        };
        self.stream.write_all(wire).await.map_err(io)?;
        self.stream.flush().await.map_err(io)
    }

    /// The next message from the server. Cancel-safe: bytes read are kept for the next call.
    pub async fn next_reply(&mut self) -> Result<ServerMessage, ConnectionError> {
        loop {
            match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(m)) => return Ok(m),
                Ok(None) => {}
                Err(source) => {
                    return Err(ConnectionError::Decode {
                        server: self.server.clone(),
                        source,
                    });
                }
            }
            let n = self
                .stream
                .read_buf(&mut self.rbuf)
                .await
                .map_err(|source| ConnectionError::Io {
                    server: self.server.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(ConnectionError::Closed {
                    server: self.server.clone(),
                });
            }
        }
    }
}
