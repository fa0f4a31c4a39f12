//! The handshake: HELO (server → client), PING (client → server), PONG (server → client).
//!
//! As defined by the [Forward Protocol Specification v1, "Handshake Messages"](https://github.com/fluent/fluentd/wiki/Forward-Protocol-Specification-v1#handshake-messages):
//! - `HELO = ["HELO", {"nonce": bytes, "auth": bytes, "keepalive": bool}]` — `auth` is the salt of
//!   the user/password digest, empty when the server has no users.
//! - `PING = ["PING", self_hostname, shared_key_salt, hex(sha512(shared_key_salt ‖ self_hostname ‖
//!   nonce ‖ shared_key)), username, hex(sha512(auth_salt ‖ username ‖ password)) or ""]`
//! - `PONG = ["PONG", auth_result, reason, self_hostname, hex(sha512(shared_key_salt ‖
//!   self_hostname ‖ nonce ‖ shared_key))]` — the server's own hostname, the client's salt.
//!
//! Fluentd sends `nonce` and `auth` as `bin`, Fluent Bit as `str`: both are accepted. The digests
//! are lowercase hex, compared in constant time. The two ends' hostnames must differ (Fluentd
//! refuses "same hostname between input and output").

use bytes::Bytes;
use sha2::{Digest, Sha512};

use super::error::DecodeError;
use super::read::Reader;
use super::write;

/// The server's greeting, sent first on a connection that requires authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helo {
    /// Random bytes the digests are bound to (one per connection).
    pub nonce: Bytes,
    /// Salt for the password digest; empty when no user authentication is required.
    pub auth: Bytes,
    /// Whether the server keeps the connection open after a message.
    pub keepalive: bool,
}

/// The client's answer to HELO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// The client's hostname.
    pub self_hostname: String,
    /// The client's random salt (Fluentd: 32 hex characters).
    pub shared_key_salt: Bytes,
    /// `hex(sha512(salt ‖ self_hostname ‖ nonce ‖ shared_key))`.
    pub shared_key_hexdigest: String,
    /// The user name, empty without user authentication.
    pub username: String,
    /// `hex(sha512(auth ‖ username ‖ password))`, empty without user authentication.
    pub password_digest: String,
}

/// The server's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pong {
    /// True when the client is authenticated.
    pub auth_result: bool,
    /// Why not (empty on success).
    pub reason: String,
    /// The server's hostname.
    pub server_hostname: String,
    /// `hex(sha512(client_salt ‖ server_hostname ‖ nonce ‖ shared_key))`, empty on failure.
    pub shared_key_hexdigest: String,
}

/// Why a handshake failed; `Display` gives the reason text Fluentd puts in PONG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// The shared key digest does not match.
    #[error("shared_key mismatch")]
    SharedKeyMismatch,
    /// Unknown user or wrong password.
    #[error("username/password mismatch")]
    UserMismatch,
    /// Both ends use the same hostname (a loop, or a configuration error).
    #[error("same hostname between input and output: invalid configuration")]
    SameHostname,
    /// The server refused (PONG with `auth_result` false); its reason is in the PONG.
    #[error("server refused the handshake")]
    Refused,
}

fn hex(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(digest.len() * 2);
    for &b in digest {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 0x0f) as usize] as char);
    }
    s
}

/// `hex(sha512(salt ‖ hostname ‖ nonce ‖ shared_key))`: the PING digest (with the client's
/// hostname) and the PONG digest (with the server's).
pub fn shared_key_digest(salt: &[u8], hostname: &str, nonce: &[u8], shared_key: &[u8]) -> String {
    let mut h = Sha512::new();
    h.update(salt);
    h.update(hostname.as_bytes());
    h.update(nonce);
    h.update(shared_key);
    hex(&h.finalize())
}

/// `hex(sha512(auth_salt ‖ username ‖ password))`: the PING's password digest.
pub fn password_digest(auth_salt: &[u8], username: &str, password: &[u8]) -> String {
    let mut h = Sha512::new();
    h.update(auth_salt);
    h.update(username.as_bytes());
    h.update(password);
    hex(&h.finalize())
}

/// Compares two digests without an early exit, so timing does not reveal the matching prefix.
fn digest_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Helo {
    /// Appends `["HELO", {"nonce": bin, "auth": bin, "keepalive": bool}]`, as Fluentd sends it.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        write::array_len(buf, 2);
        write::str(buf, b"HELO");
        write::map_len(buf, 3);
        write::str(buf, b"nonce");
        write::bin(buf, &self.nonce);
        write::str(buf, b"auth");
        write::bin(buf, &self.auth);
        write::str(buf, b"keepalive");
        write::bool(buf, self.keepalive);
    }

    /// Parses the element after `"HELO"` (the option map). Missing `auth` means none; missing
    /// `keepalive` means true (the spec's default).
    pub(crate) fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.map_len("HELO options")?;
        let mut helo = Helo {
            nonce: Bytes::new(),
            auth: Bytes::new(),
            keepalive: true,
        };
        let mut have_nonce = false;
        for _ in 0..n {
            let (_, key) = r.raw_str("HELO option key")?;
            match &key[..] {
                b"nonce" => {
                    helo.nonce = r.raw_str("HELO nonce")?.1;
                    have_nonce = true;
                }
                b"auth" => helo.auth = r.raw_str("HELO auth")?.1,
                b"keepalive" => helo.keepalive = r.bool("HELO keepalive")?,
                _ => {
                    let depth = r.max_depth;
                    super::value::Value::read(r, depth)?;
                }
            }
        }
        if !have_nonce {
            return Err(DecodeError::UnexpectedMessage("HELO without a nonce"));
        }
        Ok(helo)
    }
}

