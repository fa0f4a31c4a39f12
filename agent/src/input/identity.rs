//! Who a tap peer is, from what the kernel and the node say rather than from its HELLO.
//!
//! - `SO_PEERCRED` (pid, uid, gid) is read at accept ([`crate::sys::peer_cred`]). Its pid is the
//!   peer's pid translated into the agent's PID namespace, or 0 when the peer's namespace is
//!   not visible from the agent's (a sidecar agent without `shareProcessNamespace`, a DaemonSet
//!   agent without `hostPID`): then nothing about the process can be checked.
//! - Where the pid is visible, `/proc/<pid>/cgroup` names the container: [`parse_cgroup`] knows
//!   the containerd, CRI-O and Docker layouts under cgroup v1 and v2, with the systemd and
//!   cgroupfs drivers. The file is read at accept, and the peer's pidfd (`SO_PEERPIDFD`, taken
//!   by the kernel at connect) is checked alive *after* the read: a live process keeps its pid,
//!   so the cgroup read was the peer's and not that of a process that reused its pid.
//! - In DaemonSet mode ([`PeerMeta::Verify`]) the container id is looked up in the kubelet's
//!   `/var/log/containers` directory, whose entries the kubelet names
//!   `<pod>_<namespace>_<container>-<container id>.log` — the same kubelet-named paths Fluent
//!   Bit's Kubernetes metadata comes from. No API server, no token, no cluster-wide secret.
//!
//! What the records then say is decided in [`Identity::pod_names`].

use std::path::{Path, PathBuf};

use crate::pipeline::enrich::PodNames;

pub use crate::config::types::{PeerMeta, PeerPid};

/// Where identities are looked up (`--proc-root`, `--containers-dir`).
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    pub peer_meta: PeerMeta,
    pub peer_pid: PeerPid,
    pub proc_root: PathBuf,
    pub containers_dir: PathBuf,
}

/// What the kernel says of a connected peer, read at accept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelIdentity {
    /// `SO_PEERCRED` pid in the agent's PID namespace; 0 when not visible.
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// From `/proc/<pid>/cgroup`, when the pid is visible and the layout known.
    pub container_id: Option<String>,
    /// The Kubernetes pod uid in the cgroup path, when there is one.
    pub pod_uid: Option<String>,
}

/// The names the kubelet gives a container (from `/var/log/containers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletNames {
    pub pod_name: String,
    pub namespace: String,
    pub container_name: String,
}

/// A peer's identity: the kernel's view, and the kubelet's names when found.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub kernel: KernelIdentity,
    pub kubelet: Option<KubeletNames>,
}

/// The names records carry, and whether they are only claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub pod: PodNames,
    /// The names are the peer's claims, unverified (`meta_claimed: true` in records).
    pub claimed: bool,
    /// Claims that disagreed with the verified names (dropped, counted).
    pub contradicted: bool,
}

impl Identity {
    /// Reads what can be known of the peer whose `SO_PEERCRED` is `(pid, uid, gid)`.
    /// `still_alive` tells whether the peer process is still the one that connected (its
    /// pidfd); the cgroup read is kept only if it says yes.
    pub fn read(
        settings: &IdentitySettings,
        (pid, uid, gid): (u32, u32, u32),
        still_alive: impl FnOnce() -> bool,
    ) -> Identity {
        let mut kernel = KernelIdentity {
            pid,
            uid,
            gid,
            ..KernelIdentity::default()
        };
        if pid != 0 {
            let path = settings.proc_root.join(pid.to_string()).join("cgroup");
            if let Ok(text) = std::fs::read_to_string(&path)
                && still_alive()
            {
                let ids = parse_cgroup(&text);
                kernel.container_id = ids.container_id;
                kernel.pod_uid = ids.pod_uid;
            }
        }
        let kubelet = match (&kernel.container_id, settings.peer_meta) {
            (Some(id), PeerMeta::Verify) => kubelet_names(&settings.containers_dir, id),
            _ => None,
        };
        Identity { kernel, kubelet }
    }

