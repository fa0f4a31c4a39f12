//! Who a tap peer is comes from the kernel, not from its HELLO (README "Trust model"): the real
//! `logtap agent`, real programs under the real `liblogtap.so`, and fake peers
//! ([`TapClient`]) where a lie must be told byte for byte.
//!
//! - a HELLO claiming another pid is dropped and counted; real processes are served;
//! - with `--peer-meta verify` (DaemonSet), `POD_NAMESPACE=kube-system` never becomes an
//!   unmarked record: replaced by the kubelet's names when the container is known, else marked
//!   `meta_claimed` and kept out of the tag;
//! - `--socket-uid` / `--socket-gid` refuse other peers at accept;
//! - 600 concurrent tapped processes, the agent started with a soft descriptor limit of 1024:
//!   all held at once, none dropped, none reconnected.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use logtap_protocol::tap::Stream;
use logtap_tests::agent_harness::{Agent, TapClient};
use logtap_tests::artifacts;
use logtap_tests::http::get_local;
use serde_json::Value;

const T0: u64 = 1_700_000_000_000_000_000;
const ID: &str = "9d3f0c6b2a1e4f8d7c5b3a29180f6e5d4c3b2a1908f7e6d5c4b3a2918f0e1d2c";

/// A counter or gauge of the agent's `/metrics` (panics if it is missing).
fn metric(port: u16, name: &str) -> i64 {
    let (status, body) = get_local(port, "/metrics").expect("the agent answers /metrics");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{body}"))
}

/// Waits until `cond` holds (panics with `what` after `limit`).
fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_ok(mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            return;
        }
        assert!(Instant::now() < deadline, "a tapped process did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn with_message<'a>(records: &'a [Value], message: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["message"] == message).collect()
}

#[test]
fn a_hello_claiming_another_pid_is_dropped_and_counted_and_real_processes_are_served() {
    let listen = "127.0.0.1:0";
    let agent = Agent::start_with_env(
        "pid-lie",
        &["--http-listen", listen, "--flush-interval", "50ms"],
        &[("LOGTAP_PEER_PID", "kernel")],
    );
    let port = agent.http_port();
    // The test process claims pid 1, then honestly its own.
    let mut liar = TapClient::connect(&agent.socket, 1);
    liar.hello("liar", None, &[]);
    liar.data(Stream::Stdout, T0, b"I am init\n", false);
    let mut honest = TapClient::connect(&agent.socket, std::process::id());
    honest.hello("honest", None, &[]);
    honest.data(Stream::Stdout, T0, b"I am the test\n", false);
    let child = agent.tapped_shell("echo real process").spawn().unwrap();
    let real_pid = child.id();
    wait_ok(child);
    let records = agent.wait_records(2, Duration::from_secs(10));
    wait_for("the pid mismatch counted", Duration::from_secs(5), || {
        metric(port, "logtap_tap_peers_pid_mismatch_total") == 1
    });
    assert_eq!(metric(port, "logtap_tap_peers_rejected_total"), 1);
    let (status, all) = agent.terminate();
    assert!(status.success());
    assert!(with_message(&all, "I am init").is_empty(), "{records:?}");
    let honest = with_message(&all, "I am the test");
    assert_eq!(honest.len(), 1, "{all:?}");
    assert_eq!(honest[0]["pid"], u64::from(std::process::id()));
    let real = with_message(&all, "real process");
    assert_eq!(real.len(), 1, "{all:?}");
    assert_eq!(real[0]["pid"], u64::from(real_pid));
    assert_eq!(all.len(), 2, "{all:?}");
}