impl Ping {
    /// Builds the client's PING for a server's HELO. `salt` is the client's random salt (Fluentd
    /// sends 16 random bytes as 32 hex characters); `user` is `(username, password)` when the
    /// server asks for user authentication (a non-empty `auth` in HELO).
    pub fn new(
        helo: &Helo,
        self_hostname: &str,
        shared_key: &[u8],
        salt: &[u8],
        user: Option<(&str, &[u8])>,
    ) -> Self {
        let (username, password_digest) = match user {
            Some((name, password)) if !helo.auth.is_empty() => {
                (name.to_owned(), password_digest(&helo.auth, name, password))
            }
            Some((name, _)) => (name.to_owned(), String::new()),
            None => (String::new(), String::new()),
        };
        Ping {
            self_hostname: self_hostname.to_owned(),
            shared_key_salt: Bytes::copy_from_slice(salt),
            shared_key_hexdigest: shared_key_digest(salt, self_hostname, &helo.nonce, shared_key),
            username,
            password_digest,
        }
    }

    /// Appends the six-element PING array (salt as `str`, like Fluentd).
    pub fn encode(&self, buf: &mut Vec<u8>) {
        write::array_len(buf, 6);
        write::str(buf, b"PING");
        write::str(buf, self.self_hostname.as_bytes());
        write::str(buf, &self.shared_key_salt);
        write::str(buf, self.shared_key_hexdigest.as_bytes());
        write::str(buf, self.username.as_bytes());
        write::str(buf, self.password_digest.as_bytes());
    }

    /// Server side: checks this PING against the HELO the server sent. `password_of` looks up a
    /// user's password; it is consulted only when `helo.auth` is non-empty.
    pub fn verify(
        &self,
        helo: &Helo,
        server_hostname: &str,
        shared_key: &[u8],
        password_of: impl Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<(), AuthFailure> {
        if self.self_hostname == server_hostname {
            return Err(AuthFailure::SameHostname);
        }
        let expected = shared_key_digest(
            &self.shared_key_salt,
            &self.self_hostname,
            &helo.nonce,
            shared_key,
        );
        if !digest_eq(&expected, &self.shared_key_hexdigest) {
            return Err(AuthFailure::SharedKeyMismatch);
        }
        if !helo.auth.is_empty() {
            let password = password_of(&self.username).ok_or(AuthFailure::UserMismatch)?;
            let expected = password_digest(&helo.auth, &self.username, &password);
            if !digest_eq(&expected, &self.password_digest) {
                return Err(AuthFailure::UserMismatch);
            }
        }
        Ok(())
    }

    /// Parses the five elements after `"PING"`.
    pub(crate) fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Ping {
            self_hostname: r.text("PING self_hostname")?,
            shared_key_salt: r.raw_str("PING shared_key_salt")?.1,
            shared_key_hexdigest: r.text("PING shared_key_hexdigest")?,
            username: r.text("PING username")?,
            password_digest: r.text("PING password digest")?,
        })
    }
}

impl Pong {
    /// Server side: the PONG answering `ping` given the outcome of [`Ping::verify`].
    pub fn answer(
        ping: &Ping,
        helo: &Helo,
        server_hostname: &str,
        shared_key: &[u8],
        verdict: Result<(), AuthFailure>,
    ) -> Self {
        match verdict {
            Ok(()) => Pong {
                auth_result: true,
                reason: String::new(),
                server_hostname: server_hostname.to_owned(),
                shared_key_hexdigest: shared_key_digest(
                    &ping.shared_key_salt,
                    server_hostname,
                    &helo.nonce,
                    shared_key,
                ),
            },
            Err(e) => Pong {
                auth_result: false,
                reason: e.to_string(),
                server_hostname: server_hostname.to_owned(),
                shared_key_hexdigest: String::new(),
            },
        }
    }

    /// Appends the five-element PONG array.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        write::array_len(buf, 5);
        write::str(buf, b"PONG");
        write::bool(buf, self.auth_result);
        write::str(buf, self.reason.as_bytes());
        write::str(buf, self.server_hostname.as_bytes());
        write::str(buf, self.shared_key_hexdigest.as_bytes());
    }

    /// Client side: checks the server's PONG for the PING we sent after `helo`.
    pub fn verify(&self, ping: &Ping, helo: &Helo, shared_key: &[u8]) -> Result<(), AuthFailure> {
        if !self.auth_result {
            return Err(AuthFailure::Refused);
        }
        if self.server_hostname == ping.self_hostname {
            return Err(AuthFailure::SameHostname);
        }
        let expected = shared_key_digest(
            &ping.shared_key_salt,
            &self.server_hostname,
            &helo.nonce,
            shared_key,
        );
        if !digest_eq(&expected, &self.shared_key_hexdigest) {
            return Err(AuthFailure::SharedKeyMismatch);
        }
        Ok(())
    }

    /// Parses the four elements after `"PONG"`.
    pub(crate) fn read_body(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Pong {
            auth_result: r.bool("PONG auth_result")?,
            reason: r.text("PONG reason")?,
            server_hostname: r.text("PONG server hostname")?,
            shared_key_hexdigest: r.text("PONG shared_key_hexdigest")?,
        })
    }
}
