//! Dry runs of the deploy scripts — `fluent-demo/up.sh`, `fluent-demo/down.sh`,
//! `deploy/systemd/install.sh` — with stand-ins for `docker`, `kind`, `kubectl`, `systemctl`,
//! `systemd-sysusers` (and `sleep`, so that waiting costs nothing) first on a PATH that holds only
//! the ordinary tools the scripts may use: no python, no real cluster tool. Each stand-in appends
//! its command line to a log and answers as the scenario says, so the scripts' control flow is
//! exercised: what they call and in which order, their exit codes, and their pipelines under
//! `set -o pipefail` — run with SIGPIPE at its default action, as in a user's shell (the test
//! harness ignores it, and an ignored signal would be inherited).
//!
//! install.sh runs for real with `DESTDIR` (a staging root) and the real `logtap` binary.

mod deploy_support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use deploy_support::pss::{Level, enforced_level, required_level};
use deploy_support::*;
use logtap_tests::artifacts::{TempDir, liblogtap, logtap_bin};
use serde_json::Value;

/// The ordinary tools the scripts may find on PATH (linked from the machine's PATH).
const TOOLS: &[&str] = &[
    "bash", "sh", "env", "cat", "cp", "mv", "rm", "mkdir", "chmod", "install", "dirname",
    "basename", "grep", "sed", "seq", "tail", "head", "tr", "wc", "mktemp", "stat", "ls", "true",
    "false", "sort", "cut", "uname", "readlink", "printf",
];

const KUBECTL: &str = r#"args=" $* "
case "$args" in
  *" get --raw /version "*)
    printf '{\n  "major": "1",\n  "minor": "%s",\n  "gitVersion": "v1.%s.0"\n}\n' \
      "${STUB_K8S_MINOR:-31}" "${STUB_K8S_MINOR:-31}" ;;
  *" version -o json "*)
    printf '{"serverVersion": {"major": "1", "minor": "%s"}}\n' "${STUB_K8S_MINOR:-31}" ;;
  *" logs "*)
    # exec: like the real kubectl, the process that writes is the one SIGPIPE ends.
    if [ -n "${STUB_FLUENTD_LOG:-}" ]; then exec cat "$STUB_FLUENTD_LOG"; fi ;;
  *" exec "*" stat "*)
    echo 0 ;;
esac
exit 0
"#;

const DOCKER: &str = r#"case "$1" in
  info) exit "${STUB_DOCKER_INFO_RC:-0}" ;;
  save) if [ "$2" = "-o" ]; then printf 'image archive' >"$3"; fi ;;
esac
exit 0
"#;

const KIND: &str = r#"case "$1 ${2:-}" in
  "get clusters")
    if [ -n "${STUB_KIND_CLUSTERS:-}" ]; then exec cat "$STUB_KIND_CLUSTERS"; fi ;;
  "load docker-image")
    if [ -n "${STUB_KIND_LOAD_FAILS:-}" ]; then
      echo 'ERROR: failed to load image: command "ctr --namespace=k8s.io images import --all-platforms --digests --snapshotter=overlayfs -" failed with error: exit status 1' >&2
      exit 1
    fi ;;
  "load image-archive")
    archive="${!#}"
    [ -s "$archive" ] || { echo "ERROR: no archive at $archive" >&2; exit 1; } ;;
esac
exit 0
"#;

const SYSTEMCTL: &str = r#"case "$1" in
  restart) exit "${STUB_SYSTEMCTL_RESTART_RC:-0}" ;;
esac
exit 0
"#;

/// A PATH of stand-ins and ordinary tools, a call log, and a scratch directory.
struct Sandbox {
    dir: TempDir,
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| {
            p.is_file()
                && std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
                && !p.to_string_lossy().contains("shims")
        })
}

