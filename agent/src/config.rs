//! The agent's options: one [`Options`] struct that is at once the command line (clap, each flag
//! with its `LOGTAP_<NAME>` variable) and the TOML file (same key names), and the effective
//! [`Config`] they resolve to.
//!
//! Precedence: flag > environment > TOML file > default. clap already puts the flag before the
//! variable; [`Options::or`] then fills what is still unset from the file, and [`Config::resolve`]
//! applies the defaults and checks values that depend on each other. Names are Fluent Bit's where
//! one exists (`require_ack_response`, `shared_key`, `self_hostname`, `retry_limit`,
//! `storage_path`, `mem_buf_limit`, `flush_interval`, `grace`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::pipeline::enrich::TagTemplate;
use crate::units::{Dur, Size};

pub use crate::config_types::{
    Compress, ForwardServer, HttpListen, LogFormat, OutputKind, RetryLimit, SocketMode,
};

/// Defaults, in one place so that `--help`, the README and the code agree.
pub mod defaults {
    /// The agent's tap socket when neither `--socket` nor `LOGTAP_SOCKET` is given.
    pub const SOCKET: &str = "/tmp/logtap.sock";
    /// Owner and group may connect (the app and the agent share a group, or run as one user).
    pub const SOCKET_MODE: u32 = 0o660;
    pub const TAG: &str = "logtap.{stream}";
    /// Like Fluent Bit's `flush 1`.
    pub const FLUSH_INTERVAL_MS: u64 = 1000;
    /// Enough for 16 chunks of 256 KiB in flight; measured: more does not raise throughput
    /// on a local network, it only raises the agent's RSS (bench/src/bin/agent_bench.rs).
    pub const MEM_BUF_LIMIT: u64 = 4 << 20;
    pub const STORAGE_LIMIT: u64 = 256 << 20;
    /// A line longer than this is cut into `partial` records (Docker cuts at 16 KiB; 64 KiB keeps
    /// most stack traces and JSON documents whole and matches the tap's DATA frame size).
    pub const MAX_LINE_BYTES: u64 = 64 << 10;
    /// How long an unterminated line waits for its newline before it is sent as `partial`.
    pub const PARTIAL_FLUSH_MS: u64 = 1000;
    /// Shutdown grace period (Fluent Bit's `grace` is 5 s).
    pub const GRACE_MS: u64 = 5000;
    /// Fluent Bit's HTTP server address, used by `logtap agent` (`logtap run` has none).
    pub const AGENT_HTTP_LISTEN: &str = "127.0.0.1:2020";
}

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

    /// Where records go: stdout (JSON lines), forward, null; repeat for several
    /// [default: forward when --forward is given, else stdout].
    #[arg(long, env = "LOGTAP_OUTPUT", value_name = "KIND", value_delimiter = ',')]
    pub output: Option<Vec<OutputKind>>,

    /// A Fluentd / Fluent Bit forward server; repeat for several (weights, standby: TOML).
    #[arg(long, env = "LOGTAP_FORWARD", value_name = "HOST:PORT", value_delimiter = ',')]
    pub forward: Option<Vec<ForwardServer>>,

    /// Also accept the Forward protocol on this TCP address (relay, tests).
    #[arg(long, env = "LOGTAP_FORWARD_LISTEN", value_name = "ADDR")]
    pub forward_listen: Option<String>,

    /// TLS certificate chain (PEM) of the forward input; with --forward-listen-tls-key, the
    /// input accepts TLS only.
    #[arg(long, env = "LOGTAP_FORWARD_LISTEN_TLS_CERT", value_name = "FILE", requires = "forward_listen_tls_key")]
    pub forward_listen_tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) of the forward input.
    #[arg(long, env = "LOGTAP_FORWARD_LISTEN_TLS_KEY", value_name = "FILE", requires = "forward_listen_tls_cert")]
    pub forward_listen_tls_key: Option<PathBuf>,

    /// Tag template; placeholders {stream} {comm} {pod_name} {namespace} {container_name} {file}
    /// [default: logtap.{stream}].
    #[arg(long, env = "LOGTAP_TAG", value_name = "TEMPLATE")]
    pub tag: Option<String>,

    /// Ask forward servers to acknowledge every chunk [default: true].
    #[arg(long, env = "LOGTAP_REQUIRE_ACK_RESPONSE", value_name = "BOOL", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub require_ack_response: Option<bool>,

    /// Compression of forward chunks: gzip or none [default: none].
    #[arg(long, env = "LOGTAP_COMPRESS", value_name = "gzip|none")]
    pub compress: Option<Compress>,

    /// Shared key of the forward handshake (secure_forward).
    #[arg(long, env = "LOGTAP_SHARED_KEY", value_name = "KEY", hide_env_values = true)]
    pub shared_key: Option<String>,

    /// Our hostname in the forward handshake [default: the machine's hostname].
    #[arg(long, env = "LOGTAP_SELF_HOSTNAME", value_name = "NAME")]
    pub self_hostname: Option<String>,

    /// User name of the forward handshake.
    #[arg(long, env = "LOGTAP_USERNAME", value_name = "USER")]
    pub username: Option<String>,

    /// Password of the forward handshake.
    #[arg(long, env = "LOGTAP_PASSWORD", value_name = "PASSWORD", hide_env_values = true)]
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

    /// Most bytes of unacknowledged chunks kept in memory; input pauses beyond [default: 4MB].
    #[arg(long, env = "LOGTAP_MEM_BUF_LIMIT", value_name = "SIZE", value_parser = Size::parse)]
    pub mem_buf_limit: Option<Size>,

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
        fill_from!(self, other; config, socket, socket_mode, output, forward, forward_listen,
            forward_listen_tls_cert, forward_listen_tls_key, tag,
            require_ack_response, compress, shared_key, self_hostname, username, password, tls,
            tls_ca_file, tls_verify, flush_interval, storage_path, storage_limit, mem_buf_limit,
            retry_limit, http_listen, preload, log_format, log_level, max_line_bytes,
            partial_flush, grace);
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

