//! Why a forward input connection ended early: [`InputConnError`], shared by the connection
//! and its handshake.

use std::time::Duration;

use logtap_protocol::forward::{AuthFailure, DecodeError};

use crate::buffer::memory::BufferError;

/// How long a client has for TLS and the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a client connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum InputConnError {
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the client closed the connection during the handshake")]
    Closed,
    #[error("not a valid Forward message: {0}")]
    Decode(#[from] DecodeError),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("{what} timed out after {HANDSHAKE_TIMEOUT:?}")]
    Timeout { what: &'static str },
    #[error("rejected client `{client}`: {} ({failure})", explain(*failure))]
    Auth {
        failure: AuthFailure,
        client: String,
    },
    #[error(
        "rejected: the client sent events without the shared_key handshake (configure its shared_key)"
    )]
    HandshakeMissing,
    #[error("the client sent PING outside a handshake (this input has no shared_key)")]
    UnexpectedPing,
    #[error("{0}")]
    Buffer(#[from] BufferError),
    #[error("the agent is shutting down")]
    ShuttingDown,
    #[error("message with {0} events is too large for one chunk")]
    TooManyEvents(usize),
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
