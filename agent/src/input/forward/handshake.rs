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
