//! The scenarios of issue 14. Each returns its tables; each runs a warm-up first, then
//! `cfg.rounds` rounds in which every case (the baseline first) runs once, so that a burst of
//! noise on this shared machine hits all cases of a round alike.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use crate::agent_bench::{self, AgentProc, LINE, Usage};
use crate::interceptor_bench::{self, Mode, Opts, cpu::two_cpus};
use crate::report::{Table, aim, spread, stats};
use crate::{BoxError, Cfg};

/// Fluent Bit, the reference, cannot be installed here (`apt-cache policy fluent-bit`
/// finds no candidate on this Debian), so its rows are replaced by the baselines available.
const NO_FLUENT_BIT: &str = "Fluent Bit is not installable on this machine (no `fluent-bit` \
     package in its apt sources), so the baseline is the one named beside it in the issue";

/// A fresh temporary directory for one scenario.
fn scratch(name: &str) -> Result<PathBuf, BoxError> {
    let dir = std::env::temp_dir().join(format!("logtap-bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// `name` beside this binary (`liblogtap.so`, `logtap`), or an error saying how to build it.
fn beside(name: &str, build: &str) -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().ok_or("no binary directory")?.join(name);
    if !path.exists() {
        return Err(format!("{} not found: {build}", path.display()).into());
    }
    Ok(path)
}

fn preload() -> Result<PathBuf, BoxError> {
    beside(
        "liblogtap.so",
        "cargo build --release -p logtap-interceptor (the same profile as this bench)",
    )
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Tap overhead: 64 B and 1 KiB `write` and `printf`, to /dev/null and to a drained pipe,
/// untapped vs ring vs socket vs suppressed (interceptor_bench's program and receiver).
pub(crate) fn tap_overhead(cfg: &Cfg) -> Result<Vec<Table>, BoxError> {
    let dir = scratch("tap")?;
    let exe = interceptor_bench::compile(&dir);
    let preload = preload()?;
    let modes = [Mode::Untapped, Mode::Ring, Mode::Socket, Mode::Suppressed];
    let mut rows = Vec::new();
    for size in [64u64, 1024] {
        let o = Opts {
            pin: two_cpus(),
            filter: None,
            agent: PathBuf::new(),
            calls: if size == 64 {
                cfg.size(500_000, 2_000)
            } else {
                cfg.size(100_000, 500)
            },
            runs: 1,
            preload: preload.clone(),
            size,
        };
        for op in ["write", "printf"] {
            for pipe in [false, true] {
                let sink = if pipe { "pipe (drained)" } else { "/dev/null" };
                for &mode in &modes {
                    interceptor_bench::run_once(&exe, &dir, &o, op, pipe, mode);
                }
                let mut ns: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
                // The worst round's (delivered, dropped and counted) shares of the bytes written.
                let mut delivered: Vec<(f64, f64)> = vec![(1.0, 0.0); modes.len()];
                for _ in 0..cfg.rounds {
                    for (i, &mode) in modes.iter().enumerate() {
                        let (n, d) = interceptor_bench::run_once(&exe, &dir, &o, op, pipe, mode);
                        if !n.is_finite() {
                            return Err(format!("{op} {sink} {}: no timing", mode.name()).into());
                        }
                        ns[i].push(n);
                        if let Some(d) = d
                            && d.0 < delivered[i].0
                        {
                            delivered[i] = d;
                        }
                    }
                }
                let base = stats(&ns[0]).0;
                let ring = stats(&ns[1]).0 / base;
                match (size, op, pipe) {
                    (64, "write", false) => aim(
                        "tap overhead, 64 B `write` to /dev/null, ring",
                        "≤ 1.3×",
                        format!("{ring:.2}×"),
                        ring <= 1.3,
                    ),
                    (64, "printf", false) => aim(
                        "tap overhead, 64 B `printf` to /dev/null, ring",
                        "≤ 1.5×",
                        format!("{ring:.2}×"),
                        ring <= 1.5,
                    ),
                    _ => {}
                }
                for (i, &mode) in modes.iter().enumerate() {
                    let med = stats(&ns[i]).0;
                    rows.push(vec![
                        format!("`{op}`"),
                        format!("{size} B"),
                        sink.to_string(),
                        mode.name().to_string(),
                        format!("{med:.1}"),
                        spread(&ns[i], 1),
                        format!("{:.2}×", med / base),
                        match delivered[i] {
                            _ if mode == Mode::Untapped => "—".into(),
                            (d, _) if d >= 1.0 => "100.00 %".into(),
                            (d, lost) => {
                                format!("{:.2} % (+{:.2} % counted)", 100.0 * d, 100.0 * lost)
                            }
                        },
                    ]);
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(vec![Table {
        title: "Tap overhead: a tapped call inside the program".into(),
        note: "A C program (`interceptor_bench`'s, `gcc -O2`) times its own loop of calls \
               (500,000 of 64 B, 100,000 of 1 KiB; `--quick`: 2,000 and 500) and prints ns per \
               call. Baseline: the same program without the library. Tapped rows: stdout tapped \
               into the bench's own Contract 2 receiver on the other CPU, 1 MiB ring (`ring`), \
               one `sendmsg` per write (`LLT_TRANSPORT=socket`), or the ring with the real write \
               skipped (`LLT_SUPPRESS_STDOUT=true`). Delivered: the worst round's share of the \
               written bytes the receiver got, and when short of 100 % the share the library reported \
               dropped (ring counters, LOSS frames), as `interceptor_bench` reports it. Ratio: median / the untapped median."
            .into(),
        header: vec![
            "call",
            "line",
            "sink",
            "mode",
            "ns/call (median)",
            "spread (min–max)",
            "× untapped",
            "delivered (worst round; + dropped and counted)",
        ],
        rows,
    }])
}

/// The interpreter `python3` resolves to (not a pyenv shim, whose own start-up would count).
fn python_exe() -> Result<PathBuf, BoxError> {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .map_err(|e| format!("python3: {e} (install python3)"))?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || path.is_empty() {
        return Err("python3 does not run (install python3)".into());
    }
    Ok(PathBuf::from(path))
}

/// The agent's null-output record counter.
const NULL_RECORDS: &str = "logtap_output_records_total{output=\"null\"}";

/// Waits until `agent`'s null output counted `want` more records than `before`.
fn wait_records(agent: &AgentProc, before: u64, want: u64) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = agent.metric(NULL_RECORDS).saturating_sub(before);
        if got >= want {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the agent got {got} of {want} lines").into());
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Python printing 200,000 lines of 100 bytes to /dev/null, untapped vs tapped into a real
/// `logtap agent --output null` (default ring, the writer waits when it is full).
pub(crate) fn python(cfg: &Cfg) -> Result<Vec<Table>, BoxError> {
    let py = python_exe()?;
    let preload = preload()?;
    let agent = AgentProc::start(&["--output".into(), "null".into()])?;
    let n = cfg.size(200_000, 2_000);
    let script = format!(
        "for i in range({n}):\n    print('line %010d ' % i + 'x' * {})\n",
        LINE - 17
    );
    let run = |tapped: bool| -> Result<f64, BoxError> {
        let mut cmd = Command::new(&py);
        cmd.args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create("/dev/null")?)
            .stderr(Stdio::piped());
        if tapped {
            cmd.env("LD_PRELOAD", &preload)
                .env("LLT_TAP_INTO", "1")
                .env("LLT_TARGET", format!("socket:{}", agent.socket.display()))
                .env("LLT_TARGET_1STCONNECT", "0");
        }
        let before = agent.metric(NULL_RECORDS);
        let t0 = Instant::now();
        let out = cmd.output()?;
        let secs = t0.elapsed().as_secs_f64();
        if !out.status.success() {
            return Err(format!(
                "python failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        if tapped {
            wait_records(&agent, before, n)?;
        }
        Ok(secs)
    };
    run(false)?;
    run(true)?;
    let (mut plain, mut tapped) = (Vec::new(), Vec::new());
    for _ in 0..cfg.rounds {
        plain.push(run(false)?);
        tapped.push(run(true)?);
    }
    let base = stats(&plain).0;
    let row = |name: &str, v: &[f64], delivered: &str| {
        let med = stats(v).0;
        vec![
            name.to_string(),
            format!("{:.3}", med),
            spread(v, 3),
            format!("{:.0} k", n as f64 / med / 1e3),
            format!("{:.2}×", med / base),
            delivered.to_string(),
        ]
    };
    Ok(vec![Table {
        title: format!("Python printing {n} lines"),
        note: format!(
            "`python3 -c \"for i in range({n}): print(...)\"` ({LINE}-byte lines, stdout to \
             /dev/null, so Python writes 8 KiB blocks), wall time of the whole process \
             (interpreter start-up included). Tapped: into a real `logtap agent --output null`, \
             default ring; every round waits until the agent counted all {n} lines."
        ),
        header: vec![
            "case",
            "seconds (median)",
            "spread (min–max)",
            "lines/s",
            "× untapped",
            "delivered",
        ],
        rows: vec![
            row("untapped", &plain, "—"),
            row("tapped (LD_PRELOAD liblogtap.so)", &tapped, "100 %"),
        ],
    }])
}

/// The app writing the lines to a file, one `write` each: the file-tail alternative's side of
/// the work (a tail collector then reads the file again). Returns (seconds, bytes on disk).
fn file_writer(dir: &Path, n: u64) -> Result<(f64, u64), BoxError> {
    let path = dir.join("app.log");
    let mut f = std::fs::File::create(&path)?;
    let mut buf = Vec::with_capacity(LINE);
    let t0 = Instant::now();
    for i in 0..n {
        agent_bench::line(i, &mut buf);
        f.write_all(&buf)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let bytes = f.metadata()?.len();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok((secs, bytes))
}

/// `write_bytes` of `/proc/<pid>/io`: bytes the process caused to be sent to storage.
fn disk_writes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("write_bytes:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Agent throughput: 1M × 100 B through the default ring → forward with ack → an acking
/// receiver, gzip off and on; the file-writing alternative and the ring alone beside them.
pub(crate) fn agent_throughput(cfg: &Cfg) -> Result<Vec<Table>, BoxError> {
    let n = cfg.size(1_000_000, 5_000);
    let dir = scratch("agent")?;
    let receiver = agent_bench::Receiver::start(false)?;
    let fwd = |extra: &[&str]| -> Result<AgentProc, BoxError> {
        let mut args = vec![
            "--forward".to_string(),
            format!("127.0.0.1:{}", receiver.port),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        AgentProc::start(&args)
    };
    let agents = [
        fwd(&[])?,
        fwd(&["--compress", "gzip"])?,
        fwd(&["--flush-interval", "100ms"])?,
    ];
    let names = [
        "app → file (the tail alternative's writer; baseline)",
        "ring only, in-process consumer (no agent: the floor)",
        "logtap: ring → agent → forward (ack) → receiver",
        "logtap: … with `--compress gzip`",
        "logtap: … with `--flush-interval 100ms` (not the default)",
    ];
    let mut secs: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut usage: Vec<Vec<Usage>> = vec![Vec::new(); agents.len()];
    let mut disk: Vec<u64> = vec![0; names.len()];
    let mut one = |case: usize, record: bool| -> Result<(), BoxError> {
        let s = match case {
            0 => {
                let (s, bytes) = file_writer(&dir, n)?;
                disk[0] = bytes;
                s
            }
            1 => agent_bench::ring_only(n)?.elapsed.as_secs_f64(),
            _ => {
                let agent = &agents[case - 2];
                let before = receiver.events.load(Ordering::Relaxed);
                let w0 = disk_writes(agent.pid());
                let mut u = Vec::new();
                let sample = agent_bench::agent_run(
                    n,
                    agent,
                    || receiver.events.load(Ordering::Relaxed) - before,
                    &mut u,
                )?;
                disk[case] = disk[case].max(disk_writes(agent.pid()).saturating_sub(w0));
                if record {
                    usage[case - 2].extend(u);
                }
                sample.elapsed.as_secs_f64()
            }
        };
        if record {
            secs[case].push(s);
        }
        Ok(())
    };
    for case in 0..names.len() {
        one(case, false)?;
    }
    for _ in 0..cfg.rounds {
        for case in 0..names.len() {
            one(case, true)?;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let base = stats(&secs[0]).0;
    let cpu = |j: usize| stats(&usage[j].iter().map(|u| u.cpu_per_m).collect::<Vec<_>>()).0;
    let lps = |case: usize| n as f64 / stats(&secs[case]).0;
    aim(
        "1M × 100 B, default ring, flush 1 s, ack: lines/s",
        "≥ 1,000,000",
        format!("{:.0} k", lps(2) / 1e3),
        lps(2) >= 1e6,
    );
    aim(
        "… agent CPU-s per million lines",
        "≤ 0.3",
        format!("{:.3}", cpu(0)),
        cpu(0) <= 0.3,
    );
    aim(
        "gzip: lines/s",
        "≥ 500,000",
        format!("{:.0} k", lps(3) / 1e3),
        lps(3) >= 5e5,
    );
    aim(
        "gzip: agent CPU-s per million lines",
        "≤ 1.2",
        format!("{:.3}", cpu(1)),
        cpu(1) <= 1.2,
    );
    let peak_anon = usage
        .iter()
        .take(2)
        .flatten()
        .map(|u| u.peak_anon_kib)
        .max()
        .unwrap_or(0);
    aim(
        "agent anonymous memory (RssAnon) peak during the 1M runs",
        "≤ 16 MiB",
        mib(peak_anon),
        peak_anon <= 16 * 1024,
    );
    let mut rows = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let med = stats(&secs[i]).0;
        let lps: Vec<f64> = secs[i].iter().map(|s| n as f64 / s / 1e3).collect();
        let u = i.checked_sub(2).and_then(|j| usage.get(j));
        let per = |f: fn(&Usage) -> f64| {
            u.map_or("—".to_string(), |u| {
                let v: Vec<f64> = u.iter().map(f).collect();
                format!("{:.3}", stats(&v).0)
            })
        };
        let peak = |f: fn(&Usage) -> u64| {
            u.map_or("—".to_string(), |u| {
                mib(u.iter().map(f).max().unwrap_or(0))
            })
        };
        rows.push(vec![
            name.to_string(),
            format!("{:.0} k", n as f64 / med / 1e3),
            spread(&lps, 0),
            format!("{:.2}×", med / base),
            per(|u| u.cpu_per_m),
            peak(|u| u.idle_anon_kib),
            peak(|u| u.peak_anon_kib),
            peak(|u| u.peak_rss_kib),
            // agent_run fails the scenario unless the receiver got every line.
            if i >= 2 { "100 %".into() } else { "—".into() },
            format!("{:.1} MB", disk[i] as f64 / 1e6),
        ]);
    }
    Ok(vec![Table {
        title: format!("Agent throughput: {n} lines of {LINE} B, forward with ack"),
        note: format!(
            "A tapper (`agent_bench`'s: the ring protocol of a tapped process, HELLO over the \
             agent's socket) writes {n} lines at full speed into a default-sized ring, waiting \
             while it is full; a `logtap agent --forward` (flush_interval 1 s, the default) sends \
             them to an in-process acking Forward receiver; a round ends when the receiver has \
             every line (so the last partial chunk's flush wait is inside the time). Baseline: \
             the same lines written to a file with one `write` each — the app's side of the \
             file-tail alternative; {NO_FLUENT_BIT}, and no tail collector reads the file here. \
             CPU-s per 1M: the agent's utime + stime. RssAnon: the agent's anonymous memory \
             (not the mapped rings), sampled every 5 ms; VmHWM includes the mapped ring. Bytes to \
             disk: the file's size for the baseline, the agent's `write_bytes` (/proc/pid/io) \
             for logtap. The last row is the default one with `--flush-interval 100ms`: what the \
             run's last, partial chunk waiting for the 1 s flush adds. Ratio: median time / the \
             baseline's."
        ),
        header: vec![
            "case",
            "lines/s (median)",
            "spread (k lines/s)",
            "× baseline (time)",
            "agent CPU-s per 1M",
            "idle RssAnon",
            "peak RssAnon",
            "peak VmHWM",
            "delivered",
            "bytes to disk",
        ],
        rows,
    }])
}

/// Write → ack latency at 1,000 and 10,000 lines/s (`agent_bench::latency`).
pub(crate) fn latency(cfg: &Cfg) -> Result<Vec<Table>, BoxError> {
    let mut rows = Vec::new();
    for (rate, total, filler) in [
        (1_000u64, cfg.size(5_000, 200), cfg.size(1_500, 100)),
        (10_000, cfg.size(30_000, 500), cfg.size(15_000, 200)),
    ] {
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        let mut max = Vec::new();
        let mut count = 0;
        // Each round is seconds long: the warm-up is the agent's own start (excluded).
        for _ in 0..cfg.rounds.min(3) {
            let (c, a, b, m) = agent_bench::latency(rate, total, filler)?;
            count = c;
            p50.push(a);
            p99.push(b);
            max.push(m);
        }
        rows.push(vec![
            format!("{} lines/s", rate),
            count.to_string(),
            format!("{:.1} ms", stats(&p50).0),
            spread(&p50, 1),
            format!("{:.1} ms", stats(&p99).0),
            spread(&p99, 1),
            format!("{:.1} ms", stats(&max).0),
        ]);
    }
    Ok(vec![Table {
        title: "Write → ack latency".into(),
        note: format!(
            "A tapper writes {LINE}-byte lines at a steady rate into a `logtap agent --forward` \
             (flush_interval 1 s) → an acking receiver, which measures ack time − write time of \
             every measured line; unmeasured filler lines follow, so that none of the measured \
             ones waits in the run's final partial chunk. Median over up to 3 runs (each a fresh \
             agent). No baseline: {NO_FLUENT_BIT}, and writing to a file has no ack."
        ),
        header: vec![
            "rate",
            "lines measured (last run)",
            "p50",
            "p50 spread",
            "p99",
            "p99 spread",
            "max",
        ],
        rows,
    }])
}

/// Idle RSS of a fresh agent (forward output) beside `tail -F` of a file, the smallest tail
/// collector there is.
pub(crate) fn idle_rss(cfg: &Cfg) -> Result<Vec<Table>, BoxError> {
    let dir = scratch("idle")?;
    let file = dir.join("app.log");
    std::fs::write(&file, b"")?;
    let receiver = agent_bench::Receiver::start(false)?;
    let settle = Duration::from_millis(if cfg.quick { 200 } else { 1000 });
    let mut tail = (Vec::new(), Vec::new());
    let mut agent = (Vec::new(), Vec::new());
    for _ in 0..cfg.rounds.min(3) {
        let mut child = Command::new("tail")
            .arg("-F")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("tail: {e}"))?;
        thread::sleep(settle);
        let pid = child.id();
        tail.0.push(agent_bench::status_kib(pid, "VmRSS:") as f64);
        tail.1.push(agent_bench::status_kib(pid, "RssAnon:") as f64);
        let _ = child.kill();
        let _ = child.wait();

        let a = AgentProc::start(&["--forward".into(), format!("127.0.0.1:{}", receiver.port)])?;
        thread::sleep(settle);
        agent
            .0
            .push(agent_bench::status_kib(a.pid(), "VmRSS:") as f64);
        agent
            .1
            .push(agent_bench::status_kib(a.pid(), "RssAnon:") as f64);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let idle = stats(&agent.0).0 as u64;
    aim(
        "agent idle RSS (VmRSS)",
        "≤ 6 MiB",
        mib(idle),
        idle <= 6 * 1024,
    );
    let row = |name: &str, v: &(Vec<f64>, Vec<f64>)| {
        vec![
            name.to_string(),
            mib(stats(&v.0).0 as u64),
            mib(stats(&v.1).0 as u64),
            format!("{:.2}×", stats(&v.0).0 / stats(&tail.0).0),
        ]
    };
    Ok(vec![Table {
        title: "Idle RSS".into(),
        note: format!(
            "Each process started fresh and left idle {} ms; median over the rounds. Baseline: \
             `tail -F` of a file ({NO_FLUENT_BIT}). The agent: `logtap agent --forward` to a \
             receiver, HTTP endpoint on.",
            settle.as_millis()
        ),
        header: vec!["process", "VmRSS", "RssAnon", "× tail (VmRSS)"],
        rows: vec![
            row("`tail -F app.log` (baseline)", &tail),
            row("`logtap agent`", &agent),
        ],
    }])
}

/// Start-up cost of `true`: untapped, library loaded tapping nothing, tapped into a live agent.
pub(crate) fn startup(cfg: &Cfg) -> Result<Vec<Table>, BoxError> {
    let preload = preload()?;
    let agent = AgentProc::start(&["--output".into(), "null".into()])?;
    let target = format!("socket:{}", agent.socket.display());
    let cases: [(&str, Option<&str>); 3] = [
        ("`true`, untapped (baseline)", None),
        ("`true`, liblogtap.so loaded, tapping nothing", Some("0")),
        (
            "`true`, tapped (stdout and stderr) into a live agent",
            Some("3"),
        ),
    ];
    let run = |tap: Option<&str>| -> Result<f64, BoxError> {
        let mut cmd = Command::new("true");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(into) = tap {
            cmd.env("LD_PRELOAD", &preload)
                .env("LLT_TAP_INTO", into)
                .env("LLT_TARGET", &target)
                .env("LLT_TARGET_1STCONNECT", "0");
        }
        let t0 = Instant::now();
        let st = cmd.status()?;
        let us = t0.elapsed().as_secs_f64() * 1e6;
        if !st.success() {
            return Err(format!("`true` failed: {st}").into());
        }
        Ok(us)
    };
    let spawns = cfg.size(200, 5);
    for (_, tap) in &cases {
        for _ in 0..5 {
            run(*tap)?;
        }
    }
    let mut us: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..spawns {
        for (i, (_, tap)) in cases.iter().enumerate() {
            us[i].push(run(*tap)?);
        }
    }
    let base = stats(&us[0]).0;
    let rows = cases
        .iter()
        .zip(&us)
        .map(|((name, _), v)| {
            let (med, _, _) = stats(v);
            vec![
                name.to_string(),
                format!("{med:.0} µs"),
                spread(v, 0),
                format!("{:.2}×", med / base),
                format!("{:.0} µs", med - base),
            ]
        })
        .collect();
    Ok(vec![Table {
        title: "Start-up cost of a tapped `true`".into(),
        note: format!(
            "Wall time from spawn to exit of `/bin/true`, {spawns} spawns per case interleaved \
             (after 5 of each as a warm-up); the tapped case connects to a live `logtap agent \
             --output null` (HELLO, ring set-up) before `main`."
        ),
        header: vec![
            "case",
            "median",
            "spread (min–max, µs)",
            "× untapped",
            "added",
        ],
        rows,
    }])
}
