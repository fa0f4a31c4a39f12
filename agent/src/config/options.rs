//! The option surface: one [`Options`] struct that is at once the command line (clap, each
//! flag with its `LOGTAP_<NAME>` variable) and the TOML file (same key names, unknown keys
//! rejected). Every field is optional — unset means "ask the next source" — and
//! [`Options::or`] merges sources by precedence; [`crate::config::Config`] then applies the
//! defaults.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;

use super::multiline::{MultilineSpec, ParserSpec};
use super::types::{
    Compress, ConfigError, ForwardServer, HttpListen, LogFormat, OutputKind, RetryLimit, SocketMode,
};
use super::types::{PeerMeta, PeerPid};
use super::units::{Dur, Size};

/// Every option of `run`, `agent` and `check`, as flags, `LOGTAP_*` variables and TOML keys.
///
/// All fields are optional here: unset means "ask the next source" (see the module docs).
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// TOML file with the same keys as these options (flags and variables win over it).
    #[arg(long, env = "LOGTAP_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// The tap socket (SOCK_SEQPACKET) the interceptor connects to [default: /tmp/logtap.sock].
    #[arg(long, env = "LOGTAP_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// Permissions of the tap socket, octal [default: 0660].
    #[arg(long, env = "LOGTAP_SOCKET_MODE", value_name = "OCTAL")]
    pub socket_mode: Option<SocketMode>,

    /// Owner (numeric uid) given to the tap socket file [default: the agent's uid].
    #[arg(long, env = "LOGTAP_SOCKET_OWNER", value_name = "UID")]
    pub socket_owner: Option<u32>,

    /// Group (numeric gid) given to the tap socket file [default: the agent's gid].
    #[arg(long, env = "LOGTAP_SOCKET_GROUP", value_name = "GID")]
    pub socket_group: Option<u32>,

    /// Peers admitted by uid (SO_PEERCRED); others are refused at accept, unless
    /// --socket-gid admits them. Repeat or comma-separate [default: every peer the mode lets in].
    #[arg(
        long,
        env = "LOGTAP_SOCKET_UID",
        value_name = "UID",
        value_delimiter = ','
    )]
    pub socket_uid: Option<Vec<u32>>,

    /// Peers admitted by primary gid (SO_PEERCRED; supplementary groups are not seen).
    #[arg(
        long,
        env = "LOGTAP_SOCKET_GID",
        value_name = "GID",
        value_delimiter = ','
    )]
    pub socket_gid: Option<Vec<u32>>,

    /// Pod names a peer announces (POD_NAME, POD_NAMESPACE, CONTAINER_NAME): trust (sidecar:
    /// one pod) or verify (DaemonSet: from the container id and the kubelet's
    /// --containers-dir; unverifiable names are marked meta_claimed) [default: trust].
    #[arg(long, env = "LOGTAP_PEER_META", value_name = "trust|verify")]
    pub peer_meta: Option<PeerMeta>,

    /// The pid a peer announces: kernel (must equal SO_PEERCRED's, else the peer is dropped)
    /// or claimed (taken as is: test tools only) [default: kernel].
    #[arg(long, env = "LOGTAP_PEER_PID", value_name = "kernel|claimed")]
    pub peer_pid: Option<PeerPid>,

    /// Where peers' cgroup files (DIR/PID/cgroup) are read [default: /proc].
    #[arg(long, env = "LOGTAP_PROC_ROOT", value_name = "DIR")]
    pub proc_root: Option<PathBuf>,

    /// The kubelet's container log links (POD_NAMESPACE_CONTAINER-ID.log), for --peer-meta
    /// verify [default: /var/log/containers].
    #[arg(long, env = "LOGTAP_CONTAINERS_DIR", value_name = "DIR")]
    pub containers_dir: Option<PathBuf>,

    /// Where records go: stdout (JSON lines), forward, null; repeat for several
    /// [default: forward when --forward is given, else stdout].
    #[arg(
        long,
        env = "LOGTAP_OUTPUT",
        value_name = "KIND",
        value_delimiter = ','
    )]
    pub output: Option<Vec<OutputKind>>,

    /// A Fluentd / Fluent Bit forward server; repeat for several (weights, standby: TOML).
    #[arg(
        long,
        env = "LOGTAP_FORWARD",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    pub forward: Option<Vec<ForwardServer>>,

    /// Also accept the Forward protocol on this TCP address (relay, tests).
    #[arg(long, env = "LOGTAP_FORWARD_LISTEN", value_name = "ADDR")]
    pub forward_listen: Option<String>,

    /// A user the forward input admits, `USER:PASSWORD`; repeat for several. Clients must then
    /// log in within the shared-key handshake (Fluentd's `<security><user>`); needs
    /// --shared-key. Prefer the variable or the TOML file: flags show in `ps`.
    #[arg(
        long = "forward-listen-user",
        env = "LOGTAP_FORWARD_LISTEN_USERS",
        value_name = "USER:PASSWORD",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub forward_listen_users: Option<Vec<String>>,

    /// TLS certificate chain (PEM) of the forward input; with --forward-listen-tls-key, the
    /// input accepts TLS only.
    #[arg(
        long,
        env = "LOGTAP_FORWARD_LISTEN_TLS_CERT",
        value_name = "FILE",
        requires = "forward_listen_tls_key"
    )]
    pub forward_listen_tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) of the forward input.
    #[arg(
        long,
        env = "LOGTAP_FORWARD_LISTEN_TLS_KEY",
        value_name = "FILE",
        requires = "forward_listen_tls_cert"
    )]
    pub forward_listen_tls_key: Option<PathBuf>,

    /// Tag template; placeholders {stream} {comm} {pod_name} {namespace} {container_name} {file}
    /// [default: logtap.{stream}].
    #[arg(long, env = "LOGTAP_TAG", value_name = "TEMPLATE")]
    pub tag: Option<String>,

    /// Ask forward servers to acknowledge every chunk [default: true].
    #[arg(long, env = "LOGTAP_REQUIRE_ACK_RESPONSE", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub require_ack_response: Option<bool>,

    /// A server that has not acknowledged a chunk this long after it was sent is considered
    /// broken: the connection is closed and its chunks go to the next server [default: 30s].
    #[arg(long, env = "LOGTAP_ACK_RESPONSE_TIMEOUT", value_name = "DURATION", value_parser = Dur::parse)]
    pub ack_response_timeout: Option<Dur>,

    /// Compression of forward chunks: gzip or none [default: none].
    #[arg(long, env = "LOGTAP_COMPRESS", value_name = "gzip|none")]
    pub compress: Option<Compress>,

    /// Shared key of the forward handshake (secure_forward).
    #[arg(
        long,
        env = "LOGTAP_SHARED_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    pub shared_key: Option<String>,

    /// Our hostname in the forward handshake [default: the machine's hostname].
    #[arg(long, env = "LOGTAP_SELF_HOSTNAME", value_name = "NAME")]
    pub self_hostname: Option<String>,

    /// User name of the forward handshake.
    #[arg(long, env = "LOGTAP_USERNAME", value_name = "USER")]
    pub username: Option<String>,

    /// Password of the forward handshake.
    #[arg(
        long,
        env = "LOGTAP_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,

    /// Connect to forward servers with TLS [default: false].
    #[arg(long, env = "LOGTAP_TLS", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub tls: Option<bool>,

    /// CA certificates (PEM) that sign the forward servers' certificates.
    #[arg(long, env = "LOGTAP_TLS_CA_FILE", value_name = "FILE")]
    pub tls_ca_file: Option<PathBuf>,

    /// Verify the forward servers' certificates [default: true].
    #[arg(long, env = "LOGTAP_TLS_VERIFY", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub tls_verify: Option<bool>,

    /// A chunk is sent at the latest this long after its first record [default: 1s].
    #[arg(long, env = "LOGTAP_FLUSH_INTERVAL", value_name = "DURATION", value_parser = Dur::parse)]
    pub flush_interval: Option<Dur>,

    /// Write chunks to this directory before sending them (they survive a crash and restart).
    #[arg(long, env = "LOGTAP_STORAGE_PATH", value_name = "DIR")]
    pub storage_path: Option<PathBuf>,

    /// Most bytes kept in --storage-path [default: 256MB].
    #[arg(long, env = "LOGTAP_STORAGE_LIMIT", value_name = "SIZE", value_parser = Size::parse)]
    pub storage_limit: Option<Size>,

    /// Most bytes of unacknowledged chunks kept in memory; input pauses beyond [default: 16MB].
    #[arg(long, env = "LOGTAP_MEM_BUF_LIMIT", value_name = "SIZE", value_parser = Size::parse)]
    pub mem_buf_limit: Option<Size>,

    /// A chunk is sent once it holds this many bytes of records (Fluent Bit's
    /// `chunk_limit_size`; at most a quarter of --mem-buf-limit) [default: 2MB].
    #[arg(long, visible_alias = "chunk-size", env = "LOGTAP_CHUNK_LIMIT_SIZE", value_name = "SIZE",
          value_parser = Size::parse)]
    pub chunk_limit_size: Option<Size>,

    /// Chunks sent to a forward server and not yet acknowledged, at most [default: 16].
    #[arg(long, env = "LOGTAP_MAX_CHUNKS_IN_FLIGHT", value_name = "N")]
    pub max_chunks_in_flight: Option<usize>,

    /// Resends of a chunk before it is dropped: a number or no_limits [default: no_limits].
    #[arg(long, env = "LOGTAP_RETRY_LIMIT", value_name = "N|no_limits")]
    pub retry_limit: Option<RetryLimit>,

    /// HTTP address of /metrics and health, or "off"
    /// [default: 127.0.0.1:2020 for agent, off for run].
    #[arg(long, env = "LOGTAP_HTTP_LISTEN", value_name = "ADDR|off")]
    pub http_listen: Option<HttpListen>,

    /// liblogtap.so for `logtap run` [default: beside the logtap binary].
    #[arg(long, env = "LOGTAP_PRELOAD", value_name = "PATH")]
    pub preload: Option<PathBuf>,

    /// Format of the agent's own log on stderr: text or json [default: text].
    #[arg(long, env = "LOGTAP_LOG_FORMAT", value_name = "text|json")]
    pub log_format: Option<LogFormat>,

    /// Level (or tracing filter) of the agent's own log [default: info; warn for run].
    #[arg(long, env = "LOGTAP_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Longer lines are cut into records marked partial [default: 64KB].
    #[arg(long, env = "LOGTAP_MAX_LINE_BYTES", value_name = "SIZE", value_parser = Size::parse)]
    pub max_line_bytes: Option<Size>,

    /// An unterminated line is sent (marked partial) after waiting this long [default: 1s].
    #[arg(long, env = "LOGTAP_PARTIAL_FLUSH", value_name = "DURATION", value_parser = Dur::parse)]
    pub partial_flush: Option<Dur>,

    /// Multi-line events: off, write (one record per write() that ends with a newline), java,
    /// python, go, ruby, the name of a TOML multiline_parser, or write+NAME; for every stream, or per
    /// stream as stdout=MODE,stderr=MODE,file=MODE (per tap file: TOML) [default: off].
    #[arg(long, env = "LOGTAP_MULTILINE", value_name = "MODE")]
    #[serde(
        default,
        deserialize_with = "crate::config::multiline::deserialize_spec"
    )]
    pub multiline: Option<MultilineSpec>,

    /// Custom multi-line rule sets (TOML only: `[[multiline_parser]]`, Fluent Bit's rules).
    #[arg(skip)]
    pub multiline_parser: Option<Vec<ParserSpec>>,

    /// On SIGTERM, how long to wait for buffered chunks to be delivered [default: 5s].
    #[arg(long, env = "LOGTAP_GRACE", value_name = "DURATION", value_parser = Dur::parse)]
    pub grace: Option<Dur>,
}

