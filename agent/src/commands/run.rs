//! `logtap run [OPTIONS] -- CMD [ARGS…]`: tap one command with an embedded agent.
//!
//! 1. An agent starts on a private socket in a fresh temporary directory (mode 0700).
//! 2. CMD starts with `LD_PRELOAD=<liblogtap.so>` (beside the `logtap` binary, or `--preload`)
//!    and `LLT_TARGET=socket:<that socket>`, `LLT_TAP_INTO=3` (stdout and stderr). The agent
//!    already listens: each process connects at its first tapped write. The user's own `LLT_*`
//!    variables pass through and win, except `LLT_TARGET`, which must be ours.
//! 3. SIGINT and SIGTERM are passed on to CMD (except a SIGINT while stdin is a terminal: Ctrl-C
//!    reaches CMD by itself, through the shared process group); we keep running until it exits.
//! 4. After CMD exits we wait briefly for its (and its children's) connections to close, drain
//!    every ring to the end — a ring outlives its process — and flush the outputs.
//! 5. If records were lost (a full ring with `LLT_RING_FULL=drop`, a stalled agent, an output
//!    that gave up, …) one line on stderr says how many, how many bytes, and why; the peers'
//!    own drop lines are left at debug level. Nothing is printed when nothing was lost.
//! 6. We exit with CMD's exit code, or 128 + the signal that killed it, like a shell.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::preload::{PreloadNotFound, find_preload};
use crate::agent::{Agent, StartError};
use crate::config::{Config, SocketMode};
use crate::shutdown::{StopSignal, StopSignals};

/// How long to wait, after CMD exited, for the remaining tapped processes to disconnect.
const WAIT_FOR_PEERS: Duration = Duration::from_secs(2);

/// Why `logtap run` could not run CMD.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    NoPreload(#[from] PreloadNotFound),
    #[error("cannot create a private directory for the tap socket in {dir}: {source}")]
    TempDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("waiting for `{command}` failed: {source}")]
    Wait {
        command: String,
        source: std::io::Error,
    },
}

impl RunError {
    /// The exit code a shell would give (127: command not found, 126: cannot execute).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => 127,
            RunError::Spawn { .. } => 126,
            _ => 1,
        }
    }
}

/// A private directory removed on drop.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn create() -> Result<PrivateDir, RunError> {
        let base = std::env::temp_dir();
        let mut random = [0u8; 6];
        let _ = getrandom::fill(&mut random);
        let name: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let dir = base.join(format!("logtap-run-{}-{name}", std::process::id()));
        let fail = |source| RunError::TempDir {
            dir: base.clone(),
            source,
        };
        std::fs::create_dir(&dir).map_err(fail)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
        Ok(PrivateDir(dir))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `command` tapped; returns the exit code to exit with.
pub async fn run(mut config: Config, command: Vec<OsString>) -> Result<u8, RunError> {
    let preload = find_preload(config.preload.as_deref())?;
    let dir = PrivateDir::create()?;
    config.socket = dir.0.join("tap.sock");
    config.socket_mode = SocketMode(0o600);
    let mut signals = StopSignals::new().map_err(RunError::Signals)?;
    // Drops are said once, at exit (see the module doc).
    crate::input::drop_log::set_summary_only(true);
    let agent = Agent::start(&config).await?;

    let name = command
        .first()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut cmd = tokio::process::Command::new(command.first().map_or(OsStr::new(""), |c| c));
    cmd.args(&command[1..]);
    for (key, value) in child_env(&preload, &config.socket) {
        cmd.env(key, value);
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(source) => {
            agent.drain(config.grace.0).await;
            return Err(RunError::Spawn {
                command: name,
                source,
            });
        }
    };
    let pid = child.id();
    tracing::debug!(command = %name, pid, "started");
    // Ctrl-C on a terminal already reaches CMD (it shares our foreground process group);
    // passing that SIGINT on as well would deliver it twice.
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            sig = signals.recv() => {
                if sig == StopSignal::Int && terminal {
                    continue;
                }
                tracing::debug!(signal = %sig, "passing the signal on");
                if let Some(pid) = pid {
                    let _ = crate::sys::kill(pid, sig.number());
                }
            }
        }
    };
    let status = match status {
        Ok(status) => status,
        Err(source) => {
            agent.drain(config.grace.0).await;
            return Err(RunError::Wait {
                command: name,
                source,
            });
        }
    };
    agent.tap.wait_idle(WAIT_FOR_PEERS).await;
    agent.drain(config.grace.0).await;
    drop(dir);
    if let Some(line) = crate::metrics::drop_summary() {
        eprintln!("{line}");
    }
    Ok(exit_code(status))
}

/// The variables that make CMD tapped. The user's `LLT_*` settings win, except `LLT_TARGET`.
fn child_env(preload: &Path, socket: &Path) -> Vec<(OsString, OsString)> {
    let mut env = Vec::new();
    let mut ld_preload = preload.as_os_str().to_owned();
    if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        ld_preload.push(":");
        ld_preload.push(existing);
    }
    env.push(("LD_PRELOAD".into(), ld_preload));
    let mut target = OsString::from("socket:");
    target.push(socket.as_os_str());
    env.push(("LLT_TARGET".into(), target));
    if std::env::var_os("LLT_TAP_INTO").is_none() {
        env.push(("LLT_TAP_INTO".into(), "3".into()));
    }
    env
}

/// A shell's exit code for a finished process.
fn exit_code(status: std::process::ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(code), _) => (code & 0xff) as u8,
        (None, Some(sig)) => (128 + sig).min(255) as u8,
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_like_a_shell() {
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(
            exit_code(std::process::ExitStatus::from_raw(libc::SIGKILL)),
            137
        );
    }

    #[test]
    fn environment_for_the_child() {
        let env = child_env(Path::new("/lib/liblogtap.so"), Path::new("/tmp/d/tap.sock"));
        let get = |k: &str| env.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert!(
            get("LD_PRELOAD")
                .unwrap()
                .to_string_lossy()
                .starts_with("/lib/liblogtap.so")
        );
        assert_eq!(get("LLT_TARGET").unwrap(), "socket:/tmp/d/tap.sock");
    }
}
