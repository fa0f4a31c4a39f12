//! The deployment files agree with each other and keep the promises their comments make: the
//! ConfigMaps carry the config examples byte for byte, every app talks to the socket its agent
//! listens on, every container is locked down (non-root, read-only root, no capabilities), the
//! probes hit the agent's HTTP port, and the compose file's builds, mounts and dependencies exist.

mod deploy_support;

use deploy_support::*;
use serde_json::Value;
use std::collections::BTreeSet;

/// Manifest → the ConfigMap with the agent's TOML → the config example it must equal.
const CONFIGMAPS: &[(&str, &str, &str)] = &[
    (
        "deploy/kubernetes/sidecar.yaml",
        "logtap-sidecar",
        "deploy/config/sidecar.toml",
    ),
    (
        "deploy/kubernetes/sidecar-classic.yaml",
        "logtap-sidecar",
        "deploy/config/sidecar.toml",
    ),
    (
        "deploy/kubernetes/daemonset.yaml",
        "logtap-node",
        "deploy/config/daemonset.toml",
    ),
    (
        "deploy/kubernetes/tap-file.yaml",
        "logtap-nginx",
        "deploy/config/tap-file.toml",
    ),
];

/// Manifests whose pods run workloads (and so must be locked down).
const WORKLOADS: &[&str] = &[
    "deploy/kubernetes/sidecar.yaml",
    "deploy/kubernetes/sidecar-classic.yaml",
    "deploy/kubernetes/daemonset.yaml",
    "deploy/kubernetes/daemonset-app.yaml",
    "deploy/kubernetes/tap-file.yaml",
    "fluent-demo/fluentd.yaml",
];

fn toml_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .map(|v| v.trim().trim_matches('"').to_owned())
}

fn pod_spec(doc: &Value) -> Option<&Value> {
    let spec = &doc["spec"]["template"]["spec"];
    spec.is_object().then_some(spec)
}