impl Sandbox {
    fn new(name: &str) -> Sandbox {
        let dir = TempDir::new(name);
        for sub in ["bin", "tmp", "home"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        for tool in TOOLS {
            let path = which(tool).unwrap_or_else(|| panic!("{tool} is not on PATH"));
            std::os::unix::fs::symlink(path, dir.path().join("bin").join(tool)).unwrap();
        }
        std::fs::write(dir.path().join("calls"), "").unwrap();
        Sandbox { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A stand-in `name` that logs its command line, then runs `body` (bash).
    fn stub(&self, name: &str, body: &str) {
        let bash = which("bash").unwrap();
        let path = self.path().join("bin").join(name);
        let _ = std::fs::remove_file(&path);
        std::fs::write(
            &path,
            format!(
                "#!{}\nprintf '%s\\n' \"{name} $*\" >>\"$STUB_LOG\"\n{body}",
                bash.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn remove(&self, name: &str) {
        std::fs::remove_file(self.path().join("bin").join(name)).unwrap();
    }

    /// The demo's tools: docker, kind, kubectl, and a sleep that returns at once.
    fn demo_stubs(&self) {
        self.stub("docker", DOCKER);
        self.stub("kind", KIND);
        self.stub("kubectl", KUBECTL);
        self.stub("sleep", "exit 0\n");
    }

    /// Runs `bash <repo>/script args` with only the sandbox's PATH and `env`.
    fn run(&self, script: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(self.path().join("bin/bash"));
        cmd.arg(repo_file(script))
            .args(args)
            .env_clear()
            .env("PATH", self.path().join("bin"))
            .env("STUB_LOG", self.path().join("calls"))
            .env("HOME", self.path().join("home"))
            .env("TMPDIR", self.path().join("tmp"))
            .env("LANG", "C")
            .envs(env.iter().copied());
        // SAFETY: signal() is async-signal-safe; between fork and exec it only resets the
        // child's SIGPIPE disposition to the default a user's shell has.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                Ok(())
            });
        }
        run_bounded(&mut cmd, Duration::from_secs(120))
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path().join("calls"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn report(out: &Output, calls: &[String]) -> String {
    format!(
        "exit: {}\n--- stdout\n{}\n--- stderr\n{}\n--- calls\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        calls.join("\n")
    )
}

/// Each of `expected` (substrings) matches a call, in this order.
fn assert_in_order(calls: &[String], expected: &[&str], context: &str) {
    let mut from = 0;
    for want in expected {
        match calls[from..].iter().position(|c| c.contains(want)) {
            Some(i) => from += i + 1,
            None => panic!("no call containing {want:?} after call #{from}\n{context}"),
        }
    }
}

fn count(calls: &[String], prefix: &str) -> usize {
    calls.iter().filter(|c| c.starts_with(prefix)).count()
}

/// Fluentd's stdout as `kubectl logs --prefix` shows it: one record of each app first, then
/// enough other lines (≈ 400 KB) that a reader stopping at the first match leaves the writer
/// with a full pipe.
fn fluentd_log(apps: &[(&str, &str)]) -> String {
    let mut log = String::new();
    for (ns, pod_and_stream) in apps {
        log.push_str(&format!(
            "[pod/fluentd-7xkqp/fluentd] 2026-11-24 13:47:35.097063512 +0000 kube.{ns}.{pod_and_stream}: {{\"message\":\"13:47:35\"}}\n"
        ));
    }
    for i in 0..4000 {
        log.push_str(&format!(
            "[pod/fluentd-q8z2m/fluentd] 2026-11-24 13:48:{:02}.000000000 +0000 fluent.info: {{\"message\":\"flushing buffer chunk {i}, padding padding padding\"}}\n",
            i % 60
        ));
    }
    log
}

const ALL_APPS: &[(&str, &str)] = &[
    ("logtap-demo", "clock-6d8f9c7b5-q2x7w.app.stdout"),
    ("logtap-demo", "clock-classic-55c9b8d7f-8mbnx.app.stdout"),
    ("logtap-demo", "web-5b7d4c9f8-kx9vd.nginx.file"),
    ("logtap-demo-node", "clock-node-7f6d5b4c3-zt4lp.app.stdout"),
];

/// The namespace labels and pods of every `kubectl apply` of the run, in order: each pod must be
/// admitted by the Pod Security level of the namespace it lands in, which an earlier apply (or
/// the same one) created.
fn assert_pod_security_admits_every_applied_pod(calls: &[String], context: &str) {
    let mut namespaces: Vec<(String, Option<Level>)> = Vec::new();
    let mut pods = 0;
    for call in calls.iter().filter(|c| c.starts_with("kubectl ")) {
        let words: Vec<&str> = call.split_whitespace().collect();
        if !words.contains(&"apply") {
            continue;
        }
        let ns = words
            .iter()
            .position(|w| *w == "-n")
            .map(|i| words[i + 1].to_owned());
        let files: Vec<PathBuf> = words
            .iter()
            .enumerate()
            .filter(|(_, w)| **w == "-f")
            .map(|(i, _)| PathBuf::from(words[i + 1]))
            .collect();
        let docs: Vec<Value> = files.iter().flat_map(|f| yaml_documents(f)).collect();
        for d in docs.iter().filter(|d| d["kind"] == "Namespace") {
            namespaces.push((
                d["metadata"]["name"].as_str().unwrap().to_owned(),
                enforced_level(d),
            ));
        }
        for d in &docs {
            let spec = &d["spec"]["template"]["spec"];
            if !spec.is_object() {
                continue;
            }
            pods += 1;
            let target = d["metadata"]["namespace"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| ns.clone())
                .unwrap_or_else(|| panic!("{call}: {} lands in `default`", d["metadata"]["name"]));
            let (needed, reasons) = required_level(spec);
            let level = namespaces
                .iter()
                .find(|(n, _)| *n == target)
                .unwrap_or_else(|| {
                    panic!("{call}: namespace {target} was not created before\n{context}")
                })
                .1;
            assert!(
                level.unwrap_or(Level::Restricted) >= needed,
                "{call}: {} needs Pod Security {needed:?} ({}), namespace {target} enforces \
                 {level:?}",
                d["metadata"]["name"],
                reasons.join("; ")
            );
        }
    }
    assert!(pods >= 6, "{pods} pods applied\n{context}");
}

#[test]
fn up_on_a_fresh_machine_builds_loads_and_applies_every_mode_then_finds_all_four_apps() {
    let sb = Sandbox::new("up-fresh");
    sb.demo_stubs();
    let log = sb.file("fluentd.log", &fluentd_log(ALL_APPS));
    let out = sb.run(
        "fluent-demo/up.sh",
        &[],
        &[("STUB_FLUENTD_LOG", log.to_str().unwrap())],
    );
    let calls = sb.calls();
    let context = report(&out, &calls);
    assert!(out.status.success(), "{context}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\nDone."),
        "{context}"
    );
    let k = "kubectl --context kind-logtap-demo";
    assert_in_order(
        &calls,
        &[
            "docker info",
            "kind get clusters",
            "kind create cluster --name logtap-demo --config",
            &format!("{k} get --raw /version"),
            "deploy/Dockerfile -t logtap:0.1.0",
            "deploy/demo/Dockerfile -t logtap-demo-clock:0.1.0",
            "kind load docker-image --name logtap-demo logtap:0.1.0 logtap-demo-clock:0.1.0",
            "fluent-demo/fluentd.yaml",
            "-n logging rollout status daemonset/fluentd",
            "deploy/kubernetes/daemonset.yaml",
            "-n logtap rollout status daemonset/logtap-node",
            "fluent-demo/namespace.yaml",
            "deploy/kubernetes/sidecar.yaml",
            "deploy/kubernetes/daemonset-app.yaml",
            "rollout status deployment/clock ",
            "rollout status deployment/clock-classic",
            "rollout status deployment/web",
            "rollout status deployment/clock-node",
            "exec deployment/clock -c app -- python3",
            "logs -l app.kubernetes.io/name=fluentd",
            "exec deployment/web -c nginx -- stat",
        ],
        &context,
    );
    assert!(
        calls
            .iter()
            .filter(|c| c.starts_with("kubectl "))
            .all(|c| c.starts_with(k)),
        "every kubectl call names the demo's context\n{context}"
    );
    // "All of the above": every Kubernetes manifest of deploy/ is applied.
    for manifest in files_with_suffix(&repo_file("deploy/kubernetes"), &[".yaml"]) {
        let m = manifest.to_string_lossy().into_owned();
        assert!(
            calls
                .iter()
                .any(|c| c.contains(" apply ") && c.contains(&m)),
            "up.sh does not apply {m}\n{context}"
        );
    }
    assert_pod_security_admits_every_applied_pod(&calls, &context);
    // The records were there at the first look: no waiting, and the long log did not trip
    // pipefail (a `kubectl logs | grep -q` fails with 141 here).
    assert_eq!(count(&calls, "sleep"), 0, "{context}");
    assert_eq!(count(&calls, "docker save"), 0, "{context}");
}

#[test]
fn up_reuses_an_existing_cluster_among_many() {
    let sb = Sandbox::new("up-reuse");
    sb.demo_stubs();
    let mut clusters: String = (0..12000).map(|i| format!("cluster-{i:05}\n")).collect();
    clusters.insert_str(0, "logtap-demo\n");
    let clusters = sb.file("clusters", &clusters);
    let log = sb.file("fluentd.log", &fluentd_log(ALL_APPS));
    let out = sb.run(
        "fluent-demo/up.sh",
        &[],
        &[
            ("STUB_FLUENTD_LOG", log.to_str().unwrap()),
            ("STUB_KIND_CLUSTERS", clusters.to_str().unwrap()),
        ],
    );
    let calls = sb.calls();
    let context = report(&out, &calls);
    assert!(out.status.success(), "{context}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("reusing the existing cluster"),
        "{context}"
    );
    assert_eq!(count(&calls, "kind create"), 0, "{context}");
}

#[test]
fn up_loads_an_image_archive_when_kind_load_docker_image_fails() {
    let sb = Sandbox::new("up-archive");
    sb.demo_stubs();
    let log = sb.file("fluentd.log", &fluentd_log(ALL_APPS));
    let out = sb.run(
        "fluent-demo/up.sh",
        &[],
        &[
            ("STUB_FLUENTD_LOG", log.to_str().unwrap()),
            ("STUB_KIND_LOAD_FAILS", "1"),
        ],
    );
    let calls = sb.calls();
    let context = report(&out, &calls);
    assert!(out.status.success(), "{context}");
    assert_in_order(
        &calls,
        &[
            "kind load docker-image",
            "docker save -o ",
            "kind load image-archive --name logtap-demo ",
            "fluent-demo/fluentd.yaml",
        ],
        &context,
    );
    let save = calls.iter().find(|c| c.starts_with("docker save")).unwrap();
    assert!(
        save.ends_with(" logtap:0.1.0 logtap-demo-clock:0.1.0"),
        "{save}"
    );
    let archive = save.split_whitespace().nth(3).unwrap();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("kind load image-archive") && c.ends_with(archive)),
        "{context}"
    );
    assert!(!Path::new(archive).exists(), "the archive is removed");
}

#[test]
fn up_refuses_a_cluster_without_native_sidecars_before_building() {
    let sb = Sandbox::new("up-old-k8s");
    sb.demo_stubs();
    let out = sb.run("fluent-demo/up.sh", &[], &[("STUB_K8S_MINOR", "28")]);
    let calls = sb.calls();
    let context = report(&out, &calls);
    assert_eq!(out.status.code(), Some(1), "{context}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1.28; native sidecars need >= 1.29"),
        "{context}"
    );
    assert_eq!(count(&calls, "docker build"), 0, "{context}");
    assert!(!calls.iter().any(|c| c.contains(" apply ")), "{context}");
}

#[test]
fn up_stops_with_a_reason_when_a_tool_or_the_docker_daemon_is_missing() {
    let sb = Sandbox::new("up-no-daemon");
    sb.demo_stubs();
    let out = sb.run("fluent-demo/up.sh", &[], &[("STUB_DOCKER_INFO_RC", "1")]);
    let calls = sb.calls();
    let context = report(&out, &calls);
    assert_eq!(out.status.code(), Some(1), "{context}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot talk to the Docker daemon"),
        "{context}"
    );
    assert_eq!(calls, ["docker info"], "{context}");

    let sb = Sandbox::new("up-no-kind");
    sb.demo_stubs();
    sb.remove("kind");
    let out = sb.run("fluent-demo/up.sh", &[], &[]);
    let context = report(&out, &sb.calls());
    assert_eq!(out.status.code(), Some(1), "{context}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("kind not found"),
        "{context}"
    );
    assert!(sb.calls().is_empty(), "{context}");
}

#[test]
fn up_waits_two_minutes_at_most_and_names_the_apps_whose_records_are_missing() {
    let sb = Sandbox::new("up-missing");
    sb.demo_stubs();
    let log = sb.file("fluentd.log", &fluentd_log(&ALL_APPS[..1]));
    let out = sb.run(
        "fluent-demo/up.sh",
        &[],
        &[("STUB_FLUENTD_LOG", log.to_str().unwrap())],
    );
    let calls = sb.calls();
    let context = report(&out, &calls);
    assert_eq!(out.status.code(), Some(1), "{context}");
    assert_eq!(count(&calls, "sleep 2"), 60, "{context}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for app in ["clock-classic-", "web-", "clock-node-"] {
        assert!(
            stderr.contains(app),
            "{app} missing from the message\n{context}"
        );
    }
    assert!(!stderr.contains("$ns"), "patterns are expanded\n{context}");
    assert_eq!(
        count(
            &calls,
            "kubectl --context kind-logtap-demo -n logtap-demo exec deployment/web"
        ),
        0
    );
}

#[test]
fn down_deletes_the_cluster_it_finds_among_many_and_only_that() {
    let sb = Sandbox::new("down");
    sb.demo_stubs();
    let mut clusters: String = (0..12000).map(|i| format!("cluster-{i:05}\n")).collect();
    clusters.insert_str(0, "my-demo\n");
    let clusters = sb.file("clusters", &clusters);
    let env = [
        ("STUB_KIND_CLUSTERS", clusters.to_str().unwrap()),
        ("LOGTAP_DEMO_CLUSTER", "my-demo"),
    ];
    let out = sb.run("fluent-demo/down.sh", &[], &env);
    let calls = sb.calls();
    let context = report(&out, &calls);
    assert!(out.status.success(), "{context}");
    assert_eq!(
        calls,
        ["kind get clusters", "kind delete cluster --name my-demo"],
        "{context}"
    );

    let sb = Sandbox::new("down-none");
    sb.demo_stubs();
    let out = sb.run("fluent-demo/down.sh", &["--images"], &[]);
    let calls = sb.calls();
    let context = report(&out, &calls);
    assert!(out.status.success(), "{context}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no kind cluster named 'logtap-demo'"),
        "{context}"
    );
    assert_eq!(
        calls,
        [
            "kind get clusters",
            "docker image rm logtap:0.1.0 logtap-demo-clock:0.1.0"
        ],
        "{context}"
    );

