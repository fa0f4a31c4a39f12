//! Who owns the tap socket: a socket a live agent listens on is refused (exit 2, the live agent
//! keeps it), a stale one (its agent killed) is replaced, and an agent that stops removes the
//! socket file only if it is still the one it created.

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::{Duration, Instant};

use logtap_tests::agent_harness::Agent;
use logtap_tests::artifacts;
use logtap_tests::fault::tap_socket_accepts;

fn agent_on(socket: &std::path::Path) -> std::process::Child {
    let child = Command::new(artifacts::logtap_bin())
        .arg("agent")
        .arg("--socket")
        .arg(socket)
        .args(["--http-listen", "off", "--output", "null"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tap_socket_accepts(socket) {
        assert!(Instant::now() < deadline, "the agent did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

fn stop(mut child: std::process::Child) {
    // SAFETY: kill has no memory effects; our live child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_live_socket_is_refused_with_exit_2() {
    let first = Agent::start("own-live", &[]);
    let out = Command::new(artifacts::logtap_bin())
        .arg("agent")
        .arg("--socket")
        .arg(&first.socket)
        .args(["--http-listen", "off"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("is in use: another logtap agent is listening on it"),
        "{err}"
    );
    assert!(
        tap_socket_accepts(&first.socket),
        "the first agent keeps it"
    );
}

#[test]
fn a_stale_socket_is_replaced_and_only_ones_own_socket_is_removed() {
    let dir = artifacts::TempDir::new("own-stale");
    let socket = dir.path().join("tap.sock");
    // A killed agent leaves its socket behind: stale, replaced by the next one.
    let mut killed = agent_on(&socket);
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(socket.exists() && !tap_socket_accepts(&socket));
    let a = agent_on(&socket);
    // Someone removes A's socket and starts B on the path: when A stops, B's stays.
    std::fs::remove_file(&socket).unwrap();
    let b = agent_on(&socket);
    let b_inode = std::fs::metadata(&socket).unwrap().ino();
    stop(a);
    assert_eq!(
        std::fs::metadata(&socket).map(|m| m.ino()).ok(),
        Some(b_inode),
        "A left B's socket alone"
    );
    assert!(tap_socket_accepts(&socket));
    stop(b);
    assert!(!socket.exists(), "B removed its own");
}