fn containers(spec: &Value) -> Vec<&Value> {
    let mut all: Vec<&Value> = Vec::new();
    for key in ["initContainers", "containers"] {
        if let Some(list) = spec[key].as_array() {
            all.extend(list);
        }
    }
    all
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

fn is_agent(container: &Value) -> bool {
    container["args"]
        .as_array()
        .and_then(|a| a.first())
        .is_some_and(|a| a == "agent")
}

#[test]
fn configmaps_carry_the_config_examples_byte_for_byte() {
    for (manifest, configmap, config) in CONFIGMAPS {
        let docs = yaml_documents(&repo_file(manifest));
        let data = &find_object(&docs, "ConfigMap", configmap)["data"]["logtap.toml"];
        let expected = std::fs::read_to_string(repo_file(config)).unwrap();
        assert_eq!(
            data.as_str(),
            Some(expected.as_str()),
            "{manifest}: ConfigMap {configmap} ≠ {config}"
        );
    }
    let docs = yaml_documents(&repo_file("fluent-demo/fluentd.yaml"));
    let conf = &find_object(&docs, "ConfigMap", "fluentd")["data"]["fluent.conf"];
    let expected = std::fs::read_to_string(repo_file("deploy/fluentd/fluent.conf")).unwrap();
    assert_eq!(
        conf.as_str(),
        Some(expected.as_str()),
        "fluentd.yaml's fluent.conf ≠ deploy/fluentd/fluent.conf"
    );
}

#[test]
fn every_app_talks_to_the_socket_its_agent_listens_on() {
    for (manifest, configmap, config) in CONFIGMAPS {
        let docs = yaml_documents(&repo_file(manifest));
        let toml = std::fs::read_to_string(repo_file(config)).unwrap();
        let _ = find_object(&docs, "ConfigMap", configmap);
        for doc in &docs {
            let Some(spec) = pod_spec(doc) else { continue };
            let agent = containers(spec)
                .into_iter()
                .find(|c| is_agent(c))
                .expect("an agent container");
            let args = strings(&agent["args"]);
            let socket = args
                .iter()
                .position(|a| a == "--socket")
                .map(|i| args[i + 1].clone())
                .or_else(|| toml_value(&toml, "socket"))
                .unwrap_or_else(|| {
                    panic!("{manifest}: the agent's socket is neither in args nor in {config}")
                });
            if *manifest == "deploy/kubernetes/daemonset.yaml" {
                // Its apps live in daemonset-app.yaml: checked below.
                assert_eq!(socket, "/run/logtap/logtap.sock");
                continue;
            }
            let mut targets = 0;
            for c in containers(spec) {
                if let Some(target) = env_value(c, "LLT_TARGET") {
                    assert_eq!(
                        target,
                        format!("socket:{socket}"),
                        "{manifest}: {}",
                        c["name"]
                    );
                    targets += 1;
                }
            }
            assert!(targets > 0, "{manifest}: no container sets LLT_TARGET");
        }
    }
    // The DaemonSet's apps are in another file: same socket, and the library where install puts it
    // (the same node directory: both mount it at its host path).
    let ds = yaml_documents(&repo_file("deploy/kubernetes/daemonset.yaml"));
    let install = containers(pod_spec(find_object(&ds, "DaemonSet", "logtap-node")).unwrap())
        .into_iter()
        .find(|c| c["name"] == "logtap-install")
        .map(|c| strings(&c["args"]))
        .unwrap();
    assert_eq!(
        install,
        ["install", "--library-only", "--to", "/var/lib/logtap/lib"]
    );
    let app = yaml_documents(&repo_file("deploy/kubernetes/daemonset-app.yaml"));
    let app = containers(pod_spec(find_object(&app, "Deployment", "clock-node")).unwrap())[0];
    assert_eq!(
        env_value(app, "LD_PRELOAD"),
        Some("/var/lib/logtap/lib/$LIB/liblogtap.so")
    );
    assert_eq!(
        env_value(app, "LLT_TARGET"),
        Some("socket:/run/logtap/logtap.sock")
    );
}

/// Every app preloads through the `$LIB` layout `logtap install` makes (glibc's library for a
/// glibc process, musl's for a musl one), under the directory its install step writes; the
/// sidecar example has an Alpine app.
#[test]
fn every_app_preloads_by_its_own_libc_and_an_alpine_app_is_shown() {
    let mut apps = 0;
    for manifest in [
        "deploy/kubernetes/sidecar.yaml",
        "deploy/kubernetes/sidecar-classic.yaml",
        "deploy/kubernetes/tap-file.yaml",
    ] {
        for doc in yaml_documents(&repo_file(manifest)) {
            let Some(spec) = pod_spec(&doc) else { continue };
            let all: Vec<&Value> = spec["initContainers"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(containers(spec))
                .collect();
            let to = all
                .iter()
                .map(|c| strings(&c["args"]))
                .find(|a| a.first().is_some_and(|a| a == "install"))
                .map(|a| a[a.iter().position(|x| x == "--to").unwrap() + 1].clone())
                .unwrap_or_else(|| panic!("{manifest}: no install step"));
            for c in containers(spec) {
                if let Some(preload) = env_value(c, "LD_PRELOAD") {
                    assert_eq!(preload, format!("{to}/$LIB/liblogtap.so"), "{manifest}");
                    apps += 1;
                }
            }
        }
    }
    assert!(apps >= 4, "{apps}");
    let docs = yaml_documents(&repo_file("deploy/kubernetes/sidecar.yaml"));
    let alpine = containers(pod_spec(find_object(&docs, "Deployment", "redis-alpine")).unwrap())
        .into_iter()
        .find(|c| c["name"] == "app")
        .unwrap();
    assert!(alpine["image"].as_str().unwrap().contains("alpine"));
    assert_eq!(
        env_value(alpine, "LD_PRELOAD"),
        Some("/logtap/$LIB/liblogtap.so")
    );
}

#[test]
fn every_container_is_locked_down_and_bounded() {
    for manifest in WORKLOADS {
        let docs = yaml_documents(&repo_file(manifest));
        let mut pods = 0;
        for doc in &docs {
            let Some(spec) = pod_spec(doc) else { continue };
            pods += 1;
            assert_eq!(
                spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{manifest}"
            );
            assert_eq!(
                spec["automountServiceAccountToken"], false,
                "{manifest}: no API access needed"
            );
            assert!(
                spec["terminationGracePeriodSeconds"].as_u64().is_some(),
                "{manifest}"
            );
            for c in containers(spec) {
                let what = format!("{manifest}: container {}", c["name"]);
                let sc = &c["securityContext"];
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(
                    sc["capabilities"]["drop"],
                    serde_json::json!(["ALL"]),
                    "{what}"
                );
                assert!(
                    c["resources"]["limits"]["memory"].is_string(),
                    "{what}: memory limit"
                );
                assert!(
                    c["resources"]["requests"]["cpu"].is_string(),
                    "{what}: cpu request"
                );
                // Only the DaemonSet agent needs uid 0 (a root-owned hostPath), and says so.
                let root = sc["runAsUser"] == 0;
                assert!(
                    !root
                        || (*manifest == "deploy/kubernetes/daemonset.yaml"
                            && sc["runAsNonRoot"] == false),
                    "{what} runs as root"
                );
                if !root && *manifest != "deploy/kubernetes/daemonset.yaml" {
                    assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{what}");
                }
            }
        }
        assert!(pods > 0, "{manifest} has no pod template");
    }
}

#[test]
fn agents_are_probed_on_their_http_port_and_stop_within_the_grace_period() {
    for (manifest, _, config) in CONFIGMAPS {
        let toml = std::fs::read_to_string(repo_file(config)).unwrap();
        let http = toml_value(&toml, "http_listen").expect("http_listen in the config");
        assert!(
            http.starts_with("0.0.0.0:"),
            "{config}: probes reach the pod IP, not 127.0.0.1"
        );
        let port: u64 = http.rsplit(':').next().unwrap().parse().unwrap();
        let grace = toml_value(&toml, "grace").expect("grace in the config");
        let grace_s: u64 = grace
            .trim_end_matches('s')
            .parse()
            .expect("grace in whole seconds");
        for doc in yaml_documents(&repo_file(manifest)) {
            let Some(spec) = pod_spec(&doc) else { continue };
            assert!(
                spec["terminationGracePeriodSeconds"].as_u64().unwrap() > grace_s,
                "{manifest}: the kubelet must wait longer than the agent's grace ({grace})"
            );
            let agent = containers(spec).into_iter().find(|c| is_agent(c)).unwrap();
            let port_name = agent["ports"][0]["name"].as_str().unwrap();
            assert_eq!(
                agent["ports"][0]["containerPort"].as_u64(),
                Some(port),
                "{manifest}"
            );
            for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
                assert_eq!(agent[probe]["httpGet"]["path"], path, "{manifest} {probe}");
                assert_eq!(
                    agent[probe]["httpGet"]["port"], port_name,
                    "{manifest} {probe}"
                );
            }
        }
    }
}

#[test]
fn native_sidecars_start_after_the_install_and_before_the_app() {
    for manifest in [
        "deploy/kubernetes/sidecar.yaml",
        "deploy/kubernetes/tap-file.yaml",
    ] {
        for doc in yaml_documents(&repo_file(manifest)) {
            let Some(spec) = pod_spec(&doc) else { continue };
            let init = spec["initContainers"].as_array().unwrap();
            assert_eq!(
                strings(&init[0]["args"])[0],
                "install",
                "{manifest}: install first"
            );
            assert!(
                init[0]["restartPolicy"].is_null(),
                "{manifest}: install runs once"
            );
            assert!(is_agent(&init[1]), "{manifest}: then the agent");
            assert_eq!(
                init[1]["restartPolicy"], "Always",
                "{manifest}: as a native sidecar"
            );
            // The kubelet starts the app only after the sidecar's startupProbe passed.
            assert_eq!(
                init[1]["startupProbe"]["httpGet"]["path"], "/readyz",
                "{manifest}"
            );
            assert!(
                spec["containers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|c| !is_agent(c))
            );
        }
    }
    let classic = yaml_documents(&repo_file("deploy/kubernetes/sidecar-classic.yaml"));
    let spec = pod_spec(find_object(&classic, "Deployment", "clock-classic")).unwrap();
    assert!(
        spec["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| !is_agent(c))
    );
    assert!(spec["containers"].as_array().unwrap().iter().any(is_agent));
}

#[test]
fn the_tap_file_example_taps_and_suppresses_the_access_log() {
    let docs = yaml_documents(&repo_file("deploy/kubernetes/tap-file.yaml"));
    let spec = pod_spec(find_object(&docs, "Deployment", "web")).unwrap();
    let nginx = containers(spec)
        .into_iter()
        .find(|c| c["name"] == "nginx")
        .unwrap();
    assert_eq!(
        env_value(nginx, "LLT_TAP_FILE"),
        Some("/var/log/nginx/access.log")
    );
    assert_eq!(env_value(nginx, "LLT_SUPPRESS_TAP_FILE"), Some("true"));
    let conf = find_object(&docs, "ConfigMap", "web-nginx")["data"]["nginx.conf"]
        .as_str()
        .unwrap();
    assert!(conf.contains("access_log /var/log/nginx/access.log main;"));
    // The emptyDir on /var/log/nginx hides the image's access.log -> /dev/stdout link.
    let mounts = nginx["volumeMounts"].as_array().unwrap();
    assert!(mounts.iter().any(|m| m["mountPath"] == "/var/log/nginx"));
    let image = nginx["image"].as_str().unwrap();
    assert!(
        !image.contains("alpine"),
        "musl images cannot load liblogtap.so: {image}"
    );
}

#[test]
fn the_compose_file_refers_to_what_exists() {
    let compose_path = repo_file("deploy/docker-compose.yaml");
    let base = compose_path.parent().unwrap();
    let docs = yaml_documents(&compose_path);
    assert_eq!(docs.len(), 1);
    let compose = &docs[0];
    let services = compose["services"].as_object().expect("services");
    let volumes: BTreeSet<&str> = compose["volumes"]
        .as_object()
        .expect("top-level volumes")
        .keys()
        .map(String::as_str)
        .collect();
    for name in [
        "logtap-install",
        "logtap",
        "clock",
        "fluentd",
        "logtap-fluentd",
        "clock-fluentd",
    ] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    for (name, svc) in services {
        assert!(svc["image"].is_string(), "{name}: image");
        if let Some(build) = svc["build"].as_object() {
            let context = base.join(build["context"].as_str().unwrap());
            assert!(
                context.is_dir(),
                "{name}: build context {} missing",
                context.display()
            );
            let dockerfile = context.join(build["dockerfile"].as_str().unwrap());
            assert!(
                dockerfile.is_file(),
                "{name}: {} missing",
                dockerfile.display()
            );
        }
        let mounts = if svc["volumes"].is_null() {
            Vec::new()
        } else {
            strings(&svc["volumes"])
        };
        for mount in mounts {
            let source = mount.split(':').next().unwrap();
            if source.starts_with('.') || source.starts_with('/') {
                assert!(
                    base.join(source).exists(),
                    "{name}: bind mount {source} missing"
                );
            } else {
                assert!(
                    volumes.contains(source),
                    "{name}: volume {source} not declared"
                );
            }
        }
        if let Some(deps) = svc["depends_on"].as_object() {
            for dep in deps.keys() {
                assert!(
                    services.contains_key(dep),
                    "{name} depends on unknown {dep}"
                );
                // A default-profile service must not depend on one that only runs in a profile.
                if svc["profiles"].is_null() {
                    assert!(
                        services[dep]["profiles"].is_null(),
                        "{name} depends on profiled {dep}"
                    );
                }
            }
        }
    }
    // Each app preloads from the shared volume and targets its own agent's socket.
    for (app, agent) in [("clock", "logtap"), ("clock-fluentd", "logtap-fluentd")] {
        let args = strings(&services[agent]["command"]);
        let socket = &args[args.iter().position(|a| a == "--socket").unwrap() + 1];
        let env = &services[app]["environment"];
        assert_eq!(
            env["LLT_TARGET"].as_str(),
            Some(format!("socket:{socket}").as_str()),
            "{app}"
        );
        // `$$`: Compose's escape for the `$LIB` the loader expands.
        assert_eq!(env["LD_PRELOAD"], "/logtap/$$LIB/liblogtap.so", "{app}");
        assert_eq!(
            services[app]["profiles"], services[agent]["profiles"],
            "{app} and {agent} run together"
        );
    }
    assert_eq!(
        strings(&services["logtap-install"]["command"]),
        ["install", "--library-only", "--to", "/logtap"]
    );
    assert_eq!(
        services["fluentd"]["profiles"],
        serde_json::json!(["fluentd"])
    );
    assert!(
        strings(&services["fluentd"]["volumes"])
            .iter()
            .any(|v| v.starts_with("./fluentd/fluent.conf:")),
        "fluentd mounts deploy/fluentd/fluent.conf"
    );
}
