//! What a real node does to a deployment, which a rehearsal in a temporary directory cannot see:
//!
//! - `/run` (and `/tmp`, `/dev/shm`) are tmpfs mounted `noexec` on Debian, Ubuntu and kind nodes,
//!   a hostPath keeps the flag, and the dynamic linker cannot map a library from there: the app
//!   runs, untapped. Shown here on real `noexec` mounts (in a private mount namespace, `unshare
//!   -m`, so nothing outside the test sees them; skipped, with the reason, where that is not
//!   permitted), and linted: every path a manifest preloads from is on a volume that allows
//!   execution.
//! - Pod Security admission: a namespace that enforces a level refuses the pods that need more.
//! - Taints: an agent whose Fluentd is node-local needs a Fluentd on every node it runs on.
//! - The init step copies what the app needs (the library), not the 26 MB binary too.

mod deploy_support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use deploy_support::plans::daemonset_plan;
use deploy_support::pss::{Level, enforced_level, required_level};
use deploy_support::rehearsal::{Sink, assert_clock_records, real_python, rehearse};
use deploy_support::*;
use logtap_tests::artifacts::{TempDir, liblogtap, logtap_bin};
use serde_json::Value;

/// Node directories that are tmpfs mounted `noexec` on common nodes (Debian, Ubuntu, kind, CIS
/// hardened images), or pseudo filesystems: a library preloaded from a hostPath under one of them
/// does not load.
const NOEXEC_NODE_DIRS: &[&str] = &[
    "/run", "/var/run", "/tmp", "/var/tmp", "/dev", "/proc", "/sys",
];

fn under(path: &str, dir: &str) -> bool {
    path == dir || path.starts_with(&format!("{dir}/"))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Runs `script` (sh) with `args` in a private mount namespace: mounts made there vanish with it.
fn in_private_mount_namespace(script: &str, args: &[&Path]) -> Output {
    run_bounded(
        Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .args(args),
        Duration::from_secs(120),
    )
}

/// `Err(reason)` when this machine does not let the test mount a tmpfs in a private namespace.
fn mounts_permitted(work: &Path) -> Result<(), String> {
    let probe = work.join("probe");
    std::fs::create_dir_all(&probe).unwrap();
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs -o noexec,size=1m tmpfs \"$1\"")
        .arg("sh")
        .arg(&probe)
        .output();
    match out {
        Err(e) => Err(format!("cannot run unshare: {e}")),
        Ok(o) if !o.status.success() => Err(format!(
            "`unshare --mount` + `mount -t tmpfs` not permitted here (needs root or \
             CAP_SYS_ADMIN): {}",
            text(&o).trim()
        )),
        Ok(_) => Ok(()),
    }
}

macro_rules! require_mounts {
    ($work:expr) => {
        if let Err(reason) = mounts_permitted($work) {
            println!("SKIPPED: {reason}");
            eprintln!("SKIPPED: {reason}");
            return;
        }
    };
}

