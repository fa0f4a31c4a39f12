//! Runs a deployment's three steps as local processes — the init copy (`logtap install`), the
//! agent, the tapped app — with the arguments and environment taken from a manifest or compose
//! file, and collects the records that come out.
//!
//! Only what cannot exist on a test machine is substituted, and always the same way: container
//! paths become directories of a temporary folder ([`super::PathMap`]), the Fluentd server
//! becomes the tests' Forward server on 127.0.0.1 (`logtap_tests::agent_harness::fake_fluentd`:
//! it decodes every mode and acknowledges chunks as Fluentd's `in_forward` does), the HTTP port
//! becomes a free local port, and the app is told
//! to stop after a few lines (`--count`), and `python3` is resolved to the interpreter itself
//! (not a wrapper such as pyenv's shim). Everything else is the file's own.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http_status;
use logtap_tests::agent_harness::fake_fluentd::{Behaviour, FakeFluentd};
use logtap_tests::artifacts::logtap_bin;

/// What a deployment runs, already rewritten to local paths.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `logtap` arguments of the init step (`install --to DIR`).
    pub install: Vec<String>,
    /// Where the init step must have put the library (the app's `LD_PRELOAD`).
    pub library: PathBuf,
    /// `logtap` arguments of the agent.
    pub agent_args: Vec<String>,
    pub agent_env: Vec<(String, String)>,
    /// HTTP paths the orchestrator probes (must answer 200 once the agent is ready).
    pub probes: Vec<String>,
    /// The app's argv and environment.
    pub app_argv: Vec<String>,
    pub app_env: Vec<(String, String)>,
    /// How long the orchestrator waits after SIGTERM before it kills the agent.
    pub grace: Duration,
}

/// Where the agent's records go in the rehearsal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    /// The agent prints them (`--output stdout` in the file).
    AgentStdout,
    /// The file forwards them to Fluentd: a local Forward server with acks stands in.
    Forward,
}

