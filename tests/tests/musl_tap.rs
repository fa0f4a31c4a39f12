//! `liblogtap-musl.so` under musl's own loader: C programs built with `musl-gcc` at test time
//! (dynamically linked, run by `/lib/ld-musl-x86_64.so.1`), tapped into the real `logtap`
//! agent over its real socket. Issue 15, proof item 1: `write`, `printf`, `fputs`, `putc` and a
//! log file, suppressed → the records exact and the file empty; SIGKILL mid-run → the last
//! lines arrive. Also threads, fork + exec, the socket transport, and the fail-open cases (no
//! agent, garbage `LLT_*`): an Alpine program must never break.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use logtap_tests::agent_harness::{Agent, wait_bounded};
use logtap_tests::artifacts::{self, TempDir};
use serde_json::Value;

/// One C program, several modes (argv[1]).
const APP: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void *worker(void *arg) {
    long t = (long)arg;
    for (int i = 0; i < 250; i++) {
        if (t == 0) {
            char line[64];
            int n = snprintf(line, sizeof line, "t%ld line %d via write\n", t, i);
            write(1, line, (size_t)n);
        } else {
            printf("t%ld line %d via printf\n", t, i);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "proof") == 0) {
        /* argv[2]: the log file; argv[3]: "line" (line-buffered stdout) or "full". */
        if (argc > 3 && strcmp(argv[3], "line") == 0)
            setvbuf(stdout, NULL, _IOLBF, 0);
        write(1, "w1 via write\n", 13);
        printf("p1 via printf %d\n", 1);
        fputs("f1 via fputs\n", stdout);
        for (const char *s = "c1 via putc\n"; *s; s++)
            putc(*s, stdout);
        fprintf(stderr, "e1 via fprintf to stderr\n");
        FILE *log = fopen(argv[2], "a");
        if (!log)
            return 10;
        fprintf(log, "l1 via fprintf to the log %d\n", 1);
        fputs("l2 via fputs to the log\n", log);
        fclose(log);
        int fd = open(argv[2], O_WRONLY | O_APPEND);
        if (fd < 0)
            return 11;
        write(fd, "l3 via write to the log\n", 24);
        close(fd);
        printf("p2 last line via printf\n");
        return 3;
    }
    if (strcmp(mode, "kill") == 0) {
        /* argv[2]: a marker file created once every line is written. */
        for (int i = 0; i < 300; i++) {
            printf("line %d of the killed program\n", i);
            fflush(stdout);
        }
        write(1, "last line via write\n", 20);
        int fd = open(argv[2], O_WRONLY | O_CREAT, 0600);
        close(fd);
        for (;;)
            pause();
    }
    if (strcmp(mode, "threads") == 0) {
        /* Line-buffered: each flush is whole lines. (Fully buffered, a flush ends mid-line and
         * another thread's write() lands in the middle of that line — in the real output too.) */
        setvbuf(stdout, NULL, _IOLBF, 0);
        pthread_t th[4];
        for (long t = 0; t < 4; t++)
            pthread_create(&th[t], NULL, worker, (void *)t);
        for (int t = 0; t < 4; t++)
            pthread_join(th[t], NULL);
        return 0;
    }
    if (strcmp(mode, "many") == 0) {
        /* 5000 lines of 100 bytes, one flush each. */
        setvbuf(stdout, NULL, _IOLBF, 0);
        for (int i = 0; i < 5000; i++)
            printf("many %04d %s\n", i,
                   "................................................................................."
                   "....");
        return 0;
    }
    if (strcmp(mode, "reuse") == 0) {
        /* argv[2]: the log file. Its descriptor number, freed by fclose, is reused by a
         * socket that is not a tap file. */
        FILE *log = fopen(argv[2], "a");
        if (!log)
            return 10;
        int n = fileno(log);
        fputs("to the log\n", log);
        fclose(log);
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || sv[0] != n)
            return 13;
        write(sv[0], "to a socket\n", 12);
        return 0;
    }
    if (strcmp(mode, "pause") == 0) {
        printf("first line\n");
        printf("before the pause\n");
        usleep(300000);
        printf("after the pause\n");
        return 0;
    }
    if (strcmp(mode, "forkexec") == 0) {
        printf("parent before fork\n");
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            execl(argv[2], argv[2], (char *)NULL);
            _exit(127);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        printf("parent after child %d\n", WEXITSTATUS(status));
        return 0;
    }
    if (strcmp(mode, "subst") == 0) {
        /* What a shell's x=$(cmd) does: the child's fd 1 is a pipe the parent reads. */
        int p[2];
        if (pipe(p) != 0)
            return 12;
        pid_t pid = fork();
        if (pid == 0) {
            dup2(p[1], 1);
            close(p[0]);
            close(p[1]);
            printf("inner via printf\n");
            fflush(stdout);
            write(1, "inner via write\n", 16);
            _exit(0);
        }
        close(p[1]);
        char buf[256];
        size_t got = 0;
        ssize_t n;
        while (got < sizeof buf - 1 && (n = read(p[0], buf + got, sizeof buf - 1 - got)) > 0)
            got += (size_t)n;
        buf[got] = 0;
        waitpid(pid, NULL, 0);
        for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
            printf("got: %s\n", line);
        return 0;
    }
    return 2;
}
"#;

