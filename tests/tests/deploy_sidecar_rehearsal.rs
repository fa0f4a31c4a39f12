//! The Kubernetes manifests rehearsed without a cluster: the test reads each pod template from
//! the YAML itself and runs what the kubelet would run — the init container's `logtap install`,
//! the agent with the manifest's args and env, the app with the manifest's command and env
//! (`LD_PRELOAD` of the library the init step copied) — and checks that the app's lines arrive at
//! "Fluentd" as records with the pod's metadata. A manifest that drifts (a wrong path, a
//! misspelt flag, a socket the app does not find) breaks this test.
//!
//! Substitutions (see `deploy_support::rehearsal`): volumes are temporary directories, Fluentd is
//! the tests' Forward server with acks, the HTTP port is a free local one, the Downward API
//! gives fixed values, and the demo app stops after 10 lines.

mod deploy_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use deploy_support::plans::{daemonset_plan, demo_image_paths};
use deploy_support::pod::*;
use deploy_support::rehearsal::{Plan, Sink, assert_clock_records, clock_args, rehearse};
use deploy_support::*;
use logtap_tests::artifacts::TempDir;
use serde_json::Value;

/// Lines the demo app writes in the rehearsal (two of them trigger a stderr line).
const TICKS: usize = 10;

/// The plan of a pod with init container, agent and app (native or classic sidecar).
fn sidecar_plan(manifest: &str, deployment: &str, work: &Path) -> Plan {
    let docs = yaml_documents(&repo_file(manifest));
    let spec = pod_spec(&docs, "Deployment", deployment);
    let dirs = volume_dirs(spec, work);
    write_configmaps(spec, &docs, &dirs);
    let install = all_containers(spec)
        .find(|c| first_arg_is(c, "install"))
        .expect("an install init container");
    let agent = all_containers(spec)
        .find(|c| first_arg_is(c, "agent"))
        .expect("an agent container");
    let app = all_containers(spec)
        .find(|c| c["name"] == "app")
        .expect("the app container");
    let agent_map = mounts(agent, &dirs);
    let mut app_map = mounts(app, &dirs);
    demo_image_paths(&mut app_map);
    let app_env = env(app, &app_map, deployment);
    let library = PathBuf::from(
        &app_env
            .iter()
            .find(|(k, _)| k == "LD_PRELOAD")
            .expect("LD_PRELOAD")
            .1,
    );
    let mut app_argv = argv(app, &app_map);
    app_argv.extend(clock_args(TICKS, &app_env));
    Plan {
        install: argv(install, &mounts(install, &dirs)),
        library,
        agent_args: argv(agent, &agent_map),
        agent_env: env(agent, &agent_map, deployment),
        probes: probes(agent),
        app_argv,
        app_env,
        grace: Duration::from_secs(
            spec["terminationGracePeriodSeconds"]
                .as_u64()
                .expect("grace period"),
        ),
    }
}

fn assert_pod_metadata(records: &[Value], pod: &str, log: &str) {
    for r in records {
        assert_eq!(r["pod_name"], pod, "{r}\n{log}");
        assert_eq!(r["namespace"], NAMESPACE, "{r}");
        assert_eq!(r["container_name"], "app", "{r}");
        assert_eq!(r["node_name"], NODE, "{r}");
    }
}

#[test]
fn native_sidecar_pod_ships_the_apps_lines_to_fluentd() {
    let work = TempDir::new("deploy-sidecar");
    let plan = sidecar_plan("deploy/kubernetes/sidecar.yaml", "clock", work.path());
    let outcome = rehearse(&plan, Sink::Forward, TICKS + TICKS / 5);
    assert_clock_records(&outcome, TICKS);
    assert_pod_metadata(&outcome.records, "clock", &outcome.log);
}

#[test]
fn classic_sidecar_pod_ships_the_apps_lines_to_fluentd() {
    let work = TempDir::new("deploy-classic");
    let plan = sidecar_plan(
        "deploy/kubernetes/sidecar-classic.yaml",
        "clock-classic",
        work.path(),
    );
    let outcome = rehearse(&plan, Sink::Forward, TICKS + TICKS / 5);
    assert_clock_records(&outcome, TICKS);
    assert_pod_metadata(&outcome.records, "clock-classic", &outcome.log);
}

#[test]
fn daemonset_agent_ships_a_node_apps_lines_to_fluentd() {
    let work = TempDir::new("deploy-daemonset");
    let plan = daemonset_plan(work.path(), TICKS);
    let outcome = rehearse(&plan, Sink::Forward, TICKS + TICKS / 5);
    assert_clock_records(&outcome, TICKS);
    for r in &outcome.records {
        assert_eq!(r["node_name"], NODE, "{r}");
    }
}

/// One node agent serves many pods: each record must name the pod that wrote it, which the agent
/// can only learn from the tapped process (its Downward-API env, sent in HELLO `meta`).
#[test]
fn daemonset_records_name_the_app_pod_not_the_agent_pod() {
    let work = TempDir::new("deploy-daemonset-meta");
    let plan = daemonset_plan(work.path(), TICKS);
    let outcome = rehearse(&plan, Sink::Forward, TICKS + TICKS / 5);
    assert_pod_metadata(&outcome.records, "clock-node", &outcome.log);
    // The rehearsal's app runs in no container the agent could look up in the kubelet's
    // /var/log/containers: with peer_meta = "verify" its names are kept as claims, marked.
    for r in &outcome.records {
        assert_eq!(r["meta_claimed"], true, "{r}");
        assert!(
            !r["tag"].as_str().unwrap_or("").contains("clock-node"),
            "a claim never reaches the tag: {r}"
        );
    }
}
