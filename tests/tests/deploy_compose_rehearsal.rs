//! deploy/docker-compose.yaml rehearsed without Docker: the test reads the services from the
//! compose file and runs what Compose would run — `logtap-install`, the `logtap` sidecar with its
//! command, environment and config mount, and the `clock` app (the demo image's ENTRYPOINT plus the
//! service's command) with its `LD_PRELOAD` — then reads the sidecar's JSON records, the seed
//! demo's output. The `fluentd` profile's pair is rehearsed the same way, with a local
//! Forward server with acks (the tests' fake Fluentd) standing in for the fluentd container.

mod deploy_support;

use std::path::Path;
use std::time::Duration;

use deploy_support::rehearsal::{Plan, Sink, assert_clock_records, clock_args, rehearse};
use deploy_support::*;
use logtap_tests::artifacts::TempDir;
use serde_json::Value;

const TICKS: usize = 10;

/// The exec-form ENTRYPOINT of a Dockerfile, e.g. `["python3", "/app/clock.py"]`.
fn entrypoint(dockerfile: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dockerfile).unwrap();
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("ENTRYPOINT "))
        .unwrap_or_else(|| panic!("no ENTRYPOINT in {}", dockerfile.display()));
    let json: Value =
        serde_json::from_str(&line["ENTRYPOINT ".len()..]).expect("exec-form ENTRYPOINT");
    strings(&json)
}

/// The service's volumes as a [`PathMap`]: named volumes are directories of `work`; a bind-mounted
/// file (the agent's config) is copied with the container paths in it rewritten, so that its
/// spool directory, say, lands in `work` too.
fn volumes(service: &Value, base: &Path, work: &Path) -> PathMap {
    let mut map = PathMap::new();
    if service["volumes"].is_null() {
        return map;
    }
    let mut files = Vec::new();
    for spec in strings(&service["volumes"]) {
        let mut parts = spec.split(':');
        let (source, target) = (parts.next().unwrap(), parts.next().expect("SOURCE:TARGET"));
        if source.starts_with('.') {
            let host = base.join(source);
            assert!(host.exists(), "bind mount {} missing", host.display());
            if host.is_file() {
                files.push((target.to_owned(), host));
            } else {
                map.mount(target, &host);
            }
        } else {
            let dir = work.join("volumes").join(source);
            std::fs::create_dir_all(&dir).unwrap();
            map.mount(target, &dir);
        }
    }
    for (target, host) in files {
        let copy = work
            .join("binds")
            .join(target.trim_start_matches('/').replace('/', "_"));
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::write(&copy, map.rewrite(&std::fs::read_to_string(&host).unwrap())).unwrap();
        map.mount(&target, &copy);
    }
    map
}

fn environment(service: &Value, map: &PathMap) -> Vec<(String, String)> {
    let Some(env) = service["environment"].as_object() else {
        return Vec::new();
    };
    env.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                // `$$` is Compose's escape for a literal `$` (LD_PRELOAD's `$LIB`).
                map.rewrite(v.as_str().unwrap_or_else(|| panic!("{k}: quote the value")))
                    .replace("$$", "$"),
            )
        })
        .collect()
}

fn compose_plan(agent_service: &str, app_service: &str, work: &Path) -> Plan {
    let path = repo_file("deploy/docker-compose.yaml");
    let base = path.parent().unwrap().to_path_buf();
    let compose = yaml_documents(&path).remove(0);
    let services = &compose["services"];
    let install = &services["logtap-install"];
    let agent = &services[agent_service];
    let app = &services[app_service];

    let install_map = volumes(install, &base, work);
    let agent_map = volumes(agent, &base, work);
    let mut app_map = volumes(app, &base, work);

    // The app runs the demo image's ENTRYPOINT with the service's command as arguments.
    let build = &app["build"];
    let context = base.join(build["context"].as_str().unwrap());
    let dockerfile = context.join(build["dockerfile"].as_str().unwrap());
    let image_text = std::fs::read_to_string(&dockerfile).unwrap();
    assert!(
        image_text.contains("\nCOPY clock.py /app/clock.py\n"),
        "the demo image's layout changed"
    );
    app_map.mount("/app", &context);
    let mut app_argv: Vec<String> = entrypoint(&dockerfile)
        .iter()
        .map(|a| app_map.rewrite(a))
        .collect();
    app_argv.extend(strings(&app["command"]));
    let app_env = environment(app, &app_map);
    app_argv.extend(clock_args(TICKS, &app_env));
    let library = app_env
        .iter()
        .find(|(k, _)| k == "LD_PRELOAD")
        .expect("LD_PRELOAD")
        .1
        .clone();

    // The logtap image's ENTRYPOINT is the logtap binary: commands are its arguments.
    let logtap_entry = entrypoint(&repo_file("deploy/Dockerfile"));
    assert_eq!(logtap_entry, ["/usr/local/bin/logtap"]);
    let grace = agent["stop_grace_period"]
        .as_str()
        .expect("stop_grace_period");
    Plan {
        install: strings(&install["command"])
            .iter()
            .map(|a| install_map.rewrite(a))
            .collect(),
        library: library.into(),
        agent_args: strings(&agent["command"])
            .iter()
            .map(|a| agent_map.rewrite(a))
            .collect(),
        agent_env: environment(agent, &agent_map),
        // Compose has no probes; the readiness endpoint is what an operator would check.
        probes: vec!["/readyz".to_owned()],
        app_argv,
        app_env,
        grace: Duration::from_secs(grace.trim_end_matches('s').parse().expect("whole seconds")),
    }
}

#[test]
fn compose_sidecar_prints_the_apps_lines_as_json_records() {
    let work = TempDir::new("deploy-compose");
    let plan = compose_plan("logtap", "clock", work.path());
    assert!(
        plan.agent_args
            .windows(2)
            .any(|w| w == ["--output", "stdout"]),
        "{:?}",
        plan.agent_args
    );
    let outcome = rehearse(&plan, Sink::AgentStdout, TICKS + TICKS / 5);
    assert_clock_records(&outcome, TICKS);
    // The seed sidecar's fields, with the compose file's metadata.
    for r in &outcome.records {
        for field in [
            "timestamp",
            "pod_name",
            "namespace",
            "message",
            "stream",
            "source",
        ] {
            assert!(!r[field].is_null(), "{field} missing in {r}");
        }
        assert_eq!(r["pod_name"], "clock", "{r}");
        assert_eq!(r["namespace"], "docker-compose", "{r}");
        assert!(r["timestamp"].as_str().unwrap().ends_with('Z'), "{r}");
    }
}

#[test]
fn compose_fluentd_profile_forwards_the_apps_lines() {
    let work = TempDir::new("deploy-compose-fluentd");
    let plan = compose_plan("logtap-fluentd", "clock-fluentd", work.path());
    let outcome = rehearse(&plan, Sink::Forward, TICKS + TICKS / 5);
    assert_clock_records(&outcome, TICKS);
    for r in &outcome.records {
        assert_eq!(r["pod_name"], "clock-fluentd", "{r}");
    }
}