/// Builds the musl program once per test (each test has its own directory).
fn build_app(dir: &Path) -> PathBuf {
    let src = dir.join("app.c");
    std::fs::write(&src, APP).unwrap();
    artifacts::musl_cc(&src, &dir.join("app"), &["-O1", "-pthread"])
}

/// The program under the musl library, tapping into `agent` (or into `target`), stdout and
/// stderr captured.
fn tapped(app: &Path, target: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(app);
    cmd.args(args)
        .env("LD_PRELOAD", artifacts::musl_library())
        .env("LLT_TARGET", target)
        .env("LLT_TAP_INTO", "3")
        .env("LLT_TARGET_1STCONNECT", "0")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn run_bounded(mut cmd: Command) -> Output {
    let mut child = cmd.spawn().expect("start the musl program");
    // The pipes are small and the program's output is: wait, then read.
    wait_bounded(&mut child, Duration::from_secs(30));
    child.wait_with_output().unwrap()
}

/// A fresh agent (100 ms flushes) and the musl program built in its directory.
fn start(name: &str) -> (Agent, PathBuf) {
    let agent = Agent::start(name, &["--flush-interval", "100ms"]);
    let app = build_app(agent.dir.path());
    (agent, app)
}

/// Runs the program tapped into `agent` and checks that it exited 0.
fn run_ok(agent: &Agent, app: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = run_bounded(tapped(app, &socket_target(agent), args, env));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    out
}

fn socket_target(agent: &Agent) -> String {
    format!("socket:{}", agent.socket.display())
}

fn messages(records: &[Value], stream: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["stream"] == stream)
        .map(|r| r["message"].as_str().unwrap_or("<not text>").to_owned())
        .collect()
}

