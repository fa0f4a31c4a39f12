//! When to try a server again ([`Backoff`]) and which server takes a chunk ([`weighted`]).
//!
//! Each server's link has its own exponential backoff with jitter: a server that fails is not
//! tried again before its delay, while the others go on. Active servers share chunks by
//! `weight` (Fluentd's semantics).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Exponential backoff with jitter: `base · 2^failures`, capped at `max`, each delay drawn
/// uniformly from the upper half of that ceiling (so retries of many agents do not synchronise,
/// yet never come too soon).
///
/// The sequence comes from the `backon` crate (the design card named `backoff`, which RustSec
/// marks unmaintained, RUSTSEC-2025-0012): its jittered exponential backoff draws from
/// `[d, 2d)`, so it is built on half the base and half the cap.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        let builder = ExponentialBuilder::new()
            .with_jitter()
            .with_factor(2.0)
            .with_min_delay(base / 2)
            .with_max_delay(max.max(base) / 2)
            .without_max_times();
        Backoff {
            builder,
            delays: builder.build(),
            max: max.max(base),
            failures: 0,
        }
    }

    /// Records a failure; returns how long to wait before the next attempt.
    pub fn fail(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        // `without_max_times` makes the sequence endless; the fallback is never taken.
        self.delays.next().unwrap_or(self.max)
    }

    /// Records a success: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.delays = self.builder.build();
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A uniform number in [0, 1).
fn random_unit() -> f64 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// Draws one of `candidates` with probability proportional to `weight` (uniformly if every
/// weight is 0); `None` if there is no candidate.
pub fn weighted(candidates: &[usize], weight: impl Fn(usize) -> u32) -> Option<usize> {
    let total: u64 = candidates.iter().map(|&i| u64::from(weight(i))).sum();
    if total == 0 {
        let n = candidates.len();
        return (n > 0).then(|| candidates[((random_unit() * n as f64) as usize).min(n - 1)]);
    }
    let mut target = (random_unit() * total as f64) as u64;
    for &i in candidates {
        let w = u64::from(weight(i));
        if target < w {
            return Some(i);
        }
        target -= w;
    }
    candidates.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<Duration> = (0..8).map(|_| b.fail()).collect();
        assert!(
            d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100),
            "{d:?}"
        );
        assert!(
            d[3] >= Duration::from_millis(400) && d[3] <= Duration::from_millis(800),
            "{d:?}"
        );
        assert!(
            d[7] >= Duration::from_millis(500) && d[7] <= Duration::from_secs(1),
            "{d:?}"
        );
        assert_eq!(b.failures(), 8);
        b.reset();
        assert!(b.fail() <= Duration::from_millis(100));
    }

    #[test]
    fn weights_share_the_load() {
        let weights = [1u32, 3, 0];
        let mut counts = [0; 3];
        for _ in 0..4000 {
            counts[weighted(&[0, 1, 2], |i| weights[i]).unwrap()] += 1;
        }
        assert_eq!(
            counts[2], 0,
            "weight 0 is never drawn while others weigh something"
        );
        assert!((800..1200).contains(&counts[0]), "{counts:?}");
        assert_eq!(weighted(&[], |_| 1), None);
        assert_eq!(weighted(&[4], |_| 0), Some(4));
    }
}
