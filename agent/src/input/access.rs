//! Who may use the tap socket, decided at accept from `SO_PEERCRED`, and the few events of the
//! tap input that are counted always but logged at most once per [`INTERVAL`].
//!
//! The socket file's mode, owner and group (`--socket-mode`, `--socket-owner`,
//! `--socket-group`) are the first gate: the kernel refuses `connect` to a peer without write
//! permission on the file. The allow-lists (`--socket-uid`, `--socket-gid`) are the second,
//! for sockets that must be reachable by more users than may log through them (e.g. a
//! hostPath shared by every pod of a node): a peer is admitted when either list names it — its
//! uid in `socket_uid`, or its *primary* gid in `socket_gid` (`SO_PEERCRED` carries no
//! supplementary groups) — or when both lists are empty.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one line per kind of event this often.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The uid/gid allow-lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

impl AccessPolicy {
    /// Whether a peer with these credentials may connect.
    pub fn admits(&self, uid: u32, gid: u32) -> bool {
        (self.uids.is_empty() && self.gids.is_empty())
            || self.uids.contains(&uid)
            || self.gids.contains(&gid)
    }

    /// Whether any list is set (else every peer the file mode lets in is served).
    pub fn is_open(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty()
    }
}

/// An event logged at most once per [`INTERVAL`]: the first at once, then one line saying how
/// many happened since the last one.
#[derive(Debug)]
pub struct Throttle {
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub const fn new() -> Throttle {
        Throttle {
            state: Mutex::new((None, 0)),
        }
    }

    /// Notes one event; returns `Some(events since the last line, this one included)` when a
    /// line is due now.
    pub fn hit(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.1 += 1;
        let due = s.0.is_none_or(|t| now.duration_since(t) >= INTERVAL);
        if !due {
            return None;
        }
        let n = s.1;
        *s = (Some(now), 0);
        Some(n)
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}

/// Peers refused by the allow-lists.
pub static REFUSED: Throttle = Throttle::new();
/// Peers whose HELLO pid was not the kernel's.
pub static PID_MISMATCH: Throttle = Throttle::new();
/// Peers whose pid the agent cannot see (another PID namespace).
pub static PID_NOT_VISIBLE: Throttle = Throttle::new();
/// Peers whose claimed pod names contradicted the verified ones.
pub static META_CONTRADICTED: Throttle = Throttle::new();
/// Descriptor limit reached (EMFILE/ENFILE at accept, descriptors cut from a HELLO).
pub static FD_LIMIT: Throttle = Throttle::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_list_admits_and_empty_lists_admit_all() {
        let open = AccessPolicy::default();
        assert!(open.is_open() && open.admits(1000, 1000));
        let p = AccessPolicy {
            uids: vec![0, 1000],
            gids: vec![2020],
        };
        assert!(p.admits(1000, 5));
        assert!(p.admits(65532, 2020));
        assert!(!p.admits(65532, 65532));
        let only_gid = AccessPolicy {
            uids: vec![],
            gids: vec![2020],
        };
        assert!(!only_gid.admits(0, 0), "root is not special");
    }

    #[test]
    fn throttle_says_the_first_at_once_then_once_per_interval_with_a_count() {
        let t = Throttle::new();
        let t0 = Instant::now();
        assert_eq!(t.hit(t0), Some(1));
        assert_eq!(t.hit(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.hit(t0 + Duration::from_secs(2)), None);
        assert_eq!(t.hit(t0 + INTERVAL), Some(3));
        assert_eq!(t.hit(t0 + INTERVAL), None);
    }
}