/// Which subcommand the configuration is for: some defaults differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Agent,
    Run,
    Check,
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
}

/// A secret (shared key, password): kept as given, printed as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// The effective configuration: every option decided, defaults applied, values checked.
/// Serializes (for `logtap check`) to the TOML keys of [`Options`], secrets redacted.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub socket: PathBuf,
    pub socket_mode: SocketMode,
    pub output: Vec<OutputKind>,
    pub forward: Vec<ForwardServer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_listen_tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_listen_tls_key: Option<PathBuf>,
    pub tag: TagTemplate,
    pub require_ack_response: bool,
    pub compress: Compress,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_key: Option<Secret>,
    pub self_hostname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    pub tls: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    pub tls_verify: bool,
    pub flush_interval: Dur,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_path: Option<PathBuf>,
    pub storage_limit: Size,
    pub mem_buf_limit: Size,
    pub retry_limit: RetryLimit,
    pub http_listen: HttpListen,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preload: Option<PathBuf>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub max_line_bytes: Size,
    pub partial_flush: Dur,
    pub grace: Dur,
}

impl Config {
    /// Resolves command-line/env options (already merged by clap) with the TOML file they name
    /// and the defaults of `mode`.
    pub fn resolve(cli: Options, mode: Mode) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => Options::from_file(path)?,
            None => Options::default(),
        };
        Config::from_options(cli.or(file), mode)
    }

    /// Applies defaults to fully merged options and checks them.
    pub fn from_options(o: Options, mode: Mode) -> Result<Config, ConfigError> {
        let forward = o.forward.unwrap_or_default();
        let output = o.output.unwrap_or_else(|| {
            if forward.is_empty() {
                vec![OutputKind::Stdout]
            } else {
                vec![OutputKind::Forward]
            }
        });
        if output.contains(&OutputKind::Forward) && forward.is_empty() {
            return Err(ConfigError::ForwardWithoutServer);
        }
        let tag_text = o.tag.unwrap_or_else(|| defaults::TAG.to_owned());
        let tag = TagTemplate::parse(&tag_text).map_err(ConfigError::Tag)?;
        // `logtap run` shares the terminal with the program it runs: only problems are logged.
        let log_level = o.log_level.unwrap_or_else(|| if mode == Mode::Run { "warn" } else { "info" }.to_owned());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(ConfigError::LogLevel(log_level));
        }
        let http_default = match mode {
            Mode::Run => HttpListen(None),
            Mode::Agent | Mode::Check => {
                HttpListen(defaults::AGENT_HTTP_LISTEN.parse::<SocketAddr>().ok())
            }
        };
        let config = Config {
            socket: o.socket.unwrap_or_else(|| PathBuf::from(defaults::SOCKET)),
            socket_mode: o.socket_mode.unwrap_or(SocketMode(defaults::SOCKET_MODE)),
            output,
            forward,
            forward_listen: o.forward_listen,
            forward_listen_tls_cert: o.forward_listen_tls_cert,
            forward_listen_tls_key: o.forward_listen_tls_key,
            tag,
            require_ack_response: o.require_ack_response.unwrap_or(true),
            compress: o.compress.unwrap_or(Compress::None),
            shared_key: o.shared_key.map(Secret),
            self_hostname: o.self_hostname.unwrap_or_else(crate::sys::hostname),
            username: o.username,
            password: o.password.map(Secret),
            tls: o.tls.unwrap_or(false),
            tls_ca_file: o.tls_ca_file,
            tls_verify: o.tls_verify.unwrap_or(true),
            flush_interval: o
                .flush_interval
                .unwrap_or(Dur(Duration::from_millis(defaults::FLUSH_INTERVAL_MS))),
            storage_path: o.storage_path,
            storage_limit: o.storage_limit.unwrap_or(Size(defaults::STORAGE_LIMIT)),
            mem_buf_limit: o.mem_buf_limit.unwrap_or(Size(defaults::MEM_BUF_LIMIT)),
            retry_limit: o.retry_limit.unwrap_or(RetryLimit(None)),
            http_listen: o.http_listen.unwrap_or(http_default),
            preload: o.preload,
            log_format: o.log_format.unwrap_or(LogFormat::Text),
            log_level,
            max_line_bytes: o.max_line_bytes.unwrap_or(Size(defaults::MAX_LINE_BYTES)),
            partial_flush: o
                .partial_flush
                .unwrap_or(Dur(Duration::from_millis(defaults::PARTIAL_FLUSH_MS))),
            grace: o.grace.unwrap_or(Dur(Duration::from_millis(defaults::GRACE_MS))),
        };
        for (name, zero) in [
            ("flush-interval", config.flush_interval.0.is_zero()),
            ("partial-flush", config.partial_flush.0.is_zero()),
            ("mem-buf-limit", config.mem_buf_limit.0 == 0),
            ("max-line-bytes", config.max_line_bytes.0 == 0),
        ] {
            if zero {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(config)
    }

    /// The effective configuration as TOML, secrets redacted (`logtap check`).
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the config: {e}\n"))
    }
}

