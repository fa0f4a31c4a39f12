//! `logtap-bench all`: every scenario of issue 14 in one command, each after a warm-up and
//! interleaved round by round with its baseline, written into `bench/RESULTS.md`'s generated
//! section (between the `logtap-bench:begin` and `logtap-bench:end` markers; the hand-written
//! history below them is kept).
//!
//! Run: `cargo build --release -p logtap-agent -p logtap-interceptor && cargo run --release -p
//! logtap-bench -- all`. Options: `--quick` (tiny sizes, one round: proves every scenario runs,
//! as `.ci/run` does; asserts no figure and writes nothing unless `--out` is given), `--filter
//! NAME` (only the scenarios whose name contains NAME: `tap`, `python`, `agent`, `latency`,
//! `idle`, `startup`), `--out PATH` (another file than `bench/RESULTS.md`), `--rounds N`.
//!
//! The scenarios reuse the other benches' code as modules: `interceptor_bench` (the C program
//! timing its own calls, the bench's Contract 2 receiver) and `agent_bench` (a tapper writing a
//! ring read by a real `logtap agent`, the acking Forward receiver, /proc usage). The `logtap`
//! binary and `liblogtap.so` are taken from this binary's directory (`target/release/`, or
//! `target/debug/` for a debug build). Any failure (an undelivered line, a program that fails, a
//! missing artefact) ends the command with a non-zero status.

#[allow(dead_code)]
#[path = "../agent_bench.rs"]
mod agent_bench;
#[allow(dead_code)]
#[path = "../interceptor_bench/main.rs"]
mod interceptor_bench;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;

use report::Table;

type BoxError = Box<dyn std::error::Error>;

/// What the command was asked to do.
pub(crate) struct Cfg {
    /// Tiny sizes and one round: proves the scenarios run, asserts nothing about figures.
    pub(crate) quick: bool,
    /// Rounds per scenario (after one warm-up).
    pub(crate) rounds: usize,
    filter: Option<String>,
    out: Option<PathBuf>,
}

impl Cfg {
    /// `full` normally, `quick` with `--quick`.
    pub(crate) fn size(&self, full: u64, quick: u64) -> u64 {
        if self.quick { quick } else { full }
    }
}

const USAGE: &str = "usage: logtap-bench all [--quick] [--filter NAME] [--out PATH] [--rounds N]";

fn parse(args: &[String]) -> Result<Cfg, String> {
    let mut cfg = Cfg {
        quick: false,
        rounds: 0,
        filter: None,
        out: None,
    };
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("all") => {}
        _ => return Err(USAGE.into()),
    }
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or(format!("{a} needs a value; {USAGE}"))
        };
        match a.as_str() {
            "--quick" => cfg.quick = true,
            "--filter" => cfg.filter = Some(value()?),
            "--out" => cfg.out = Some(PathBuf::from(value()?)),
            "--rounds" => {
                let v = value()?;
                cfg.rounds = v
                    .parse()
                    .map_err(|_| format!("--rounds {v}: expected a number"))?;
            }
            other => return Err(format!("unknown option {other}; {USAGE}")),
        }
    }
    if cfg.rounds == 0 {
        cfg.rounds = if cfg.quick { 1 } else { 5 };
    }
    if !cfg.quick && cfg.out.is_none() {
        cfg.out = Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/RESULTS.md"
        )));
    }
    Ok(cfg)
}

type Scenario = fn(&Cfg) -> Result<Vec<Table>, BoxError>;

fn run(cfg: &Cfg) -> Result<(), BoxError> {
    let all: [(&str, Scenario); 6] = [
        ("tap", scenarios::tap_overhead),
        ("python", scenarios::python),
        ("agent", scenarios::agent_throughput),
        ("latency", scenarios::latency),
        ("idle", scenarios::idle_rss),
        ("startup", scenarios::startup),
    ];
    let chosen: Vec<_> = all
        .iter()
        .filter(|(name, _)| {
            cfg.filter
                .as_ref()
                .is_none_or(|f| name.contains(f.as_str()))
        })
        .collect();
    if chosen.is_empty() {
        return Err(format!(
            "--filter {:?} matches no scenario (tap, python, agent, latency, idle, startup)",
            cfg.filter
        )
        .into());
    }
    let machine = report::Machine::now(cfg);
    println!("{}", machine.markdown());
    let mut tables = Vec::new();
    for (name, scenario) in chosen {
        eprintln!("logtap-bench: scenario {name}…");
        let t0 = std::time::Instant::now();
        let got = scenario(cfg).map_err(|e| format!("scenario {name}: {e}"))?;
        if got.iter().any(|t| t.rows.is_empty()) {
            return Err(format!("scenario {name} produced an empty table").into());
        }
        for t in &got {
            println!("{}", t.markdown());
        }
        eprintln!(
            "logtap-bench: scenario {name} done in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        tables.extend(got);
    }
    if let Some(aims) = report::aims_table(cfg.quick) {
        println!("{}", aims.markdown());
        tables.insert(0, aims);
    }
    let machine = machine.finish();
    if let Some(out) = &cfg.out {
        report::write_section(out, &machine, &tables)?;
        eprintln!("logtap-bench: wrote {}", out.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("logtap-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logtap-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
