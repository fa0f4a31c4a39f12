//! deploy/kubernetes/tap-file.yaml rehearsed without a cluster, with Debian's real nginx: the
//! manifest's nginx.conf (from its ConfigMap), the manifest's env (`LLT_TAP_FILE`,
//! `LLT_SUPPRESS_TAP_FILE`, `LD_PRELOAD` of the library the init container copied) and the
//! manifest's logtap sidecar. Requests to nginx must arrive at "Fluentd" as `file` records of the
//! access log, nginx's error log (stderr) as `stderr` records, and the access log on "disk" (the
//! emptyDir) must stay empty: tapped and suppressed.
//!
//! Substitutions beyond those of `deploy_support::rehearsal`: nginx listens on a free local port
//! instead of 8080, serves a temporary html directory, and runs with `user root` because the test
//! runs as root (in the pod, nginx's master and workers share uid 101 and the pod's fsGroup, which
//! is what lets the workers reach the agent's 0660 socket; `user root` keeps them one identity
//! here too). Needs `nginx` (Debian's nginx-light; `.ci/run` installs it).

mod deploy_support;

use std::path::Path;
use std::time::Duration;

use deploy_support::pod::*;
use deploy_support::rehearsal::{Plan, Proc, Rehearsal, Sink, eventually};
use deploy_support::*;
use logtap_tests::artifacts::{PORT_ATTEMPTS, TempDir, candidate_port, says_address_in_use};

const REQUESTS: usize = 5;

struct NginxPlan {
    plan: Plan,
    port: u16,
    access_log: std::path::PathBuf,
}