fn json_messages(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["message"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn preloading_from_a_noexec_mount_fails_and_the_app_runs_untapped() {
    let work = TempDir::new("node-noexec-preload");
    require_mounts!(work.path());
    const SCRIPT: &str = r#"set -e
d="$1"; lib="$2"; logtap="$3"
mkdir -p "$d/noexec" "$d/exec"
mount -t tmpfs -o noexec,size=32m tmpfs "$d/noexec"
mount -t tmpfs -o size=32m tmpfs "$d/exec"
cp "$lib" "$d/noexec/liblogtap.so"
cp "$lib" "$d/exec/liblogtap.so"
echo "== noexec"
"$logtap" run --output stdout --preload "$d/noexec/liblogtap.so" -- /bin/echo line-from-noexec 2>&1
echo "== exec"
"$logtap" run --output stdout --preload "$d/exec/liblogtap.so" -- /bin/echo line-from-exec 2>&1
"#;
    let out = in_private_mount_namespace(SCRIPT, &[work.path(), &liblogtap(), &logtap_bin()]);
    assert_success("the noexec preload script", &out);
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    let (noexec, exec) = all
        .split_once("== exec\n")
        .unwrap_or_else(|| panic!("{all}"));
    // The dynamic linker's own words, and the app ran anyway: its line is there, but untapped.
    assert!(
        noexec.contains("cannot be preloaded") && noexec.contains("failed to map segment"),
        "ld.so must refuse a library on a noexec mount:\n{all}"
    );
    assert!(noexec.lines().any(|l| l == "line-from-noexec"), "{all}");
    assert!(
        json_messages(noexec).is_empty(),
        "nothing is tapped from a noexec library:\n{all}"
    );
    // The same bytes on a mount that allows execution: loaded, and the line is a record.
    assert!(!exec.contains("cannot be preloaded"), "{all}");
    assert_eq!(json_messages(exec), ["line-from-exec"], "{all}");
}

#[test]
fn install_refuses_a_noexec_directory_with_a_reason() {
    let work = TempDir::new("node-noexec-install");
    require_mounts!(work.path());
    const SCRIPT: &str = r#"d="$1"; lib="$2"; logtap="$3"
mkdir -p "$d/noexec" "$d/exec"
mount -t tmpfs -o noexec,size=32m tmpfs "$d/noexec" || exit 99
mount -t tmpfs -o size=32m tmpfs "$d/exec" || exit 99
"$logtap" install --library-only --preload "$lib" --to "$d/noexec/lib" 2>&1
echo "noexec-rc=$?"
ls -A "$d/noexec/lib"
echo "== exec"
"$logtap" install --library-only --preload "$lib" --to "$d/exec/lib" 2>&1
echo "exec-rc=$?"
ls -A "$d/exec/lib"
"#;
    let out = in_private_mount_namespace(SCRIPT, &[work.path(), &liblogtap(), &logtap_bin()]);
    let all = text(&out);
    let (noexec, exec) = all
        .split_once("== exec\n")
        .unwrap_or_else(|| panic!("{all}"));
    assert!(!noexec.contains("noexec-rc=0"), "install must fail:\n{all}");
    assert!(
        noexec.contains("noexec mount") && !noexec.contains("liblogtap.so\n"),
        "a clear reason, and no library left behind:\n{all}"
    );
    assert!(exec.contains("exec-rc=0"), "{all}");
    assert!(exec.lines().any(|l| l == "liblogtap.so"), "{all}");
    assert!(
        !exec.lines().any(|l| l == "logtap"),
        "--library-only: {all}"
    );
}

/// DaemonSet mode rehearsed on a node like Debian's, Ubuntu's or kind's: the node's `/run` is
/// `noexec` for the app pod (bind-remounted so in the app's own mount namespace — the node
/// agent created its socket there before, as on a node). The app must still be tapped: its
/// library must come from a directory that allows execution.
#[test]
fn daemonset_mode_taps_an_app_on_a_node_whose_run_is_noexec() {
    const TICKS: usize = 10;
    let work = TempDir::new("node-daemonset-noexec");
    require_mounts!(work.path());
    let mut plan = daemonset_plan(work.path(), TICKS);
    let node_run = work.path().join("host/run");
    std::fs::create_dir_all(&node_run).unwrap();
    // Only the app is preloaded: unshare, sh and mount run without the library.
    let preload = plan
        .app_env
        .iter()
        .position(|(k, _)| k == "LD_PRELOAD")
        .expect("the app preloads the library");
    plan.app_env[preload].0 = "LOGTAP_NODE_PRELOAD".to_owned();
    const WRAPPER: &str = r#"set -e
mount --bind "$1" "$1"
mount -o remount,bind,noexec "$1"
shift
export LD_PRELOAD="$LOGTAP_NODE_PRELOAD"
unset LOGTAP_NODE_PRELOAD
exec "$@""#;
    let (program, args) = plan.app_argv.split_first().unwrap();
    let mut argv: Vec<String> = ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.extend([WRAPPER.to_owned(), "sh".to_owned()]);
    argv.push(node_run.to_string_lossy().into_owned());
    argv.push(real_python(program).to_string_lossy().into_owned());
    argv.extend(args.iter().cloned());
    plan.app_argv = argv;
    let outcome = rehearse(&plan, Sink::Forward, TICKS + TICKS / 5);
    assert!(
        !outcome.log.contains("cannot be preloaded"),
        "the app could not load the library on this node:\n{}",
        outcome.log
    );
    assert_clock_records(&outcome, TICKS);
}

/// Every pod template of the deployment's YAML: (file, object, pod spec).
fn pod_templates() -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    for file in all_yaml_files() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("docker-compose") {
            continue;
        }
        for doc in yaml_documents(&file) {
            let spec = doc["spec"]["template"]["spec"].clone();
            if spec.is_object() {
                let rel = file
                    .strip_prefix(repo())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, doc.clone(), spec));
            }
        }
    }
    assert!(out.len() >= 6, "{out:?}");
    out
}

