//! Saying what a tapped process lost: the agent learns of drops from the ring's header counters
//! (records the interceptor could not put into a full ring, reservations abandoned by a killed writer)
//! and from LOSS frames (copies it could not hand over: no connection, or a full control
//! socket). Each is counted in the metrics at once; this module also logs them, per peer, with
//! the process's pid and comm — the first drop at once, then at most one line per
//! [`INTERVAL`] summing what came meanwhile, and what is left when the peer ends.
//!
//! `logtap run` prints one summary line of its own at exit; its peers log at debug level
//! ([`set_summary_only`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use logtap_protocol::ring::RingCounters;

/// At most one drop line per peer this often.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Set by `logtap run`, which says the drops itself at exit.
static SUMMARY_ONLY: AtomicBool = AtomicBool::new(false);

/// Peers log their drops at debug level only (`logtap run` prints a summary instead).
pub fn set_summary_only(on: bool) {
    SUMMARY_ONLY.store(on, Ordering::Relaxed);
}

/// Drops of one peer not logged yet.
#[derive(Debug, Default)]
pub struct DropLog {
    ring_full: (u64, u64),
    not_sent: (u64, u64),
    abandoned: u64,
    /// Records dropped since the peer connected (logged ones included).
    total: u64,
    last: Option<Instant>,
}

impl DropLog {
    /// New ring counters (from `RingReader::report_losses`).
    pub fn ring(&mut self, c: RingCounters) {
        self.ring_full.0 += c.dropped_records;
        self.ring_full.1 += c.dropped_bytes;
        self.abandoned += c.abandoned_records;
        self.total += c.dropped_records + c.abandoned_records;
    }

    /// A LOSS frame.
    pub fn loss_frame(&mut self, records: u64, bytes: u64) {
        self.not_sent.0 += records;
        self.not_sent.1 += bytes;
        self.total += records;
    }

    fn pending(&self) -> bool {
        self.ring_full.0 + self.not_sent.0 + self.abandoned > 0
    }

    /// Logs what is pending if the last line is [`INTERVAL`] old (or there was none), or
    /// whatever its age with `last_call` (the peer ends).
    pub fn flush(&mut self, pid: u32, comm: &str, now: Instant, last_call: bool) {
        if !self.pending() {
            return;
        }
        let due = self.last.is_none_or(|t| now.duration_since(t) >= INTERVAL);
        if !due && !last_call {
            return;
        }
        self.last = Some(now);
        let records = self.ring_full.0 + self.not_sent.0 + self.abandoned;
        let bytes = self.ring_full.1 + self.not_sent.1;
        macro_rules! line {
            ($level:ident) => {
                tracing::$level!(
                    pid,
                    comm,
                    records,
                    bytes,
                    ring_full = self.ring_full.0,
                    not_sent = self.not_sent.0,
                    abandoned = self.abandoned,
                    total = self.total,
                    "a tapped process dropped records (ring_full: its ring was full — the agent \
                     was behind, stopped or not yet connected; not_sent: no connection or a full \
                     socket; abandoned: a writer killed mid-write)"
                )
            };
        }
        if SUMMARY_ONLY.load(Ordering::Relaxed) {
            line!(debug);
        } else {
            line!(warn);
        }
        self.ring_full = (0, 0);
        self.not_sent = (0, 0);
        self.abandoned = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_drop_at_once_then_once_per_interval_and_the_rest_at_the_end() {
        let t0 = Instant::now();
        let mut log = DropLog::default();
        log.flush(1, "x", t0, false);
        assert!(log.last.is_none(), "nothing to say");
        log.loss_frame(2, 20);
        log.flush(1, "x", t0, false);
        assert_eq!(log.last, Some(t0));
        assert!(!log.pending());
        log.ring(RingCounters {
            dropped_records: 5,
            dropped_bytes: 50,
            abandoned_records: 1,
        });
        log.flush(1, "x", t0 + Duration::from_secs(1), false);
        assert!(log.pending(), "rate-limited");
        log.flush(1, "x", t0 + INTERVAL, false);
        assert!(!log.pending());
        assert_eq!(log.total, 8);
        log.loss_frame(1, 1);
        log.flush(1, "x", t0 + INTERVAL, true);
        assert!(!log.pending(), "said when the peer ends");
    }
}
