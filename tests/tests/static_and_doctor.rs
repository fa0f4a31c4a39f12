//! Programs `LD_PRELOAD` cannot reach (issue 15), with the real `logtap` binary and real
//! programs compiled here: a static one (`gcc -static`) under `logtap run` is captured through
//! pipes; `logtap doctor` judges glibc, musl, static, setuid programs and scripts; `logtap
//! install`'s one `LD_PRELOAD='DIR/$LIB/liblogtap.so'` taps a glibc program and leaves a musl
//! program running (untapped) when the musl library is not installed.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use logtap_tests::agent_harness::{Agent, wait_bounded};
use logtap_tests::artifacts::{self, TempDir};
use serde_json::Value;

/// Prints three lines on each stream, echoes one stdin line, then exits as `argv[1]` says:
/// a number is the exit code, `TERM` kills itself with SIGTERM.
const STATIC_PROGRAM: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char line[64] = "";
    for (int i = 0; i < 3; i++) {
        printf("out %d\n", i);
        fflush(stdout);
        fprintf(stderr, "err %d\n", i);
    }
    if (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        printf("stdin said %s\n", line);
        fflush(stdout);
    }
    if (argc > 1 && strcmp(argv[1], "TERM") == 0) kill(getpid(), SIGTERM);
    return argc > 1 ? atoi(argv[1]) : 0;
}
"#;

const HELLO: &str = "#include <stdio.h>\nint main(void) { puts(\"hello from C\"); return 0; }\n";

