//! The server side of the Forward handshake, for a forward input with a `shared_key`.
//!
//! We speak first: `["HELO", {nonce, auth, keepalive: true}]` with a fresh 16-byte nonce, and
//! with users configured a fresh 16-byte `auth` salt (else `auth` is empty: no user check).
//! The client must answer PING (its hostname, salt, and `hex(sha512(salt ‖ hostname ‖ nonce ‖
//! shared_key))`, plus its user name and `hex(sha512(auth ‖ user ‖ password))` when asked); we
//! verify it with `logtap_protocol`'s [`Ping::verify`] and always answer a
//! PONG — `auth_result` false with Fluentd's reason text when the key is wrong, the hostnames are
//! equal, or the client skipped the handshake and sent events — then the caller closes.

use bytes::{Bytes, BytesMut};
use logtap_protocol::forward::{ClientMessage, Helo, Ping, Pong, ServerDecoder};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::error::InputConnError;

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
    users: &[(String, Vec<u8>)],
    hostname: &str,
) -> Result<(), InputConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let helo = Helo {
        nonce: Bytes::copy_from_slice(&random16()),
        auth: if users.is_empty() {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(&random16())
        },
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
    let verdict = ping.verify(&helo, hostname, shared_key, |name| {
        users
            .iter()
            .find(|(user, _)| user == name)
            .map(|(_, password)| password.clone())
    });
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
    if ping.username.is_empty() {
        ping.self_hostname.clone()
    } else {
        format!("{}@{}", ping.username, ping.self_hostname)
    }
}

/// 16 unpredictable bytes (nonce, salt).
fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        b = crate::record::ChunkId::generate()
            .random_bytes()
            .unwrap_or_default();
    }
    b
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

#[cfg(test)]
mod tests {
    use super::*;
    use logtap_protocol::forward::{AuthFailure, ClientDecoder, ServerMessage};

    /// Runs `accept` against a client that answers with `client_key`; returns both outcomes.
    async fn run(
        client_key: &'static [u8],
        client_host: &'static str,
    ) -> (Result<(), InputConnError>, Pong) {
        run_with_users(client_key, client_host, Vec::new(), None).await
    }

    /// `run` with users on the server and a login on the client.
    async fn run_with_users(
        client_key: &'static [u8],
        client_host: &'static str,
        users: Vec<(String, Vec<u8>)>,
        login: Option<(&'static str, &'static [u8])>,
    ) -> (Result<(), InputConnError>, Pong) {
        let (client, server) = tokio::io::duplex(4096);
        let srv = tokio::spawn(async move {
            let (mut rd, mut wr) = tokio::io::split(server);
            let (mut buf, mut dec) = (BytesMut::new(), ServerDecoder::default());
            accept(
                &mut rd,
                &mut wr,
                &mut buf,
                &mut dec,
                b"k3y",
                &users,
                "server-host",
            )
            .await
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
        let ping = Ping::new(&helo, client_host, client_key, b"0123456789abcdef", login);
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

    fn users() -> Vec<(String, Vec<u8>)> {
        vec![
            ("alice".to_owned(), b"wonder:land".to_vec()),
            ("bob".to_owned(), Vec::new()),
        ]
    }

    #[tokio::test]
    async fn users_log_in_with_their_password() {
        for login in [("alice", &b"wonder:land"[..]), ("bob", &b""[..])] {
            let (r, pong) = run_with_users(b"k3y", "client-host", users(), Some(login)).await;
            assert!(r.is_ok() && pong.auth_result, "{}", login.0);
        }
    }

    #[tokio::test]
    async fn a_wrong_password_an_unknown_user_or_no_login_is_refused() {
        for login in [
            Some(("alice", &b"wonder"[..])),
            Some(("carol", &b"x"[..])),
            None,
        ] {
            let (r, pong) = run_with_users(b"k3y", "client-host", users(), login).await;
            assert!(
                matches!(
                    r,
                    Err(InputConnError::Auth {
                        failure: AuthFailure::UserMismatch,
                        ..
                    })
                ),
                "{login:?}: {r:?}"
            );
            assert!(!pong.auth_result);
        }
    }

    #[tokio::test]
    async fn without_users_a_login_is_not_asked_for() {
        let (r, pong) = run_with_users(
            b"k3y",
            "client-host",
            Vec::new(),
            Some(("alice", &b"whatever"[..])),
        )
        .await;
        assert!(r.is_ok() && pong.auth_result);
    }
}
