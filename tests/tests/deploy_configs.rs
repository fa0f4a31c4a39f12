//! Every config example in `deploy/config/` passes `logtap check` with the real binary, and
//! `check` really validates: a misspelt key in a copy of an example fails it.
//!
//! Offline: the servers in the examples (`fluentd.logging.svc`, …) do not exist here. `check`
//! validates without contacting them today; should it learn to try the servers' handshakes, it
//! must offer `--offline` (see REQUESTS.md), and this test passes that flag whenever
//! `logtap check --help` lists it.

mod deploy_support;

use std::process::Command;
use std::time::Duration;

use deploy_support::*;
use logtap_tests::artifacts::{TempDir, logtap_bin};

/// `logtap check --config FILE` with no `LOGTAP_*` variable of the test's environment
/// leaking in.
fn check(config: &std::path::Path, extra_env: &[(&str, &str)]) -> std::process::Output {
    let help = run_bounded(
        Command::new(logtap_bin()).args(["check", "--help"]),
        Duration::from_secs(30),
    );
    assert_success("logtap check --help", &help);
    let mut cmd = Command::new(logtap_bin());
    cmd.arg("check");
    if String::from_utf8_lossy(&help.stdout).contains("--offline") {
        cmd.arg("--offline");
    }
    cmd.arg("--config").arg(config);
    for (key, _) in std::env::vars() {
        if key.starts_with("LOGTAP_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(extra_env.iter().copied());
    run_bounded(&mut cmd, Duration::from_secs(30))
}

fn examples() -> Vec<std::path::PathBuf> {
    let files = files_with_suffix(&repo_file("deploy/config"), &[".toml"]);
    for name in [
        "sidecar",
        "daemonset",
        "vm",
        "compose",
        "compose-fluentd",
        "tap-file",
        "relay",
    ] {
        assert!(
            files.contains(&repo_file(&format!("deploy/config/{name}.toml"))),
            "{name}.toml missing"
        );
    }
    files
}

#[test]
fn every_config_example_passes_logtap_check() {
    for file in examples() {
        let out = check(&file, &[]);
        assert_success(&format!("logtap check --config {}", file.display()), &out);
        // check prints the effective configuration: the file's values must be in it.
        let printed = String::from_utf8_lossy(&out.stdout);
        let text = std::fs::read_to_string(&file).unwrap();
        for key in ["http_listen", "tag", "grace"] {
            if let Some(line) = text.lines().find(|l| l.starts_with(&format!("{key} = "))) {
                assert!(
                    printed.contains(line),
                    "{}: `{line}` not in check's output:\n{printed}",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn check_redacts_the_secret_the_vm_guide_puts_in_the_environment_file() {
    let out = check(
        &repo_file("deploy/config/vm.toml"),
        &[("LOGTAP_SHARED_KEY", "s3cret-from-logtap.env")],
    );
    assert_success("logtap check (vm.toml with LOGTAP_SHARED_KEY)", &out);
    let printed = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        !printed.contains("s3cret-from-logtap.env"),
        "the shared key leaked:\n{printed}"
    );
    assert!(printed.contains("<redacted>"), "{printed}");
}

#[test]
fn the_relay_example_takes_its_users_and_key_from_the_environment() {
    let relay = repo_file("deploy/config/relay.toml");
    let users = [("LOGTAP_FORWARD_LISTEN_USERS", "app1:pw-one,app2:pw:two")];
    // Users without the shared key: refused, with the reason.
    let out = check(&relay, &users);
    assert!(!out.status.success(), "users without a shared key accepted");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs --shared-key"),
        "{out:?}"
    );
    let out = check(&relay, &[users[0], ("LOGTAP_SHARED_KEY", "relay-k3y")]);
    assert_success("logtap check (relay.toml with users and key)", &out);
    let printed = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    for secret in ["pw-one", "pw:two", "relay-k3y"] {
        assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
    }
    assert!(
        printed.contains("app1:<redacted>") && printed.contains("app2:<redacted>"),
        "{printed}"
    );
}

#[test]
fn check_rejects_a_misspelt_key() {
    let tmp = TempDir::new("deploy-configs");
    let text = std::fs::read_to_string(repo_file("deploy/config/sidecar.toml")).unwrap();
    assert!(text.contains("\nflush_interval = "));
    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        text.replace("\nflush_interval = ", "\nflush_intervall = "),
    )
    .unwrap();
    let out = check(&bad, &[]);
    assert!(!out.status.success(), "check accepted an unknown key");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("flush_intervall"),
        "{out:?}"
    );
}
