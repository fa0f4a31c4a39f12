//! The command line (DESIGN.md "The command line"; scripts and manifests depend on these names).
//!
//! ```text
//! logtap run   [OPTIONS] -- CMD [ARGS…]   tap CMD with an embedded agent (default output stdout)
//! logtap agent [OPTIONS]                   the daemon: tap socket, outputs, HTTP metrics
//! logtap check [OPTIONS]                   validate the configuration, print it redacted
//! logtap install --to DIR                  copy liblogtap.so and logtap into DIR
//! ```
//! The options of `run`, `agent` and `check` are [`Options`]: each is also a `LOGTAP_<NAME>`
//! variable and a TOML key of the same name.

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand};

use crate::check::CheckArgs;
use crate::config::Options;
use crate::install::InstallArgs;

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
    /// Copy liblogtap.so (and logtap) into a directory: the init-container step.
    Install(InstallArgs),
    /// Send standard input lines as forward events and wait for their acks (like fluent-cat).
    Cat(crate::cat::CatArgs),
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
