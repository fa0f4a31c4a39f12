//! Enrichment (Contract 3): a line becomes a record — tag, EventTime and the record map.
//!
//! What is known about a record comes from three places, each read once, not per line:
//! - the agent's environment ([`Metadata`]): the Kubernetes Downward-API variables `POD_NAME`,
//!   `POD_NAMESPACE`, `CONTAINER_NAME`, `NODE_NAME`, and `HOSTNAME` (fallback for `host`);
//! - the peer ([`Origin`]): `pid`, `comm`, and `host` (the process's own hostname) from its
//!   HELLO, `container_id` and, in DaemonSet mode, the pod names from what the agent verified
//!   (`meta_claimed: true` when the names are only the process's claims);
//! - the stream ([`StreamContext`]): `stream`, `file`, and the rendered tag.
//!
//! The per-stream constant part of the map is encoded once into [`StreamContext`]; a line then
//! costs a header, its message and a memcpy.

use std::sync::Arc;

use super::lines::Line;
use logtap_protocol::forward::{EventTime, Fields, write_entry};

use crate::config::types::{Field, Part, TagTemplate};
use crate::record::Entries;

/// Values from the agent's environment (Kubernetes Downward API).
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// `HOSTNAME`, else the kernel's hostname: `host` when a peer does not say its own.
    pub host: String,
    pub pod_name: Option<String>,
    pub namespace: Option<String>,
    pub container_name: Option<String>,
    pub node_name: Option<String>,
}

impl Metadata {
    /// Reads the variables of the agent's own environment.
    pub fn from_env() -> Metadata {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Metadata {
            host: var("HOSTNAME").unwrap_or_else(crate::sys::hostname),
            pod_name: var("POD_NAME"),
            namespace: var("POD_NAMESPACE"),
            container_name: var("CONTAINER_NAME"),
            node_name: var("NODE_NAME"),
        }
    }
}

/// What a peer's HELLO says about the process.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub pid: u32,
    pub comm: String,
    /// The process's hostname (HELLO), or the agent's [`Metadata::host`] if it sent none.
    pub host: String,
    /// Kubernetes names from the process's own environment (HELLO `meta`): in DaemonSet mode one
    /// agent serves many pods, so these win over the agent's [`Metadata`]. With
    /// `peer_meta = "verify"` they are the kubelet's names instead, when the agent found them
    /// (see [`crate::input::identity`]).
    pub pod: PodNames,
    /// The container id from the process's cgroup, read by the agent (not the HELLO's).
    pub container_id: Option<String>,
    /// `pod` holds the process's unverified claims: records say `meta_claimed: true`, and the
    /// tag is rendered from the agent's own names, never from a claim.
    pub meta_claimed: bool,
    /// `pid` is the kernel's (`SO_PEERCRED`): every record of the connection carries it, also
    /// writes that claim another pid (a `vfork()` child writing through its parent's ring).
    pub pid_from_kernel: bool,
}

/// The Downward-API names a peer may announce in its HELLO `meta`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNames {
    pub pod_name: Option<String>,
    pub namespace: Option<String>,
    pub container_name: Option<String>,
    pub node_name: Option<String>,
}

impl PodNames {
    /// Reads `POD_NAME`, `POD_NAMESPACE`, `CONTAINER_NAME`, `NODE_NAME` (or the record field
    /// names `pod_name`, `namespace`, `container_name`, `node_name`) from HELLO `meta` pairs.
    pub fn from_meta(meta: &[(String, String)]) -> PodNames {
        let get = |names: &[&str]| {
            meta.iter()
                .find(|(k, v)| names.contains(&k.as_str()) && !v.is_empty())
                .map(|(_, v)| v.clone())
        };
        PodNames {
            pod_name: get(&["POD_NAME", "pod_name"]),
            namespace: get(&["POD_NAMESPACE", "pod_namespace", "namespace"]),
            container_name: get(&["CONTAINER_NAME", "container_name"]),
            node_name: get(&["NODE_NAME", "node_name"]),
        }
    }
}

