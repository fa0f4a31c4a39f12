//! The small value types of the options, each readable from a flag, a variable and TOML alike.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use clap::ValueEnum;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An output of the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// One JSON object per record on standard output.
    Stdout,
    /// Fluentd Forward protocol to `--forward` servers.
    Forward,
    /// Discard (acknowledge at once): for benchmarks and tests.
    Null,
}

impl OutputKind {
    /// The name used in metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::Stdout => "stdout",
            OutputKind::Forward => "forward",
            OutputKind::Null => "null",
        }
    }
}

/// Compression of forward chunks (Fluent Bit's `compress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compress {
    Gzip,
    None,
}

/// Format of the agent's own log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A forward server: `HOST:PORT` on the command line, a string or a table in TOML
/// (`{ host = "fluentd", port = 24224, weight = 60, standby = false }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForwardServer {
    pub host: String,
    pub port: u16,
    /// Share of chunks among the active servers (Fluentd's `weight`, default 60).
    pub weight: u32,
    /// Used only while no active server is reachable (Fluentd's `standby`).
    pub standby: bool,
}

impl ForwardServer {
    /// Fluentd's default weight.
    pub const DEFAULT_WEIGHT: u32 = 60;
    /// Fluentd's default port.
    pub const DEFAULT_PORT: u16 = 24224;

    /// `host:port` for connecting and for labels.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for ForwardServer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("bad port in forward server `{s}`: use HOST:PORT"))?;
                (h.trim_start_matches('[').trim_end_matches(']'), port)
            }
            _ => (s, ForwardServer::DEFAULT_PORT),
        };
        if host.is_empty() {
            return Err(format!("forward server `{s}` has no host: use HOST:PORT"));
        }
        Ok(ForwardServer {
            host: host.to_owned(),
            port,
            weight: ForwardServer::DEFAULT_WEIGHT,
            standby: false,
        })
    }
}

impl<'de> Deserialize<'de> for ForwardServer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            host: String,
            #[serde(default = "default_port")]
            port: u16,
            #[serde(default = "default_weight")]
            weight: u32,
            #[serde(default)]
            standby: bool,
        }
        fn default_port() -> u16 {
            ForwardServer::DEFAULT_PORT
        }
        fn default_weight() -> u32 {
            ForwardServer::DEFAULT_WEIGHT
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Table(Table),
        }
        match Either::deserialize(d)? {
            Either::Text(t) => t.parse().map_err(serde::de::Error::custom),
            Either::Table(t) => Ok(ForwardServer {
                host: t.host,
                port: t.port,
                weight: t.weight,
                standby: t.standby,
            }),
        }
    }
}

/// `retry_limit`: how often a chunk is resent before it is dropped; `None` = no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryLimit(pub Option<u32>);

impl FromStr for RetryLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "no_limits" | "false" | "unlimited" => Ok(RetryLimit(None)),
            "no_retries" => Ok(RetryLimit(Some(0))),
            n => n.parse().map(|n| RetryLimit(Some(n))).map_err(|_| {
                format!("bad retry_limit `{s}`: a number, `no_limits` or `no_retries`")
            }),
        }
    }
}

impl fmt::Display for RetryLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("no_limits"),
            Some(n) => write!(f, "{n}"),
        }
    }
}

/// `http_listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpListen(pub Option<SocketAddr>);

impl FromStr for HttpListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" | "off" | "false" | "none" => Ok(HttpListen(None)),
            a => a.parse().map(|a| HttpListen(Some(a))).map_err(|_| {
                format!("bad http_listen `{s}`: use IP:PORT (e.g. 127.0.0.1:2020) or off")
            }),
        }
    }
}

impl fmt::Display for HttpListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("off"),
            Some(a) => write!(f, "{a}"),
        }
    }
}

/// `socket_mode`: permission bits of the tap socket, written in octal (`"0660"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketMode(pub u32);

impl FromStr for SocketMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.trim().trim_start_matches("0o");
        match u32::from_str_radix(digits, 8) {
            Ok(m) if m <= 0o777 => Ok(SocketMode(m)),
            _ => Err(format!(
                "bad socket_mode `{s}`: octal permission bits, e.g. 0660"
            )),
        }
    }
}

impl fmt::Display for SocketMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

/// Types written as a string in TOML (or as a bare number where that means the same).
macro_rules! text_serde {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw { Int(i64), Bool(bool), Text(String) }
                let text = match Raw::deserialize(d)? {
                    Raw::Int(n) => n.to_string(),
                    Raw::Bool(b) => b.to_string(),
                    Raw::Text(t) => t,
                };
                text.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}
