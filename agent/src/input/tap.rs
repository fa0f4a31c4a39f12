//! The tap input: the `SOCK_SEQPACKET` socket the interceptor connects to (Contract 2).
//!
//! The listener accepts connections and starts one [`super::peer`] task per process.
//! The socket file gets `socket_mode` (0660 by default) so that only the owner and group may
//! tap into the agent; it is bound under a temporary name and linked into place with its mode.
//!
//! Ownership: a socket file at the path that still accepts connections belongs to a live agent:
//! we refuse it ([`TapInputError::InUse`], exit code 2) rather than take its programs away. A
//! socket nobody listens on any more (an agent that crashed) is stale and replaced. Linking
//! (not renaming) into place fails if another agent got there first, so two agents starting at
//! once cannot both win. On stop the agent removes the socket file only if it is still the one
//! it created (same device and inode): never a successor's.
//! [`TapInput::stop`] stops accepting — after taking every connection already queued, since a
//! short-lived process may have connected, written and exited before we got to it — then lets
//! every peer drain its ring and waits for them.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::access::{AccessPolicy, REFUSED};
use super::peer::{self, PeerSettings};
use crate::metrics::METRICS;
use crate::pipeline::Ingest;
use crate::pipeline::enrich::Enricher;
use crate::sys;

/// Connections the kernel queues before we accept them.
const BACKLOG: i32 = 4096;

/// Why the tap socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TapInputError {
    #[error("{path} exists and is not a socket; remove it or choose another --socket")]
    NotASocket { path: PathBuf },
    #[error(
        "--socket {path} is in use: another logtap agent is listening on it; stop that agent or choose another --socket"
    )]
    InUse { path: PathBuf },
    #[error(
        "--socket {path} exists and it cannot be told whether an agent still listens on it ({source}); remove it or choose another --socket"
    )]
    Unknown { path: PathBuf, source: io::Error },
    #[error("cannot create the directory of --socket {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("cannot listen on --socket {path}: {source}")]
    Listen { path: PathBuf, source: io::Error },
    #[error(
        "cannot give --socket {path} owner {owner:?} group {group:?} (--socket-owner, --socket-group): {source}"
    )]
    Owner {
        path: PathBuf,
        owner: Option<u32>,
        group: Option<u32>,
        source: io::Error,
    },
    #[error("cannot set mode {mode:04o} on --socket {path}: {source}")]
    Mode {
        path: PathBuf,
        mode: u32,
        source: io::Error,
    },
}

/// The tap socket file's permissions (who may connect is [`PeerSettings::admit`]).
#[derive(Debug, Clone, Default)]
pub struct SocketAccess {
    /// Permission bits of the socket file (`--socket-mode`).
    pub mode: u32,
    /// Owner and group of the socket file (`--socket-owner`, `--socket-group`).
    pub owner: Option<u32>,
    pub group: Option<u32>,
}

/// The running tap input.
pub struct TapInput {
    path: PathBuf,
    /// (device, inode) of the socket file we created.
    identity: Option<(u64, u64)>,
    stop_accepting: CancellationToken,
    stop_peers: CancellationToken,
    peers: TaskTracker,
    acceptor: JoinHandle<()>,
}

impl TapInput {
    /// Binds the socket at `path` with the permissions of `access` and starts accepting.
    pub fn bind(
        path: &Path,
        access: SocketAccess,
        settings: PeerSettings,
        enricher: Enricher,
        ingest: Ingest,
    ) -> Result<TapInput, TapInputError> {
        let mode = access.mode;
        prepare_path(path)?;
        // Bound under a temporary name, given its mode, then linked into place: the socket
        // never appears at `path` with the umask's permissions, not even for a moment.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let staging = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&staging);
        let listen = |at: &Path| {
            sys::seqpacket_listen(at, BACKLOG).map_err(|source| {
                if source.kind() == io::ErrorKind::AddrInUse {
                    // Bound in place and somebody got there first.
                    TapInputError::InUse {
                        path: path.to_owned(),
                    }
                } else {
                    TapInputError::Listen {
                        path: path.to_owned(),
                        source,
                    }
                }
            })
        };
        let chmod = |at: &Path| {
            if access.owner.is_some() || access.group.is_some() {
                std::os::unix::fs::chown(at, access.owner, access.group).map_err(|source| {
                    TapInputError::Owner {
                        path: path.to_owned(),
                        owner: access.owner,
                        group: access.group,
                        source,
                    }
                })?;
            }
            std::fs::set_permissions(at, std::fs::Permissions::from_mode(mode)).map_err(|source| {
                TapInputError::Mode {
                    path: path.to_owned(),
                    mode,
                    source,
                }
            })
        };
        let fd = match listen(&staging) {
            Ok(fd) => {
                let placed = chmod(&staging).and_then(|()| link_into_place(&staging, path));
                let _ = std::fs::remove_file(&staging);
                placed?;
                fd
            }
            // The staging name may be too long for a socket address: bind in place.
            Err(_) => {
                let fd = listen(path)?;
                chmod(path)?;
                fd
            }
        };
        let listener = sys::register_readable(fd).map_err(|source| TapInputError::Listen {
            path: path.to_owned(),
            source,
        })?;
        let stop_accepting = CancellationToken::new();
        let stop_peers = CancellationToken::new();
        let peers = TaskTracker::new();
        let allow = settings.admit.clone();
        let acceptor = tokio::spawn(accept_loop(
            listener,
            Arc::new(settings),
            enricher,
            ingest,
            stop_accepting.clone(),
            stop_peers.clone(),
            peers.clone(),
        ));
        tracing::info!(
            socket = %path.display(),
            mode = format!("{mode:04o}"),
            owner = ?access.owner,
            group = ?access.group,
            socket_uid = ?allow.uids,
            socket_gid = ?allow.gids,
            "tap socket listening"
        );
        let identity = std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        Ok(TapInput {
            path: path.to_owned(),
            identity,
            stop_accepting,
            stop_peers,
            peers,
            acceptor,
        })
    }