    let sb = Sandbox::new("down-bad-arg");
    sb.demo_stubs();
    let out = sb.run("fluent-demo/down.sh", &["--all"], &[]);
    let context = report(&out, &sb.calls());
    assert_eq!(out.status.code(), Some(1), "{context}");
    assert!(sb.calls().is_empty(), "{context}");
}

/// install.sh's sandbox: systemctl, systemd-sysusers and id (root) stand in, the build
/// directory holds the real binary and library, DESTDIR is the staging root.
fn install_sandbox(name: &str) -> (Sandbox, PathBuf, PathBuf) {
    // Without DESTDIR the script would write to this machine's /usr/local and /etc.
    let script = std::fs::read_to_string(repo_file("deploy/systemd/install.sh")).unwrap();
    assert!(
        script.contains("root=\"${DESTDIR:-}\""),
        "install.sh must honour DESTDIR: not running it"
    );
    let sb = Sandbox::new(name);
    sb.stub("systemctl", SYSTEMCTL);
    sb.stub("systemd-sysusers", "exit 0\n");
    sb.stub(
        "id",
        "if [ \"${1:-}\" = -u ]; then echo 0; else echo 'uid=0(root)'; fi\n",
    );
    let build = sb.path().join("build");
    std::fs::create_dir(&build).unwrap();
    for (src, name) in [(logtap_bin(), "logtap"), (liblogtap(), "liblogtap.so")] {
        if std::fs::hard_link(&src, build.join(name)).is_err() {
            std::fs::copy(&src, build.join(name)).unwrap();
        }
    }
    let root = sb.path().join("root");
    std::fs::create_dir(&root).unwrap();
    (sb, build, root)
}