text_serde!(RetryLimit, HttpListen);

impl<'de> Deserialize<'de> for SocketMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            // A TOML integer is taken as the mode bits themselves (write `0o660`).
            Int(u32),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(m) if m <= 0o777 => Ok(SocketMode(m)),
            Raw::Int(m) => Err(serde::de::Error::custom(format!(
                "socket_mode {m} is not permission bits: write \"0660\" or 0o660"
            ))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for SocketMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_values() {
        let f: ForwardServer = "fluentd:24225".parse().unwrap();
        assert_eq!((f.host.as_str(), f.port), ("fluentd", 24225));
        let f: ForwardServer = "fluentd".parse().unwrap();
        assert_eq!(f.port, 24224);
        let f: ForwardServer = "[::1]:9".parse().unwrap();
        assert_eq!(
            (f.host.as_str(), f.port, f.address().as_str()),
            ("::1", 9, "[::1]:9")
        );
        assert!("host:notaport".parse::<ForwardServer>().is_err());
        assert_eq!("no_limits".parse::<RetryLimit>().unwrap(), RetryLimit(None));
        assert_eq!("3".parse::<RetryLimit>().unwrap(), RetryLimit(Some(3)));
        assert!("-1".parse::<RetryLimit>().is_err());
        assert_eq!("off".parse::<HttpListen>().unwrap(), HttpListen(None));
        assert!("127.0.0.1:2020".parse::<HttpListen>().unwrap().0.is_some());
        assert_eq!("0660".parse::<SocketMode>().unwrap(), SocketMode(0o660));
        assert!("0999".parse::<SocketMode>().is_err());
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("bad tag template: {0}")]
    Tag(String),
    #[error("--output forward needs at least one --forward HOST:PORT")]
    ForwardWithoutServer,
    #[error("--{0} must be greater than zero")]
    Zero(&'static str),
    #[error("bad --log-level `{0}`: use error, warn, info, debug, trace or a tracing filter")]
    LogLevel(String),
    #[error("bad --forward-listen-user `{0}`: use USER:PASSWORD (a non-empty user name)")]
    ListenUser(String),
    #[error(
        "--forward-listen-user needs --shared-key: users log in within the shared-key handshake"
    )]
    UsersWithoutSharedKey,
}

/// A placeholder of the tag template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Stream,
    Comm,
    PodName,
    Namespace,
    ContainerName,
    File,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Field(Field),
}

/// The tag template (`logtap.{stream}`): checked once, rendered once per stream of a peer.
/// A placeholder without a value renders as nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagTemplate {
    text: String,
    parts: Vec<Part>,
}

impl TagTemplate {
    /// Parses a template; unknown placeholders and unbalanced braces are errors.
    pub fn parse(text: &str) -> Result<TagTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if rest[..open].contains('}') {
                return Err(format!("`{text}` has a `}}` without `{{`"));
            }
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("`{text}` has a `{{` without `}}`"))?;
            let field = match &rest[open + 1..open + close] {
                "stream" => Field::Stream,
                "comm" => Field::Comm,
                "pod_name" => Field::PodName,
                "namespace" => Field::Namespace,
                "container_name" => Field::ContainerName,
                "file" => Field::File,
                other => {
                    return Err(format!(
                        "unknown placeholder `{{{other}}}` in `{text}`: use {{stream}} {{comm}} \
                         {{pod_name}} {{namespace}} {{container_name}} {{file}}"
                    ));
                }
            };
            parts.push(Part::Field(field));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("`{text}` has a `}}` without `{{`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if text.is_empty() {
            return Err("the tag template is empty".to_owned());
        }
        Ok(TagTemplate {
            text: text.to_owned(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Its text and placeholders, in order (rendered by the pipeline's enrichment).
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }
}

impl Serialize for TagTemplate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// How much of a HELLO's Downward-API names (`POD_NAME`, `POD_NAMESPACE`, `CONTAINER_NAME`,
/// `NODE_NAME`) the agent believes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerMeta {
    /// Sidecar mode (one pod per agent): the names are the pod's own; taken as they come.
    #[default]
    Trust,
    /// DaemonSet mode (one agent per node): names come from the container id the kernel and
    /// kubelet vouch for; names that cannot be verified are kept but marked `meta_claimed`.
    Verify,
}

/// How the agent checks the pid a HELLO claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerPid {
    /// A HELLO pid other than the kernel's (`SO_PEERCRED`) drops the peer, counted.
    #[default]
    Kernel,
    /// The HELLO pid is taken as claimed: for tools that speak the tap protocol on behalf of
    /// other processes (the test harness's fake peers). Never for a shared socket.
    Claimed,
}