    /// Connected peers right now.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Waits until no peer is connected, at most `limit` (used by `logtap run` after its
    /// child exited: the child's own connection closes, and so do its children's).
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.peers.is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.peers.is_empty()
    }

    /// Stops accepting (after taking the queued connections), makes every peer drain its ring
    /// and finish, waits for them, and removes the socket file. The [`Ingest`] clones held by
    /// the input are gone when this returns.
    pub async fn stop(self) {
        self.stop_accepting.cancel();
        let _ = self.acceptor.await;
        self.stop_peers.cancel();
        self.peers.close();
        self.peers.wait().await;
        remove_if_ours(&self.path, self.identity);
    }
}

/// Removes the socket file at `path` if it is still the one we created.
fn remove_if_ours(path: &Path, identity: Option<(u64, u64)>) {
    let current = std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()));
    if current.is_some() && current == identity {
        let _ = std::fs::remove_file(path);
    } else if current.is_some() {
        tracing::info!(socket = %path.display(), "the tap socket file is another agent's now; left in place");
    }
}

/// Links the staged socket to `path`; if a socket appeared there meanwhile (another agent
/// starting), judges it like [`prepare_path`] and tries once more.
fn link_into_place(staging: &Path, path: &Path) -> Result<(), TapInputError> {
    for _ in 0..2 {
        match std::fs::hard_link(staging, path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => prepare_path(path)?,
            Err(source) => {
                return Err(TapInputError::Listen {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
    Err(TapInputError::InUse {
        path: path.to_owned(),
    })
}

/// Removes a stale socket left by an earlier agent; refuses a live agent's socket and
/// anything that is not a socket.
fn prepare_path(path: &Path) -> Result<(), TapInputError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| TapInputError::Dir {
            path: path.to_owned(),
            source,
        })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match sys::seqpacket_accepts(path) {
            Ok(true) => Err(TapInputError::InUse {
                path: path.to_owned(),
            }),
            Ok(false) => {
                tracing::info!(socket = %path.display(), "replacing a stale tap socket (no agent listens on it)");
                let _ = std::fs::remove_file(path);
                Ok(())
            }
            Err(source) => Err(TapInputError::Unknown {
                path: path.to_owned(),
                source,
            }),
        },
        Ok(_) => Err(TapInputError::NotASocket {
            path: path.to_owned(),
        }),
        Err(_) => Ok(()),
    }
}

async fn accept_loop(
    listener: AsyncFd<OwnedFd>,
    settings: Arc<PeerSettings>,
    enricher: Enricher,
    ingest: Ingest,
    stop_accepting: CancellationToken,
    stop_peers: CancellationToken,
    peers: TaskTracker,
) {
    let spawn = |fd: OwnedFd| {
        if !admitted(&fd, &settings.admit) {
            return; // closed: the peer sees its connection end and writes untapped
        }
        peers.spawn(peer::run(
            fd,
            Arc::clone(&settings),
            enricher.clone(),
            ingest.clone(),
            stop_peers.clone(),
        ));
    };
    loop {
        tokio::select! {
            () = stop_accepting.cancelled() => break,
            r = listener.readable() => match r {
                Ok(mut guard) => {
                    if accept_all(&listener, &spawn).is_err() {
                        // Out of descriptors or similar: let some peers finish before retrying.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    guard.clear_ready();
                }
                Err(e) => {
                    tracing::error!(error = %e, "tap socket failed; no new peers are accepted");
                    break;
                }
            },
        }
    }
    // The last ones: connected (and maybe already gone) before we stopped.
    let _ = accept_all(&listener, &spawn);
}

/// Accepts until the queue is empty. An error other than "empty" is logged and returned.
fn accept_all(listener: &AsyncFd<OwnedFd>, spawn: &impl Fn(OwnedFd)) -> io::Result<()> {
    loop {
        match sys::accept(listener.get_ref().as_fd()) {
            Ok(fd) => spawn(fd),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                super::capacity::limit_reached("accept on the tap socket failed (EMFILE/ENFILE)");
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept on the tap socket failed");
                return Err(e);
            }
        }
    }
}

/// Whether the allow-lists admit the peer on `fd` (by `SO_PEERCRED`); a refusal is counted
/// and logged once per interval.
fn admitted(fd: &OwnedFd, allow: &AccessPolicy) -> bool {
    if allow.is_open() {
        return true;
    }
    let (pid, uid, gid) = sys::peer_cred(fd.as_fd()).unwrap_or((0, u32::MAX, u32::MAX));
    if allow.admits(uid, gid) {
        return true;
    }
    METRICS.peers_refused.fetch_add(1, Relaxed);
    if let Some(n) = REFUSED.hit(Instant::now()) {
        tracing::warn!(
            pid,
            uid,
            gid,
            peers = n,
            socket_uid = ?allow.uids,
            socket_gid = ?allow.gids,
            "tap peer refused: its uid and gid are not in --socket-uid / --socket-gid \
             (logtap_tap_peers_refused_total; logged at most once per 10 s)"
        );
    }
    false
}