/// A child process whose stdout lines and stderr text are collected by threads, killed on drop.
pub struct Proc {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Proc {
    /// Starts `cmd` with a clean environment (only `PATH` and `env`).
    pub fn spawn(
        name: &str,
        program: &std::path::Path,
        args: &[String],
        env: &[(String, String)],
    ) -> Proc {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {}: {e}", program.display()));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("piped");
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut err = child.stderr.take().expect("piped");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc {
            name: name.to_owned(),
            child,
            lines,
            stderr,
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Stdout lines that are JSON objects (records of the stdout output).
    pub fn records(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// The port of the address that this `logtap`'s log line `message` reports (waits at most
    /// 20 s): for a listen address of port 0.
    pub fn bound_port(&self, message: &str) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let log = self.stderr.lock().unwrap().clone();
            if let Some(addr) = logtap_tests::forward_support::bound_addr(&log, message) {
                return addr.port();
            }
            assert!(
                Instant::now() < deadline,
                "{}: no `{message} addr=…` log line within 20 s\n{}",
                self.name,
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A description for assertion messages: the process's stdout and stderr so far.
    pub fn dump(&self) -> String {
        format!(
            "--- {} stdout\n{}\n--- {} stderr\n{}",
            self.name,
            self.lines().join("\n"),
            self.name,
            self.stderr.lock().unwrap()
        )
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader threads take the last output.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?}\n{}",
                self.name,
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, as the kubelet / Docker / systemd send it, then waits up to `grace`.
    pub fn terminate(&mut self, grace: Duration) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.name);
        self.wait(grace)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The image's `python3` is the interpreter itself; on a test machine `python3` on PATH may be a
/// wrapper script (pyenv's shim runs bash and a dozen helpers, whose output the library would tap
/// too). Resolve it to the interpreter, as the image has it.
pub fn real_python(program: &str) -> PathBuf {
    if program != "python3" {
        return PathBuf::from(program);
    }
    let out = super::run_bounded(
        Command::new("python3").args(["-c", "import sys; print(sys.executable)"]),
        Duration::from_secs(30),
    );
    super::assert_success("python3 -c 'print(sys.executable)'", &out);
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// The result of a rehearsal: the records, and the processes' output for messages.
pub struct Outcome {
    pub records: Vec<Value>,
    pub log: String,
}

/// A deployment whose init step ran and whose agent (and Fluentd stand-in) are up.
pub struct Rehearsal {
    agent: Proc,
    fluentd: Option<FakeFluentd>,
    grace: Duration,
}

impl Rehearsal {
    /// Runs the init step, starts Fluentd's stand-in when the file forwards, then the agent,
    /// probed like the orchestrator probes it (a startupProbe / readiness check).
    pub fn start(plan: &Plan, sink: Sink) -> Rehearsal {
        let logtap = logtap_bin();

        let mut install = Proc::spawn("logtap install", &logtap, &plan.install, &[]);
        let status = install.wait(Duration::from_secs(30));
        assert!(
            status.success(),
            "the init step failed ({status})\n{}",
            install.dump()
        );
        // The app's LD_PRELOAD names `DIR/$LIB/liblogtap.so`: glibc (the demo app's) expands
        // `$LIB` to one of these directories, where install must have put the glibc library.
        let value = plan.library.to_string_lossy();
        let arch = std::env::consts::ARCH;
        let glibc: Vec<PathBuf> = [
            format!("lib/{arch}-linux-gnu"),
            "lib64".into(),
            "lib".into(),
        ]
        .iter()
        .map(|dir| PathBuf::from(value.replace("$LIB", dir)))
        .collect();
        assert!(
            value.contains("$LIB") && glibc.iter().all(|p| p.is_file()),
            "install did not create {} for every glibc $LIB\n{}",
            plan.library.display(),
            install.dump()
        );

        let mut fluentd = None;
        let mut agent_args = plan.agent_args.clone();
        if sink == Sink::Forward {
            let server = FakeFluentd::start(0, Behaviour::default());
            agent_args.extend(["--forward".to_owned(), format!("127.0.0.1:{}", server.port)]);
            fluentd = Some(server);
        }

        agent_args.extend(["--http-listen".to_owned(), "127.0.0.1:0".to_owned()]);
        let agent = Proc::spawn("logtap agent", &logtap, &agent_args, &plan.agent_env);
        let http = agent.bound_port(logtap_tests::forward_support::HTTP_LISTENING);
        for path in &plan.probes {
            let ok = eventually(Duration::from_secs(20), || {
                http_status(http, path) == Some(200)
            });
            assert!(
                ok,
                "the agent's {path} did not answer 200 (args {agent_args:?})\n{}",
                agent.dump()
            );
        }
        Rehearsal {
            agent,
            fluentd,
            grace: plan.grace,
        }
    }

    /// The records delivered so far (by the agent's stdout, or at Fluentd's stand-in, with the
    /// event's tag added as `tag`).
    pub fn records(&self) -> Vec<Value> {
        match &self.fluentd {
            Some(f) => f
                .events()
                .into_iter()
                .map(|e| {
                    let mut record = e.record;
                    if let Some(map) = record.as_object_mut() {
                        map.insert("tag".to_owned(), Value::String(e.tag));
                    }
                    record
                })
                .collect(),
            None => self.agent.records(),
        }
    }

    fn log(&self, apps: &[&Proc]) -> String {
        let mut parts: Vec<String> = apps.iter().map(|a| a.dump()).collect();
        parts.push(self.agent.dump());
        if self.fluentd.is_some() {
            let records: Vec<String> = self.records().iter().map(Value::to_string).collect();
            parts.push(format!(
                "--- Fluentd's stand-in received\n{}",
                records.join("\n")
            ));
        }
        parts.join("\n")
    }

    /// Waits until `done(records)` holds, then stops the agent with SIGTERM, as at the end of a
    /// pod: it must exit 0 within the grace period.
    pub fn finish(mut self, apps: &[&Proc], done: impl Fn(&[Value]) -> bool) -> Outcome {
        let arrived = eventually(Duration::from_secs(30), || done(&self.records()));
        let status = self.agent.terminate(self.grace);
        let log = self.log(apps);
        assert!(
            arrived,
            "the expected records did not arrive ({} did)\n{log}",
            self.records().len()
        );
        assert!(
            status.success(),
            "the agent did not exit 0 after SIGTERM ({status})\n{log}"
        );
        let records = self.records();
        if let Some(f) = self.fluentd.take() {
            f.stop();
        }
        Outcome { records, log }
    }
}

/// The whole rehearsal of a plan whose app runs to completion (the demo clock with `--count`):
/// start, run the app, wait for `expected_records`, stop.
pub fn rehearse(plan: &Plan, sink: Sink, expected_records: usize) -> Outcome {
    let rehearsal = Rehearsal::start(plan, sink);
    let (program, args) = plan.app_argv.split_first().expect("an app command");
    let mut app = Proc::spawn("app", &real_python(program), args, &plan.app_env);
    let status = app.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "the app failed ({status})\n{}",
        rehearsal.log(&[&app])
    );
    rehearsal.finish(&[&app], |r| r.len() >= expected_records)
}

/// Arguments that make the demo app stop after `ticks` lines, spread over the window in which
/// the library expects its agent (`LLT_TARGET_1STCONNECT` seconds, 5 by default; it retries
/// every 100 ms meanwhile) and a little more, so that the lines are written while the agent is
/// coming up, as in a pod whose containers start together.
pub fn clock_args(ticks: usize, app_env: &[(String, String)]) -> Vec<String> {
    let first_connect: f64 = app_env
        .iter()
        .find(|(k, _)| k == "LLT_TARGET_1STCONNECT")
        .map_or(5.0, |(_, v)| {
            v.parse().expect("LLT_TARGET_1STCONNECT is a number")
        });
    let interval = ((first_connect + 1.0) / ticks as f64).max(0.1);
    vec![
        "--count".to_owned(),
        ticks.to_string(),
        "--interval".to_owned(),
        format!("{interval:.2}"),
    ]
}

/// The demo app's stdout lines are the time (`HH:MM:SS`), and every fifth tick a line on stderr.
pub fn assert_clock_records(outcome: &Outcome, count: usize) {
    let by_stream = |s: &str| -> Vec<&Value> {
        outcome
            .records
            .iter()
            .filter(|r| r["stream"] == s)
            .collect()
    };
    let stdout = by_stream("stdout");
    assert_eq!(stdout.len(), count, "stdout records\n{}", outcome.log);
    for r in &stdout {
        let m = r["message"]
            .as_str()
            .unwrap_or_else(|| panic!("message in {r}"));
        let b = m.as_bytes();
        assert!(
            b.len() == 8
                && b[2] == b':'
                && b[5] == b':'
                && m.replace(':', "").bytes().all(|c| c.is_ascii_digit()),
            "a clock line is HH:MM:SS, got {m:?}"
        );
    }
    let stderr = by_stream("stderr");
    assert_eq!(stderr.len(), count / 5, "stderr records\n{}", outcome.log);
    if let Some(r) = stderr.first() {
        assert_eq!(r["message"], "clock: 5 ticks so far");
    }
}
