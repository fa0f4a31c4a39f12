//! The systemd service, beyond `systemd-analyze` (deploy_lint.rs):
//!
//! - readiness: the unit is `Type=notify`, and the agent sends `READY=1` to `$NOTIFY_SOCKET`
//!   only once its tap socket listens — so a tapped service ordered `After=` it finds the socket;
//! - its name: under the unit's `ProcSubset=pid`, `/proc/sys` is hidden, and the agent must still
//!   know the machine's hostname (`self_hostname` in the Forward handshake, `host` in records).
//!   Shown with a proc mounted `subset=pid` — what systemd does for `ProcSubset=pid` — in a
//!   private mount and UTS namespace (skipped, with the reason, where not permitted);
//! - for real, as a transient unit (`systemd-run`) with the unit's own settings, where systemd
//!   is PID 1 (skipped otherwise, with the reason).

mod deploy_support;

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use deploy_support::*;
use logtap_tests::artifacts::{TempDir, logtap_bin};

/// Whether a `SOCK_SEQPACKET` connection to `path` (the tap socket) is accepted by the kernel.
fn seqpacket_connects(path: &std::path::Path) -> bool {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all-zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return false;
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return false;
    }
    // SAFETY: `fd` is new and owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    unsafe { libc::connect(sock.as_raw_fd(), (&raw const addr).cast(), len) == 0 }
}