/// Waits until `pred` holds for the agent's records (panics after `limit`).
fn wait_until(agent: &Agent, limit: Duration, what: &str, pred: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        let r = agent.records();
        if pred(&r) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not there after {limit:?}; records: {r:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const STDOUT_LINES: [&str; 5] = [
    "w1 via write",
    "p1 via printf 1",
    "f1 via fputs",
    "c1 via putc",
    "p2 last line via printf",
];
const LOG_LINES: [&str; 3] = [
    "l1 via fprintf to the log 1",
    "l2 via fputs to the log",
    "l3 via write to the log",
];

/// Proof item 1, for one buffering mode of stdout and one transport.
fn proof(buffering: &str, transport: &str) {
    let (agent, app) = start("musl-proof");
    let log = agent.dir.path().join("app.log");
    let log_arg = log.to_str().unwrap();
    let out = run_bounded(tapped(
        &app,
        &socket_target(&agent),
        &["proof", log_arg, buffering],
        &[
            ("LLT_SUPPRESS_STDOUT", "1"),
            ("LLT_SUPPRESS_TAP_FILE", "1"),
            ("LLT_TAP_FILE", log_arg),
            ("LLT_TRANSPORT", transport),
        ],
    ));
    assert_eq!(
        out.status.code(),
        Some(3),
        "the program's exit code: {out:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "suppressed stdout must stay empty"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "e1 via fprintf to stderr\n",
        "stderr is tapped, not suppressed"
    );
    assert_eq!(
        std::fs::read(&log).expect("the program created its log file"),
        b"",
        "the suppressed log file must stay empty"
    );
    wait_until(&agent, Duration::from_secs(20), "every line", |r| {
        r.len() >= 9
    });
    let (_, records) = agent.terminate();
    assert_eq!(messages(&records, "stdout"), STDOUT_LINES, "{buffering}");
    assert_eq!(messages(&records, "stderr"), ["e1 via fprintf to stderr"]);
    assert_eq!(messages(&records, "file"), LOG_LINES);
    for r in records.iter().filter(|r| r["stream"] == "file") {
        assert_eq!(r["file"], log_arg, "{r}");
    }
    assert_eq!(
        records.len(),
        9,
        "nothing else, nothing twice: {records:#?}"
    );
}

#[test]
fn write_printf_fputs_putc_and_a_log_file_are_exact_and_suppressed_fully_buffered() {
    proof("full", "ring");
}

#[test]
fn write_printf_fputs_putc_and_a_log_file_are_exact_and_suppressed_line_buffered() {
    proof("line", "ring");
}

#[test]
fn the_socket_transport_carries_the_same_records() {
    proof("full", "socket");
}

#[test]
fn a_program_killed_mid_run_still_delivers_its_last_lines() {
    let (agent, app) = start("musl-kill");
    let marker = agent.dir.path().join("written");
    let mut child = tapped(
        &app,
        &socket_target(&agent),
        &["kill", marker.to_str().unwrap()],
        &[("LLT_SUPPRESS_STDOUT", "1")],
    )
    .stdout(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !marker.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the program exited early"
        );
        assert!(
            Instant::now() < deadline,
            "the program never wrote its lines"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush, nothing of the library runs
    let status = wait_bounded(&mut child, Duration::from_secs(10));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let mut expected: Vec<String> = (0..300)
        .map(|i| format!("line {i} of the killed program"))
        .collect();
    expected.push("last line via write".into());
    wait_until(&agent, Duration::from_secs(20), "the last line", |r| {
        messages(r, "stdout").last().map(String::as_str) == Some("last line via write")
    });
    let (_, records) = agent.terminate();
    assert_eq!(messages(&records, "stdout"), expected);
}

#[test]
fn threads_writing_through_stdio_and_write_lose_and_mix_nothing() {
    let (agent, app) = start("musl-threads");
    let out = run_ok(&agent, &app, &["threads"], &[("LLT_SUPPRESS_STDOUT", "1")]);
    assert!(out.stdout.is_empty());
    wait_until(&agent, Duration::from_secs(30), "1000 lines", |r| {
        r.len() >= 1000
    });
    let (_, records) = agent.terminate();
    let lines = messages(&records, "stdout");
    let strange: Vec<&String> = lines
        .iter()
        .filter(|l| {
            let mut w = l.split(' ');
            !(matches!(w.next(), Some("t0" | "t1" | "t2" | "t3"))
                && w.next() == Some("line")
                && w.next()
                    .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n < 250))
                && w.next() == Some("via")
                && matches!(w.next(), Some("write" | "printf"))
                && w.next().is_none())
        })
        .collect();
    assert!(strange.is_empty(), "mixed or damaged lines: {strange:?}");
    assert_eq!(lines.len(), 1000, "each line once");
    for t in 0..4 {
        let via = if t == 0 { "write" } else { "printf" };
        let own: Vec<&String> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("t{t} ")))
            .collect();
        let expected: Vec<String> = (0..250)
            .map(|i| format!("t{t} line {i} via {via}"))
            .collect();
        assert_eq!(
            own.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            expected,
            "thread {t}: every line whole and in order"
        );
    }
}