fn nginx_plan(work: &Path) -> NginxPlan {
    let docs = yaml_documents(&repo_file("deploy/kubernetes/tap-file.yaml"));
    let spec = pod_spec(&docs, "Deployment", "web");
    let dirs = volume_dirs(spec, work);
    write_configmaps(spec, &docs, &dirs);
    let install = all_containers(spec)
        .find(|c| first_arg_is(c, "install"))
        .expect("install");
    let agent = all_containers(spec)
        .find(|c| first_arg_is(c, "agent"))
        .expect("agent");
    let nginx = all_containers(spec)
        .find(|c| c["name"] == "nginx")
        .expect("nginx");
    let agent_map = mounts(agent, &dirs);
    let nginx_map = mounts(nginx, &dirs);

    // The manifest's nginx.conf, already rewritten to the pod's volumes; only the port and the
    // image's html directory are the test's.
    let conf = nginx_map.rewrite("/etc/nginx/nginx.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let html = work.join("html");
    std::fs::create_dir_all(&html).unwrap();
    std::fs::write(html.join("index.html"), "<h1>tapped</h1>\n").unwrap();
    // A candidate: the test starts nginx again on another if this one is taken meanwhile.
    let port = candidate_port();
    for (from, to) in [
        ("listen 8080;", format!("listen 127.0.0.1:{port};")),
        (
            "root /usr/share/nginx/html;",
            format!("root {};", html.display()),
        ),
    ] {
        assert!(
            text.contains(from),
            "tap-file.yaml's nginx.conf no longer has `{from}`"
        );
        std::fs::write(
            &conf,
            std::fs::read_to_string(&conf).unwrap().replace(from, &to),
        )
        .unwrap();
    }

    let app_env = env(nginx, &nginx_map, "web");
    let access_log = nginx_map.rewrite("/var/log/nginx/access.log");
    assert!(
        app_env
            .iter()
            .any(|(k, v)| k == "LLT_TAP_FILE" && *v == access_log),
        "LLT_TAP_FILE is the access log: {app_env:?}"
    );
    let library = app_env
        .iter()
        .find(|(k, _)| k == "LD_PRELOAD")
        .expect("LD_PRELOAD")
        .1
        .clone();
    // The image's CMD is `nginx -g 'daemon off;'` with /etc/nginx/nginx.conf.
    assert!(
        nginx["command"].is_null() && nginx["args"].is_null(),
        "the image's own command runs"
    );
    let app_argv = [
        "nginx",
        "-e",
        "stderr",
        "-c",
        &conf,
        "-g",
        "daemon off; user root;",
    ]
    .map(str::to_owned)
    .to_vec();
    NginxPlan {
        plan: Plan {
            install: argv(install, &mounts(install, &dirs)),
            library: library.into(),
            agent_args: argv(agent, &agent_map),
            agent_env: env(agent, &agent_map, "web"),
            probes: probes(agent),
            app_argv,
            app_env,
            grace: Duration::from_secs(spec["terminationGracePeriodSeconds"].as_u64().unwrap()),
        },
        port,
        access_log: access_log.into(),
    }
}

#[test]
fn nginx_access_log_is_tapped_suppressed_and_shipped() {
    let work = TempDir::new("deploy-tapfile");
    let NginxPlan {
        plan,
        mut port,
        access_log,
    } = nginx_plan(work.path());
    let rehearsal = Rehearsal::start(&plan, Sink::Forward);

    let nginx_bin = which("nginx");
    let conf = plan.app_argv[plan.app_argv.iter().position(|a| a == "-c").unwrap() + 1].clone();
    let mut attempt = 1;
    let mut nginx = loop {
        let mut nginx = Proc::spawn("nginx", &nginx_bin, &plan.app_argv[1..], &plan.app_env);
        let up = eventually(Duration::from_secs(20), || {
            http_status(port, "/healthz") == Some(200) || nginx.exited().is_some()
        });
        if up && nginx.exited().is_none() {
            break nginx;
        }
        // Taken between the choice and nginx's bind: another port.
        assert!(
            attempt < PORT_ATTEMPTS && says_address_in_use(&nginx.dump()),
            "nginx does not answer on {port}\n{}",
            nginx.dump()
        );
        attempt += 1;
        let next = candidate_port();
        let text = std::fs::read_to_string(&conf).unwrap();
        let text = text.replace(
            &format!("listen 127.0.0.1:{port};"),
            &format!("listen 127.0.0.1:{next};"),
        );
        std::fs::write(&conf, text).unwrap();
        port = next;
    };
    for i in 1..=REQUESTS {
        assert_eq!(http_status(port, &format!("/?request={i}")), Some(200));
    }

    // As in the pod: the app stops first (SIGTERM), the sidecar after it.
    let is_access = |r: &serde_json::Value| r["stream"] == "file";
    let enough =
        |records: &[serde_json::Value]| records.iter().filter(|r| is_access(r)).count() >= REQUESTS;
    eventually(Duration::from_secs(30), || enough(&rehearsal.records()));
    let status = nginx.terminate(Duration::from_secs(10));
    assert!(
        status.success(),
        "nginx did not stop cleanly ({status})\n{}",
        nginx.dump()
    );
    let outcome = rehearsal.finish(&[&nginx], enough);

    let access: Vec<_> = outcome.records.iter().filter(|r| is_access(r)).collect();
    assert_eq!(
        access.len(),
        REQUESTS,
        "one record per request\n{}",
        outcome.log
    );
    // Each nginx worker is its own process with its own ring: records of different workers
    // reach the agent in no fixed order, so the requests are compared as a set.
    let mut seen: Vec<usize> = access
        .iter()
        .map(|r| {
            let m = r["message"].as_str().unwrap();
            let n = m
                .split("\"GET /?request=")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not an access-log line of ours: {m}"));
            assert!(m.contains(" HTTP/1.0\" 200 "), "{m}");
            n
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=REQUESTS).collect::<Vec<_>>(),
        "every request exactly once"
    );
    for r in &access {
        assert_eq!(
            r["file"].as_str(),
            Some(access_log.to_str().unwrap()),
            "{r}"
        );
        assert_eq!(r["container_name"], "nginx", "{r}");
        assert_eq!(r["pod_name"], "web", "{r}");
    }
    // /healthz has `access_log off`: never a record.
    assert!(
        !outcome
            .records
            .iter()
            .any(|r| r["message"].as_str().unwrap_or("").contains("/healthz"))
    );
    // error_log stderr notice: nginx's start-up notices arrive as stderr records.
    assert!(
        outcome.records.iter().any(|r| r["stream"] == "stderr"),
        "no stderr record\n{}",
        outcome.log
    );
    // Suppressed: nginx opened the file, and not one byte reached it.
    let size = std::fs::metadata(&access_log).map(|m| m.len());
    assert_eq!(
        size.ok(),
        Some(0),
        "{} must exist and be empty",
        access_log.display()
    );
}

fn which(program: &str) -> std::path::PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(program);
        if p.is_file() {
            return p;
        }
    }
    panic!("{program} not found: install Debian's nginx-light (.ci/run does)");
}