/// The calls that change the system (`id` only reads).
fn system_changes(calls: &[String]) -> Vec<&String> {
    calls.iter().filter(|c| !c.starts_with("id ")).collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn install_on_a_fresh_host_starts_the_agent_although_the_example_servers_do_not_answer() {
    let (sb, build, root) = install_sandbox("install-fresh");
    let out = sb.run(
        "deploy/systemd/install.sh",
        &[build.to_str().unwrap()],
        &[("DESTDIR", root.to_str().unwrap())],
    );
    let calls = sb.calls();
    let context = report(&out, &calls);
    assert!(out.status.success(), "{context}");
    assert_in_order(
        &calls,
        &[
            &format!("systemd-sysusers --root={}", root.display()),
            "systemctl daemon-reload",
            "systemctl enable logtap-agent.service",
            "systemctl restart logtap-agent.service",
            "systemctl --no-pager --lines=5 status logtap-agent.service",
        ],
        &context,
    );
    for (path, want) in [
        ("usr/local/bin/logtap", 0o755),
        ("usr/local/lib/logtap/liblogtap.so", 0o755),
        ("etc/logtap/logtap.toml", 0o644),
        ("etc/logtap/logtap.env", 0o600),
        ("etc/systemd/system/logtap-agent.service", 0o644),
        ("usr/lib/sysusers.d/logtap.conf", 0o644),
    ] {
        assert_eq!(mode(&root.join(path)), want, "{path}\n{context}");
    }
    // The drop-in's LD_PRELOAD, as glibc expands its `$LIB`, is the installed library.
    let dropin =
        std::fs::read_to_string(repo_file("deploy/systemd/tap-existing-service.conf")).unwrap();
    let preload = dropin
        .lines()
        .find_map(|l| l.strip_prefix("Environment=LD_PRELOAD="))
        .expect("the drop-in sets LD_PRELOAD");
    let glibc = preload.replace("$LIB", &format!("lib/{}-linux-gnu", std::env::consts::ARCH));
    assert_eq!(
        std::fs::read(root.join(glibc.trim_start_matches('/'))).unwrap(),
        std::fs::read(liblogtap()).unwrap(),
        "{preload}\n{context}"
    );
    assert_eq!(
        std::fs::read(root.join("etc/logtap/logtap.toml")).unwrap(),
        std::fs::read(repo_file("deploy/config/vm.toml")).unwrap()
    );
    assert_eq!(
        std::fs::read(root.join("etc/systemd/system/logtap-agent.service")).unwrap(),
        std::fs::read(repo_file("deploy/systemd/logtap-agent.service")).unwrap()
    );
    // The example servers do not resolve: said, after the start, and not fatal.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("fluentd-1.example.internal") && stderr.contains("warning"),
        "{context}"
    );
    assert!(
        !std::fs::read_dir(root.join("usr/local/bin"))
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().starts_with('.')),
        "no temporary file left"
    );
}

