//! Signals that stop the agent, and the order of a clean stop.
//!
//! SIGTERM (Kubernetes, systemd, docker stop) and SIGINT (Ctrl-C) both mean: stop reading new
//! work, flush what is buffered, wait for acknowledgements for at most the grace period, exit 0
//! ([`crate::agent::Agent::drain`]). `logtap run` instead passes both on to its child and
//! drains once the child has exited.

use std::fmt;
use std::io;

use tokio::signal::unix::{SignalKind, signal};

/// A stop signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Int,
}

impl StopSignal {
    /// The signal number, to pass it on.
    pub fn number(self) -> i32 {
        match self {
            StopSignal::Term => libc::SIGTERM,
            StopSignal::Int => libc::SIGINT,
        }
    }
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopSignal::Term => "SIGTERM",
            StopSignal::Int => "SIGINT",
        })
    }
}

/// Listens for SIGTERM and SIGINT (installed at once, so none is missed between calls).
pub struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Installs the handlers.
    pub fn new() -> io::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next stop signal.
    pub async fn recv(&mut self) -> StopSignal {
        tokio::select! {
            _ = self.term.recv() => StopSignal::Term,
            _ = self.int.recv() => StopSignal::Int,
        }
    }
}