/// Another musl program, which the `forkexec` mode runs after a fork.
const CHILD: &str = r#"
#include <stdio.h>
int main(void) {
    printf("child says hi via printf\n");
    return 5;
}
"#;

#[test]
fn a_forked_and_execed_musl_child_is_tapped_as_its_own_process() {
    let (agent, app) = start("musl-fork");
    let child_src = agent.dir.path().join("child.c");
    std::fs::write(&child_src, CHILD).unwrap();
    let child_exe = artifacts::musl_cc(&child_src, &agent.dir.path().join("child"), &[]);
    let out = run_ok(
        &agent,
        &app,
        &["forkexec", child_exe.to_str().unwrap()],
        &[],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "parent before fork\nchild says hi via printf\nparent after child 5\n",
        "not suppressed: the program's output is unchanged"
    );
    wait_until(&agent, Duration::from_secs(20), "three lines", |r| {
        r.len() >= 3
    });
    let (_, records) = agent.terminate();
    let find = |m: &str| {
        records
            .iter()
            .find(|r| r["message"] == m)
            .unwrap_or_else(|| panic!("no record {m:?}: {records:#?}"))
            .clone()
    };
    let before = find("parent before fork");
    let child = find("child says hi via printf");
    let after = find("parent after child 5");
    assert_eq!(before["pid"], after["pid"]);
    assert_ne!(child["pid"], before["pid"], "the child has its own pid");
    assert_eq!(records.len(), 3, "{records:#?}");
}

#[test]
fn with_tap_children_off_an_execed_child_is_not_tapped() {
    let (agent, app) = start("musl-no-children");
    let child_src = agent.dir.path().join("child.c");
    std::fs::write(&child_src, CHILD).unwrap();
    let child_exe = artifacts::musl_cc(&child_src, &agent.dir.path().join("child"), &[]);
    let out = run_ok(
        &agent,
        &app,
        &["forkexec", child_exe.to_str().unwrap()],
        &[("LLT_TAP_CHILDREN", "false")],
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("child says hi via printf"),
        "{out:?}"
    );
    wait_until(&agent, Duration::from_secs(20), "the parent's lines", |r| {
        r.len() >= 2
    });
    std::thread::sleep(Duration::from_millis(300));
    let (_, records) = agent.terminate();
    assert_eq!(
        messages(&records, "stdout"),
        ["parent before fork", "parent after child 5"],
        "only the parent is tapped"
    );
}

#[test]
fn a_pipe_on_fd_1_is_not_the_tapped_stdout_and_is_never_suppressed() {
    let (agent, app) = start("musl-subst");
    let out = run_ok(&agent, &app, &["subst"], &[("LLT_SUPPRESS_STDOUT", "1")]);
    assert!(out.stdout.is_empty(), "the real stdout is suppressed");
    wait_until(&agent, Duration::from_secs(20), "two lines", |r| {
        r.len() >= 2
    });
    let (_, records) = agent.terminate();
    // The child's bytes reached the parent through its pipe (else no "got:" lines), and only
    // the parent's lines on the real stdout are records.
    assert_eq!(
        messages(&records, "stdout"),
        ["got: inner via printf", "got: inner via write"]
    );
    assert_eq!(records.len(), 2, "{records:#?}");
}

/// The program's own output and exit code, untapped (no preload at all).
fn untapped(app: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(app);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    run_bounded(cmd)
}

#[test]
fn with_no_agent_a_suppressed_program_writes_everything_itself() {
    let dir = TempDir::new("musl-no-agent");
    let app = build_app(dir.path());
    let log = dir.path().join("app.log");
    let log_arg = log.to_str().unwrap();
    let target = format!("socket:{}", dir.path().join("nobody.sock").display());
    let out = run_bounded(tapped(
        &app,
        &target,
        &["proof", log_arg, "full"],
        &[
            ("LLT_SUPPRESS_STDOUT", "1"),
            ("LLT_SUPPRESS_TAP_FILE", "1"),
            ("LLT_TAP_FILE", log_arg),
        ],
    ));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let expected: String = STDOUT_LINES.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "e1 via fprintf to stderr\n"
    );
    let written: String = LOG_LINES.iter().map(|l| format!("{l}\n")).collect();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), written);
}