/// `ValueEnum` and serde agree on the lowercase names.
const _: fn() = || {
    fn both<T: ValueEnum + for<'de> Deserialize<'de>>() {}
    both::<OutputKind>();
    both::<Compress>();
    both::<LogFormat>();
};

#[cfg(test)]
mod tests {
    use super::*;

    fn toml(text: &str) -> Options {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn file_keys_match_flag_names() {
        let o = toml(
            r#"
            socket = "/run/x.sock"
            output = ["stdout", "forward"]
            forward = ["127.0.0.1:24224", { host = "b", port = 24225, weight = 2, standby = true }]
            require_ack_response = false
            compress = "gzip"
            shared_key = "s3cret"
            flush_interval = "250ms"
            mem_buf_limit = "16MB"
            retry_limit = "no_limits"
            http_listen = "off"
            max_line_bytes = 4096
            partial_flush = "2s"
            grace = 1
        "#,
        );
        let c = Config::from_options(o, Mode::Agent).unwrap();
        assert_eq!(c.socket, PathBuf::from("/run/x.sock"));
        assert_eq!(c.output, vec![OutputKind::Stdout, OutputKind::Forward]);
        assert_eq!(c.forward.len(), 2);
        assert_eq!(c.forward[1].weight, 2);
        assert!(c.forward[1].standby);
        assert!(!c.require_ack_response);
        assert_eq!(c.compress, Compress::Gzip);
        assert_eq!(c.flush_interval.0, Duration::from_millis(250));
        assert_eq!(c.mem_buf_limit.0, 16 << 20);
        assert_eq!(c.http_listen.0, None);
        assert_eq!(c.max_line_bytes.0, 4096);
        assert_eq!(c.grace.0, Duration::from_secs(1));
        let printed = c.to_redacted_toml();
        assert!(printed.contains("<redacted>"), "{printed}");
        assert!(!printed.contains("s3cret"), "{printed}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<Options>("sockett = \"/x\"").unwrap_err();
        assert!(err.to_string().contains("sockett"), "{err}");
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let cli = Options {
            flush_interval: Some(Dur(Duration::from_secs(3))),
            ..Options::default()
        };
        let file = toml("flush_interval = \"2s\"\ntag = \"app.{comm}\"");
        let c = Config::from_options(cli.or(file), Mode::Run).unwrap();
        assert_eq!(c.flush_interval.0, Duration::from_secs(3));
        assert_eq!(c.tag.as_str(), "app.{comm}");
        assert_eq!(c.http_listen.0, None, "run has no HTTP server by default");
        assert!(c.require_ack_response);
    }

    #[test]
    fn forward_output_needs_a_server() {
        let o = toml("output = [\"forward\"]");
        assert!(matches!(
            Config::from_options(o, Mode::Agent),
            Err(ConfigError::ForwardWithoutServer)
        ));
    }
}
