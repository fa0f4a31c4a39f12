//! Multi-line events (issue 13): real Java, Python and C programs under the real `liblogtap.so`
//! and `logtap run`, with `--multiline` in its modes. Each test compares the records with the
//! bytes the program wrote.

use std::path::{Path, PathBuf};
use std::process::Command;

use logtap_tests::agent_harness::{Output, run};
use logtap_tests::artifacts::{TempDir, gcc};
use serde_json::Value;

fn program(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("programs")
        .join(name)
}

/// The `message`s of `stream`'s records, in order.
fn messages(out: &Output, stream: &str) -> Vec<String> {
    out.records
        .iter()
        .filter(|r| r["stream"] == stream)
        .map(|r| {
            assert_eq!(r.get("partial"), None, "no record is cut: {r}");
            r["message"].as_str().expect("text message").to_owned()
        })
        .collect()
}

/// The records joined back into the bytes the program wrote (each record ended with a newline).
fn rejoin(records: &[String]) -> String {
    records.iter().map(|m| format!("{m}\n")).collect()
}

/// The real interpreter (`python3` on PATH may be a pyenv shell shim that writes to stdout).
fn python3() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is installed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn c_program(dir: &TempDir) -> String {
    let exe = dir.path().join("multiline");
    gcc(&program("multiline.c"), &exe, &["-O1", "-pthread", "-Wall"]);
    exe.to_str().unwrap().to_owned()
}