impl TagTemplate {
    /// The tag of one stream (a placeholder without a value renders as nothing).
    pub(crate) fn render(
        &self,
        meta: &Metadata,
        origin: &Origin,
        stream: &str,
        file: Option<&str>,
    ) -> String {
        let mut tag = String::new();
        // A claim never routes: a tag says `kube-system` only when the agent verified it.
        let unclaimed = PodNames::default();
        let pod = if origin.meta_claimed {
            &unclaimed
        } else {
            &origin.pod
        };
        for part in self.parts() {
            let value = match part {
                Part::Text(t) => t.as_str(),
                Part::Field(Field::Stream) => stream,
                Part::Field(Field::Comm) => &origin.comm,
                Part::Field(Field::PodName) => pick(&pod.pod_name, &meta.pod_name).unwrap_or(""),
                Part::Field(Field::Namespace) => {
                    pick(&pod.namespace, &meta.namespace).unwrap_or("")
                }
                Part::Field(Field::ContainerName) => {
                    pick(&pod.container_name, &meta.container_name).unwrap_or("")
                }
                Part::Field(Field::File) => file.unwrap_or(""),
            };
            tag.push_str(value);
        }
        tag
    }
}

/// The peer's own value if it announced one, else the agent's.
fn pick<'a>(peer: &'a Option<String>, agent: &'a Option<String>) -> Option<&'a str> {
    peer.as_deref().or(agent.as_deref())
}

/// The rendered tag and pre-encoded constant fields of one stream of one peer.
#[derive(Debug, Clone)]
pub struct StreamContext {
    pub tag: Arc<str>,
    /// Encoded key/value pairs after `message`: stream, file, pid, comm, host, pod fields.
    fields: Fields,
}

/// Builds records: holds the agent's metadata and the tag template.
#[derive(Debug, Clone)]
pub struct Enricher {
    meta: Arc<Metadata>,
    tag: TagTemplate,
}

impl Enricher {
    pub fn new(meta: Metadata, tag: TagTemplate) -> Enricher {
        Enricher {
            meta: Arc::new(meta),
            tag,
        }
    }

    /// The agent's metadata (host fallback for peers that send no hostname).
    pub fn metadata(&self) -> &Metadata {
        &self.meta
    }

    /// Prepares the constant part of the records of one stream (`file` for the file stream).
    pub fn stream_context(
        &self,
        origin: &Origin,
        stream: &str,
        file: Option<&str>,
    ) -> StreamContext {
        let meta = &*self.meta;
        let mut fields = Fields::new();
        let mut kv = |k: &str, v: &str| {
            fields.add().str(k, v.as_bytes());
        };
        kv("stream", stream);
        if let Some(f) = file {
            kv("file", f);
        }
        kv("comm", &origin.comm);
        kv("host", &origin.host);
        let pod = &origin.pod;
        for (k, v) in [
            ("pod_name", pick(&pod.pod_name, &meta.pod_name)),
            ("namespace", pick(&pod.namespace, &meta.namespace)),
            (
                "container_name",
                pick(&pod.container_name, &meta.container_name),
            ),
            ("node_name", pick(&pod.node_name, &meta.node_name)),
        ] {
            if let Some(v) = v {
                kv(k, v);
            }
        }
        if let Some(id) = &origin.container_id {
            kv("container_id", id);
        }
        if origin.meta_claimed {
            fields.add().bool("meta_claimed", true);
        }
        fields.add().uint("pid", u64::from(origin.pid));
        StreamContext {
            tag: Arc::from(self.tag.render(meta, origin, stream, file)),
            fields,
        }
    }