#[test]
fn install_upgrade_with_a_config_the_new_binary_rejects_changes_nothing() {
    let (sb, build, root) = install_sandbox("install-bad-config");
    let old_unit = "[Service]\nExecStart=/usr/local/bin/logtap agent\n";
    for (path, text) in [
        ("etc/logtap/logtap.toml", "output = [\"carrier-pigeon\"]\n"),
        ("usr/local/bin/logtap", "the running version"),
        ("etc/systemd/system/logtap-agent.service", old_unit),
    ] {
        std::fs::create_dir_all(root.join(path).parent().unwrap()).unwrap();
        std::fs::write(root.join(path), text).unwrap();
    }
    let out = sb.run(
        "deploy/systemd/install.sh",
        &[build.to_str().unwrap()],
        &[("DESTDIR", root.to_str().unwrap())],
    );
    let calls = sb.calls();
    let context = report(&out, &calls);
    assert_eq!(out.status.code(), Some(1), "{context}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing was changed"),
        "{context}"
    );
    assert!(
        system_changes(&calls).is_empty(),
        "no systemctl, no sysusers\n{context}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("usr/local/bin/logtap")).unwrap(),
        "the running version"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/systemd/system/logtap-agent.service")).unwrap(),
        old_unit
    );
    assert!(!root.join("usr/local/lib/logtap/liblogtap.so").exists());
}

