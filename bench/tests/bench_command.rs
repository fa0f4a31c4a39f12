//! `logtap-bench all` as a process: it writes its section between the markers and keeps the rest
//! of the file, and it fails (non-zero) when a scenario cannot run. These need `cargo build
//! --workspace` first (the `logtap` binary and `liblogtap.so` beside the bench binary), as the
//! end-to-end tests do. No figure is asserted.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_logtap-bench");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("logtap-bench-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `bin` with `args`, killing it after 60 s; (exit status, stdout, stderr).
fn run(bin: &std::path::Path, args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let child = Command::new(bin)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn logtap-bench");
    let pid = child.id();
    let start = Instant::now();
    let watchdog = std::thread::spawn(move || {
        while start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(100));
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                return;
            }
        }
        // SAFETY: kill has no memory effects; a child that overran its time.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let out = child.wait_with_output().expect("wait logtap-bench");
    let _ = watchdog.join();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn quick_run_replaces_only_the_generated_section() {
    let dir = scratch("splice");
    let out = dir.join("RESULTS.md");
    std::fs::write(
        &out,
        "# Results\n\nintro\n\n<!-- logtap-bench:begin -->\nstale figures\n<!-- logtap-bench:end -->\n\n## History\nkept\n",
    )
    .expect("write RESULTS.md");
    let (status, stdout, stderr) = run(
        BENCH.as_ref(),
        &[
            "all",
            "--quick",
            "--filter",
            "startup",
            "--out",
            out.to_str().expect("utf-8 path"),
        ],
    );
    assert!(status.success(), "logtap-bench failed: {status}\n{stderr}");
    assert!(
        stdout.contains("Start-up cost of a tapped `true`"),
        "{stdout}"
    );
    let text = std::fs::read_to_string(&out).expect("read RESULTS.md");
    assert!(
        text.starts_with("# Results\n\nintro\n\n<!-- logtap-bench:begin"),
        "{text}"
    );
    assert!(
        text.ends_with("<!-- logtap-bench:end -->\n\n## History\nkept\n"),
        "{text}"
    );
    assert!(!text.contains("stale figures"), "{text}");
    assert!(
        text.contains("Machine: ") && text.contains("Load average"),
        "{text}"
    );
    // One row per case: the baseline, the library loaded idle, and the tapped run.
    assert_eq!(text.matches("| `true`, ").count(), 3, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_scenario_that_cannot_run_fails_the_command() {
    // The bench binary alone in a directory: no liblogtap.so or logtap beside it.
    let dir = scratch("alone");
    let bin = dir.join("logtap-bench");
    std::fs::copy(BENCH, &bin).expect("copy the bench binary");
    let out = dir.join("RESULTS.md");
    let (status, _, stderr) = run(
        &bin,
        &[
            "all",
            "--quick",
            "--filter",
            "tap",
            "--out",
            out.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("liblogtap.so not found"), "{stderr}");
    assert!(!out.exists(), "a failed run wrote {}", out.display());
    let (status, _, stderr) = run(BENCH.as_ref(), &["all", "--quick", "--filter", "nosuch"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("matches no scenario"), "{stderr}");
    let (status, _, _) = run(BENCH.as_ref(), &["everything"]);
    assert_eq!(status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}