    /// Appends the entry `[EventTime, record]` for `line` to `out` (whose tag is `ctx.tag`).
    pub fn encode(ctx: &StreamContext, line: Line<'_>, out: &mut Entries) {
        let fields = 1 + ctx.fields.count() + u32::from(line.partial);
        let mut record = write_entry(&mut out.buf, EventTime::from_nanos(line.time_ns), fields);
        record
            .text_or_bin("message", line.bytes)
            .fields(&ctx.fields);
        if line.partial {
            record.bool("partial", true);
        }
        out.records += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Metadata {
        Metadata {
            host: "agent-host".into(),
            pod_name: Some("web-1".into()),
            namespace: Some("shop".into()),
            container_name: None,
            node_name: Some("node-a".into()),
        }
    }

    #[test]
    fn templates() {
        let origin = Origin {
            pid: 1,
            comm: "nginx".into(),
            host: "h".into(),
            ..Origin::default()
        };
        let t = TagTemplate::parse("k8s.{namespace}.{pod_name}.{comm}.{stream}{container_name}")
            .unwrap();
        assert_eq!(
            t.render(&meta(), &origin, "stderr", None),
            "k8s.shop.web-1.nginx.stderr"
        );
        assert!(
            TagTemplate::parse("x.{nope}")
                .unwrap_err()
                .contains("{nope}")
        );
        assert!(TagTemplate::parse("x.{stream").is_err());
        assert!(TagTemplate::parse("x.}").is_err());
        assert!(TagTemplate::parse("").is_err());
    }

    #[test]
    fn encodes_contract3_record() {
        let e = Enricher::new(meta(), TagTemplate::parse("logtap.{stream}").unwrap());
        let origin = Origin {
            pid: 4242,
            comm: "python3".into(),
            host: "app".into(),
            ..Origin::default()
        };
        let ctx = e.stream_context(&origin, "stdout", None);
        assert_eq!(&*ctx.tag, "logtap.stdout");
        let mut out = Entries::new(ctx.tag.clone());
        Enricher::encode(
            &ctx,
            Line {
                time_ns: 1_000_000_001,
                bytes: b"hi",
                partial: true,
            },
            &mut out,
        );
        assert_eq!(out.records, 1);
        let b = &out.buf;
        assert_eq!(&b[..2], &[0x92, 0xd7], "[fixext8 time, map]");
        assert_eq!(&b[2..12], &[0, 0, 0, 0, 1, 0, 0, 0, 1, 0x80 | 9]);
        let text = String::from_utf8_lossy(b);
        for key in [
            "message",
            "hi",
            "stream",
            "stdout",
            "comm",
            "python3",
            "host",
            "app",
            "pod_name",
            "web-1",
            "namespace",
            "shop",
            "node_name",
            "node-a",
            "pid",
            "partial",
        ] {
            assert!(text.contains(key), "{key} missing");
        }
        assert!(
            !text.contains("container_name"),
            "unknown values are left out"
        );
    }

    #[test]
    fn a_peers_own_pod_names_win_over_the_agents() {
        let e = Enricher::new(
            meta(),
            TagTemplate::parse("{namespace}.{pod_name}").unwrap(),
        );
        let meta_pairs = vec![
            ("POD_NAME".to_owned(), "app-7".to_owned()),
            ("namespace".to_owned(), "team".to_owned()),
        ];
        let origin = Origin {
            pid: 1,
            comm: "c".into(),
            host: "h".into(),
            pod: PodNames::from_meta(&meta_pairs),
            ..Origin::default()
        };
        let ctx = e.stream_context(&origin, "stdout", None);
        assert_eq!(&*ctx.tag, "team.app-7");
        let text = String::from_utf8_lossy(ctx.fields.as_bytes()).into_owned();
        assert!(text.contains("app-7") && !text.contains("web-1"), "{text}");
        assert!(
            text.contains("node-a"),
            "the agent's value stays the fallback"
        );
    }

    #[test]
    fn claimed_names_are_marked_and_never_rendered_into_the_tag() {
        let e = Enricher::new(
            meta(),
            TagTemplate::parse("{namespace}.{pod_name}").unwrap(),
        );
        let origin = Origin {
            pid: 1,
            comm: "c".into(),
            host: "h".into(),
            pod: PodNames {
                namespace: Some("kube-system".into()),
                ..PodNames::default()
            },
            container_id: Some("ab".repeat(32)),
            meta_claimed: true,
            pid_from_kernel: true,
        };
        let ctx = e.stream_context(&origin, "stdout", None);
        assert_eq!(&*ctx.tag, "shop.web-1", "the agent's names, not the claim");
        let text = String::from_utf8_lossy(ctx.fields.as_bytes()).into_owned();
        assert!(
            text.contains("kube-system"),
            "the claim is kept in the record"
        );
        assert!(text.contains("meta_claimed"), "{text}");
        assert!(text.contains("container_id") && text.contains(&"ab".repeat(32)));
    }
}
