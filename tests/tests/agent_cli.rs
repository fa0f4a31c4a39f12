//! The agent's command line, configuration sources, `check`, `install` and HTTP endpoints.

use std::process::Command;
use std::time::Duration;

use logtap_protocol::tap::Stream;
use logtap_tests::agent_harness::{Agent, TapClient};
use logtap_tests::artifacts::{self, TempDir};

fn logtap(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(artifacts::logtap_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_prints_the_effective_config_redacted_with_precedence() {
    let dir = TempDir::new("check");
    let file = dir.path().join("logtap.toml");
    std::fs::write(
        &file,
        "tag = \"from.file\"\nflush_interval = \"2s\"\nshared_key = \"hunter2\"\nmem_buf_limit = \"32MB\"\n\
         forward = [\"10.0.0.1:24224\", { host = \"backup\", port = 24225, standby = true }]\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let (code, out, err) = logtap(
        &[
            "check",
            "--offline",
            "--config",
            path,
            "--flush-interval",
            "250ms",
        ],
        &[("LOGTAP_TAG", "from.env")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tag = \"from.env\""), "env beats file: {out}");
    assert!(
        out.contains("flush_interval = \"250ms\""),
        "flag beats file: {out}"
    );
    assert!(
        out.contains("mem_buf_limit = \"32MB\""),
        "file beats default: {out}"
    );
    assert!(
        out.contains("require_ack_response = true"),
        "default: {out}"
    );
    assert!(
        out.contains("<redacted>") && !out.contains("hunter2"),
        "secret redacted: {out}"
    );
    assert!(out.contains("standby = true"), "{out}");
}

#[test]
fn check_rejects_unknown_keys_and_bad_values() {
    let dir = TempDir::new("check-bad");
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "flush_intervall = \"1s\"\n").unwrap();
    let (code, _, err) = logtap(&["check", "--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("flush_intervall"), "names the bad key: {err}");
    let (code, _, err) = logtap(&["check", "--mem-buf-limit", "lots"], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("lots"), "{err}");
    let (code, _, err) = logtap(&["check", "--tag", "x.{nope}"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("{nope}"), "{err}");
    let (code, _, err) = logtap(&["check", "--output", "forward"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--forward"), "{err}");
}

#[test]
fn install_copies_library_and_binary_atomically() {
    let dir = TempDir::new("install");
    let to = dir.path().join("shared");
    let (code, out, err) = logtap(&["install", "--to", to.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("liblogtap.so"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    for name in ["liblogtap.so", "logtap"] {
        let installed = to.join(name);
        let meta = std::fs::metadata(&installed).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o755, "{name}");
    }
    assert_eq!(
        std::fs::read(to.join("liblogtap.so")).unwrap(),
        std::fs::read(artifacts::liblogtap()).unwrap()
    );
    // The files, the `$LIB` link directories (lib/, lib64/, and `$LIB/` when the musl library
    // is built), and no temporary file left anywhere.
    let mut names: Vec<String> = std::fs::read_dir(&to)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !matches!(n.as_str(), "liblogtap-musl.so" | "$LIB"))
        .collect();
    names.sort();
    assert_eq!(names, ["lib", "lib64", "liblogtap.so", "logtap"]);
    for sub in ["lib", "lib64", "lib/x86_64-linux-gnu"] {
        let names: Vec<_> = std::fs::read_dir(to.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "x86_64-linux-gnu")
            .collect();
        assert_eq!(names, ["liblogtap.so"], "{sub}: no temporary files left");
    }
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    logtap_tests::http::get_local(port, path).expect("an HTTP answer")
}

#[test]
fn http_serves_metrics_and_health() {
    let agent = Agent::start(
        "http",
        &["--http-listen", "127.0.0.1:0", "--flush-interval", "50ms"],
    );
    let port = agent.http_port();
    let mut c = TapClient::connect(&agent.socket, 321);
    c.hello("metered", None, &[]);
    c.data(Stream::Stdout, 1, b"one\ntwo\n", false);
    c.loss(Stream::Stdout, 7, 700);
    agent.wait_records(2, Duration::from_secs(5));
    let (status, body) = http_get(port, "/metrics");
    assert_eq!(status, 200);
    for line in [
        "logtap_input_records_total 2",
        "logtap_input_bytes_total 8",
        "logtap_output_records_total{output=\"stdout\"} 2",
        "logtap_dropped_records_total{reason=\"interceptor_loss\"} 7",
        "logtap_dropped_bytes_total{reason=\"interceptor_loss\"} 700",
        "logtap_tap_peers 1",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing `{line}` in:\n{body}"
        );
    }
    let (status, fb) = http_get(port, "/api/v1/metrics/prometheus");
    assert_eq!(status, 200);
    assert!(fb.contains("logtap_buffer_bytes"));
    assert_eq!(http_get(port, "/api/v1/health"), (200, "ok\n".to_owned()));
    assert_eq!(http_get(port, "/healthz").0, 200);
    assert_eq!(http_get(port, "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(http_get(port, "/nope").0, 404);
    let (status, _) = agent.terminate();
    assert!(status.success());
}

#[test]
fn the_socket_gets_its_owner_and_group_and_check_prints_the_trust_settings() {
    use std::os::unix::fs::MetadataExt;
    let agent = Agent::start(
        "owner",
        &["--socket-owner", "65534", "--socket-group", "2020"],
    );
    let meta = std::fs::metadata(&agent.socket).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 2020));
    agent.terminate();

    let dir = TempDir::new("check-trust");
    let file = dir.path().join("logtap.toml");
    std::fs::write(
        &file,
        "peer_meta = \"verify\"\nsocket_uid = [0, 1000]\nsocket_owner = 0\n",
    )
    .unwrap();
    let (code, out, err) = logtap(
        &["check", "--offline", "--config", file.to_str().unwrap()],
        &[("LOGTAP_SOCKET_GID", "2020,2021")],
    );
    assert_eq!(code, 0, "{err}");
    for line in [
        "peer_meta = \"verify\"",
        "peer_pid = \"kernel\"",
        "socket_uid = [0, 1000]",
        "socket_gid = [2020, 2021]",
        "socket_owner = 0",
        "proc_root = \"/proc\"",
        "containers_dir = \"/var/log/containers\"",
    ] {
        assert!(
            out.lines().any(|l| l == line),
            "missing `{line}` in:\n{out}"
        );
    }
    let (code, _, err) = logtap(&["check", "--offline", "--peer-meta", "maybe"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("maybe"), "{err}");
}

#[test]
fn the_socket_gets_the_configured_mode_and_refuses_to_replace_a_file() {
    use std::os::unix::fs::PermissionsExt;
    let agent = Agent::start("mode", &["--socket-mode", "0600"]);
    let mode = std::fs::metadata(&agent.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    agent.terminate();

    let dir = TempDir::new("not-a-socket");
    let file = dir.path().join("precious.log");
    std::fs::write(&file, "keep me").unwrap();
    let (code, _, err) = logtap(
        &[
            "agent",
            "--socket",
            file.to_str().unwrap(),
            "--http-listen",
            "off",
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn several_outputs_each_get_every_record() {
    let agent = Agent::start(
        "two-outputs",
        &[
            "--output",
            "stdout,null",
            "--http-listen",
            "127.0.0.1:0",
            "--flush-interval",
            "50ms",
        ],
    );
    let port = agent.http_port();
    let mut c = TapClient::connect(&agent.socket, 55);
    c.hello("twice", None, &[]);
    c.data(Stream::Stderr, 1, b"a\nb\nc\n", false);
    agent.wait_records(3, Duration::from_secs(5));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = http_get(port, "/metrics");
        let null = body
            .lines()
            .any(|l| l == "logtap_output_records_total{output=\"null\"} 3");
        let stdout = body
            .lines()
            .any(|l| l == "logtap_output_records_total{output=\"stdout\"} 3");
        if null && stdout {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, records) = agent.terminate();
    assert!(status.success());
    assert_eq!(records.len(), 3);
}
