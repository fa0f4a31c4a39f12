//! `logtap run [OPTIONS] -- CMD [ARGS…]`: tap one command with an embedded agent.
//!
//! 1. An agent starts on a private socket in a fresh temporary directory (mode 0700).
//! 2. CMD starts with `LD_PRELOAD=<dir>/$LIB/liblogtap.so` and `LLT_TARGET=socket:<that
//!    socket>`, `LLT_TAP_INTO=3` (stdout and stderr). `<dir>` (in the private directory) links
//!    glibc's `$LIB` expansions to `liblogtap.so` (beside the `logtap` binary, or `--preload`)
//!    and a directory literally named `$LIB` to `liblogtap-musl.so` beside it, so every process
//!    of the tree, glibc or musl, loads its own library (see [`super::preload::layout_preload`]);
//!    without the musl library a musl process runs untapped (said on stderr when CMD is one). The
//!    agent already listens: each process connects at its first tapped write. The user's own
//!    `LLT_*` variables pass through and win, except `LLT_TARGET`, which must be ours.
//!
//!    A statically linked CMD (no `PT_INTERP`: no loader, so no preload) runs with its stdout
//!    and stderr on pipes this process reads instead ([`super::pipe_capture`]): the same records,
//!    but no tap files and the time of read, said once on stderr. A static program started later
//!    by a tapped dynamic parent is not captured.
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

use logtap_protocol::tap::Stream;

use super::elf::Loader;
use super::pipe_capture::Capture;
use super::preload::{
    MUSL_DIR, PreloadNotFound, find_musl_preload, find_preload, glibc_dirs, layout_preload,
};
use super::program;
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
    #[error("cannot lay out the preload libraries in {dir}: {source}")]
    Layout {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Multiline(#[from] crate::pipeline::multiline::MultilineError),
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
    let musl = find_musl_preload(None, &preload).ok();
    let dir = PrivateDir::create()?;
    let ld_preload = lay_out(&dir.0.join("preload"), &preload, musl.as_deref())?;
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
    let program = command.first().map_or(OsStr::new(""), |c| c);
    // Not found or not a program: the spawn below says so, as it always has.
    let loader = program::resolve(program).ok().map(|r| r.elf.loader);
    let piped = loader == Some(Loader::Static);
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&command[1..]);
    if piped {
        eprintln!(
            "logtap: {name} is statically linked: capturing stdout/stderr through pipes (no tap \
             files, time of read)"
        );
        if std::env::var_os("LLT_TAP_FILE").is_some_and(|v| !v.is_empty()) {
            eprintln!("logtap: LLT_TAP_FILE is ignored for {name}: tap files need the library");
        }
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
    } else {
        if matches!(loader, Some(Loader::Musl(_))) && musl.is_none() {
            eprintln!(
                "logtap: {name} is a musl program and liblogtap-musl.so is not installed beside \
                 {}: it runs untapped (install musl-tools and rebuild)",
                preload.display()
            );
        }
        for (key, value) in child_env(&ld_preload, &config.socket) {
            cmd.env(key, value);
        }
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
    tracing::debug!(command = %name, pid, piped, "started");
    let mut readers = Vec::new();
    if let (Some(id), Some(out), Some(err)) = (pid, child.stdout.take(), child.stderr.take()) {
        let capture = Capture::new(&config, agent.ingest(), id, program)?;
        readers.push(capture.spawn(out, tokio::io::stdout(), Stream::Stdout));
        readers.push(capture.spawn(err, tokio::io::stderr(), Stream::Stderr));
    }
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
    // The pipes end when CMD and every child still holding them have exited; a daemon keeping
    // them open is given up after the same wait as tapped peers.
    let deadline = tokio::time::Instant::now() + WAIT_FOR_PEERS;
    for mut reader in readers {
        if tokio::time::timeout_at(deadline, &mut reader)
            .await
            .is_err()
        {
            reader.abort();
        }
    }
    agent.tap.wait_idle(WAIT_FOR_PEERS).await;
    agent.drain(config.grace.0).await;
    drop(dir);
    if let Some(line) = crate::metrics::drop_summary() {
        eprintln!("{line}");
    }
    Ok(exit_code(status))
}

/// Links the libraries into the `$LIB` layout under `root`; returns the `LD_PRELOAD` value.
fn lay_out(root: &Path, glibc: &Path, musl: Option<&Path>) -> Result<PathBuf, RunError> {
    let fail = |source| RunError::Layout {
        dir: root.to_owned(),
        source,
    };
    let mut links: Vec<(String, &Path)> = glibc_dirs().into_iter().map(|d| (d, glibc)).collect();
    if let Some(musl) = musl {
        links.push((MUSL_DIR.to_owned(), musl));
    }
    for (sub, target) in links {
        let dir = root.join(sub);
        std::fs::create_dir_all(&dir).map_err(fail)?;
        std::os::unix::fs::symlink(target, dir.join("liblogtap.so")).map_err(fail)?;
    }
    Ok(layout_preload(root))
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
