//! Plans shared by several rehearsals: the demo image's layout, and DaemonSet mode (the node agent
//! of daemonset.yaml and the app of daemonset-app.yaml on one "node").

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::pod::*;
use super::rehearsal::{Plan, clock_args};
use super::{PathMap, repo_file, yaml_documents};

/// The demo image puts clock.py at /app/clock.py: map /app to deploy/demo, after checking that
/// the Dockerfile still says so.
pub fn demo_image_paths(map: &mut PathMap) {
    let dockerfile = std::fs::read_to_string(repo_file("deploy/demo/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("\nCOPY clock.py /app/clock.py\n"),
        "deploy/demo/Dockerfile layout changed"
    );
    map.mount("/app", &repo_file("deploy/demo"));
}

/// The node agent of daemonset.yaml and the app of daemonset-app.yaml (writing `ticks` lines),
/// sharing the hostPath directories of one node: `work/host/<path>`.
pub fn daemonset_plan(work: &Path, ticks: usize) -> Plan {
    let ds_docs = yaml_documents(&repo_file("deploy/kubernetes/daemonset.yaml"));
    let ds = pod_spec(&ds_docs, "DaemonSet", "logtap-node");
    let dirs = volume_dirs(ds, work);
    write_configmaps(ds, &ds_docs, &dirs);
    let install = all_containers(ds)
        .find(|c| first_arg_is(c, "install"))
        .expect("install");
    let agent = all_containers(ds)
        .find(|c| first_arg_is(c, "agent"))
        .expect("agent");
    let agent_map = mounts(agent, &dirs);

    let app_docs = yaml_documents(&repo_file("deploy/kubernetes/daemonset-app.yaml"));
    let app_spec = pod_spec(&app_docs, "Deployment", "clock-node");
    let app_dirs = volume_dirs(app_spec, work);
    let app = all_containers(app_spec)
        .find(|c| c["name"] == "app")
        .expect("app");
    let mut app_map = mounts(app, &app_dirs);
    demo_image_paths(&mut app_map);
    let app_env = env(app, &app_map, "clock-node");
    let mut app_argv = argv(app, &app_map);
    app_argv.extend(clock_args(ticks, &app_env));
    Plan {
        install: argv(install, &mounts(install, &dirs)),
        library: PathBuf::from(
            &app_env
                .iter()
                .find(|(k, _)| k == "LD_PRELOAD")
                .expect("LD_PRELOAD")
                .1,
        ),
        agent_args: argv(agent, &agent_map),
        agent_env: env(agent, &agent_map, "logtap-node-x7k2p"),
        probes: probes(agent),
        app_argv,
        app_env,
        grace: Duration::from_secs(
            ds["terminationGracePeriodSeconds"]
                .as_u64()
                .expect("grace period"),
        ),
    }
}
