//! `logtap check [OPTIONS]`: validate the configuration and print it, secrets redacted.
//!
//! Every source is read as `logtap agent` would (flags, `LOGTAP_*`, the TOML file), so
//! `logtap check --config FILE` shows exactly what the agent would run with. Exit 0 when the
//! configuration is usable, 2 when it is not (with the reason on stderr).

use std::process::ExitCode;

use clap::Args;

use crate::config::{Config, Mode, Options};

/// Options of `logtap check`: the agent's options.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub options: Options,
}

/// Runs the check; prints the effective configuration as TOML on stdout.
pub fn main(args: CheckArgs) -> ExitCode {
    match Config::resolve(args.options, Mode::Check) {
        Ok(config) => {
            print!("{}", config.to_redacted_toml());
            eprintln!("logtap check: configuration is valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("logtap check: {e}");
            ExitCode::from(2)
        }
    }
}