#[test]
fn a_claimed_namespace_is_replaced_by_the_kubelets_or_marked_claimed() {
    let listen = "127.0.0.1:0";
    let root = artifacts::TempDir::new("identity-node");
    let proc_root = root.path().join("proc");
    let containers = root.path().join("containers");
    std::fs::create_dir_all(&containers).unwrap();
    // The kubelet's link for the container the process below runs in.
    std::fs::write(containers.join(format!("web-1_shop_app-{ID}.log")), "").unwrap();
    let agent = Agent::start_configured(
        "identity-verify",
        &[
            "--http-listen",
            listen,
            "--flush-interval",
            "50ms",
            "--peer-meta",
            "verify",
            "--proc-root",
            proc_root.to_str().unwrap(),
            "--containers-dir",
            containers.to_str().unwrap(),
            "--tag",
            "kube.{namespace}.{pod_name}.{container_name}.{stream}",
        ],
        &[("LOGTAP_PEER_PID", "kernel"), ("NODE_NAME", "node-a")],
        |cmd| {
            // A DaemonSet agent knows its node only: no pod names of its own.
            for var in ["POD_NAME", "POD_NAMESPACE", "CONTAINER_NAME"] {
                cmd.env_remove(var);
            }
        },
    );
    let port = agent.http_port();
    let spoof = |cmd: &mut Command| {
        cmd.env("POD_NAMESPACE", "kube-system")
            .env("POD_NAME", "coredns-1")
            .env("CONTAINER_NAME", "coredns")
            .env("NODE_NAME", "node-b");
    };

    // 1. A process whose container the agent knows. It waits for its cgroup file to be in
    //    place (under --proc-root), then execs the tapped program (same pid), which stays
    //    until the test has its record.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!(
            "read go; exec env LD_PRELOAD={} LLT_TARGET=socket:{} LLT_TAP_INTO=3 /bin/sh -c 'echo from a known container; read _ || true'",
            artifacts::liblogtap().display(),
            agent.socket.display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spoof(&mut cmd);
    let mut known = cmd.spawn().unwrap();
    let dir = proc_root.join(known.id().to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let uid = "0c5e7f0a_9b1d_4c2e_8f3a_6b7d9e1f2a3b";
    std::fs::write(
        dir.join("cgroup"),
        format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{ID}.scope\n"
        ),
    )
    .unwrap();
    let mut stdin = known.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();

    // 2. A process the agent cannot place (no cgroup file for it under --proc-root).
    let mut cmd = agent.tapped_shell("echo from nowhere known");
    spoof(&mut cmd);
    wait_ok(cmd.spawn().unwrap());

    let records = agent.wait_records(2, Duration::from_secs(10));
    // The known process lived until its record arrived: a process that exits before the
    // agent accepts its connection cannot be placed (its pidfd is dead), and is marked claimed.
    drop(stdin);
    wait_ok(known);
    let counted = [
        metric(port, "logtap_tap_peers_meta_contradicted_total"),
        metric(port, "logtap_tap_peers_meta_claimed_total"),
    ];
    assert_eq!(counted, [1, 1], "contradicted, claimed: {records:?}");
    let (status, all) = agent.terminate();
    assert!(status.success());
    assert_eq!(all.len(), 2, "{all:?}");

    let verified = with_message(&all, "from a known container");
    assert_eq!(verified.len(), 1, "{all:?}");
    let v = verified[0];
    assert_eq!(v["namespace"], "shop", "{v}");
    assert_eq!(v["pod_name"], "web-1");
    assert_eq!(v["container_name"], "app");
    assert_eq!(v["node_name"], "node-a", "the agent's own node");
    assert_eq!(v["container_id"], ID);
    assert_eq!(v["tag"], "kube.shop.web-1.app.stdout");
    assert!(v.get("meta_claimed").is_none(), "{v}");

    let claimed = with_message(&all, "from nowhere known");
    assert_eq!(claimed.len(), 1, "{all:?}");
    let c = claimed[0];
    assert_eq!(c["meta_claimed"], true, "{c}");
    assert_eq!(c["namespace"], "kube-system", "the claim is kept, marked");
    assert_eq!(c["node_name"], "node-a");
    assert_eq!(c["tag"], "kube....stdout", "a claim never reaches the tag");
    // Every record that says kube-system says it is a claim.
    for r in &all {
        if r["namespace"] == "kube-system" {
            assert_eq!(r["meta_claimed"], true, "{r}");
        }
    }
}