#[test]
fn garbage_settings_leave_the_program_running_unchanged() {
    let dir = TempDir::new("musl-garbage");
    let app = build_app(dir.path());
    let log = dir.path().join("app.log");
    let log_arg = log.to_str().unwrap();
    let reference = untapped(&app, &["proof", log_arg, "full"]);
    assert_eq!(reference.status.code(), Some(3));
    std::fs::remove_file(&log).unwrap();
    let garbage = [
        ("LLT_TAP_INTO", "7x"),
        ("LLT_SUPPRESS_STDOUT", "perhaps"),
        ("LLT_SUPPRESS_TAP_FILE", "\u{1}\u{2}"),
        ("LLT_TARGET_RECONNECT", "-1"),
        ("LLT_TARGET_1STCONNECT", "soon"),
        ("LLT_PASSIV_ON_START", "99999999999999999999999"),
        ("LLT_RING_SIZE", "1T"),
        ("LLT_RING_FULL", "explode"),
        ("LLT_TRANSPORT", "pigeon"),
        ("LLT_CLOCK", "sundial"),
        ("LLT_DEBUG_MODE", "maybe"),
    ];
    for target in ["bogus", "socket:", "file:", &"socket:/x".repeat(40)] {
        let mut cmd = tapped(&app, target, &["proof", log_arg, "full"], &garbage);
        // A malformed glob that names no file (a bad LLT_TARGET falls back to the seed's
        // default file target, which a matching tap file would then append to).
        cmd.env("LLT_TAP_FILE", "[:*");
        let out = run_bounded(cmd);
        assert_eq!(out.status.code(), Some(3), "LLT_TARGET={target}: {out:?}");
        assert_eq!(out.stdout, reference.stdout, "LLT_TARGET={target}");
        // The one line liblogtap.so prints whatever the mode: a malformed LLT_TAP_INTO turns
        // the tap off silently otherwise.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.ends_with("e1 via fprintf to stderr\n") && err.contains("LLT_TAP_INTO"),
            "{err}"
        );
        let written: String = LOG_LINES.iter().map(|l| format!("{l}\n")).collect();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), written);
        std::fs::remove_file(&log).unwrap();
    }
}

#[test]
fn the_library_needs_only_musl_libc() {
    let lib = artifacts::musl_library();
    let dynamic = Command::new("readelf")
        .arg("-dW")
        .arg(&lib)
        .output()
        .expect("readelf (binutils) is installed");
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert_eq!(needed.len(), 1, "{needed:?}");
    assert!(needed[0].contains("[libc.so]"), "{needed:?}");
    let symbols = Command::new("readelf")
        .arg("--dyn-syms")
        .arg("-W")
        .arg(&lib)
        .output()
        .unwrap();
    let symbols = String::from_utf8_lossy(&symbols.stdout);
    let undefined: Vec<&str> = symbols
        .lines()
        .filter(|l| l.contains(" UND "))
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    assert!(undefined.contains(&"syscall"), "{undefined:?}");
    for sym in &undefined {
        assert!(
            !(sym.ends_with("_chk") || sym.starts_with("__libc_") || sym.contains("GLIBC_")),
            "glibc-only symbol {sym} in {}",
            lib.display()
        );
    }
    for export in [
        "write", "writev", "pwrite", "open", "fopen", "dup2", "close",
    ] {
        assert!(
            symbols
                .lines()
                .any(|l| !l.contains(" UND ") && l.ends_with(&format!(" {export}"))),
            "{export} is not exported"
        );
    }
}