    /// The names records carry, from the HELLO's `claimed` names, per `mode`:
    /// - `Trust`: the claims;
    /// - `Verify` with the kubelet's names: those (claims that differ are dropped);
    /// - `Verify` without: the claims, marked claimed (when there are any).
    ///
    /// `node_name` is the agent's own (`agent_node`, verified by the agent's manifest) when it
    /// has one in `Verify` mode.
    pub fn pod_names(
        &self,
        mode: PeerMeta,
        claimed: PodNames,
        agent_node: Option<&str>,
    ) -> Decided {
        match (mode, &self.kubelet) {
            (PeerMeta::Trust, _) => Decided {
                pod: claimed,
                claimed: false,
                contradicted: false,
            },
            (PeerMeta::Verify, Some(k)) => {
                let differs = |c: &Option<String>, v: &str| c.as_deref().is_some_and(|c| c != v);
                let contradicted = differs(&claimed.pod_name, &k.pod_name)
                    || differs(&claimed.namespace, &k.namespace)
                    || differs(&claimed.container_name, &k.container_name);
                Decided {
                    pod: PodNames {
                        pod_name: Some(k.pod_name.clone()),
                        namespace: Some(k.namespace.clone()),
                        container_name: Some(k.container_name.clone()),
                        node_name: agent_node.map(str::to_owned).or(claimed.node_name),
                    },
                    claimed: false,
                    contradicted,
                }
            }
            (PeerMeta::Verify, None) => {
                let mut pod = claimed;
                if let Some(node) = agent_node {
                    pod.node_name = Some(node.to_owned());
                }
                let claimed = pod.pod_name.is_some()
                    || pod.namespace.is_some()
                    || pod.container_name.is_some()
                    || (agent_node.is_none() && pod.node_name.is_some());
                Decided {
                    pod,
                    claimed,
                    contradicted: false,
                }
            }
        }
    }
}

/// The ids found in a `/proc/<pid>/cgroup` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupIds {
    /// 64 hex digits (containerd, CRI-O, Docker).
    pub container_id: Option<String>,
    /// The Kubernetes pod uid, dashes restored (the systemd driver writes `_`).
    pub pod_uid: Option<String>,
}

