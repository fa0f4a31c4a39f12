//! `logtap run -- CMD`: the real binary, the real liblogtap.so, real programs.

use logtap_tests::agent_harness::run;

/// The real interpreter: `python3` on PATH may be a shell-script shim (pyenv) whose own helper
/// processes write to stdout, and every tapped process's lines are records.
fn python3() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 is installed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn python_print_hi_gives_exactly_one_record() {
    let (status, out) = run(&[], &[&python3(), "-c", "print(\"hi\")"], &[]);
    assert_eq!(status.code(), Some(0), "{out:?}");
    assert_eq!(out.records.len(), 1, "exactly one JSON record: {out:?}");
    let r = &out.records[0];
    assert_eq!(r["message"], "hi");
    assert_eq!(r["stream"], "stdout");
    assert_eq!(r["source"], "logtap");
    assert!(r["pid"].as_u64().unwrap() > 1);
    assert!(r["timestamp"].as_str().unwrap().ends_with('Z'));
    // The program's own output is untouched.
    assert_eq!(out.other, ["hi"]);
}

#[test]
fn stdout_and_stderr_lines_keep_their_stream_and_order() {
    let script = "import sys\nfor i in range(50):\n    print(f'out {i}')\n    print(f'err {i}', file=sys.stderr)\n";
    let (status, out) = run(&["--flush-interval", "100ms"], &[&python3(), "-c", script], &[]);
    assert!(status.success());
    let of = |stream: &str| -> Vec<String> {
        out.records.iter().filter(|r| r["stream"] == stream).map(|r| r["message"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(of("stdout"), (0..50).map(|i| format!("out {i}")).collect::<Vec<_>>());
    assert_eq!(of("stderr"), (0..50).map(|i| format!("err {i}")).collect::<Vec<_>>());
}

#[test]
fn the_commands_exit_code_comes_back() {
    let (status, _) = run(&[], &["sh", "-c", "echo bye; exit 3"], &[]);
    assert_eq!(status.code(), Some(3));
    let (status, _) = run(&[], &["sh", "-c", "kill -TERM $$"], &[]);
    assert_eq!(status.code(), Some(128 + 15), "killed by SIGTERM → 143 like a shell");
    let (status, _) = run(&[], &["/nonexistent/program"], &[]);
    assert_eq!(status.code(), Some(127), "not found → 127 like a shell");
}

#[test]
fn a_missing_preload_library_is_a_clear_error() {
    let (status, out) = run(&["--preload", "/nonexistent/liblogtap.so"], &["true"], &[]);
    assert_eq!(status.code(), Some(1));
    assert!(out.records.is_empty());
}