fn all_containers(spec: &Value) -> Vec<&Value> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect()
}

fn env_value<'a>(c: &'a Value, name: &str) -> Option<&'a str> {
    c["env"].as_array()?.iter().find(|e| e["name"] == name)?["value"].as_str()
}

/// LD_PRELOAD's list: separated by colons or spaces.
fn preload_paths(value: &str) -> Vec<&str> {
    value.split([':', ' ']).filter(|p| !p.is_empty()).collect()
}

/// Why the volume (mounted in a container at a path that holds a preloaded library) does not
/// allow execution on a real node, if it does not.
fn noexec_volume(volume: &Value) -> Option<String> {
    if volume["emptyDir"].is_object() {
        // The kubelet's emptyDirs (on disk, or tmpfs for medium Memory) allow execution.
        return None;
    }
    if let Some(path) = volume["hostPath"]["path"].as_str() {
        return NOEXEC_NODE_DIRS
            .iter()
            .find(|d| under(path, d))
            .map(|d| format!("hostPath {path} is under {d}, mounted noexec on many nodes"));
    }
    Some(format!(
        "a {} volume is no place for a library (only emptyDir or a hostPath)",
        volume
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "name"))
            .map_or("?", |k| k.as_str())
    ))
}

#[test]
fn every_preloaded_library_is_on_a_volume_that_allows_execution() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for (file, _, spec) in pod_templates() {
        for c in all_containers(&spec) {
            let Some(preload) = env_value(c, "LD_PRELOAD") else {
                continue;
            };
            for path in preload_paths(preload) {
                checked += 1;
                let mount = c["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|m| under(path, m["mountPath"].as_str().unwrap_or("")))
                    .max_by_key(|m| m["mountPath"].as_str().unwrap_or("").len());
                let Some(mount) = mount else {
                    // In the image's own filesystem: executable like the app itself.
                    continue;
                };
                let volume = spec["volumes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|v| v["name"] == mount["name"])
                    .unwrap_or_else(|| panic!("{file}: no volume {}", mount["name"]));
                if let Some(why) = noexec_volume(volume) {
                    problems.push(format!("{file}: {} preloads {path}: {why}", c["name"]));
                }
            }
        }
    }
    assert!(
        checked >= 4,
        "expected the apps' LD_PRELOAD, found {checked}"
    );

    // Compose: a named volume (under /var/lib/docker) is fine; `tmpfs:` mounts are noexec by
    // default in Docker, and host binds follow the node rule.
    let compose = &yaml_documents(&repo_file("deploy/docker-compose.yaml"))[0];
    for (name, svc) in compose["services"].as_object().unwrap() {
        let Some(preload) = svc["environment"]["LD_PRELOAD"].as_str() else {
            continue;
        };
        for path in preload_paths(preload) {
            checked += 1;
            for t in svc["tmpfs"].as_array().into_iter().flatten() {
                let dir = t.as_str().unwrap_or("").split(':').next().unwrap_or("");
                if under(path, dir) {
                    problems.push(format!(
                        "docker-compose.yaml: {name} preloads {path} from a tmpfs (noexec by default)"
                    ));
                }
            }
            let mounts = if svc["volumes"].is_null() {
                Vec::new()
            } else {
                strings(&svc["volumes"])
            };
            let mount = mounts
                .iter()
                .filter_map(|m| {
                    let mut parts = m.split(':');
                    Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
                })
                .filter(|(_, target)| under(path, target))
                .max_by_key(|(_, target)| target.len());
            if let Some((source, _)) = mount
                && let Some(d) = NOEXEC_NODE_DIRS.iter().find(|d| under(&source, d))
            {
                problems.push(format!(
                    "docker-compose.yaml: {name} preloads {path} from a bind of {source} (under {d})"
                ));
            }
        }
    }

    // systemd: the drop-in preloads from the host's filesystem directly.
    let dropin =
        std::fs::read_to_string(repo_file("deploy/systemd/tap-existing-service.conf")).unwrap();
    for line in dropin.lines() {
        if let Some(value) = line.strip_prefix("Environment=LD_PRELOAD=") {
            for path in preload_paths(value) {
                checked += 1;
                if let Some(d) = NOEXEC_NODE_DIRS.iter().find(|d| under(path, d)) {
                    problems.push(format!(
                        "tap-existing-service.conf preloads {path} (under {d})"
                    ));
                }
            }
        }
    }
    assert!(checked >= 7, "manifests, compose and drop-in: {checked}");
    assert!(
        problems.is_empty(),
        "libraries on volumes that do not allow execution (ld.so: \"failed to map segment\", the \
         app runs untapped):\n{}",
        problems.join("\n")
    );
}

/// The init step copies the library only, unless a container of the pod runs the `logtap`
/// binary from the volume it fills.
#[test]
fn init_steps_copy_the_library_only() {
    let mut installs = 0;
    for (file, _, spec) in pod_templates() {
        for c in all_containers(&spec) {
            let args = if c["args"].is_null() {
                continue;
            } else {
                strings(&c["args"])
            };
            if args.first().map(String::as_str) != Some("install") {
                continue;
            }
            installs += 1;
            let to = &args[args.iter().position(|a| a == "--to").unwrap() + 1];
            let runs_binary_from_volume = all_containers(&spec).iter().any(|o| {
                ["command", "args"].iter().any(|k| {
                    o[*k].as_array().is_some_and(|a| {
                        a.first()
                            .and_then(Value::as_str)
                            .is_some_and(|p| p == format!("{to}/logtap"))
                    })
                })
            });
            assert!(
                runs_binary_from_volume || args.iter().any(|a| a == "--library-only"),
                "{file}: {} copies the logtap binary into {to}, where nothing runs it: add \
                 --library-only",
                c["name"]
            );
        }
    }
    let compose = &yaml_documents(&repo_file("deploy/docker-compose.yaml"))[0];
    for (name, svc) in compose["services"].as_object().unwrap() {
        if svc["command"].is_null() {
            continue;
        }
        let command = strings(&svc["command"]);
        if command.first().map(String::as_str) == Some("install") {
            installs += 1;
            assert!(
                command.iter().any(|a| a == "--library-only"),
                "docker-compose.yaml: {name} copies the binary too: add --library-only"
            );
        }
    }
    assert!(installs >= 5, "expected the init steps, found {installs}");
}

/// Every Namespace our files create enforces a Pod Security level that admits the pods the
/// files put there; where none is set, the pods must pass `restricted` (a cluster may default
/// to it). And the levels the docs promise hold.
#[test]
fn pod_security_admission_admits_every_pod_we_create() {
    let mut namespaces: Vec<(String, Value)> = Vec::new();
    for file in all_yaml_files() {
        for doc in yaml_documents(&file) {
            if doc["kind"] == "Namespace" {
                namespaces.push((doc["metadata"]["name"].as_str().unwrap().to_owned(), doc));
            }
        }
    }
    let mut problems = Vec::new();
    let mut levels = std::collections::BTreeMap::new();
    for (file, object, spec) in pod_templates() {
        let (needed, reasons) = required_level(&spec);
        levels.insert(file.clone(), needed);
        let Some(ns) = object["metadata"]["namespace"].as_str() else {
            continue; // applied with -n: the up.sh dry run checks those namespaces
        };
        let label = namespaces
            .iter()
            .find(|(n, _)| n == ns)
            .and_then(|(_, d)| enforced_level(d));
        match label {
            Some(level) if level >= needed => {}
            None if needed == Level::Restricted => {}
            other => problems.push(format!(
                "{file}: {} needs Pod Security level {needed:?} ({}), but namespace {ns} \
                 enforces {other:?} (none: the cluster's default, baseline or restricted on many)",
                object["metadata"]["name"],
                reasons.join("; ")
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // What the README and the manifests' headers say.
    for (file, level) in [
        ("deploy/kubernetes/sidecar.yaml", Level::Restricted),
        ("deploy/kubernetes/sidecar-classic.yaml", Level::Restricted),
        ("deploy/kubernetes/tap-file.yaml", Level::Restricted),
        ("deploy/kubernetes/daemonset.yaml", Level::Privileged),
        ("deploy/kubernetes/daemonset-app.yaml", Level::Privileged),
        ("fluent-demo/fluentd.yaml", Level::Restricted),
    ] {
        assert_eq!(levels.get(file), Some(&level), "{file}");
    }
}

/// Whether the toleration list `of` tolerates every taint that `toleration` tolerates.
fn covers(of: &[Value], toleration: &Value) -> bool {
    of.iter().any(|f| {
        let key_ok = f["key"].is_null() && f["operator"] == "Exists"
            || f["key"] == toleration["key"]
                && (f["operator"] == "Exists" || f["value"] == toleration["value"]);
        let effect_ok = f["effect"].is_null() || f["effect"] == toleration["effect"];
        key_ok && effect_ok
    })
}

/// An agent that forwards to a Service with `internalTrafficPolicy: Local` reaches only the
/// Fluentd of its own node: Fluentd's DaemonSet must tolerate every taint the agents tolerate.
#[test]
fn every_node_an_agent_runs_on_has_a_fluentd() {
    let fluentd = yaml_documents(&repo_file("fluent-demo/fluentd.yaml"));
    let service = find_object(&fluentd, "Service", "fluentd");
    assert_eq!(service["spec"]["internalTrafficPolicy"], "Local");
    let fluentd_tolerations =
        find_object(&fluentd, "DaemonSet", "fluentd")["spec"]["template"]["spec"]["tolerations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
    let mut agents = 0;
    for (file, object, spec) in pod_templates() {
        let forwards_to_fluentd = all_containers(&spec).iter().any(|c| {
            c["args"]
                .as_array()
                .and_then(|a| a.first())
                .is_some_and(|a| a == "agent")
        }) && file.starts_with("deploy/kubernetes/");
        if !forwards_to_fluentd {
            continue;
        }
        agents += 1;
        for t in spec["tolerations"].as_array().into_iter().flatten() {
            assert!(
                covers(&fluentd_tolerations, t),
                "{file}: {} tolerates {t}, fluent-demo/fluentd.yaml does not: on such a node the \
                 agent has no Fluentd (internalTrafficPolicy: Local)",
                object["metadata"]["name"]
            );
        }
    }
    assert!(agents >= 4, "{agents}");
    // Every agent config of these manifests forwards to that Service.
    for config in ["sidecar", "daemonset", "tap-file"] {
        let toml =
            std::fs::read_to_string(repo_file(&format!("deploy/config/{config}.toml"))).unwrap();
        assert!(toml.contains("\"fluentd.logging.svc:24224\""), "{config}");
    }
}
