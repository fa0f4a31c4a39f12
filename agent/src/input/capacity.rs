//! How many tap peers the agent can hold: each holds 3 descriptors (its socket, its ring's
//! memfd, its eventfd). With the common soft `RLIMIT_NOFILE` of 1024, accept failed with
//! `EMFILE` at about 320 peers and HELLOs arrived with their descriptors cut (measured with 600
//! concurrent tapped processes; they got in only by reconnecting). `logtap agent` therefore
//! raises the soft limit to the hard one at start ([`raise_descriptor_limit`]) and says how
//! many peers that allows; reaching the limit later is counted
//! (`logtap_tap_fd_limit_total`) and logged once per interval ([`limit_reached`]).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::access::FD_LIMIT;
use crate::metrics::METRICS;
use crate::sys;

/// Descriptors one tap peer holds in the agent.
pub const FDS_PER_PEER: u64 = 3;
/// Descriptors kept for everything else: stdio, the runtime, listeners, outputs, the spool.
pub const RESERVED_FDS: u64 = 64;

/// Tap peers a descriptor limit of `limit` allows.
pub fn peers_allowed(limit: u64) -> u64 {
    limit.saturating_sub(RESERVED_FDS) / FDS_PER_PEER
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and logs how many peers it allows.
/// Returns the soft limit now in force.
pub fn raise_descriptor_limit() -> Option<u64> {
    match sys::raise_nofile_limit() {
        Ok((before, now)) => {
            tracing::info!(
                soft_limit_was = before,
                open_files_limit = now,
                tap_peers_allowed = peers_allowed(now),
                "descriptor limit (RLIMIT_NOFILE): each tap peer holds {FDS_PER_PEER}"
            );
            Some(now)
        }
        Err(e) => {
            let soft = sys::nofile_limit().map(|l| l.0).unwrap_or(0);
            tracing::warn!(
                error = %e,
                open_files_limit = soft,
                tap_peers_allowed = peers_allowed(soft),
                "cannot raise the descriptor limit (RLIMIT_NOFILE) to the hard limit"
            );
            None
        }
    }
}

/// The descriptor limit stopped a peer (`what`: EMFILE/ENFILE at accept, or descriptors cut
/// from a HELLO): counted always, logged once per interval.
pub fn limit_reached(what: &str) {
    METRICS.tap_fd_limit.fetch_add(1, Relaxed);
    if let Some(n) = FD_LIMIT.hit(Instant::now()) {
        let soft = sys::nofile_limit().map(|l| l.0).unwrap_or(0);
        tracing::warn!(
            events = n,
            open_files_limit = soft,
            tap_peers_allowed = peers_allowed(soft),
            connected_peers = METRICS.peers.load(Relaxed),
            "out of file descriptors: {what}; tap peers are refused until some leave \
             (raise the hard RLIMIT_NOFILE, e.g. LimitNOFILE= in the systemd unit)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_descriptors_per_peer_after_the_reserve() {
        assert_eq!(peers_allowed(1024), 320);
        assert_eq!(peers_allowed(10), 0);
        assert_eq!(peers_allowed(1 << 20), ((1 << 20) - 64) / 3);
    }
}
