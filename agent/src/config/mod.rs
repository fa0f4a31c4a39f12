//! The effective configuration: [`Config`], resolved from the [`Options`] of every source.
//!
//! Precedence: flag > environment > TOML file > default. clap already puts the flag before the
//! variable; [`Options::or`] then fills what is still unset from the file, and [`Config::resolve`]
//! applies the defaults and checks values that depend on each other. Names are Fluent Bit's where
//! one exists (`require_ack_response`, `shared_key`, `self_hostname`, `retry_limit`,
//! `storage_path`, `mem_buf_limit`, `flush_interval`, `grace`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

pub mod cli;
pub mod multiline;
pub mod options;
pub mod types;
pub mod units;

use self::multiline::{MultilineSpec, ParserSpec};

use self::units::{Dur, Size};

pub use self::options::Options;

pub use self::types::{
    Compress, ConfigError, ForwardServer, HttpListen, LogFormat, OutputKind, PeerMeta, PeerPid,
    RetryLimit, SocketMode, TagTemplate,
};

/// Defaults, in one place so that `--help`, the README and the code agree.
pub mod defaults {
    /// The agent's tap socket when neither `--socket` nor `LOGTAP_SOCKET` is given.
    pub const SOCKET: &str = "/tmp/logtap.sock";
    /// Owner and group may connect (the app and the agent share a group, or run as one user).
    pub const SOCKET_MODE: u32 = 0o660;
    /// Where `/proc/<pid>/cgroup` is read (the agent sees peers' pids in its PID namespace).
    pub const PROC_ROOT: &str = "/proc";
    /// The kubelet's log links, `<pod>_<namespace>_<container>-<container id>.log`.
    pub const CONTAINERS_DIR: &str = "/var/log/containers";
    pub const TAG: &str = "logtap.{stream}";
    /// How long a sent chunk may wait for its ack (Fluentd's `ack_response_timeout`, whose
    /// default is 190 s; a shorter wait moves chunks to the next server sooner).
    pub const ACK_RESPONSE_TIMEOUT_MS: u64 = 30_000;
    /// Like Fluent Bit's `flush 1`.
    pub const FLUSH_INTERVAL_MS: u64 = 1000;
    /// Room for eight chunks of [`CHUNK_LIMIT_SIZE`] waiting for their acks while the next
    /// ones fill: acks in flight do not stop the agent reading the rings (issue 14).
    pub const MEM_BUF_LIMIT: u64 = 16 << 20;
    /// Fluent Bit's chunk size (≈ 2 MB): 1M lines of 100 B go out in ≈ 65 chunks, not 500.
    pub const CHUNK_LIMIT_SIZE: u64 = 2 << 20;
    /// Chunks sent to one server and not yet acknowledged, at most.
    pub const MAX_CHUNKS_IN_FLIGHT: usize = 16;
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

/// Which subcommand the configuration is for: some defaults differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Agent,
    Run,
    Check,
}

/// A user of the forward input's handshake. Printed (by `logtap check`) as `USER:<redacted>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenUser {
    pub username: String,
    pub password: Secret,
}

impl ListenUser {
    /// Parses `USER:PASSWORD` (the password may contain `:`; it may be empty, as in Fluentd).
    pub fn parse(text: &str) -> Result<ListenUser, ConfigError> {
        match text.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(ListenUser {
                username: user.to_owned(),
                password: Secret(password.to_owned()),
            }),
            _ => Err(ConfigError::ListenUser(
                text.split(':').next().unwrap_or_default().to_owned(),
            )),
        }
    }
}

