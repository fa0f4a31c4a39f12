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
    let (status, out) = run(
        &["--flush-interval", "100ms"],
        &[&python3(), "-c", script],
        &[],
    );
    assert!(status.success());
    let of = |stream: &str| -> Vec<String> {
        out.records
            .iter()
            .filter(|r| r["stream"] == stream)
            .map(|r| r["message"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        of("stdout"),
        (0..50).map(|i| format!("out {i}")).collect::<Vec<_>>()
    );
    assert_eq!(
        of("stderr"),
        (0..50).map(|i| format!("err {i}")).collect::<Vec<_>>()
    );
}

#[test]
fn the_commands_exit_code_comes_back() {
    let (status, _) = run(&[], &["sh", "-c", "echo bye; exit 3"], &[]);
    assert_eq!(status.code(), Some(3));
    let (status, _) = run(&[], &["sh", "-c", "kill -TERM $$"], &[]);
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "killed by SIGTERM → 143 like a shell"
    );
    let (status, _) = run(&[], &["/nonexistent/program"], &[]);
    assert_eq!(status.code(), Some(127), "not found → 127 like a shell");
}

#[test]
fn a_missing_preload_library_is_a_clear_error() {
    let (status, out) = run(&["--preload", "/nonexistent/liblogtap.so"], &["true"], &[]);
    assert_eq!(status.code(), Some(1));
    assert!(out.records.is_empty());
}

#[test]
fn a_one_mebibyte_line_and_a_tail_without_newline() {
    let script =
        "import sys\nsys.stdout.write('y' * 1048576 + '\\n')\nsys.stdout.write('no newline')\n";
    // The program's own 1 MiB write would interleave with the JSON lines on the shared stdout
    // pipe (writes above PIPE_BUF are not atomic): suppress it, the tap still gets every byte.
    let (status, out) = run(
        &[],
        &[&python3(), "-c", script],
        &[("LLT_SUPPRESS_STDOUT", "true")],
    );
    assert!(status.success());
    let mut joined = String::new();
    let mut pieces = 0;
    for r in &out.records {
        joined.push_str(r["message"].as_str().unwrap());
        pieces += 1;
        if r.get("partial").is_none() {
            break;
        }
    }
    assert_eq!(joined.len(), 1 << 20);
    assert!(joined.bytes().all(|b| b == b'y'));
    assert_eq!(pieces, 16, "cut at max_line_bytes = 64 KiB");
    let last = out.records.last().unwrap();
    assert_eq!(last["message"], "no newline");
    assert_eq!(
        last["partial"], true,
        "the process exited before its newline"
    );
    assert_eq!(out.records.len(), 17);
}

#[test]
fn raw_bytes_of_a_real_program_are_kept() {
    let (status, out) = run(
        &[],
        &["/bin/sh", "-c", "printf 'ok \\377\\376 end\\n'"],
        &[],
    );
    assert!(status.success());
    assert_eq!(out.records.len(), 1, "{out:?}");
    assert_eq!(out.records[0]["message_base64"], "b2sg//4gZW5k");
}

#[test]
fn sigterm_is_passed_on_and_what_the_command_wrote_is_delivered() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(logtap_tests::artifacts::logtap_bin())
        .args([
            "run",
            "--",
            "/bin/sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The program's own "ready" comes first on the shared stdout.
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    // SAFETY: kill has no memory effects; the pid is our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(7),
        "the command's own exit code after the signal"
    );
    let messages: Vec<String> = rest
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["message"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(messages, ["ready", "got-term"], "{rest:?}");
}

#[test]
fn a_tapped_log_file_becomes_file_records() {
    let dir = logtap_tests::artifacts::TempDir::new("run-file");
    let log = dir.path().join("app.log");
    let log = log.to_str().unwrap();
    let script = format!("echo 'to the file' >> {log}; echo 'to stdout'");
    let (status, out) = run(
        &["--tag", "app.{stream}.{comm}"],
        &["/bin/sh", "-c", &script],
        &[("LLT_TAP_FILE", log)],
    );
    assert!(status.success());
    let file: Vec<_> = out
        .records
        .iter()
        .filter(|r| r["stream"] == "file")
        .collect();
    assert_eq!(file.len(), 1, "{out:?}");
    assert_eq!(file[0]["message"], "to the file");
    assert_eq!(file[0]["file"], log);
    assert_eq!(file[0]["tag"], "app.file.sh");
    let stdout: Vec<_> = out
        .records
        .iter()
        .filter(|r| r["stream"] == "stdout")
        .collect();
    assert_eq!(stdout.len(), 1);
    assert!(stdout[0].get("file").is_none());
    // Not suppressed: the file got its line too.
    assert_eq!(std::fs::read_to_string(log).unwrap(), "to the file\n");
}
