//! `logtap cat` (stdin lines → forward events, waits for acks) and `logtap check`'s probe of
//! the forward servers, against our forward input, a server that never acks, and a dead port.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use logtap_tests::agent_harness::Agent;
use logtap_tests::artifacts::{TempDir, logtap_bin};
use logtap_tests::forward_support::{ClosedPort, TestCa, start_receiver};

const LIMIT: Duration = Duration::from_secs(20);

/// The forward receiver, named `receiver` in the records it prints.
fn receiver(name: &str, port: u16, extra: &[&str]) -> Agent {
    let args = [&["--self-hostname", "receiver"], extra].concat();
    start_receiver(name, port, &args, LIMIT)
}

/// Runs `logtap <args>` with `stdin`, killed after `LIMIT`.
fn logtap(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(logtap_bin())
        .args(args)
        .env_remove("LOGTAP_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start logtap");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let deadline = Instant::now() + LIMIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("logtap {args:?} did not exit within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn cat_exits_0_once_acked_and_the_lines_arrive() {
    let agent = receiver("cat-ok", 0, &[]);
    let port = agent.forward_port();
    let server = format!("127.0.0.1:{port}");
    let out = logtap(
        &["cat", "--tag", "cat.test", &server],
        b"one\ntwo\n\xff raw\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = agent.wait_records(3, LIMIT);
    assert!(
        records.iter().all(|r| r["tag"] == "cat.test"),
        "{records:?}"
    );
    let msgs: Vec<_> = records.iter().map(|r| r["message"].clone()).collect();
    assert!(
        msgs.contains(&"one".into()) && msgs.contains(&"two".into()),
        "{msgs:?}"
    );
}

#[test]
fn cat_with_shared_key_and_gzip() {
    let agent = receiver("cat-key", 0, &["--shared-key", "k3y"]);
    let port = agent.forward_port();
    let server = format!("127.0.0.1:{port}");
    let ok = logtap(
        &[
            "cat",
            "--tag",
            "k.t",
            "--shared-key",
            "k3y",
            "--self-hostname",
            "catter",
            "--compress",
            "gzip",
            &server,
        ],
        b"keyed\n",
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(agent.wait_records(1, LIMIT)[0]["message"], "keyed");
    let wrong = logtap(
        &[
            "cat",
            "--tag",
            "k.t",
            "--shared-key",
            "nope",
            "--self-hostname",
            "catter",
            "--timeout",
            "2s",
            &server,
        ],
        b"x\n",
    );
    assert!(!wrong.status.success());
}

#[test]
fn cat_fails_when_the_server_never_acks() {
    // Accepts and reads, never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut conn, &mut buf) {
            if n == 0 {
                break;
            }
        }
    });
    let started = Instant::now();
    let out = logtap(
        &[
            "cat",
            "--tag",
            "t",
            "--timeout",
            "1s",
            &format!("127.0.0.1:{port}"),
        ],
        b"never acked\n",
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not every chunk was acknowledged"));
    assert!(started.elapsed() < Duration::from_secs(10));
    sink.join().unwrap();
}

#[test]
fn check_probes_live_and_dead_servers_and_offline_skips_them() {
    let _agent = receiver("check-live", 0, &[]);
    let port = _agent.forward_port();
    let live = format!("127.0.0.1:{port}");
    let out = logtap(&["check", "--forward", &live], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("forward server {live}: ok")), "{err}");
    let closed = ClosedPort::new();
    let dead = format!("127.0.0.1:{}", closed.port);
    let out = logtap(&["check", "--forward", &live, "--forward", &dead], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("forward server {dead}: FAILED")) && err.contains("refused"),
        "{err}"
    );
    let out = logtap(&["check", "--offline", "--forward", &dead], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_verifies_tls_against_the_ca_file() {
    let dir = TempDir::new("check-tls");
    let good = TestCa::create(dir.path(), "good");
    let other = TestCa::create(dir.path(), "other");
    let (cert, key) = (
        good.cert_pem.to_str().unwrap(),
        good.key_pem.to_str().unwrap(),
    );
    let agent = receiver(
        "check-tls",
        0,
        &[
            "--forward-listen-tls-cert",
            cert,
            "--forward-listen-tls-key",
            key,
        ],
    );
    let port = agent.forward_port();
    let server = format!("127.0.0.1:{port}");
    let ok = logtap(
        &[
            "check",
            "--tls",
            "--tls-ca-file",
            good.ca_pem.to_str().unwrap(),
            "--forward",
            &server,
        ],
        b"",
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = logtap(
        &[
            "check",
            "--tls",
            "--tls-ca-file",
            other.ca_pem.to_str().unwrap(),
            "--forward",
            &server,
        ],
        b"",
    );
    assert_eq!(
        bad.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    // And data over TLS end to end, through `cat`.
    let sent = logtap(
        &[
            "cat",
            "--tag",
            "tls.cat",
            "--tls",
            "--tls-ca-file",
            good.ca_pem.to_str().unwrap(),
            &server,
        ],
        b"secure\n",
    );
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    assert_eq!(agent.wait_records(1, LIMIT)[0]["message"], "secure");
}
