//! A real `logtap agent` as the consumer, for the "real agent" rows.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cpu::pin_to;

/// A `logtap agent --output null` child with its metrics endpoint on a free local port.
pub struct AgentProc {
    child: std::process::Child,
    sock: PathBuf,
    http: std::net::SocketAddr,
}

impl AgentProc {
    pub fn start(exe: &Path, dir: &Path, cpu: Option<usize>) -> AgentProc {
        let sock = dir.join("agent.sock");
        let _ = std::fs::remove_file(&sock);
        // A free port: the kernel picks one, we release it and hand it to the agent.
        let http = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free local port");
        let mut cmd = Command::new(exe);
        if let Some(cpu) = cpu {
            // SAFETY: the closure only makes one async-signal-safe system call.
            unsafe {
                cmd.pre_exec(move || {
                    pin_to(cpu);
                    Ok(())
                })
            };
        }
        let child = cmd
            .args([
                "agent",
                "--output",
                "null",
                "--log-level",
                "warn",
                "--socket",
            ])
            .arg(&sock)
            .args(["--http-listen", &http.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()));
        let agent = AgentProc { child, sock, http };
        let end = Instant::now() + Duration::from_secs(10);
        while !(agent.sock.exists() && agent.bytes_in().is_some()) {
            assert!(Instant::now() < end, "logtap agent did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        agent
    }

    pub fn target(&self) -> String {
        format!("socket:{}", self.sock.display())
    }

    /// `logtap_input_bytes_total` from `/metrics`, or `None` while the endpoint is not up.
    pub fn bytes_in(&self) -> Option<u64> {
        self.metric_sum("logtap_input_bytes_total")
    }

    /// `logtap_dropped_bytes_total`, all reasons.
    pub fn bytes_dropped(&self) -> Option<u64> {
        self.metric_sum("logtap_dropped_bytes_total")
    }

    /// The sum of a metric's series from `/metrics`, or `None` while the endpoint is not up.
    fn metric_sum(&self, name: &str) -> Option<u64> {
        let (_, text) = logtap_tests::http::get(self.http, "/metrics")?;
        Some(
            text.lines()
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with([' ', '{']))
                })
                .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<u64>().ok())
                .sum(),
        )
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.sock);
    }
}
