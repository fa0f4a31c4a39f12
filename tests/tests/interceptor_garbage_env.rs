//! Prove-it 6: garbage in every `LLT_*` variable — the host program runs and exits exactly as
//! it would without the library (same stdout, stderr and exit status; stderr has one line
//! more when `LLT_TAP_INTO` itself is garbage: that one is always said). Run once with a garbage
//! `LLT_TRANSPORT` and once per valid transport with garbage everywhere else.

mod interceptor_support;

use std::process::Command;

use interceptor_support::*;

fn garbage(cmd: &mut Command, transport: Option<&str>) {
    let long = "x".repeat(5000);
    let pairs: Vec<(&str, String)> = vec![
        ("LLT_TAP_INTO", "9x".into()),
        ("LLT_SUPPRESS_STDOUT", "maybe".into()),
        ("LLT_SUPPRESS_STDERR", "\u{fffd}\u{fffd}".into()),
        ("LLT_TAP_FILE", ":::[[[\\*?".into()),
        ("LLT_SUPPRESS_TAP_FILE", "2".into()),
        ("LLT_TARGET", format!("socket:{long}")),
        ("LLT_PASSIV_ON_START", "-5".into()),
        ("LLT_TARGET_1STCONNECT", "1e9".into()),
        ("LLT_TARGET_RECONNECT", "99999999999999999999999999".into()),
        ("LLT_DEBUG_MODE", "sure".into()),
        ("LLT_RING_SIZE", "12 parsecs".into()),
        ("LLT_PYTHONUNBUFFERED", "perhaps".into()),
        ("LLT_CLOCK", "\u{1F570}\u{fe0f}".into()),
        ("LLT_TAP_CHILDREN", "kids?".into()),
        (
            "LLT_TRANSPORT",
            transport.unwrap_or("carrier-pigeon").into(),
        ),
    ];
    for (k, v) in pairs {
        cmd.env(k, v);
    }
}

/// `valid`: LLT_TAP_INTO, LLT_TARGET and LLT_TRANSPORT set right (so the hooks really work),
/// garbage in all the others.
fn same_as_without_library(transport: Option<&str>, valid: Option<&Setup>) {
    let dir = logtap_tests::artifacts::TempDir::new("garbage-env");
    let exe = compile("tapprog", dir.path());
    let py = python();
    let script = "import sys\nfor i in range(100): print('line', i)\nprint('err', file=sys.stderr)\nsys.exit(3)";
    let cases: Vec<(std::path::PathBuf, Vec<&str>)> = vec![
        (exe.clone(), vec!["stdio"]),
        (exe, vec!["fork"]),
        (py, vec!["-c", script]),
    ];
    for (prog, args) in cases {
        let mut plain = Command::new(&prog);
        plain.args(&args).current_dir(dir.path());
        let want = run(plain, LIMIT);
        let mut tapped = Command::new(&prog);
        tapped
            .args(&args)
            .current_dir(dir.path())
            .env("LD_PRELOAD", logtap_tests::artifacts::liblogtap());
        garbage(&mut tapped, transport);
        if let Some(s) = valid {
            tapped
                .env("LLT_TAP_INTO", "3")
                .env("LLT_TARGET", s.receiver.target())
                .env("LLT_TARGET_1STCONNECT", "0");
        }
        let got = run(tapped, LIMIT);
        assert_eq!(got.status.code(), want.status.code(), "{prog:?} {args:?}");
        // The fork scenario prints pids: compare line counts there, bytes elsewhere.
        if args == ["fork"] {
            assert_eq!(
                got.stdout.split(|b| *b == b'\n').count(),
                want.stdout.split(|b| *b == b'\n').count()
            );
        } else {
            assert_eq!(
                String::from_utf8_lossy(&got.stdout),
                String::from_utf8_lossy(&want.stdout),
                "{prog:?} {args:?}"
            );
        }
        // A malformed LLT_TAP_INTO is said even without debug mode (issue 10): one line, before
        // anything the program writes. Every other garbage value stays silent.
        let mut want_err = String::new();
        if valid.is_none() {
            want_err.push_str(
                "[liblogtap] ignoring malformed LLT_TAP_INTO=\"9x\" (expected 0/none, 1/stdout, \
                 2/stderr or 3/both): stdout and stderr are not tapped\n",
            );
        }
        want_err.push_str(&String::from_utf8_lossy(&want.stderr));
        assert_eq!(
            String::from_utf8_lossy(&got.stderr),
            want_err,
            "{prog:?} {args:?}"
        );
    }
}

#[test]
fn garbage_everywhere() {
    same_as_without_library(None, None);
}

fn garbage_but_tapping(t: Transport) {
    let s = Setup::new("garbage-tapping", t);
    same_as_without_library(Some(t.env()), Some(&s));
    // The copies still arrived: the hooks were live, not merely disabled by the garbage.
    assert!(
        s.receiver
            .wait_for(SETTLE, |c| c.lines(STDOUT).iter().any(|l| l == "line 99"))
    );
    assert!(s.receiver.snapshot().errors.is_empty());
}

#[test]
fn garbage_elsewhere_while_tapping_ring() {
    garbage_but_tapping(Transport::Ring);
}
#[test]
fn garbage_elsewhere_while_tapping_socket() {
    garbage_but_tapping(Transport::Socket);
}
