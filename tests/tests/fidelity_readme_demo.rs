//! Issue 10, prove-it 5: the README's first command,
//! `logtap run -- python3 deploy/demo/clock.py --count 3 --interval 0.5` (here 0.1 s), prints
//! exactly the demo's three records on a machine where `python3` is a pyenv shim — a bash
//! script whose command substitutions, `/dev/null`-bound errors and helper processes are no
//! part of the program's output — with the real `logtap` binary and the real library.

mod fidelity_support;

use std::path::PathBuf;

use fidelity_support::{python3_shim_on_path, write_pyenv_shim};
use logtap_tests::agent_harness::{Output, run};
use logtap_tests::artifacts::TempDir;

fn clock_py() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/demo/clock.py");
    assert!(p.exists(), "{} is missing", p.display());
    p.display().to_string()
}

/// The real interpreter (asked through whatever `python3` is on PATH, untapped).
fn real_python() -> PathBuf {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 must be installed");
    assert!(out.status.success(), "python3 failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn is_clock_line(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 8
        && b[2] == b':'
        && b[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit())
}

/// `logtap run -- python3 clock.py --count 3 --interval 0.1` with `path` as PATH; checks that
/// exactly the demo's three lines became records.
fn readme_command(path: &str, what: &str) {
    let clock = clock_py();
    let (status, out) = run(
        &[],
        &["python3", &clock, "--count", "3", "--interval", "0.1"],
        &[("PATH", path)],
    );
    let show = |out: &Output| -> String {
        let mut s = String::new();
        for r in &out.records {
            s.push_str(&format!("\n    {r}"));
        }
        s.push_str(&format!("\n  the program's own stdout: {:?}", out.other));
        s
    };
    assert_eq!(
        status.code(),
        Some(0),
        "{what}: logtap run failed{}",
        show(&out)
    );
    let messages: Vec<&str> = out
        .records
        .iter()
        .map(|r| r["message"].as_str().unwrap_or("<not a string>"))
        .collect();
    assert_eq!(
        out.records.len(),
        3,
        "{what}: want exactly the demo's 3 records, got {}:{}",
        out.records.len(),
        show(&out)
    );
    for r in &out.records {
        assert_eq!(r["stream"], "stdout", "{what}: {r}");
        let m = r["message"].as_str().unwrap_or_default();
        assert!(is_clock_line(m), "{what}: not a clock line: {r}");
    }
    let pids: Vec<u64> = out
        .records
        .iter()
        .map(|r| r["pid"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        pids.iter().all(|p| *p == pids[0]),
        "{what}: the records come from several processes:{}",
        show(&out)
    );
    // The program's own stdout is untouched: the same three lines.
    assert_eq!(out.other, messages, "{what}: the program's own output");
}

/// A pyenv-shaped shim named `python3` first on PATH, whatever this machine has.
#[test]
fn readme_first_command_behind_a_pyenv_shaped_shim() {
    let dir = TempDir::new("readme-shim");
    let bin = dir.path().join("shims");
    write_pyenv_shim(&bin, "python3", &real_python());
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    readme_command(&path, "synthetic pyenv shim");
}

/// The command as a user types it, with the `python3` this machine has on PATH (a real pyenv
/// shim on developer machines and on this one, else the interpreter itself).
#[test]
fn readme_first_command_as_written() {
    let what = match python3_shim_on_path() {
        Some(p) => format!("python3 on PATH is the shim script {}", p.display()),
        None => "python3 on PATH is not a shim script".to_owned(),
    };
    eprintln!("{what}");
    readme_command(&std::env::var("PATH").unwrap_or_default(), &what);
}

/// The baseline: the real interpreter first on PATH (no shim at all).
#[test]
fn readme_first_command_with_the_real_interpreter() {
    let real = real_python();
    let dir = real.parent().unwrap().display().to_string();
    let path = format!("{dir}:{}", std::env::var("PATH").unwrap_or_default());
    readme_command(&path, "the real interpreter");
}
