//! Which server to use next, and when to try again: [`Backoff`] and [`Servers`].
//!
//! Each server has its own exponential backoff with jitter: a server that fails is not tried
//! again before its delay, while the others are. Active servers share chunks by `weight`
//! (Fluentd's semantics); `standby` servers are used only while no active server is available.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::ForwardServer;

/// Exponential backoff with jitter: `base · 2^failures`, capped, each delay drawn uniformly from
/// its upper half (so retries of many agents do not synchronise, yet never come too soon).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// Records a failure; returns how long to wait before the next attempt.
    pub fn fail(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.failures.min(20));
        self.failures = self.failures.saturating_add(1);
        let ceiling = exp.min(self.max);
        let half = ceiling / 2;
        half + half.mul_f64(random_unit())
    }

    /// Records a success: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
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

#[derive(Debug)]
struct ServerState {
    server: ForwardServer,
    backoff: Backoff,
    next_try: Instant,
}

/// The configured servers and their health.
#[derive(Debug)]
pub struct Servers {
    list: Vec<ServerState>,
}

/// What [`Servers::pick`] says.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick {
    /// Use the server at this index now.
    Now(usize),
    /// None is available before this instant.
    Wait(Instant),
}

impl Servers {
    pub fn new(servers: &[ForwardServer], base: Duration, max: Duration) -> Servers {
        let now = Instant::now();
        Servers {
            list: servers
                .iter()
                .map(|s| ServerState {
                    server: s.clone(),
                    backoff: Backoff::new(base, max),
                    next_try: now,
                })
                .collect(),
        }
    }

    pub fn get(&self, i: usize) -> &ForwardServer {
        &self.list[i].server
    }

    /// An available server: weighted among active ones, else among standby ones.
    pub fn pick(&self, now: Instant) -> Pick {
        for standby in [false, true] {
            let ready: Vec<usize> = (0..self.list.len())
                .filter(|&i| self.list[i].server.standby == standby && self.list[i].next_try <= now)
                .collect();
            let total: u64 = ready
                .iter()
                .map(|&i| u64::from(self.list[i].server.weight))
                .sum();
            if ready.is_empty() {
                continue;
            }
            if total == 0 {
                return Pick::Now(ready[0]);
            }
            let mut target = (random_unit() * total as f64) as u64;
            for &i in &ready {
                let w = u64::from(self.list[i].server.weight);
                if target < w {
                    return Pick::Now(i);
                }
                target -= w;
            }
            return Pick::Now(ready[ready.len() - 1]);
        }
        let earliest = self.list.iter().map(|s| s.next_try).min().unwrap_or(now);
        Pick::Wait(earliest)
    }

    /// Server `i` failed: it rests for its backoff delay. Returns the delay.
    pub fn failed(&mut self, i: usize, now: Instant) -> Duration {
        let s = &mut self.list[i];
        let delay = s.backoff.fail();
        s.next_try = now + delay;
        delay
    }

    /// Server `i` works (it acknowledged a chunk, or took one without acks).
    pub fn succeeded(&mut self, i: usize) {
        self.list[i].backoff.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(host: &str, weight: u32, standby: bool) -> ForwardServer {
        ForwardServer {
            host: host.into(),
            port: 1,
            weight,
            standby,
        }
    }

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
        b.reset();
        assert!(b.fail() <= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn failover_to_standby_and_back() {
        let mut s = Servers::new(
            &[server("a", 60, false), server("b", 60, true)],
            Duration::from_secs(1),
            Duration::from_secs(10),
        );
        let now = Instant::now();
        assert_eq!(s.pick(now), Pick::Now(0));
        s.failed(0, now);
        assert_eq!(
            s.pick(now),
            Pick::Now(1),
            "standby while the active one rests"
        );
        s.failed(1, now);
        assert!(matches!(s.pick(now), Pick::Wait(_)));
        assert_eq!(
            s.pick(now + Duration::from_secs(2)),
            Pick::Now(0),
            "active again after its delay"
        );
    }

    #[tokio::test]
    async fn weights_share_the_load() {
        let s = Servers::new(
            &[
                server("a", 1, false),
                server("b", 3, false),
                server("z", 0, false),
            ],
            Duration::from_secs(1),
            Duration::from_secs(10),
        );
        let now = Instant::now();
        let mut counts = [0; 3];
        for _ in 0..4000 {
            let Pick::Now(i) = s.pick(now) else { panic!() };
            counts[i] += 1;
        }
        assert_eq!(
            counts[2], 0,
            "weight 0 is never picked while others are ready"
        );
        assert!((800..1200).contains(&counts[0]), "{counts:?}");
    }
}
