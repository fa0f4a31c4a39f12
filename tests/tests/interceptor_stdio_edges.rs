//! "Exactly what reached the stream" at its edges, with `tests/programs/stdio_edges.c` under
//! the real `liblogtap.so`: each mode runs untapped, tapped (stdout and stderr) and tapped
//! with both suppressed, with stdout and stderr in files; the tapped bytes must equal what
//! reached the files, and with suppression what the untapped run wrote — while the files stay
//! empty and the exit status is the same.
//!
//! Modes: glibc's `error()`/`warn()` family (printed through internal calls), a forked child
//! that writes out a buffer it inherited, `copy_file_range`/`sendfile` onto stdout, inlined
//! `putchar_unlocked` mixed with stdio calls and a tail written out by `exit`, `daemon()`, and
//! writes from invalid buffers (the real call's `EFAULT`, never a fault in the library).

mod interceptor_support;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use interceptor_support::{LIMIT, SETTLE, STDERR, STDOUT, Setup, Transport, compile};
use logtap_tests::artifacts::TempDir;
use logtap_tests::tap_receiver::Collected;

/// One run's exit status and what reached its stdout and stderr files.
struct Run {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `cmd` with stdout and stderr in files `<tag>.out` / `<tag>.err` under `dir`.
fn run_to_files(mut cmd: Command, dir: &Path, tag: &str) -> Run {
    let out = dir.join(format!("{tag}.out"));
    let err = dir.join(format!("{tag}.err"));
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap());
    let mut child = cmd.spawn().expect("spawn stdio_edges");
    let end = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("stdio_edges did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        status,
        stdout: std::fs::read(out).unwrap(),
        stderr: std::fs::read(err).unwrap(),
    }
}

/// Each pid's bytes of `stream`, in order (pids in the order of their first record).
fn per_pid(c: &Collected, stream: u8) -> Vec<(u32, Vec<u8>)> {
    let mut order = Vec::new();
    let mut by: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for r in c.records.iter().filter(|r| r.stream == stream) {
        if !by.contains_key(&r.pid) {
            order.push(r.pid);
        }
        by.entry(r.pid).or_default().extend_from_slice(&r.data);
    }
    order
        .into_iter()
        .map(|p| (p, by.remove(&p).unwrap()))
        .collect()
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).escape_debug().to_string()
}

/// The three runs of one mode. `args` may contain `{dir}`, replaced by the run's directory.
struct Case {
    untapped: Run,
    tapped: Run,
    tapped_c: Collected,
    suppressed: Run,
    suppressed_c: Collected,
    dir: PathBuf,
    _keep: TempDir,
}

fn case(name: &str, args: &[&str], quiet_for: Duration) -> Case {
    let keep = TempDir::new(&format!("stdio-edges-{name}"));
    let dir = keep.path().to_path_buf();
    let exe = compile("stdio_edges", &dir);
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{dir}", &dir.display().to_string()))
        .collect();
    let mut plain = Command::new(&exe);
    plain.args(&args).current_dir(&dir).env("TAG", "untapped");
    let untapped = run_to_files(plain, &dir, "untapped");

    let mut runs = Vec::new();
    for (tag, suppress) in [("tapped", "false"), ("suppressed", "true")] {
        let s = Setup::new(&format!("stdio-edges-{name}-{tag}"), Transport::Ring);
        let mut cmd = s.command(&exe);
        cmd.args(args.iter().map(|a| a.replace("untapped", tag)))
            .current_dir(&dir)
            .env("LLT_TAP_INTO", "3")
            .env("LLT_SUPPRESS_STDOUT", suppress)
            .env("LLT_SUPPRESS_STDERR", suppress);
        let run = run_to_files(cmd, &dir, tag);
        // Everything tapped has arrived once nothing new came for a while.
        let mut last = usize::MAX;
        let end = Instant::now() + SETTLE;
        loop {
            std::thread::sleep(quiet_for);
            let n = s.receiver.snapshot().records.len();
            if n == last || Instant::now() > end {
                break;
            }
            last = n;
        }
        let c = s.receiver.snapshot();
        assert!(c.errors.is_empty(), "{name}/{tag}: {:?}", c.errors);
        assert_eq!(c.dropped(), (0, 0), "{name}/{tag}: drops");
        runs.push((run, c));
    }
    let (suppressed, suppressed_c) = runs.pop().unwrap();
    let (tapped, tapped_c) = runs.pop().unwrap();
    Case {
        untapped,
        tapped,
        tapped_c,
        suppressed,
        suppressed_c,
        dir,
        _keep: keep,
    }
}

