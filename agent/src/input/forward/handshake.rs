//! The server side of the Forward handshake, for a forward input with a `shared_key`.
//!
//! We speak first: `["HELO", {nonce, auth: "", keepalive: true}]` with a fresh 16-byte nonce.
//! The client must answer PING (its hostname, salt, and `hex(sha512(salt ‖ hostname ‖ nonce ‖
//! shared_key))`); we verify it with `logtap_protocol`'s [`Ping::verify`] and always answer a
//! PONG — `auth_result` false with Fluentd's reason text when the key is wrong, the hostnames are
//! equal, or the client skipped the handshake and sent events — then the caller closes.

use bytes::{Bytes, BytesMut};
use logtap_protocol::forward::{AuthFailure, ClientMessage, Helo, Ping, Pong, ServerDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::connection::InputConnError;

/// The PONG reason when a client sends events instead of PING.
pub const MISSING_HANDSHAKE: &str =
    "shared_key handshake required: the client sent events without PING";

/// Reads the next client message (`Closed` at end of stream).
pub async fn next_message<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    dec: &mut ServerDecoder,
) -> Result<ClientMessage, InputConnError> {
    loop {
        if let Some(m) = dec.decode(buf)? {
            return Ok(m);
        }
        buf.reserve(8192);
        if rd.read_buf(buf).await? == 0 {
            return Err(InputConnError::Closed);
        }
    }
}

/// HELO → PING → PONG. `Ok` when the client proved the key.
pub async fn accept<R, W>(
    rd: &mut R,
    wr: &mut W,
    buf: &mut BytesMut,
    dec: &mut ServerDecoder,
    shared_key: &[u8],
    hostname: &str,
) -> Result<(), InputConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut nonce = [0u8; 16];
    if getrandom::fill(&mut nonce).is_err() {
        nonce = crate::record::ChunkId::random().0;
    }
    let helo = Helo {
        nonce: Bytes::copy_from_slice(&nonce),
        auth: Bytes::new(),
        keepalive: true,
    };
    let mut out = Vec::with_capacity(128);
    helo.encode(&mut out);
    wr.write_all(&out).await?;
    wr.flush().await?;
    let ping = match next_message(rd, buf, dec).await? {
        ClientMessage::Ping(p) => p,
        ClientMessage::Events(_) => {
            refuse(wr, hostname, MISSING_HANDSHAKE).await?;
            return Err(InputConnError::HandshakeMissing);
        }
    };
    let verdict = ping.verify(&helo, hostname, shared_key, |_| None);
    let pong = Pong::answer(&ping, &helo, hostname, shared_key, verdict);
    let mut out = Vec::with_capacity(256);
    pong.encode(&mut out);
    wr.write_all(&out).await?;
    wr.flush().await?;
    verdict.map_err(|failure| InputConnError::Auth {
        failure,
        client: client_name(&ping),
    })
}

fn client_name(ping: &Ping) -> String {
    ping.self_hostname.clone()
}

/// Answers PONG with `auth_result` false and `reason`.
async fn refuse<W: AsyncWrite + Unpin>(
    wr: &mut W,
    hostname: &str,
    reason: &str,
) -> Result<(), InputConnError> {
    let pong = Pong {
        auth_result: false,
        reason: reason.to_owned(),
        server_hostname: hostname.to_owned(),
        shared_key_hexdigest: String::new(),
    };
    let mut out = Vec::with_capacity(128);
    pong.encode(&mut out);
    wr.write_all(&out).await?;
    wr.flush().await?;
    Ok(())
}

/// For log lines: what a failure means to the operator.
pub fn explain(failure: AuthFailure) -> &'static str {
    match failure {
        AuthFailure::SharedKeyMismatch => "wrong shared_key",
        AuthFailure::UserMismatch => "wrong username/password",
        AuthFailure::SameHostname => {
            "client and server use the same hostname (set --self-hostname on one)"
        }
        AuthFailure::Refused => "refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logtap_protocol::forward::{ClientDecoder, ServerMessage};

    /// Runs `accept` against a client that answers with `client_key`; returns both outcomes.
    async fn run(
        client_key: &'static [u8],
        client_host: &'static str,
    ) -> (Result<(), InputConnError>, Pong) {
        let (client, server) = tokio::io::duplex(4096);
        let srv = tokio::spawn(async move {
            let (mut rd, mut wr) = tokio::io::split(server);
            let (mut buf, mut dec) = (BytesMut::new(), ServerDecoder::default());
            accept(&mut rd, &mut wr, &mut buf, &mut dec, b"k3y", "server-host").await
        });
        let (mut rd, mut wr) = tokio::io::split(client);
        let (mut buf, mut dec) = (BytesMut::new(), ClientDecoder::default());
        let mut next = async || loop {
            if let Some(m) = dec.decode(&mut buf).unwrap() {
                return m;
            }
            assert!(rd.read_buf(&mut buf).await.unwrap() > 0);
        };
        let ServerMessage::Helo(helo) = next().await else {
            panic!("HELO first")
        };
        assert_eq!(helo.nonce.len(), 16);
        let ping = Ping::new(&helo, client_host, client_key, b"0123456789abcdef", None);
        let mut out = Vec::new();
        ping.encode(&mut out);
        wr.write_all(&out).await.unwrap();
        let ServerMessage::Pong(pong) = next().await else {
            panic!("PONG")
        };
        if pong.auth_result {
            pong.verify(&ping, &helo, client_key).unwrap();
        }
        (srv.await.unwrap(), pong)
    }

    #[tokio::test]
    async fn right_key_is_accepted_and_proven_back() {
        let (r, pong) = run(b"k3y", "client-host").await;
        assert!(r.is_ok() && pong.auth_result && pong.server_hostname == "server-host");
    }

    #[tokio::test]
    async fn wrong_key_and_same_hostname_are_refused_with_a_reason() {
        let (r, pong) = run(b"nope", "client-host").await;
        assert!(matches!(
            r,
            Err(InputConnError::Auth {
                failure: AuthFailure::SharedKeyMismatch,
                ..
            })
        ));
        assert_eq!(
            (pong.auth_result, pong.reason.as_str()),
            (false, "shared_key mismatch")
        );
        let (r, pong) = run(b"k3y", "server-host").await;
        assert!(matches!(
            r,
            Err(InputConnError::Auth {
                failure: AuthFailure::SameHostname,
                ..
            })
        ));
        assert!(!pong.auth_result);
    }
}