/// The musl library parses `LLT_*` with a C port of the glibc library's parser
/// (`interceptor/src/config.rs`): both libraries run the same program with the same settings
/// (the seed's `file:` target, which shows what each tapped and suppressed) and must agree.
#[test]
fn both_libraries_read_the_same_settings_the_same_way() {
    let dir = TempDir::new("musl-config-parity");
    let src = dir.path().join("two.c");
    std::fs::write(
        &src,
        "#include <unistd.h>\nint main(void) { write(1, \"out\\n\", 4); write(2, \"err\\n\", 4); return 0; }\n",
    )
    .unwrap();
    let glibc_app = artifacts::gcc(&src, &dir.path().join("two-glibc"), &[]);
    let musl_app = artifacts::musl_cc(&src, &dir.path().join("two-musl"), &[]);
    let cases: Vec<Vec<(&str, &str)>> = [
        "3", "both", "BOTH", " 1 ", "stdout", "2", "stderr", "0", "none", "7", "x", "",
    ]
    .iter()
    .map(|v| vec![("LLT_TAP_INTO", *v)])
    .chain(
        [
            "1", "YES", "True", "on", "y", "t", "0", "no", "off", "F", "perhaps",
        ]
        .iter()
        .flat_map(|v| {
            [
                vec![("LLT_TAP_INTO", "3"), ("LLT_SUPPRESS_STDOUT", *v)],
                vec![("LLT_TAP_INTO", "3"), ("LLT_SUPPRESS_STDERR", *v)],
            ]
        }),
    )
    .chain(
        ["100000", "abc", "-5"]
            .iter()
            .map(|v| vec![("LLT_TAP_INTO", "3"), ("LLT_PASSIV_ON_START", *v)]),
    )
    .collect();
    let target = dir.path().join("target.log");
    let run = |lib: PathBuf, app: &Path, case: &[(&str, &str)]| {
        let _ = std::fs::remove_file(&target);
        let mut cmd = Command::new(app);
        cmd.env("LD_PRELOAD", lib)
            .env("LLT_TARGET", format!("file:{}", target.display()))
            .envs(case.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = run_bounded(cmd);
        // Each library's own notices (a malformed LLT_TAP_INTO) differ in their prefix only.
        let stderr: String = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.starts_with("[liblogtap"))
            .map(|l| format!("{l}\n"))
            .collect();
        let tapped = std::fs::read_to_string(&target).unwrap_or_default();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
            tapped,
        )
    };
    let mut tapped_any = false;
    for case in &cases {
        let glibc = run(artifacts::liblogtap(), &glibc_app, case);
        let musl = run(artifacts::musl_library(), &musl_app, case);
        assert_eq!(
            musl, glibc,
            "{case:?}: (exit, stdout, stderr, tapped) musl vs glibc"
        );
        tapped_any |= !glibc.3.is_empty();
    }
    assert!(
        tapped_any,
        "no case tapped anything: the comparison proves nothing"
    );
}

#[test]
fn logtap_run_with_the_musl_library_preloaded_taps_a_musl_program() {
    let dir = TempDir::new("musl-run");
    let app = build_app(dir.path());
    let log = dir.path().join("app.log");
    let lib = artifacts::musl_library();
    let (status, out) = logtap_tests::agent_harness::run(
        &["--preload", lib.to_str().unwrap()],
        &[
            app.to_str().unwrap(),
            "proof",
            log.to_str().unwrap(),
            "line",
        ],
        &[],
    );
    assert_eq!(status.code(), Some(3), "the program's exit code: {out:?}");
    assert_eq!(messages(&out.records, "stdout"), STDOUT_LINES, "{out:?}");
    assert_eq!(
        messages(&out.records, "stderr"),
        ["e1 via fprintf to stderr"]
    );
    // Not suppressed: the program's own output passes through `logtap run`.
    assert_eq!(out.other, STDOUT_LINES);
}

