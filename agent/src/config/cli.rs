//! The command line (DESIGN.md "The command line"; scripts and manifests depend on these names).
//!
//! ```text
//! logtap run   [OPTIONS] -- CMD [ARGS…]   tap CMD with an embedded agent (default output stdout)
//! logtap agent [OPTIONS]                   the daemon: tap socket, outputs, HTTP metrics
//! logtap check [OPTIONS]                   validate the configuration, print it redacted
//! logtap install --to DIR                  copy liblogtap.so, liblogtap-musl.so and logtap into DIR
//! logtap doctor -- CMD [ARGS…]             say whether CMD can be tapped, and why not
//! ```
//! The options of `run`, `agent` and `check` are [`Options`]: each is also a `LOGTAP_<NAME>`
//! variable and a TOML key of the same name.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::units::Dur;
use super::{ForwardServer, Options};

/// logtap: ship the logs of unmodified programs to Fluentd / Fluent Bit.
#[derive(Debug, Parser)]
#[command(name = "logtap", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run CMD with its stdout/stderr tapped by an embedded agent.
    Run(RunArgs),
    /// Run the agent daemon (sidecar, node or VM).
    Agent(AgentArgs),
    /// Validate the configuration and print it with secrets redacted.
    Check(CheckArgs),
    /// Copy liblogtap.so, liblogtap-musl.so (and logtap) into a directory: the init-container step.
    Install(InstallArgs),
    /// Say whether CMD can be tapped by LD_PRELOAD, and why not (static, musl, setuid, old glibc).
    ///
    /// Exit 0: tappable; 1: not tappable; 2: cannot tell (not found, not a program, …).
    Doctor(DoctorArgs),
    /// Send standard input lines as forward events and wait for their acks (like fluent-cat).
    Cat(CatArgs),
}

/// `logtap run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub options: Options,
    /// The command to tap, after `--`.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// `logtap agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub options: Options,
}

/// Options of `logtap check`: the agent's options.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub options: Options,
    /// Only validate and print the configuration: do not contact the forward servers.
    #[arg(long, env = "LOGTAP_OFFLINE", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub offline: Option<bool>,
}

/// Options of `logtap install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Directory to copy liblogtap.so and logtap into (created if missing).
    #[arg(long, env = "LOGTAP_INSTALL_TO", value_name = "DIR")]
    pub to: PathBuf,
    /// liblogtap.so to copy [default: beside the logtap binary].
    #[arg(long, env = "LOGTAP_PRELOAD", value_name = "PATH")]
    pub preload: Option<PathBuf>,
    /// liblogtap-musl.so to copy [default: beside liblogtap.so].
    #[arg(long, env = "LOGTAP_PRELOAD_MUSL", value_name = "PATH")]
    pub preload_musl: Option<PathBuf>,
    /// Copy only the libraries, not the logtap binary (an app container needs the libraries only).
    #[arg(long)]
    pub library_only: bool,
}

/// Options of `logtap doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// liblogtap.so to judge against [default: beside the logtap binary].
    #[arg(long, env = "LOGTAP_PRELOAD", value_name = "PATH")]
    pub preload: Option<PathBuf>,
    /// liblogtap-musl.so [default: beside liblogtap.so].
    #[arg(long, env = "LOGTAP_PRELOAD_MUSL", value_name = "PATH")]
    pub preload_musl: Option<PathBuf>,
    /// Judge CMD inside this directory (an unpacked image) instead of this machine.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The command to judge, after `--` (found in PATH like a shell finds it).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// Options of `logtap cat`: the agent's forward options, plus the server and a timeout.
#[derive(Debug, Args)]
pub struct CatArgs {
    #[command(flatten)]
    pub options: Options,
    /// How long to wait for the acks after the end of input.
    #[arg(long, env = "LOGTAP_CAT_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = Dur::parse)]
    pub timeout: Dur,
    /// The forward server [default: 127.0.0.1:24224, or the --forward / config servers].
    #[arg(value_name = "HOST:PORT")]
    pub server: Option<ForwardServer>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_the_command_after_dashes() {
        let cli = Cli::try_parse_from([
            "logtap", "run", "--output", "null", "--", "python3", "-c", "print(1)",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!()
        };
        assert_eq!(r.command, ["python3", "-c", "print(1)"]);
        assert_eq!(
            r.options.output,
            Some(vec![crate::config::OutputKind::Null])
        );
    }

    #[test]
    fn bool_flags_take_an_optional_value() {
        let cli = Cli::try_parse_from([
            "logtap",
            "agent",
            "--tls",
            "--require-ack-response",
            "false",
        ])
        .unwrap();
        let Command::Agent(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.options.tls, Some(true));
        assert_eq!(a.options.require_ack_response, Some(false));
    }
}
