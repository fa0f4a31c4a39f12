//! Prove-it 1: `python3` printing to stdout and stderr under the real library — exact bytes,
//! right stream, right pid, non-decreasing timestamps — with the ring and with DATA frames.

mod interceptor_support;

use interceptor_support::*;

const SCRIPT: &str = r#"
import os, sys
print("pid", os.getpid(), flush=True)
for i in range(200):
    print(f"out line {i} \u00e9\u00e8")
    print(f"err line {i}", file=sys.stderr)
sys.stdout.write("no newline at the end")
"#;

fn python_prints(transport: Transport) {
    let s = Setup::new("python", transport);
    let mut cmd = s.command(python());
    cmd.args(["-c", SCRIPT]).env("LLT_TAP_INTO", "3");
    let out = run(cmd, LIMIT);
    assert_ok(&out);
    // The app's own output is untouched.
    let expected_out: String = std::iter::once(String::new())
        .chain((0..200).map(|i| format!("out line {i} \u{e9}\u{e8}\n")))
        .collect::<String>()
        + "no newline at the end";
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let (first, rest) = stdout.split_once('\n').unwrap();
    let pid: u32 = first.strip_prefix("pid ").unwrap().parse().unwrap();
    assert_eq!(rest, expected_out.trim_start_matches('\n'));

    let want_out = stdout.as_bytes().to_vec();
    let want_err = out.stderr.clone();
    assert!(
        s.receiver
            .wait_for(SETTLE, |c| c.bytes(Some(pid), STDOUT).len()
                >= want_out.len()
                && c.bytes(Some(pid), STDERR).len() >= want_err.len()),
        "not everything arrived: {:?}\nstderr: {}",
        s.receiver.snapshot(),
        String::from_utf8_lossy(&out.stderr)
    );
    let c = s.receiver.snapshot();
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    assert_eq!(c.bytes(Some(pid), STDOUT), want_out, "stdout bytes differ");
    assert_eq!(c.bytes(Some(pid), STDERR), want_err, "stderr bytes differ");
    assert!(
        c.records.iter().all(|r| r.pid == pid),
        "a record with a foreign pid"
    );
    assert!(c.hello_pids().contains(&pid), "no HELLO from {pid}");
    let times: Vec<u64> = c.records.iter().map(|r| r.time_ns).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "timestamps go backwards"
    );
    let (_, hello, with_fds) = c.hellos.iter().find(|(_, h, _)| h.pid == pid).unwrap();
    assert_eq!(hello.ring, transport == Transport::Ring);
    assert_eq!(*with_fds, transport == Transport::Ring);
    let via_ring = transport == Transport::Ring;
    assert!(
        c.records
            .iter()
            .all(|r| (r.via == logtap_tests::tap_receiver::Via::Ring) == via_ring)
    );
}

#[test]
fn python_stdout_and_stderr_ring() {
    python_prints(Transport::Ring);
}

#[test]
fn python_stdout_and_stderr_socket() {
    python_prints(Transport::Socket);
}