impl Case {
    /// The single-process check: tapped bytes == the files' bytes, suppressed tap == the
    /// untapped files, suppressed files empty, same status everywhere.
    fn assert_exact(&self, name: &str) {
        assert_eq!(
            self.tapped.status.code(),
            self.untapped.status.code(),
            "{name}"
        );
        assert_eq!(
            self.suppressed.status.code(),
            self.untapped.status.code(),
            "{name}"
        );
        assert_eq!(
            show(&self.tapped.stdout),
            show(&self.untapped.stdout),
            "{name}: tapping changed stdout"
        );
        assert_eq!(
            show(&self.tapped.stderr),
            show(&self.untapped.stderr),
            "{name}: tapping changed stderr"
        );
        for (stream, real, label) in [
            (STDOUT, &self.tapped.stdout, "stdout"),
            (STDERR, &self.tapped.stderr, "stderr"),
        ] {
            assert_eq!(
                show(&self.tapped_c.bytes(None, stream)),
                show(real),
                "{name}: tapped {label} != what reached it"
            );
        }
        for (stream, want, label) in [
            (STDOUT, &self.untapped.stdout, "stdout"),
            (STDERR, &self.untapped.stderr, "stderr"),
        ] {
            assert_eq!(
                show(&self.suppressed_c.bytes(None, stream)),
                show(want),
                "{name}: suppressed {label}'s tap != the untapped {label}"
            );
        }
        assert_eq!(
            show(&self.suppressed.stdout),
            "",
            "{name}: suppressed stdout"
        );
        assert_eq!(
            show(&self.suppressed.stderr),
            "",
            "{name}: suppressed stderr"
        );
    }
}

#[test]
fn glibc_diagnostics_are_tapped_with_the_same_bytes() {
    let c = case("diag", &["diag"], Duration::from_millis(200));
    assert_eq!(c.untapped.status.code(), Some(3));
    let err = String::from_utf8_lossy(&c.untapped.stderr);
    assert!(
        err.contains(": cannot open x.conf: No such file or directory\n"),
        "{err}"
    );
    assert!(err.contains(":parse.c:12: unexpected }\n"), "{err}");
    assert!(
        err.contains("stdio_edges: reading y: Permission denied\n"),
        "{err}"
    );
    assert!(
        err.contains(": giving up: Operation not permitted\n"),
        "{err}"
    );
    c.assert_exact("diag");
}

#[test]
fn inlined_putc_bytes_and_the_exit_flush_are_tapped() {
    let c = case("putc", &["putc"], Duration::from_millis(200));
    assert!(c.untapped.stdout.ends_with(b" end!\nno nl"));
    assert_eq!(c.untapped.stderr, b"e\n");
    c.assert_exact("putc");
}

#[test]
fn copies_onto_stdout_are_tapped_and_suppressed() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let c = case(
        "copy",
        &["copy", src.to_str().unwrap()],
        Duration::from_millis(200),
    );
    let body = std::fs::read(&src).unwrap();
    assert_eq!(c.untapped.stdout, [body.clone(), body].concat());
    c.assert_exact("copy");
}

#[test]
fn writes_from_invalid_buffers_fail_as_without_the_library() {
    let c = case(
        "efault",
        &["efault", "{dir}/untapped.results"],
        Duration::from_millis(200),
    );
    let results =
        |tag: &str| std::fs::read_to_string(c.dir.join(format!("{tag}.results"))).unwrap();
    let want = results("untapped");
    // write(NULL) and write(16): EFAULT; 6 readable bytes then a PROT_NONE page: 6; a writev
    // whose 2nd buffer is bad: 3; a bad iovec array: EFAULT.
    assert_eq!(want, "-1 14\n-1 14\n6 0\n3 0\n-1 14\n");
    assert_eq!(results("tapped"), want);
    assert_eq!(results("suppressed"), want);
    assert_eq!(c.tapped.status.code(), Some(0));
    assert_eq!(c.suppressed.status.code(), Some(0));
    // Tapped: exactly what the kernel took.
    assert_eq!(c.tapped.stdout, b"aaaaa\nok\n");
    assert_eq!(c.tapped_c.bytes(None, STDOUT), c.tapped.stdout);
    // Suppressed: the writes the library could not read were made for real (fail open:
    // the kernel took their readable part), nothing was tapped twice.
    let mut both = c.suppressed_c.bytes(None, STDOUT);
    both.extend_from_slice(&c.suppressed.stdout);
    assert_eq!(show(&both), show(b"aaaaa\nok\n"));
}

#[test]
fn a_forked_child_writing_out_its_inherited_buffer_is_tapped_for_it() {
    let c = case("fork", &["fork"], Duration::from_millis(300));
    let out = String::from_utf8_lossy(&c.untapped.stdout).into_owned();
    assert_eq!(
        out,
        "inherited by both, and inlined: ! child\ninherited by both, and inlined: ! parent\n"
    );
    let lines = |collected: &Collected| {
        let mut v: Vec<String> = per_pid(collected, STDOUT)
            .into_iter()
            .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        lines(&c.tapped_c),
        [
            "inherited by both, and inlined: ! child\n",
            "inherited by both, and inlined: ! parent\n"
        ],
        "each process's stream is what it wrote out"
    );
    // Suppressed: the stdio calls' bytes were delivered when made and never entered the
    // buffer, so the child inherits only what inlined macros left there (the known limit the
    // README states); every byte the program wrote is delivered once.
    assert_eq!(
        lines(&c.suppressed_c),
        ["! child\n", "inherited by both, and inlined: ! parent\n"]
    );
    assert_eq!(c.tapped.stdout, c.untapped.stdout);
    assert!(c.suppressed.stdout.is_empty());
}

#[test]
fn after_daemon_nothing_is_tapped() {
    let c = case("daemon", &["daemon"], Duration::from_millis(500));
    for collected in [&c.tapped_c, &c.suppressed_c] {
        assert_eq!(show(&collected.bytes(None, STDOUT)), "before daemon\\n");
    }
    assert_eq!(show(&c.tapped.stdout), "before daemon\\n");
    assert_eq!(show(&c.suppressed.stdout), "");
}