fn unit_lines() -> Vec<String> {
    std::fs::read_to_string(repo_file("deploy/systemd/logtap-agent.service"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_unit_waits_for_readiness_and_tapped_services_start_after_it() {
    let unit = unit_lines();
    assert!(
        unit.iter().any(|l| l == "Type=notify"),
        "logtap-agent.service must be Type=notify: with Type=exec the start job ends before the \
         socket exists, and a service ordered After= it starts without the agent"
    );
    assert!(!unit.iter().any(|l| l == "NotifyAccess=none"));
    let dropin =
        std::fs::read_to_string(repo_file("deploy/systemd/tap-existing-service.conf")).unwrap();
    assert!(dropin.lines().any(|l| l == "After=logtap-agent.service"));
    assert!(
        dropin
            .lines()
            .any(|l| l == "Environment=LLT_TARGET_1STCONNECT=0")
    );
}

#[test]
fn the_agent_says_ready_only_once_its_socket_listens() {
    let dir = TempDir::new("systemd-notify");
    let notify = dir.path().join("notify");
    let receiver = UnixDatagram::bind(&notify).unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let socket = dir.path().join("tap.sock");
    let mut agent = Command::new(logtap_bin())
        .args([
            "agent",
            "--output",
            "null",
            "--http-listen",
            "off",
            "--socket",
        ])
        .arg(&socket)
        .env("NOTIFY_SOCKET", &notify)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 256];
    let message = loop {
        match receiver.recv(&mut buf) {
            Ok(n) => break Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("recv: {e}"),
        }
        if Instant::now() > deadline || agent.try_wait().unwrap().is_some() {
            break None;
        }
    };
    // What a unit started After= the agent would do first: connect to the socket.
    let listening = seqpacket_connects(&socket);
    let _ = Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status();
    let status = agent.wait().unwrap();
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut agent.stderr.take().unwrap(), &mut stderr);
    assert_eq!(
        message.as_deref(),
        Some("READY=1"),
        "no READY=1 on NOTIFY_SOCKET within 20 s (Type=notify would time out)\n{stderr}"
    );
    assert!(
        listening,
        "READY=1 came before the socket listened\n{stderr}"
    );
    assert!(status.success(), "{status}\n{stderr}");
}

#[test]
fn the_agent_knows_its_hostname_where_proc_sys_is_hidden() {
    const NAME: &str = "logtap-procsubset-test";
    // A fresh UTS namespace with its own hostname, and a proc that shows processes only, as
    // systemd mounts it for ProcSubset=pid.
    let script = format!(
        "hostname {NAME} && mount -t proc -o subset=pid proc /proc && \
         test ! -e /proc/sys/kernel/hostname && exec \"$1\" check --offline --output null"
    );
    let out = run_bounded(
        Command::new("unshare")
            .args(["--mount", "--uts", "--propagation", "private", "sh", "-c"])
            .arg(&script)
            .arg("sh")
            .arg(logtap_bin())
            .env_remove("HOSTNAME"),
        Duration::from_secs(60),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() && !text.contains("self_hostname") {
        let reason = format!(
            "a private mount+UTS namespace with proc subset=pid is not permitted here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        println!("SKIPPED: {reason}");
        eprintln!("SKIPPED: {reason}");
        return;
    }
    assert_success("logtap check under ProcSubset=pid", &out);
    assert!(
        text.lines()
            .any(|l| l == format!("self_hostname = \"{NAME}\"")),
        "the agent must name itself {NAME} (uname), not localhost:\n{text}"
    );
}

/// The `[Service]` settings of the unit that a transient unit can take as they are.
fn service_properties(runtime_dir: &str) -> Vec<String> {
    let mut in_service = false;
    let mut props = Vec::new();
    for line in unit_lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_service = line == "[Service]";
            continue;
        }
        if !in_service || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split('=').next().unwrap_or("");
        // Paths and identities of a real installation are replaced below.
        if matches!(
            key,
            "ExecStart"
                | "User"
                | "Group"
                | "EnvironmentFile"
                | "RuntimeDirectory"
                | "RuntimeDirectoryPreserve"
                | "StateDirectory"
                | "ConfigurationDirectory"
                | "Restart"
                | "RestartSec"
        ) {
            continue;
        }
        props.push(line.to_owned());
    }
    props.push(format!("RuntimeDirectory={runtime_dir}"));
    props.push("DynamicUser=yes".to_owned());
    props
}

#[test]
fn the_unit_runs_for_real_as_a_transient_service_where_systemd_is_pid_1() {
    let pid1 = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    if pid1.trim() != "systemd" || !std::path::Path::new("/run/systemd/system").is_dir() {
        let reason = format!(
            "PID 1 is `{}`, not systemd: no transient unit can be started here",
            pid1.trim()
        );
        println!("SKIPPED: {reason}");
        eprintln!("SKIPPED: {reason}");
        return;
    }
    let name = format!("logtap-test-{}", std::process::id());
    let socket = format!("/run/{name}/logtap.sock");
    // The binary must be readable by the dynamic user: a copy in a world-readable place.
    let dir = TempDir::new("systemd-run");
    let bin = dir.path().join("logtap");
    std::fs::copy(logtap_bin(), &bin).unwrap();
    let mut cmd = Command::new("systemd-run");
    cmd.arg(format!("--unit={name}")).arg("--quiet");
    for p in service_properties(&name) {
        cmd.arg(format!("--property={p}"));
    }
    cmd.arg("--")
        .arg(&bin)
        .args([
            "agent",
            "--output",
            "null",
            "--http-listen",
            "off",
            "--socket",
        ])
        .arg(&socket);
    // With Type=notify, systemd-run returns once the start job is done: after READY=1.
    let started = run_bounded(&mut cmd, Duration::from_secs(120));
    let stop = || {
        let _ = Command::new("systemctl").args(["stop", &name]).status();
        let _ = Command::new("systemctl")
            .args(["reset-failed", &name])
            .status();
    };
    let listening = seqpacket_connects(std::path::Path::new(&socket));
    let state = run_bounded(
        Command::new("systemctl").args(["show", "-p", "ActiveState", "-p", "Result", &name]),
        Duration::from_secs(30),
    );
    stop();
    assert_success("systemd-run of the agent's unit settings", &started);
    assert!(
        listening,
        "the start job ended before {socket} listened:\n{}",
        String::from_utf8_lossy(&state.stdout)
    );
    let state = String::from_utf8_lossy(&state.stdout);
    assert!(state.contains("ActiveState=active"), "{state}");
}