#[test]
fn socket_uid_and_gid_refuse_other_peers_at_accept_and_serve_the_listed() {
    let listen = "127.0.0.1:0";
    let agent = Agent::start_with_env(
        "socket-uid",
        &[
            "--http-listen",
            listen,
            "--flush-interval",
            "50ms",
            // Anyone may connect to the file; the lists decide.
            "--socket-mode",
            "0666",
            "--socket-uid",
            "0",
            "--socket-gid",
            "2020",
        ],
        &[("LOGTAP_PEER_PID", "kernel")],
    );
    let port = agent.http_port();
    // The socket's directory must be reachable by the other uids.
    let mut perms = std::fs::metadata(agent.dir.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(agent.dir.path(), perms).unwrap();

    // The library where uid 65534 can read it: the build's may sit under a 0700 directory
    // (a CI clone in a mktemp -d), and then the loader skips it and the program runs untapped.
    let lib = agent.dir.path().join("liblogtap.so");
    std::fs::copy(artifacts::liblogtap(), &lib).unwrap();
    let mut perms = std::fs::metadata(&lib).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&lib, perms).unwrap();

    let mut outsider = agent.tapped_shell("echo from uid 65534");
    outsider.uid(65534).gid(65534).env("LD_PRELOAD", &lib);
    wait_ok(outsider.spawn().unwrap());
    let mut by_group = agent.tapped_shell("echo from gid 2020");
    by_group.uid(65534).gid(2020).env("LD_PRELOAD", &lib);
    wait_ok(by_group.spawn().unwrap());
    wait_ok(agent.tapped_shell("echo from uid 0").spawn().unwrap());

    agent.wait_records(2, Duration::from_secs(10));
    assert!(metric(port, "logtap_tap_peers_refused_total") >= 1);
    assert_eq!(metric(port, "logtap_tap_peers_rejected_total"), 0);
    let (status, all) = agent.terminate();
    assert!(status.success());
    let messages: Vec<&str> = all.iter().filter_map(|r| r["message"].as_str()).collect();
    assert!(messages.contains(&"from uid 0"), "{messages:?}");
    assert!(messages.contains(&"from gid 2020"), "{messages:?}");
    assert!(!messages.contains(&"from uid 65534"), "{messages:?}");
    assert_eq!(messages.len(), 2, "{messages:?}");
}

/// (soft, hard) `RLIMIT_NOFILE` of a live process, from `/proc/<pid>/limits`.
fn nofile_limits(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut nums = line
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok());
    (nums.next().unwrap(), nums.next().unwrap())
}