#[test]
fn install_upgrade_keeps_the_config_and_fails_when_the_agent_does_not_start() {
    let (sb, build, root) = install_sandbox("install-upgrade");
    // A valid configuration of the user's own (no forward server: nothing to probe).
    let mine = "# mine\nsocket = \"/run/logtap/logtap.sock\"\noutput = [\"stdout\"]\n";
    std::fs::create_dir_all(root.join("etc/logtap")).unwrap();
    std::fs::write(root.join("etc/logtap/logtap.toml"), mine).unwrap();
    std::fs::write(
        root.join("etc/logtap/logtap.env"),
        "LOGTAP_SHARED_KEY=kept\n",
    )
    .unwrap();
    let out = sb.run(
        "deploy/systemd/install.sh",
        &[build.to_str().unwrap()],
        &[
            ("DESTDIR", root.to_str().unwrap()),
            ("STUB_SYSTEMCTL_RESTART_RC", "1"),
        ],
    );
    let calls = sb.calls();
    let context = report(&out, &calls);
    assert_eq!(out.status.code(), Some(1), "{context}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("journalctl -u logtap-agent"),
        "{context}"
    );
    assert_in_order(
        &calls,
        &[
            "systemctl daemon-reload",
            "systemctl enable",
            "systemctl restart",
        ],
        &context,
    );
    assert_eq!(count(&calls, "systemctl --no-pager"), 0, "{context}");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/logtap/logtap.toml")).unwrap(),
        mine
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/logtap/logtap.env")).unwrap(),
        "LOGTAP_SHARED_KEY=kept\n"
    );
    assert!(root.join("usr/local/lib/logtap/liblogtap.so").is_file());
}