impl Serialize for ListenUser {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}:<redacted>", self.username))
    }
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_owner: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_group: Option<u32>,
    pub socket_uid: Vec<u32>,
    pub socket_gid: Vec<u32>,
    pub peer_meta: PeerMeta,
    pub peer_pid: PeerPid,
    pub proc_root: PathBuf,
    pub containers_dir: PathBuf,
    pub output: Vec<OutputKind>,
    pub forward: Vec<ForwardServer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_listen: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forward_listen_users: Vec<ListenUser>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_listen_tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_listen_tls_key: Option<PathBuf>,
    pub tag: TagTemplate,
    pub require_ack_response: bool,
    pub ack_response_timeout: Dur,
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
    pub chunk_limit_size: Size,
    pub max_chunks_in_flight: usize,
    pub retry_limit: RetryLimit,
    pub http_listen: HttpListen,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preload: Option<PathBuf>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub max_line_bytes: Size,
    pub partial_flush: Dur,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiline: Option<MultilineSpec>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub multiline_parser: Vec<ParserSpec>,
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
        let log_level = o
            .log_level
            .unwrap_or_else(|| if mode == Mode::Run { "warn" } else { "info" }.to_owned());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(ConfigError::LogLevel(log_level));
        }
        let http_default = match mode {
            Mode::Run => HttpListen(None),
            Mode::Agent | Mode::Check => {
                HttpListen(defaults::AGENT_HTTP_LISTEN.parse::<SocketAddr>().ok())
            }
        };
        let forward_listen_users = o
            .forward_listen_users
            .unwrap_or_default()
            .iter()
            .map(|u| ListenUser::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        if !forward_listen_users.is_empty() && o.shared_key.is_none() {
            return Err(ConfigError::UsersWithoutSharedKey);
        }
        let config = Config {
            socket: o.socket.unwrap_or_else(|| PathBuf::from(defaults::SOCKET)),
            socket_mode: o.socket_mode.unwrap_or(SocketMode(defaults::SOCKET_MODE)),
            socket_owner: o.socket_owner,
            socket_group: o.socket_group,
            socket_uid: o.socket_uid.unwrap_or_default(),
            socket_gid: o.socket_gid.unwrap_or_default(),
            peer_meta: o.peer_meta.unwrap_or_default(),
            peer_pid: o.peer_pid.unwrap_or_default(),
            proc_root: o
                .proc_root
                .unwrap_or_else(|| PathBuf::from(defaults::PROC_ROOT)),
            containers_dir: o
                .containers_dir
                .unwrap_or_else(|| PathBuf::from(defaults::CONTAINERS_DIR)),
            output,
            forward,
            forward_listen: o.forward_listen,
            forward_listen_users,
            forward_listen_tls_cert: o.forward_listen_tls_cert,
            forward_listen_tls_key: o.forward_listen_tls_key,
            tag,
            require_ack_response: o.require_ack_response.unwrap_or(true),
            ack_response_timeout: o.ack_response_timeout.unwrap_or(Dur(Duration::from_millis(
                defaults::ACK_RESPONSE_TIMEOUT_MS,
            ))),
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
            chunk_limit_size: o
                .chunk_limit_size
                .unwrap_or(Size(defaults::CHUNK_LIMIT_SIZE)),
            max_chunks_in_flight: o
                .max_chunks_in_flight
                .unwrap_or(defaults::MAX_CHUNKS_IN_FLIGHT),
            retry_limit: o.retry_limit.unwrap_or(RetryLimit(None)),
            http_listen: o.http_listen.unwrap_or(http_default),
            preload: o.preload,
            log_format: o.log_format.unwrap_or(LogFormat::Text),
            log_level,
            max_line_bytes: o.max_line_bytes.unwrap_or(Size(defaults::MAX_LINE_BYTES)),
            partial_flush: o
                .partial_flush
                .unwrap_or(Dur(Duration::from_millis(defaults::PARTIAL_FLUSH_MS))),
            multiline: o.multiline,
            multiline_parser: o.multiline_parser.unwrap_or_default(),
            grace: o
                .grace
                .unwrap_or(Dur(Duration::from_millis(defaults::GRACE_MS))),
        };
        for (name, zero) in [
            ("flush-interval", config.flush_interval.0.is_zero()),
            (
                "ack-response-timeout",
                config.ack_response_timeout.0.is_zero(),
            ),
            ("partial-flush", config.partial_flush.0.is_zero()),
            ("mem-buf-limit", config.mem_buf_limit.0 == 0),
            ("chunk-limit-size", config.chunk_limit_size.0 == 0),
            ("max-chunks-in-flight", config.max_chunks_in_flight == 0),
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
    both::<PeerMeta>();
    both::<PeerPid>();
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
            chunk_limit_size = "512KB"
            max_chunks_in_flight = 4
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
        assert_eq!(c.chunk_limit_size.0, 512 << 10);
        assert_eq!(c.max_chunks_in_flight, 4);
        assert_eq!(c.http_listen.0, None);
        assert_eq!(c.max_line_bytes.0, 4096);
        assert_eq!(c.grace.0, Duration::from_secs(1));
        let printed = c.to_redacted_toml();
        assert!(printed.contains("<redacted>"), "{printed}");
        assert!(!printed.contains("s3cret"), "{printed}");
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
    fn forward_listen_users_need_the_shared_key_and_are_printed_redacted() {
        let o = toml(
            r#"
            shared_key = "k"
            forward_listen_users = ["alice:wonder:land", "bob:"]
        "#,
        );
        let c = Config::from_options(o, Mode::Agent).unwrap();
        assert_eq!(
            c.forward_listen_users,
            [
                ListenUser {
                    username: "alice".into(),
                    password: Secret("wonder:land".into())
                },
                ListenUser {
                    username: "bob".into(),
                    password: Secret(String::new())
                },
            ]
        );
        let printed = c.to_redacted_toml();
        assert!(printed.contains("alice:<redacted>"), "{printed}");
        assert!(!printed.contains("wonder"), "{printed}");
        // What `logtap check` prints reads back (with the passwords to be filled in).
        assert!(toml::from_str::<Options>(&printed).is_ok(), "{printed}");

        let no_key = toml(r#"forward_listen_users = ["alice:x"]"#);
        assert!(matches!(
            Config::from_options(no_key, Mode::Agent),
            Err(ConfigError::UsersWithoutSharedKey)
        ));
        for bad in [r#"["alice"]"#, r#"[":pw"]"#] {
            let o = toml(&format!("shared_key = \"k\"\nforward_listen_users = {bad}"));
            assert!(
                matches!(
                    Config::from_options(o, Mode::Agent),
                    Err(ConfigError::ListenUser(_))
                ),
                "{bad}"
            );
        }
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