#[test]
fn six_hundred_tapped_processes_are_held_at_once_under_a_soft_limit_of_1024() {
    const N: usize = 600;
    let (_, hard) = nofile_limits(std::process::id());
    assert!(
        hard >= 4096,
        "this test needs a hard RLIMIT_NOFILE of at least 4096 (ulimit -Hn), not {hard}"
    );
    let listen = "127.0.0.1:0";
    let agent = Agent::start_configured(
        "six-hundred",
        &["--http-listen", listen, "--flush-interval", "100ms"],
        &[("LOGTAP_PEER_PID", "kernel")],
        |cmd| {
            // SAFETY: setrlimit is async-signal-safe; the closure touches no shared state.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: 1024,
                        rlim_max: hard,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        },
    );
    let port = agent.http_port();
    let agent_pid = agent.child.id();
    assert_eq!(
        nofile_limits(agent_pid),
        (hard, hard),
        "the agent raised its soft limit to the hard one"
    );

    // The barrier: every process blocks reading a pipe until the test closes its write end.
    let (read_end, write_end) = std::io::pipe().unwrap();
    let started = Instant::now();
    let children: Vec<Child> = (0..N)
        .map(|i| {
            agent
                .tapped_shell(&format!("echo \"process {i} up\"; read _ || true"))
                .stdin(read_end.try_clone().unwrap())
                .spawn()
                .unwrap()
        })
        .collect();
    drop(read_end);
    // All connected at the same time, each line delivered while every process still waits.
    wait_for(
        "600 peers connected at once",
        Duration::from_secs(40),
        || metric(port, "logtap_tap_peers") == N as i64,
    );
    let records = agent.wait_records(N, Duration::from_secs(20));
    assert_eq!(metric(port, "logtap_tap_peers"), N as i64, "still all held");
    let held_after = started.elapsed();
    drop(write_end);
    for c in children {
        wait_ok(c);
    }
    wait_for("every peer gone", Duration::from_secs(20), || {
        metric(port, "logtap_tap_peers") == 0
    });
    // Each process connected exactly once: none dropped, none needed to reconnect.
    assert_eq!(metric(port, "logtap_tap_peers_total"), N as i64);
    assert_eq!(metric(port, "logtap_tap_fd_limit_total"), 0);
    assert_eq!(metric(port, "logtap_tap_peers_rejected_total"), 0);
    assert_eq!(metric(port, "logtap_tap_peers_pid_mismatch_total"), 0);
    let (status, all) = agent.terminate();
    assert!(status.success());
    assert!(records.len() >= N);
    let mut seen: Vec<&str> = all.iter().filter_map(|r| r["message"].as_str()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), N, "one line from each process, none twice");
    assert_eq!(all.len(), N);
    eprintln!("600 peers held at once after {held_after:?}");
}

#[test]
fn at_the_descriptor_limit_peers_are_refused_counted_and_the_agent_goes_on() {
    // A hard limit of 1024 cannot be raised: 320 peers fit (3 descriptors each, 64 kept).
    const N: usize = 400;
    let listen = "127.0.0.1:0";
    let agent = Agent::start_configured(
        "fd-limit",
        &["--http-listen", listen, "--flush-interval", "100ms"],
        &[("LOGTAP_PEER_PID", "kernel")],
        |cmd| {
            // SAFETY: setrlimit is async-signal-safe; the closure touches no shared state.
            unsafe {
                cmd.pre_exec(|| {
                    let lim = libc::rlimit {
                        rlim_cur: 1024,
                        rlim_max: 1024,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        },
    );
    let port = agent.http_port();
    assert_eq!(nofile_limits(agent.child.id()), (1024, 1024));
    let (read_end, write_end) = std::io::pipe().unwrap();
    let children: Vec<Child> = (0..N)
        .map(|i| {
            agent
                .tapped_shell(&format!("echo \"process {i} up\"; read _ || true"))
                .env("LLT_TARGET_RECONNECT", "0")
                .stdin(read_end.try_clone().unwrap())
                .spawn()
                .unwrap()
        })
        .collect();
    drop(read_end);
    // At the limit the agent cannot even accept an HTTP connection: watch its descriptors.
    let fds = format!("/proc/{}/fd", agent.child.id());
    wait_for(
        "the agent at its descriptor limit",
        Duration::from_secs(40),
        || std::fs::read_dir(&fds).map_or(0, Iterator::count) >= 1000,
    );
    drop(write_end);
    for c in children {
        wait_ok(c);
    }
    wait_for("every peer gone", Duration::from_secs(20), || {
        metric(port, "logtap_tap_peers") == 0
    });
    assert!(
        metric(port, "logtap_tap_fd_limit_total") > 0,
        "the limit was counted"
    );
    assert_eq!(
        metric(port, "logtap_tap_peers_rejected_total"),
        0,
        "not the peers' fault: counted as the limit only"
    );
    // The agent goes on: a process started now is served.
    wait_ok(agent.tapped_shell("echo after the storm").spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while with_message(&agent.records(), "after the storm").is_empty() {
        assert!(
            Instant::now() < deadline,
            "not served after the limit was reached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _) = agent.terminate();
    assert!(status.success());
}
