//! `logtap check [OPTIONS]`: validate the configuration and print it, secrets redacted.
//!
//! Every source is read as `logtap agent` would (flags, `LOGTAP_*`, the TOML file), so
//! `logtap check --config FILE` shows exactly what the agent would run with. Exit 0 when the
//! configuration is usable, 2 when it is not (with the reason on stderr).
//!
//! Then, unless `--offline`, each forward server is probed as the forward output would reach it:
//! DNS, TCP connect, TLS (certificate verified), and the `shared_key` handshake when one is set.
//! One line per server on stderr; exit 1 when any server fails.
//!
//! The programs are not judged here: `logtap doctor -- CMD` ([`super::doctor`]) says whether one
//! can be tapped, and the valid-configuration line points there.

use std::process::ExitCode;

use crate::config::cli::CheckArgs;
use crate::config::{Config, Mode};
use crate::pipeline::multiline::Multiline;

/// Runs the check; prints the effective configuration as TOML on stdout.
pub fn main(args: CheckArgs) -> ExitCode {
    match Config::resolve(args.options, Mode::Check) {
        Ok(config) => {
            // The rule sets are compiled here as the agent compiles them at start: a bad regex
            // or an unknown parser name is a configuration error.
            if let Err(e) = Multiline::from_config(&config) {
                eprintln!("logtap check: {e}");
                return ExitCode::from(2);
            }
            print!("{}", config.to_redacted_toml());
            eprintln!(
                "logtap check: configuration is valid (whether a program can be tapped: \
                 logtap doctor -- CMD)"
            );
            if args.offline.unwrap_or(false) || config.forward.is_empty() {
                return ExitCode::SUCCESS;
            }
            if probe_servers(&config) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("logtap check: {e}");
            ExitCode::from(2)
        }
    }
}

/// Probes every forward server; prints one line each. True when all answered.
fn probe_servers(config: &Config) -> bool {
    use crate::output::forward;
    let settings = match forward::ForwardSettings::from_config(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("logtap check: {e}");
            return false;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("logtap check: cannot start the async runtime: {e}");
            return false;
        }
    };
    let what = match (config.tls, config.shared_key.is_some()) {
        (true, true) => "TCP + TLS + shared_key handshake",
        (true, false) => "TCP + TLS",
        (false, true) => "TCP + shared_key handshake",
        (false, false) => "TCP connect",
    };
    let mut all_ok = true;
    for server in &config.forward {
        let started = std::time::Instant::now();
        match runtime.block_on(forward::probe(server, &settings)) {
            Ok(()) => eprintln!(
                "logtap check: forward server {}: ok ({what}, {} ms)",
                server.address(),
                started.elapsed().as_millis()
            ),
            Err(e) => {
                all_ok = false;
                eprintln!(
                    "logtap check: forward server {}: FAILED ({what}): {e}",
                    server.address()
                );
            }
        }
    }
    all_ok
}