/// Parses `/proc/<pid>/cgroup`: lines `hierarchy-ID:controllers:path` (cgroup v1: one per
/// hierarchy; v2: one line `0::path`). The first line whose path names a container wins.
/// Known leaves:
/// - containerd: `cri-containerd-<id>.scope` (systemd driver), `<id>` (cgroupfs driver);
/// - CRI-O: `crio-<id>.scope` (not `crio-conmon-<id>.scope`, the monitor), `crio-<id>`;
/// - Docker: `docker-<id>.scope` (systemd driver), `/docker/<id>` (cgroupfs driver).
///
/// Pod uids: `kubepods-<qos>-pod<uid>.slice` / `kubepods-pod<uid>.slice` (systemd driver, `_`
/// for `-`), `pod<uid>` (cgroupfs driver).
pub fn parse_cgroup(text: &str) -> CgroupIds {
    let mut ids = CgroupIds::default();
    for line in text.lines() {
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        let mut found = CgroupIds::default();
        for segment in path.split('/') {
            if let Some(id) = container_id_of(segment) {
                found.container_id = Some(id.to_owned());
            }
            if let Some(uid) = pod_uid_of(segment) {
                found.pod_uid = Some(uid);
            }
        }
        if found.container_id.is_some() {
            return found;
        }
        if ids.pod_uid.is_none() {
            ids.pod_uid = found.pod_uid;
        }
    }
    ids
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The container id a path segment names, if it is a container's leaf.
fn container_id_of(segment: &str) -> Option<&str> {
    let bare = segment.strip_suffix(".scope").unwrap_or(segment);
    let id = ["cri-containerd-", "crio-", "docker-", "libpod-"]
        .iter()
        .find_map(|p| bare.strip_prefix(p))
        .unwrap_or(bare);
    is_container_id(id).then_some(id)
}

/// The pod uid a path segment names (`pod<uid>`, `kubepods-…-pod<uid_with_underscores>.slice`).
fn pod_uid_of(segment: &str) -> Option<String> {
    let bare = segment.strip_suffix(".slice").unwrap_or(segment);
    let start = bare.rfind("pod")?;
    if start != 0 && !bare[..start].ends_with('-') {
        return None;
    }
    let uid = bare[start + 3..].replace('_', "-");
    let uuid_like = uid.len() == 36
        && uid.bytes().enumerate().all(|(i, b)| {
            matches!(i, 8 | 13 | 18 | 23) == (b == b'-') && (b == b'-' || b.is_ascii_hexdigit())
        });
    uuid_like.then_some(uid)
}

/// Looks `container_id` up in the kubelet's `dir` (`/var/log/containers`): the entry
/// `<pod>_<namespace>_<container>-<container_id>.log`. Pod, namespace and container names
/// cannot contain `_` (DNS names), so the split is unambiguous.
pub fn kubelet_names(dir: &Path, container_id: &str) -> Option<KubeletNames> {
    let suffix = format!("-{container_id}.log");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find_map(|entry| {
            let name = entry.file_name();
            let prefix = name.to_str()?.strip_suffix(&suffix)?.to_owned();
            parse_log_name(&prefix)
        })
}

fn parse_log_name(prefix: &str) -> Option<KubeletNames> {
    let mut parts = prefix.split('_');
    let (Some(pod), Some(ns), Some(container), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if pod.is_empty() || ns.is_empty() || container.is_empty() {
        return None;
    }
    Some(KubeletNames {
        pod_name: pod.to_owned(),
        namespace: ns.to_owned(),
        container_name: container.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1a9c2b7d3e8f6a0b5c1d9e2f7a3b8c6d0e4f1a9c2b7d3e8f6a0b5c1d9e2f7a";
    const POD: &str = "0c5e7f0a-9b1d-4c2e-8f3a-6b7d9e1f2a3b";

    fn ids(text: &str) -> (Option<String>, Option<String>) {
        let p = parse_cgroup(text);
        (p.container_id, p.pod_uid)
    }

    // Fixtures follow the layouts the runtimes document: kubelet's cgroup driver docs
    // (systemd: kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid>.slice, `-` of the
    // uid written `_`), containerd's `cri-containerd-<id>.scope`, CRI-O's `crio-<id>.scope`
    // (and its monitor `crio-conmon-<id>.scope`), Docker's `docker-<id>.scope` (systemd
    // driver) and `/docker/<id>` (cgroupfs driver).

    #[test]
    fn containerd_systemd_driver_cgroup_v2() {
        let uid = POD.replace('-', "_");
        let text = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{ID}.scope\n"
        );
        assert_eq!(ids(&text), (Some(ID.into()), Some(POD.into())));
    }

    #[test]
    fn containerd_guaranteed_pod_and_cgroupfs_driver_v1() {
        let uid = POD.replace('-', "_");
        let v2 = format!("0::/kubepods.slice/kubepods-pod{uid}.slice/cri-containerd-{ID}.scope\n");
        assert_eq!(ids(&v2), (Some(ID.into()), Some(POD.into())));
        let v1 = format!(
            "12:pids:/kubepods/besteffort/pod{POD}/{ID}\n11:memory:/kubepods/besteffort/pod{POD}/{ID}\n1:name=systemd:/kubepods/besteffort/pod{POD}/{ID}\n0::/\n"
        );
        assert_eq!(ids(&v1), (Some(ID.into()), Some(POD.into())));
    }

    #[test]
    fn crio_scope_and_not_its_monitor() {
        let uid = POD.replace('-', "_");
        let text = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice/crio-{ID}.scope\n"
        );
        assert_eq!(ids(&text), (Some(ID.into()), Some(POD.into())));
        let conmon = format!(
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice/crio-conmon-{ID}.scope\n"
        );
        assert_eq!(
            ids(&conmon),
            (None, Some(POD.into())),
            "conmon is not the container"
        );
        let v1 = format!(
            "4:memory:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice/crio-{ID}.scope\n0::/\n"
        );
        assert_eq!(ids(&v1).0, Some(ID.into()));
    }

    #[test]
    fn docker_cgroupfs_v1_and_systemd_v2() {
        let v1 = format!(
            "13:name=systemd:/docker/{ID}\n12:cpu,cpuacct:/docker/{ID}\n4:memory:/docker/{ID}\n0::/system.slice/containerd.service\n"
        );
        assert_eq!(ids(&v1), (Some(ID.into()), None));
        let v2 = format!("0::/system.slice/docker-{ID}.scope\n");
        assert_eq!(ids(&v2), (Some(ID.into()), None));
    }

    #[test]
    fn no_container() {
        assert_eq!(ids("0::/\n"), (None, None));
        assert_eq!(
            ids("0::/user.slice/user-1000.slice/session-3.scope\n"),
            (None, None)
        );
        // This machine's own kind of line: a memory cgroup named by a 32-hex-digit id.
        assert_eq!(
            ids("4:memory:/process_api/48a2d49a312bb9627a484bccbe2ba7b1\n0::/\n"),
            (None, None)
        );
        assert_eq!(ids("garbage without colons\n\n::\n"), (None, None));
        // 63 and 65 hex digits are not container ids.
        assert_eq!(ids(&format!("0::/docker/{}\n", &ID[1..])).0, None);
        assert_eq!(ids(&format!("0::/docker/{ID}a\n")).0, None);
    }

    #[test]
    fn kubelet_log_names_are_split_on_underscores() {
        let dir = std::env::temp_dir().join(format!("logtap-kubelet-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let other = "0".repeat(64);
        std::fs::write(dir.join(format!("web-1_shop_app-{ID}.log")), "").unwrap();
        std::fs::write(
            dir.join(format!("dns-7_kube-system_coredns-{other}.log")),
            "",
        )
        .unwrap();
        assert_eq!(
            kubelet_names(&dir, ID),
            Some(KubeletNames {
                pod_name: "web-1".into(),
                namespace: "shop".into(),
                container_name: "app".into()
            })
        );
        assert_eq!(kubelet_names(&dir, &"1".repeat(64)), None);
        assert_eq!(kubelet_names(Path::new("/nonexistent/logtap"), ID), None);
        assert_eq!(parse_log_name("a_b"), None);
        assert_eq!(parse_log_name("a_b_c_d"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn verify_mode_keeps_only_verified_names_or_marks_the_claims() {
        let claims = PodNames {
            pod_name: Some("victim".into()),
            namespace: Some("kube-system".into()),
            container_name: Some("app".into()),
            node_name: Some("other-node".into()),
        };
        let verified = Identity {
            kernel: KernelIdentity::default(),
            kubelet: Some(KubeletNames {
                pod_name: "web-1".into(),
                namespace: "shop".into(),
                container_name: "app".into(),
            }),
        };
        let d = verified.pod_names(PeerMeta::Verify, claims.clone(), Some("node-a"));
        assert_eq!(d.pod.namespace.as_deref(), Some("shop"));
        assert_eq!(d.pod.node_name.as_deref(), Some("node-a"));
        assert!(!d.claimed && d.contradicted);

        let unknown = Identity::default();
        let d = unknown.pod_names(PeerMeta::Verify, claims.clone(), Some("node-a"));
        assert_eq!(d.pod.namespace.as_deref(), Some("kube-system"));
        assert!(d.claimed, "unverified names are marked");
        let d = unknown.pod_names(PeerMeta::Verify, PodNames::default(), Some("node-a"));
        assert!(!d.claimed, "nothing claimed, nothing marked");

        let d = unknown.pod_names(PeerMeta::Trust, claims.clone(), None);
        assert_eq!((d.pod, d.claimed), (claims, false));
    }
}