/// Compiles `source` in `dir` as `name` with `compiler` and `flags`.
fn compile(dir: &Path, compiler: &str, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let exe = dir.join(name);
    if compiler == "gcc" {
        return artifacts::gcc(&src, &exe, flags);
    }
    let out = Command::new(compiler)
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("{compiler} must be installed (apt install musl-tools): {e}"));
    assert!(
        out.status.success(),
        "{compiler}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// The output of one `logtap` command.
struct Ran {
    status: ExitStatus,
    records: Vec<Value>,
    /// stdout lines that are not records (the program's own output).
    other: Vec<String>,
    stderr: String,
}

/// Runs `logtap <args>` with `stdin` on its standard input; bounded to 60 s.
fn logtap(args: &[&str], stdin: &str) -> Ran {
    logtap_with(args, stdin, &[])
}

/// [`logtap`] with no input and extra environment variables.
fn logtap_env(args: &[&str], env: &[(&str, &str)]) -> Ran {
    logtap_with(args, "", env)
}

fn logtap_with(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Ran {
    let mut child = Command::new(artifacts::logtap_bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start logtap");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_bounded(&mut child, Duration::from_secs(60));
    let (mut records, mut other) = (Vec::new(), Vec::new());
    for line in lines.join().unwrap() {
        match serde_json::from_str::<Value>(&line) {
            Ok(v) if v.get("source").is_some() => records.push(v),
            _ => other.push(line),
        }
    }
    let stderr = stderr.join().unwrap();
    eprintln!("{stderr}");
    Ran {
        status,
        records,
        other,
        stderr,
    }
}

/// `(stream, message)` of every record, in order.
fn messages(records: &[Value]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| {
            (
                r["stream"].as_str().unwrap().to_owned(),
                r["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn of(stream: &str, lines: &[&str]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|l| (stream.to_owned(), (*l).to_owned()))
        .collect()
}

/// Proof 2: a `gcc -static` program's stdout and stderr lines are records, kept apart, and its
/// exit code comes back; its own output still reaches `logtap run`'s stdout; stdin reaches it.
#[test]
fn a_static_program_is_captured_through_pipes() {
    let dir = TempDir::new("static-run");
    let exe = compile(
        dir.path(),
        "gcc",
        "static-prog",
        STATIC_PROGRAM,
        &["-static"],
    );
    let exe = exe.to_str().unwrap();
    let ran = logtap(&["run", "--", exe, "3"], "ping\n");
    assert_eq!(ran.status.code(), Some(3), "the exit code passes through");
    assert!(
        ran.stderr.contains(&format!(
            "logtap: {exe} is statically linked: capturing stdout/stderr through pipes"
        )),
        "{}",
        ran.stderr
    );
    let (out, err): (Vec<_>, Vec<_>) = messages(&ran.records)
        .into_iter()
        .partition(|(s, _)| s == "stdout");
    assert_eq!(
        out,
        of("stdout", &["out 0", "out 1", "out 2", "stdin said ping"])
    );
    assert_eq!(err, of("stderr", &["err 0", "err 1", "err 2"]));
    let pid = ran.records[0]["pid"].as_u64().unwrap();
    for r in &ran.records {
        assert_eq!(r["pid"].as_u64(), Some(pid), "the program's pid: {r}");
        assert_eq!(r["comm"], "static-prog");
        assert_eq!(r["source"], "logtap");
        assert!(r.get("partial").is_none(), "{r}");
    }
    assert_ne!(pid, u64::from(std::process::id()));
    assert_eq!(
        ran.other,
        ["out 0", "out 1", "out 2", "stdin said ping"],
        "the program's own stdout reaches logtap run's"
    );
    for line in ["err 0", "err 1", "err 2"] {
        assert!(ran.stderr.contains(line), "its stderr reaches ours");
    }
}

#[test]
fn a_static_program_killed_by_sigterm_gives_143_and_its_records() {
    let dir = TempDir::new("static-term");
    let exe = compile(
        dir.path(),
        "gcc",
        "static-term",
        STATIC_PROGRAM,
        &["-static"],
    );
    let ran = logtap_env(
        &["run", "--", exe.to_str().unwrap(), "TERM"],
        &[("LLT_TAP_FILE", "/tmp/whatever.log")],
    );
    assert!(
        ran.stderr.contains("LLT_TAP_FILE is ignored for"),
        "{}",
        ran.stderr
    );
    assert_eq!(ran.status.code(), Some(128 + 15), "death by SIGTERM → 143");
    let (out, err): (Vec<_>, Vec<_>) = messages(&ran.records)
        .into_iter()
        .partition(|(s, _)| s == "stdout");
    assert_eq!(out, of("stdout", &["out 0", "out 1", "out 2"]));
    assert_eq!(err, of("stderr", &["err 0", "err 1", "err 2"]));
}

/// `logtap doctor -- CMD`: its verdict line (stdout) and exit code.
fn doctor(extra: &[&str], cmd: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec!["doctor"];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(cmd);
    let ran = logtap(&args, "");
    let stdout = ran.other.join("\n");
    (ran.status.code(), stdout, ran.stderr)
}

/// Proof 3: the right verdict for a glibc, a musl, a static and a setuid program, and scripts.
#[test]
fn doctor_judges_each_kind_of_program() {
    let dir = TempDir::new("doctor");
    let d = dir.path();
    let glibc = compile(d, "gcc", "hello-glibc", HELLO, &[]);
    let musl = compile(d, "musl-gcc", "hello-musl", HELLO, &[]);
    let stat = compile(d, "gcc", "hello-static", HELLO, &["-static"]);
    let setuid = d.join("hello-setuid");
    std::fs::copy(&glibc, &setuid).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let script = d.join("script.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let env_script = d.join("env-script");
    std::fs::write(&env_script, format!("#!/usr/bin/env {}\n", musl.display())).unwrap();
    for s in [&script, &env_script] {
        std::fs::set_permissions(s, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let p = |p: &Path| p.to_str().unwrap().to_owned();
    let no_musl = ["--preload-musl", "/nonexistent/liblogtap-musl.so"];

    let (code, out, _) = doctor(&[], &[&p(&glibc)]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with(&format!("logtap doctor: {}: tappable (glibc 2.", p(&glibc)))
            && out.contains("needed by liblogtap.so)"),
        "{out}"
    );

    let (code, out, _) = doctor(&no_musl, &[&p(&musl)]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("musl program but liblogtap-musl.so is not installed"),
        "{out}"
    );

    let (code, out, _) = doctor(&[], &[&p(&stat)]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(
            "not tappable by preload: statically linked — logtap run captures stdout/stderr \
             through pipes"
        ),
        "{out}"
    );

    let (code, out, _) = doctor(&[], &[&p(&setuid)]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("setuid: the loader ignores LD_PRELOAD"),
        "{out}"
    );

    // A script is judged by its interpreter; `env PROG` by the PROG env finds.
    let (code, out, _) = doctor(&[], &[&p(&script), "arg"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with(&format!(
            "logtap doctor: {} → /bin/sh: tappable",
            p(&script)
        )),
        "{out}"
    );
    let (code, out, _) = doctor(&no_musl, &[&p(&env_script)]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!("{} → {}: musl program", p(&env_script), p(&musl))),
        "{out}"
    );
    // A command found in PATH, like a shell finds it.
    let (code, out, _) = doctor(&[], &["sh"]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn doctor_says_when_it_cannot_tell() {
    let dir = TempDir::new("doctor-bad");
    let d = dir.path();
    let (code, _, err) = doctor(&[], &["no-such-program-logtap"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("no-such-program-logtap: command not found"),
        "{err}"
    );

    let text = d.join("notes.txt");
    std::fs::write(&text, "just text\n").unwrap();
    let (code, _, err) = doctor(&[], &[text.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("neither an ELF program nor a #! script"),
        "{err}"
    );

    // A real program cut short, and one whose program headers point past its end.
    let glibc = compile(d, "gcc", "whole", HELLO, &[]);
    let bytes = std::fs::read(&glibc).unwrap();
    let cut = d.join("cut");
    std::fs::write(&cut, &bytes[..40]).unwrap();
    let (code, _, err) = doctor(&[], &[cut.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("malformed ELF (truncated header)"), "{err}");
    let mut hostile = bytes.clone();
    hostile[32..40].copy_from_slice(&u64::MAX.to_le_bytes()); // e_phoff
    let bad = d.join("hostile");
    std::fs::write(&bad, &hostile).unwrap();
    let (code, _, err) = doctor(&[], &[bad.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("program headers outside the file"), "{err}");

    let (code, _, err) = doctor(&["--preload", "/nonexistent/liblogtap.so"], &["sh"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("liblogtap.so not found at /nonexistent/liblogtap.so"),
        "{err}"
    );
}

/// `logtap install --library-only --to DIR` → the `LD_PRELOAD` value it prints.
fn install(to: &Path, extra: &[&str]) -> (String, Ran) {
    let mut args = vec!["install", "--library-only", "--to", to.to_str().unwrap()];
    args.extend_from_slice(extra);
    let ran = logtap(&args, "");
    assert_eq!(ran.status.code(), Some(0), "{}", ran.stderr);
    let value = ran
        .other
        .iter()
        .find_map(|l| l.strip_prefix("LD_PRELOAD='")?.strip_suffix('\''))
        .unwrap_or_else(|| panic!("no LD_PRELOAD line: {:?}", ran.other))
        .to_owned();
    (value, ran)
}

/// A program run with the installed `LD_PRELOAD` value, tapping into `agent`.
fn run_preloaded(agent: &Agent, preload: &str, exe: &Path) -> (ExitStatus, String, String) {
    let out = Command::new(exe)
        .env("LD_PRELOAD", preload)
        .env("LLT_TARGET", format!("socket:{}", agent.socket.display()))
        .env("LLT_TAP_INTO", "3")
        .stdin(Stdio::null())
        .output()
        .expect("run the program");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The glibc-only install (no musl library): one `LD_PRELOAD` value taps a glibc program, and a
/// musl program runs unharmed, untapped — where preloading the glibc library stops it (127).
#[test]
fn install_layout_taps_glibc_and_leaves_a_musl_program_running() {
    let dir = TempDir::new("install-layout");
    let d = dir.path();
    let to = d.join("logtap");
    let (preload, ran) = install(&to, &["--preload-musl", "/nonexistent/liblogtap-musl.so"]);
    assert_eq!(preload, format!("{}/$LIB/liblogtap.so", to.display()));
    assert!(
        ran.stderr
            .contains("musl programs (Alpine images) will run untapped"),
        "{}",
        ran.stderr
    );
    assert!(
        !to.join("$LIB").exists(),
        "no musl directory without the library"
    );
    let triple = format!("lib/{}-linux-gnu/liblogtap.so", std::env::consts::ARCH);
    for link in [triple.as_str(), "lib64/liblogtap.so", "lib/liblogtap.so"] {
        assert_eq!(
            std::fs::read(to.join(link)).unwrap(),
            std::fs::read(artifacts::liblogtap()).unwrap(),
            "{link} is the glibc library"
        );
    }

    let glibc = compile(d, "gcc", "hello-glibc", HELLO, &[]);
    let musl = compile(d, "musl-gcc", "hello-musl", HELLO, &[]);
    let agent = Agent::start("install-layout", &["--flush-interval", "50ms"]);
    let (status, stdout, stderr) = run_preloaded(&agent, &preload, &glibc);
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, "hello from C\n");
    assert!(
        stderr.is_empty(),
        "glibc found its $LIB directory: {stderr}"
    );
    let records = agent.wait_records(1, Duration::from_secs(10));
    assert_eq!(messages(&records), of("stdout", &["hello from C"]));

    let (status, stdout, stderr) = run_preloaded(&agent, &preload, &musl);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "hello from C\n");
    // What the glibc library alone does to it: why the layout exists.
    let (status, _, _) = run_preloaded(&agent, artifacts::liblogtap().to_str().unwrap(), &musl);
    assert_ne!(
        status.code(),
        Some(0),
        "the glibc library in a musl program"
    );
    let (_, records) = agent.terminate();
    assert_eq!(
        records.len(),
        1,
        "the musl program ran untapped: {records:?}"
    );
}

/// `logtap run` of a musl program when no `liblogtap-musl.so` is beside the library: it runs,
/// untapped, and `logtap run` says why — where preloading the glibc library would stop it.
#[test]
fn run_of_a_musl_program_without_the_musl_library_runs_it_untapped() {
    let dir = TempDir::new("run-musl-missing");
    let d = dir.path();
    let lib = d.join("liblogtap.so");
    std::fs::copy(artifacts::liblogtap(), &lib).unwrap();
    let musl = compile(d, "musl-gcc", "hello-musl", HELLO, &[]);
    let glibc = compile(d, "gcc", "hello-glibc", HELLO, &[]);
    let ran = logtap(
        &[
            "run",
            "--preload",
            lib.to_str().unwrap(),
            "--",
            musl.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(ran.status.code(), Some(0), "{}", ran.stderr);
    assert_eq!(ran.other, ["hello from C"]);
    assert!(ran.records.is_empty(), "{:?}", ran.records);
    assert!(
        ran.stderr
            .contains("is a musl program and liblogtap-musl.so is not installed"),
        "{}",
        ran.stderr
    );
    // A glibc shell starting both: the glibc program is tapped, the musl one runs.
    let script = format!("{} && {}", glibc.display(), musl.display());
    let ran = logtap(
        &[
            "run",
            "--preload",
            lib.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ],
        "",
    );
    assert_eq!(ran.status.code(), Some(0), "{}", ran.stderr);
    assert_eq!(ran.other, ["hello from C", "hello from C"]);
    assert_eq!(messages(&ran.records), of("stdout", &["hello from C"]));
    assert_eq!(ran.records[0]["comm"], "hello-glibc");
}

/// glibc's secure mode (a setuid program started by another user) skips the `$LIB` preload
/// path silently: the program runs, untapped. Needs root (to start it as another user).
#[test]
fn a_setuid_program_run_by_another_user_ignores_the_preload_and_runs() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to start a setuid program as another user");
        return;
    }
    let dir = TempDir::new("setuid-secure");
    let d = dir.path();
    let to = d.join("logtap");
    let (preload, _) = install(&to, &[]);
    let exe = compile(d, "gcc", "hello-setuid", HELLO, &[]);
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent = Agent::start("setuid-secure", &["--flush-interval", "50ms"]);
    let out = Command::new(&exe)
        .env("LD_PRELOAD", &preload)
        .env("LLT_TARGET", format!("socket:{}", agent.socket.display()))
        .env("LLT_TAP_INTO", "3")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"hello from C\n");
    assert!(out.stderr.is_empty(), "silently skipped: {out:?}");
    let (_, records) = agent.terminate();
    assert!(
        records.is_empty(),
        "secure mode loads no preload: {records:?}"
    );
}

/// `logtap doctor --root DIR`: a program of an unpacked image, found through the image's PATH,
/// `#!` line and absolute symlinks, judged with the image's own `libc.so.6`.
#[test]
fn doctor_judges_a_program_inside_an_unpacked_image() {
    use std::os::unix::fs::symlink;
    let dir = TempDir::new("doctor-root");
    let d = dir.path();
    let build = d.join("build");
    std::fs::create_dir(&build).unwrap();
    let musl = compile(&build, "musl-gcc", "hello-musl", HELLO, &[]);
    let glibc = compile(&build, "gcc", "hello-glibc", HELLO, &[]);

    // An Alpine-like image: /bin/sh is an absolute link to its (musl) shell, /bin/app a script.
    let alpine = d.join("alpine");
    for sub in ["bin", "usr/bin", "lib"] {
        std::fs::create_dir_all(alpine.join(sub)).unwrap();
    }
    std::fs::copy(&musl, alpine.join("usr/bin/busybox")).unwrap();
    symlink("/usr/bin/busybox", alpine.join("bin/sh")).unwrap();
    std::fs::write(alpine.join("bin/app"), "#!/bin/sh\necho hi\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        alpine.join("bin/app"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let root = alpine.to_str().unwrap();
    let no_musl = ["--preload-musl", "/nonexistent/liblogtap-musl.so"];
    let (code, out, err) = doctor(&["--root", root, no_musl[0], no_musl[1]], &["app"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.starts_with("logtap doctor: /bin/app → /bin/sh: musl program but liblogtap-musl.so"),
        "{out}"
    );

    // A Debian-like image: /lib64's loader links (absolutely) into the multiarch directory,
    // where libc.so.6 is.
    let debian = d.join("debian");
    let multiarch = format!("lib/{}-linux-gnu", std::env::consts::ARCH);
    for sub in ["usr/bin", "lib64", multiarch.as_str()] {
        std::fs::create_dir_all(debian.join(sub)).unwrap();
    }
    std::fs::copy(&glibc, debian.join("usr/bin/server")).unwrap();
    let host_libc = std::fs::canonicalize(format!("/{multiarch}/libc.so.6")).unwrap();
    std::fs::copy(&host_libc, debian.join(&multiarch).join("libc.so.6")).unwrap();
    symlink(
        format!("/{multiarch}/ld-linux-x86-64.so.2"),
        debian.join("lib64/ld-linux-x86-64.so.2"),
    )
    .unwrap();
    let root = debian.to_str().unwrap();
    let (code, out, err) = doctor(&["--root", root], &["server"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.starts_with("logtap doctor: /usr/bin/server: tappable (glibc 2."),
        "{out}"
    );
    // Without its libc.so.6 nothing can be said about its glibc: exit 2.
    std::fs::remove_file(debian.join(&multiarch).join("libc.so.6")).unwrap();
    let (code, out, _) = doctor(&["--root", root], &["server"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("its libc.so.6 was not found"), "{out}");
    // The host's PATH is not the image's: a command only the host has is not found there.
    let (code, _, err) = doctor(&["--root", root], &["cargo"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cargo: command not found"), "{err}");
}

/// With the real `liblogtap-musl.so` (built beside `liblogtap.so` when musl-gcc is installed):
/// doctor says a musl program is tappable, and one `LD_PRELOAD` value from `logtap install` taps
/// a glibc and a musl program alike.
#[test]
fn install_with_the_musl_library_taps_glibc_and_musl_programs_with_one_value() {
    let musl_lib = artifacts::musl_library();
    let dir = TempDir::new("install-both");
    let d = dir.path();
    let glibc = compile(d, "gcc", "hello-glibc", HELLO, &[]);
    let musl = compile(d, "musl-gcc", "hello-musl", HELLO, &[]);

    let (code, out, err) = doctor(&[], &[musl.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.ends_with(": tappable with liblogtap-musl.so"), "{out}");

    let to = d.join("logtap");
    let (preload, ran) = install(&to, &[]);
    assert!(!ran.stderr.contains("untapped"), "{}", ran.stderr);
    assert_eq!(
        std::fs::read_link(to.join("$LIB/liblogtap.so")).unwrap(),
        Path::new("../liblogtap-musl.so")
    );
    assert_eq!(
        std::fs::read(to.join("$LIB/liblogtap.so")).unwrap(),
        std::fs::read(&musl_lib).unwrap()
    );
    let agent = Agent::start("install-both", &["--flush-interval", "50ms"]);
    for exe in [&glibc, &musl] {
        let (status, stdout, stderr) = run_preloaded(&agent, &preload, exe);
        assert!(status.success(), "{}: {stderr}", exe.display());
        assert_eq!(stdout, "hello from C\n");
        assert!(stderr.is_empty(), "{}: {stderr}", exe.display());
    }
    agent.wait_records(2, Duration::from_secs(10));
    let (_, records) = agent.terminate();
    let mut comms: Vec<&str> = records
        .iter()
        .map(|r| r["comm"].as_str().unwrap())
        .collect();
    comms.sort();
    assert_eq!(comms, ["hello-glibc", "hello-musl"], "{records:?}");
    assert_eq!(
        messages(&records),
        of("stdout", &["hello from C", "hello from C"])
    );
}

/// `logtap run` with both libraries: a glibc shell starting a musl program taps both.
#[test]
fn run_taps_a_musl_program_started_by_a_glibc_shell() {
    artifacts::musl_library();
    let dir = TempDir::new("run-mixed");
    let d = dir.path();
    let glibc = compile(d, "gcc", "hello-glibc", HELLO, &[]);
    let musl = compile(d, "musl-gcc", "hello-musl", HELLO, &[]);
    let script = format!("{} && {}", glibc.display(), musl.display());
    let ran = logtap(
        &["run", "--flush-interval", "50ms", "--", "sh", "-c", &script],
        "",
    );
    assert_eq!(ran.status.code(), Some(0), "{}", ran.stderr);
    assert_eq!(ran.other, ["hello from C", "hello from C"]);
    let comms: Vec<&str> = ran
        .records
        .iter()
        .map(|r| r["comm"].as_str().unwrap())
        .collect();
    assert_eq!(comms, ["hello-glibc", "hello-musl"], "{:?}", ran.records);
    assert_eq!(
        messages(&ran.records),
        of("stdout", &["hello from C", "hello from C"])
    );
    // And a musl CMD itself.
    let ran = logtap(&["run", "--", musl.to_str().unwrap()], "");
    assert_eq!(ran.status.code(), Some(0), "{}", ran.stderr);
    assert_eq!(messages(&ran.records), of("stdout", &["hello from C"]));
    assert!(!ran.stderr.contains("untapped"), "{}", ran.stderr);
}

/// A static CMD whose child keeps the pipes open (a daemon) does not hold `logtap run` up: the
/// pipes are given up shortly after CMD exits, with what CMD wrote delivered.
#[test]
fn a_child_holding_the_pipes_does_not_hold_run_up() {
    const DAEMONIZING: &str = r#"
#include <stdio.h>
#include <unistd.h>
int main(void) {
    puts("parent line");
    fflush(stdout);
    if (fork() == 0) { sleep(30); return 0; }
    return 0;
}
"#;
    let dir = TempDir::new("static-daemon");
    let exe = compile(dir.path(), "gcc", "daemonizing", DAEMONIZING, &["-static"]);
    let started = std::time::Instant::now();
    let ran = logtap(&["run", "--", exe.to_str().unwrap()], "");
    let took = started.elapsed();
    assert_eq!(ran.status.code(), Some(0), "{}", ran.stderr);
    assert!(took < Duration::from_secs(15), "logtap run took {took:?}");
    assert_eq!(messages(&ran.records), of("stdout", &["parent line"]));
}