/// Compiles `MultilineJul.java` into `dir`.
fn java_program(dir: &TempDir) {
    let out = Command::new("javac")
        .arg("-d")
        .arg(dir.path())
        .arg(program("MultilineJul.java"))
        .output()
        .expect("javac (a JDK) must be installed");
    assert!(
        out.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_java(dir: &TempDir, multiline: &str, events: usize) -> (Output, String, Vec<String>) {
    let log = dir.path().join(format!("jul-{}.log", multiline.len()));
    let expected = dir.path().join("expected.txt");
    let log_s = log.to_str().unwrap();
    let (status, out) = run(
        &["--multiline", multiline, "--flush-interval", "100ms"],
        &[
            "java",
            "-Xmx64m",
            "-XX:+UseSerialGC",
            "-cp",
            dir.path().to_str().unwrap(),
            "MultilineJul",
            log_s,
            &events.to_string(),
            expected.to_str().unwrap(),
        ],
        &[("LLT_TAP_FILE", log_s)],
    );
    assert!(status.success(), "{out:?}");
    let file = std::fs::read_to_string(&log).unwrap();
    let traces: Vec<String> = std::fs::read_to_string(&expected)
        .unwrap()
        .split('\0')
        .filter(|t| !t.is_empty())
        .map(|t| t.strip_suffix('\n').unwrap().to_owned())
        .collect();
    assert_eq!(traces.len(), events);
    (out, file, traces)
}

/// Prove-it 1: java.util.logging's FileHandler writes each event — date line, level line and
/// stack trace with its cause — in one write(): with `write`, one record per event, byte for
/// byte. `printStackTrace()` to stderr flushes at every line (measured: one write per line), so
/// `write` alone gives one record per line there; `write+java` joins them into one record.
#[test]
fn java_events_become_one_record_each() {
    let dir = TempDir::new("ml-java");
    java_program(&dir);
    let (out, file, traces) = run_java(&dir, "stdout=write,stderr=write+java,file=write", 3);
    let file_records = messages(&out, "file");
    assert_eq!(
        file_records.len(),
        3,
        "one record per JUL event: {file_records:#?}"
    );
    for (i, r) in file_records.iter().enumerate() {
        assert!(r.contains(&format!("SEVERE: request {i} failed\n")), "{r}");
        assert!(
            r.contains(&format!("Caused by: java.io.IOException: disk {i}\n")),
            "{r}"
        );
        assert!(
            r.contains("\tat MultilineJul.deep(MultilineJul.java:"),
            "{r}"
        );
    }
    assert_eq!(
        rejoin(&file_records),
        file,
        "the file's bytes, event by event"
    );
    assert_eq!(
        messages(&out, "stderr"),
        traces,
        "each trace whole, byte for byte"
    );

    // The measurement behind the README: plain `write` on Java's stderr is one record per line.
    let (out, _, traces) = run_java(&dir, "write", 2);
    let lines: Vec<String> = traces
        .iter()
        .flat_map(|t| t.split('\n'))
        .map(str::to_owned)
        .collect();
    assert_eq!(messages(&out, "stderr"), lines);
    assert_eq!(messages(&out, "file").len(), 2);
}

const PY_SCRIPT: &str = r#"
import logging, sys
log = logging.getLogger("app")
log.setLevel(logging.INFO)
log.addHandler(logging.StreamHandler(sys.stderr))
log.addHandler(logging.FileHandler(sys.argv[1]))
def f(n, i):
    if n == 0:
        return {"known": 1}[f"bad value {i}"]
    f(n - 1, i)
for i in range(3):
    try:
        f(3, i)
    except Exception:
        log.exception("request %d failed", i)
    log.info("ok %d", i)
"#;

/// Prove-it 2: `logging.exception(…)` to stderr and to a FileHandler. Python writes each event
/// (message line and traceback) in one write(), with and without `PYTHONUNBUFFERED`: with
/// `write` each is one record; with `python` (Fluent Bit's rules) the traceback is one record,
/// the message line before it its own — as in Fluent Bit.
#[test]
fn python_logging_exception_is_one_record_per_event() {
    let dir = TempDir::new("ml-python");
    let python = python3();
    for mode in ["write", "python"] {
        let log = dir.path().join(format!("{mode}.log"));
        let log_s = log.to_str().unwrap();
        // A file, not `-c`: tracebacks then show the source lines (and 3.11's `^^^` marks).
        let script = dir.path().join("app.py");
        std::fs::write(&script, PY_SCRIPT).unwrap();
        let (status, out) = run(
            &["--multiline", mode, "--flush-interval", "100ms"],
            &[&python, script.to_str().unwrap(), log_s],
            &[("LLT_TAP_FILE", log_s)],
        );
        assert!(status.success(), "{out:?}");
        let file = std::fs::read_to_string(&log).unwrap();
        for stream in ["stderr", "file"] {
            let records = messages(&out, stream);
            assert_eq!(rejoin(&records), file, "{mode} {stream}: byte for byte");
            let tracebacks: Vec<&String> =
                records.iter().filter(|r| r.contains("Traceback")).collect();
            assert_eq!(tracebacks.len(), 3, "{mode} {stream}: {records:#?}");
            for (i, t) in tracebacks.iter().enumerate() {
                let head = match mode {
                    "write" => format!("request {i} failed\nTraceback (most recent call last):\n"),
                    _ => "Traceback (most recent call last):\n".to_owned(),
                };
                assert!(t.starts_with(&head), "{mode}: {t}");
                assert!(t.ends_with(&format!("\nKeyError: 'bad value {i}'")), "{t}");
                // Python 3.11+ underlines the failing expression; the line stays inside.
                assert!(t.contains("^^^"), "{t}");
                assert_eq!(t.matches("  File ").count(), 5, "the whole traceback: {t}");
            }
            let expected_records = if mode == "write" { 6 } else { 9 };
            assert_eq!(
                records.len(),
                expected_records,
                "{mode} {stream}: {records:#?}"
            );
        }
    }
}

const PANIC: &str = "panic: runtime error: index out of range [5] with length 3\n\ngoroutine 1 [running]:\nmain.lookup(...)\n\t/app/main.go:12\nmain.main()\n\t/app/main.go:20 +0x1d";

/// Prove-it 3: a C program prints a Go-style panic line by line with printf; stdout is a pipe,
/// so the FILE is fully buffered and the kernel sees a 4096-byte write cut inside the panic
/// (after 81 filler lines), then the rest at exit. `go` joins the panic into one record across
/// the two writes; so does `write+go`; plain `write` can only split a buffer flush into lines.
#[test]
fn a_go_panic_through_a_buffered_file_is_joined_with_go() {
    let dir = TempDir::new("ml-go");
    let exe = c_program(&dir);
    let fillers: Vec<String> = (0..81)
        .map(|i| {
            format!(
                "2026/12/04 15:00:{:02} worker {i:03} handled a request",
                i % 60
            )
        })
        .collect();
    for mode in ["go", "write+go", "write"] {
        let (status, out) = run(&["--multiline", mode], &[&exe, "panic", "81"], &[]);
        assert!(status.success(), "{out:?}");
        let records = messages(&out, "stdout");
        assert_eq!(
            records[..81],
            fillers[..],
            "{mode}: each filler line its own record"
        );
        let rest: Vec<&str> = records[81..].iter().map(String::as_str).collect();
        match mode {
            "write" => {
                let mut lines: Vec<&str> = PANIC.split('\n').collect();
                lines.push("exit status 2");
                assert_eq!(rest, lines);
            }
            _ => assert_eq!(rest, [PANIC, "exit status 2"], "{mode}"),
        }
    }
}

/// Prove-it 4: two processes × two threads write 300 multi-line events each, every event with
/// one write(), all at once into the same stdout. Every event comes back whole — in `write`
/// mode and with the `java` rules — none mixed with another, in its own process's records.
#[test]
fn two_threads_and_two_processes_keep_their_events_whole() {
    let dir = TempDir::new("ml-concurrent");
    let exe = c_program(&dir);
    let per_writer = 300;
    for mode in ["write", "java"] {
        let (status, out) = run(
            &["--multiline", mode],
            &[&exe, "concurrent", &per_writer.to_string()],
            &[],
        );
        assert!(status.success(), "{out:?}");
        let records: Vec<&Value> = out
            .records
            .iter()
            .filter(|r| r["stream"] == "stdout")
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        let mut pids = std::collections::BTreeMap::new();
        for r in &records {
            let m = r["message"].as_str().unwrap();
            let id = m.split(' ').next().unwrap();
            let (proc_thread, i) = id.split_once('-').unwrap();
            let i: usize = i.parse().unwrap();
            let expected = format!(
                "{id} java.lang.IllegalStateException: boom {id}\n\tat app.Worker.step(Worker.java:{i})\n\tat app.Worker.run(Worker.java:7)\nCaused by: java.io.IOException: disk {id}\n\tat app.Disk.read(Disk.java:3)\n\t... 2 more"
            );
            assert_eq!(m, expected, "{mode}: an event intact");
            assert!(seen.insert(id.to_owned()), "{mode}: {id} twice");
            let pid = r["pid"].as_u64().unwrap();
            let proc_name = &proc_thread[..1];
            assert_eq!(
                *pids.entry(proc_name.to_owned()).or_insert(pid),
                pid,
                "{mode}"
            );
        }
        assert_eq!(seen.len(), 4 * per_writer, "{mode}: every event");
        assert_ne!(pids["A"], pids["B"]);
    }
}

/// Records received over the Forward input are events already: `--multiline java` leaves them
/// as they are (one record each, newlines inside kept, nothing joined).
#[test]
fn forward_input_records_are_left_as_they_are() {
    use logtap_tests::forward_support::{python, start_receiver};
    let limit = std::time::Duration::from_secs(20);
    let agent = start_receiver("ml-forward", 0, &["--multiline", "java"], limit);
    let port = agent.forward_port();
    let out = python(
        r#"
from fluent import sender
s = sender.FluentSender('app', host='127.0.0.1', port=int(sys.argv[1]), nanosecond_precision=True)
for m in ['java.lang.IllegalStateException: boom', '\tat a.B.c(B.java:1)', 'x\n\tat y']:
    assert s.emit('web', {'message': m}), s.last_error
s.close()
"#,
        &[&port.to_string()],
        limit,
    );
    assert!(out.success, "{out:?}");
    let records = agent.wait_records(3, limit);
    let got: Vec<&str> = records
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        [
            "java.lang.IllegalStateException: boom",
            "\tat a.B.c(B.java:1)",
            "x\n\tat y"
        ]
    );
    let (status, all) = agent.terminate();
    assert!(status.success());
    assert_eq!(all.len(), 3);
}

/// The setting from TOML (per stream, per tap file, a custom `[[multiline_parser]]`) and from
/// `LOGTAP_MULTILINE`, as `logtap check` prints it; a bad rule set is refused with its name.
#[test]
fn the_setting_comes_from_toml_and_the_environment() {
    let dir = TempDir::new("ml-check");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        r#"
multiline = { stdout = "write", stderr = "myapp", files = { "/var/log/*.log" = "write+java" } }

[[multiline_parser]]
name = "myapp"
flush_timeout = "2s"
rules = [
  { state_name = "start_state", regex = '/^\d{4}-\d\d-\d\d /', next_state = "cont" },
  { state_name = "cont", regex = '/^\s+at /', next_state = "cont" },
]
"#,
    )
    .unwrap();
    let check = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(logtap_tests::artifacts::logtap_bin())
            .arg("check")
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = check(&["--config", good.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("stdout = \"write\""), "{out}");
    assert!(out.contains("stderr = \"myapp\""), "{out}");
    assert!(out.contains("\"/var/log/*.log\" = \"write+java\""), "{out}");
    assert!(out.contains("name = \"myapp\""), "{out}");
    let (code, out, _) = check(&[], &[("LOGTAP_MULTILINE", "write+python")]);
    assert_eq!(code, Some(0));
    assert!(out.contains("multiline = \"write+python\""), "{out}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "multiline = \"myapp\"\n[[multiline_parser]]\nname = \"myapp\"\nrules = [{ state_name = \"cont\", regex = \"x\", next_state = \"cont\" }]\n",
    )
    .unwrap();
    let (code, _, err) = check(&["--config", bad.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("multiline parser `myapp` has no rule for `start_state`"),
        "{err}"
    );
    let (code, _, err) = check(&["--multiline", "stdout=cobol"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown multiline parser `cobol`"), "{err}");
}

/// A `logtap agent` with the custom rule set `trace` (`flush_timeout` given) on every stream.
fn agent_with_trace_rules(
    name: &str,
    flush_timeout: &str,
) -> (logtap_tests::agent_harness::Agent, TempDir) {
    let dir = TempDir::new(name);
    let config = dir.path().join("logtap.toml");
    std::fs::write(
        &config,
        format!(
            r#"
multiline = "trace"
flush_interval = "50ms"

[[multiline_parser]]
name = "trace"
flush_timeout = "{flush_timeout}"
rules = [
  {{ state_name = "start_state", regex = '/^\d{{4}}-\d\d-\d\d /', next_state = "cont" }},
  {{ state_name = "cont", regex = '/^\s+at /', next_state = "cont" }},
]
"#
        ),
    )
    .unwrap();
    let agent =
        logtap_tests::agent_harness::Agent::start(name, &["--config", config.to_str().unwrap()]);
    (agent, dir)
}

fn tapped_sh(agent: &logtap_tests::agent_harness::Agent, script: &str) -> std::process::Child {
    Command::new("/bin/sh")
        .args(["-c", script])
        .env("LD_PRELOAD", logtap_tests::artifacts::liblogtap())
        .env("LLT_TARGET", format!("socket:{}", agent.socket.display()))
        .env("LLT_TAP_INTO", "3")
        .env("LLT_TARGET_1STCONNECT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

const TRACE: &str = "2026-12-04 15:00:00 request failed\n   at a.b(c:1)\n   at d.e(f:2)";

/// A pending event is sent after its rule set's `flush_timeout` while the program still runs
/// (a continuation could have come), and a pending event is not lost when the agent stops.
#[test]
fn pending_events_go_after_the_flush_timeout_and_at_shutdown() {
    use std::time::{Duration, Instant};
    let (agent, _config) = agent_with_trace_rules("ml-timeout", "300ms");
    let mut child = tapped_sh(&agent, &format!("printf '{TRACE}\\n'; sleep 4; echo done"));
    let started = Instant::now();
    let records = agent.wait_records(1, Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "sent before the program ended, after {:?}",
        started.elapsed()
    );
    assert_eq!(records[0]["message"], TRACE);
    assert!(child.wait().unwrap().success());
    let records = agent.wait_records(2, Duration::from_secs(5));
    assert_eq!(records[1]["message"], "done");
    let (status, all) = agent.terminate();
    assert!(status.success());
    assert_eq!(all.len(), 2);

    // A long timeout: the event still waits when the agent is told to stop; it is sent then.
    let (agent, _config) = agent_with_trace_rules("ml-shutdown", "60s");
    let mut child = tapped_sh(&agent, &format!("printf '{TRACE}\\n'; sleep 30"));
    std::thread::sleep(Duration::from_millis(800));
    assert!(agent.records().is_empty(), "the event waits for more lines");
    let (status, all) = agent.terminate();
    let _ = child.kill();
    let _ = child.wait();
    assert!(status.success());
    let messages: Vec<&str> = all.iter().map(|r| r["message"].as_str().unwrap()).collect();
    assert_eq!(messages, [TRACE]);
}
