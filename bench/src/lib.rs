//! logtap's benchmark harness: every figure is printed beside a baseline measured in the same
//! run, interleaved round by round, because these machines are noisy.
//!
//! A benchmark binary (`bench/src/bin/*.rs`) builds a list of [`Case`]s — the first one is the
//! baseline — and hands it to [`side_by_side`]. Each round runs every case once, in order, so a
//! burst of noise hits all cases alike; the report gives the median over rounds of ns per item,
//! items/s, MB/s and the ratio of each case's median to the baseline's. Tests assert behaviour;
//! these binaries only report figures (recorded in `bench/RESULTS.md` with their command).

use std::time::{Duration, Instant};

/// What one run of a case did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Items processed (records, writes, lines…).
    pub items: u64,
    /// Payload bytes processed, for MB/s (0 to omit).
    pub bytes: u64,
    /// Wall time the run took.
    pub elapsed: Duration,
}

impl Sample {
    /// Times `f`, which processes `items` items of `bytes` bytes in all.
    pub fn time(items: u64, bytes: u64, f: impl FnOnce()) -> Sample {
        let start = Instant::now();
        f();
        Sample {
            items,
            bytes,
            elapsed: start.elapsed(),
        }
    }

    fn ns_per_item(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.items.max(1) as f64
    }
}

/// One thing to measure: a name and a closure that does one run.
pub struct Case<'a> {
    /// Shown in the report.
    pub name: String,
    /// Does one run and says what it did.
    pub run: Box<dyn FnMut() -> Sample + 'a>,
}

impl<'a> Case<'a> {
    /// A case named `name`.
    pub fn new(name: impl Into<String>, run: impl FnMut() -> Sample + 'a) -> Case<'a> {
        Case {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

/// The summary of one case over all rounds.
#[derive(Debug, Clone)]
pub struct Stat {
    /// The case's name.
    pub name: String,
    /// Median ns per item.
    pub median_ns: f64,
    /// Fastest round's ns per item.
    pub best_ns: f64,
    /// Items per second at the median.
    pub items_per_s: f64,
    /// MB/s (10^6 bytes) at the median, if the case reported bytes.
    pub mb_per_s: Option<f64>,
    /// Median divided by the baseline's median (1.0 for the baseline).
    pub ratio: f64,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs every case once as a warm-up, then `rounds` rounds of all cases in turn, and prints a
/// Markdown table headed `title`. The first case is the baseline of the ratios.
pub fn side_by_side(title: &str, rounds: usize, cases: &mut [Case<'_>]) -> Vec<Stat> {
    for c in cases.iter_mut() {
        (c.run)();
    }
    let mut per_case: Vec<Vec<Sample>> = cases.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds.max(1) {
        for (c, samples) in cases.iter_mut().zip(per_case.iter_mut()) {
            samples.push((c.run)());
        }
    }
    let mut stats: Vec<Stat> = cases
        .iter()
        .zip(&per_case)
        .map(|(c, samples)| {
            let mut ns: Vec<f64> = samples.iter().map(Sample::ns_per_item).collect();
            let med = median(&mut ns);
            let best = ns.first().copied().unwrap_or(f64::NAN);
            let bytes_per_item = samples
                .iter()
                .map(|s| s.bytes as f64 / s.items.max(1) as f64)
                .sum::<f64>()
                / samples.len().max(1) as f64;
            Stat {
                name: c.name.clone(),
                median_ns: med,
                best_ns: best,
                items_per_s: 1e9 / med,
                mb_per_s: (bytes_per_item > 0.0).then(|| bytes_per_item * 1e9 / med / 1e6),
                ratio: 1.0,
            }
        })
        .collect();
    let base = stats.first().map(|s| s.median_ns).unwrap_or(f64::NAN);
    for s in &mut stats {
        s.ratio = s.median_ns / base;
    }
    print_table(title, rounds, &stats);
    stats
}

/// Prints stats as a Markdown table (ready for `bench/RESULTS.md`).
pub fn print_table(title: &str, rounds: usize, stats: &[Stat]) {
    println!("\n### {title}\n");
    println!("median of {rounds} interleaved rounds; ratio = median / baseline (first row)\n");
    println!("| case | ns/item (median) | ns/item (best) | items/s | MB/s | ratio |");
    println!("|---|---:|---:|---:|---:|---:|");
    for s in stats {
        let mb = s
            .mb_per_s
            .map_or_else(|| "–".to_string(), |m| format!("{m:.1}"));
        println!(
            "| {} | {:.1} | {:.1} | {} | {} | {:.2}× |",
            s.name,
            s.median_ns,
            s.best_ns,
            human(s.items_per_s),
            mb,
            s.ratio
        );
    }
}

/// 1234567.0 → "1.23 M".
pub fn human(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.2} G", v / 1e9),
        v if v >= 1e6 => format!("{:.2} M", v / 1e6),
        v if v >= 1e3 => format!("{:.1} k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// Rounds from `LOGTAP_BENCH_ROUNDS`, else `default`.
pub fn rounds(default: usize) -> usize {
    std::env::var("LOGTAP_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_relative_to_the_first_case() {
        let mut cases = vec![
            Case::new("fast", || Sample {
                items: 10,
                bytes: 0,
                elapsed: Duration::from_nanos(100),
            }),
            Case::new("slow", || Sample {
                items: 10,
                bytes: 1000,
                elapsed: Duration::from_nanos(300),
            }),
        ];
        let stats = side_by_side("t", 3, &mut cases);
        assert_eq!(stats[0].ratio, 1.0);
        assert!((stats[1].ratio - 3.0).abs() < 1e-9);
        assert!((stats[1].median_ns - 30.0).abs() < 1e-9);
        assert!(stats[0].mb_per_s.is_none());
        // 100 bytes an item at 30 ns an item = 3333.3 MB/s.
        assert!((stats[1].mb_per_s.unwrap() - 3333.333).abs() < 0.01);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(human(2_500_000.0), "2.50 M");
    }
}