#[test]
fn install_without_a_build_says_what_to_build() {
    let (sb, _, root) = install_sandbox("install-no-build");
    let empty = sb.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = sb.run(
        "deploy/systemd/install.sh",
        &[empty.to_str().unwrap()],
        &[("DESTDIR", root.to_str().unwrap())],
    );
    let context = report(&out, &sb.calls());
    assert_eq!(out.status.code(), Some(1), "{context}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cargo build --release"),
        "{context}"
    );
    assert!(system_changes(&sb.calls()).is_empty(), "{context}");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
}

/// Under `set -o pipefail`, `producer | grep -q …` (or `| head`) fails with 141 whenever the
/// reader exits before the producer is done: the scripts must not pipe into an early exit.
#[test]
fn no_script_pipes_into_a_reader_that_exits_early() {
    let mut scripts = files_with_suffix(&repo_file("deploy"), &[".sh"]);
    scripts.extend(files_with_suffix(&repo_file("fluent-demo"), &[".sh"]));
    assert!(scripts.len() >= 3);
    let mut problems = Vec::new();
    for script in &scripts {
        let text = std::fs::read_to_string(script).unwrap();
        if !text.contains("pipefail") {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let code = line.split(" #").next().unwrap_or("");
            if code.trim_start().starts_with('#') {
                continue;
            }
            // `a || b` is not a pipe: split on single bars only.
            let code = code.replace("||", "\0");
            for piece in code.split('|').skip(1) {
                let words: Vec<&str> = piece.split_whitespace().collect();
                let early = match words.first() {
                    Some(&"head") => true,
                    Some(&"grep") => {
                        words[1..]
                            .iter()
                            .take_while(|w| w.starts_with('-'))
                            .any(|w| {
                                *w == "--quiet"
                                    || *w == "--max-count"
                                    || (!w.starts_with("--")
                                        && (w.contains('q') || w.contains('m')))
                            })
                    }
                    _ => false,
                };
                if early {
                    problems.push(format!("{}:{}: {}", script.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "pipelines that fail under pipefail when the reader exits early (capture the output \
         first, then grep the variable):\n{}",
        problems.join("\n")
    );
}