#[test]
fn a_stopped_agent_costs_one_bounded_wait_and_loses_no_suppressed_line() {
    let (agent, app) = start("musl-stopped");
    let pid = agent.child.id() as i32;
    let stdout_path = agent.dir.path().join("stdout");
    // SAFETY: kill has no memory effects; the pid is our live child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    let mut cmd = tapped(
        &app,
        &socket_target(&agent),
        &["many"],
        &[("LLT_SUPPRESS_STDOUT", "1"), ("LLT_RING_SIZE", "64K")],
    );
    cmd.stdout(std::fs::File::create(&stdout_path).unwrap());
    let started = Instant::now();
    let out = run_bounded(cmd);
    let took = started.elapsed();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // One wait of 200 ms without progress, then drops at once (not 200 ms per line).
    assert!(
        took < Duration::from_secs(5),
        "5000 lines took {took:?} with a stopped agent"
    );
    let written = std::fs::read_to_string(&stdout_path).unwrap();
    let written: Vec<String> = written.lines().map(str::to_owned).collect();
    assert!(
        !written.is_empty() && written.len() < 5000,
        "a 64 KiB ring holds some lines, the rest must be written for real: {} written",
        written.len()
    );
    let in_ring = 5000 - written.len();
    wait_until(&agent, Duration::from_secs(30), "the ring's lines", |r| {
        r.len() >= in_ring
    });
    let (_, records) = agent.terminate();
    let mut all: Vec<String> = messages(&records, "stdout");
    all.extend(written);
    all.sort();
    let expected: Vec<String> = (0..5000)
        .map(|i| format!("many {i:04} {}", ".".repeat(85)))
        .collect();
    assert_eq!(all, expected, "every line once: in the ring or on stdout");
}

/// musl's stdout decides its buffering at its first write (`__stdout_write`): full buffering on
/// a pipe or file (the line that triggers it is written at once). A suppressed stdout never
/// reaches that write, so the library makes the same decision itself — the program's stdio
/// behaves as untapped: here the two lines after the first leave in one flush at exit, so they
/// carry one time (line-buffered, they would be 300 ms apart).
#[test]
fn a_suppressed_stdout_on_a_pipe_stays_fully_buffered_as_musl_makes_it() {
    let (agent, app) = start("musl-buffering");
    let out = run_ok(&agent, &app, &["pause"], &[("LLT_SUPPRESS_STDOUT", "1")]);
    assert!(out.stdout.is_empty());
    wait_until(&agent, Duration::from_secs(20), "three lines", |r| {
        r.len() >= 3
    });
    let (_, records) = agent.terminate();
    assert_eq!(
        messages(&records, "stdout"),
        ["first line", "before the pause", "after the pause"]
    );
    assert_eq!(
        records[1]["timestamp"], records[2]["timestamp"],
        "one flush at exit, as without the library: {records:#?}"
    );
}

#[test]
fn a_descriptor_number_freed_by_fclose_is_no_tap_file_any_more() {
    let (agent, app) = start("musl-reuse");
    let log = agent.dir.path().join("app.log");
    let log_arg = log.to_str().unwrap();
    run_ok(
        &agent,
        &app,
        &["reuse", log_arg],
        &[("LLT_TAP_FILE", log_arg)],
    );
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "to the log\n");
    wait_until(&agent, Duration::from_secs(20), "the log line", |r| {
        !r.is_empty()
    });
    // Time for a wrong record of the socket write to arrive too.
    std::thread::sleep(Duration::from_millis(300));
    let (_, records) = agent.terminate();
    assert_eq!(messages(&records, "file"), ["to the log"], "{records:#?}");
    assert_eq!(records.len(), 1, "{records:#?}");
}

/// HELLO carries the Downward-API variables (and `LLT_META_*`) as liblogtap.so's does: the
/// agent's records name the pod.
#[test]
fn the_pod_named_in_the_environment_is_in_the_records() {
    let (agent, app) = start("musl-meta");
    run_ok(
        &agent,
        &app,
        &["pause"],
        &[
            ("POD_NAME", "web-7d9f"),
            ("POD_NAMESPACE", "shop"),
            ("CONTAINER_NAME", "alpine-app"),
        ],
    );
    wait_until(&agent, Duration::from_secs(20), "three lines", |r| {
        r.len() >= 3
    });
    let (_, records) = agent.terminate();
    for r in &records {
        assert_eq!(r["pod_name"], "web-7d9f", "{r}");
        assert_eq!(r["namespace"], "shop", "{r}");
        assert_eq!(r["container_name"], "alpine-app", "{r}");
    }
}