macro_rules! fill_from {
    ($self:ident, $other:ident; $($field:ident),* $(,)?) => {
        $( if $self.$field.is_none() { $self.$field = $other.$field; } )*
    };
}

impl Options {
    /// Fills every option still unset with the one from `other` (a lower-precedence source).
    pub fn or(mut self, other: Options) -> Options {
        fill_from!(self, other; config, socket, socket_mode, socket_owner, socket_group,
            socket_uid, socket_gid, peer_meta, peer_pid, proc_root, containers_dir, output, forward, forward_listen,
            forward_listen_users, forward_listen_tls_cert, forward_listen_tls_key, tag,
            require_ack_response, ack_response_timeout, compress, shared_key, self_hostname, username, password, tls,
            tls_ca_file, tls_verify, flush_interval, storage_path, storage_limit, mem_buf_limit,
            chunk_limit_size, max_chunks_in_flight,
            retry_limit, http_listen, preload, log_format, log_level, max_line_bytes,
            partial_flush, multiline, multiline_parser, grace);
        self
    }

    /// Reads a TOML file of options.
    pub fn from_file(path: &Path) -> Result<Options, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Toml {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<Options>("sockett = \"/x\"").unwrap_err();
        assert!(err.to_string().contains("sockett"), "{err}");
    }

    #[test]
    fn a_lower_source_fills_only_what_is_unset() {
        let high = Options {
            tag: Some("high".into()),
            ..Options::default()
        };
        let low = Options {
            tag: Some("low".into()),
            socket: Some("/low".into()),
            ..Options::default()
        };
        let merged = high.or(low);
        assert_eq!(merged.tag.as_deref(), Some("high"));
        assert_eq!(merged.socket, Some(PathBuf::from("/low")));
    }
}
