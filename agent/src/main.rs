//! `logtap`: the command line over the [`logtap_agent`] library — `run`, `agent`, `check`,
//! `install`. `logtap agent` reads as its story: start, wait for a stop signal, drain in time.

#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

use logtap_agent::agent::{Agent, StartError};
use logtap_agent::commands::check;
use logtap_agent::commands::install;
use logtap_agent::commands::run;
use logtap_agent::config::cli::{Cli, Command};
use logtap_agent::config::{self, Config, Mode};
use logtap_agent::input::tap::TapInputError;
use logtap_agent::logging;
use logtap_agent::shutdown::StopSignals;

fn main() -> ExitCode {
    logtap_agent::sys::tune_allocator();
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::main(args),
        Command::Doctor(args) => logtap_agent::commands::doctor::main(args),
        Command::Cat(args) => logtap_agent::commands::cat::main(args),
        Command::Install(args) => match install::install(&args) {
            Ok(done) => {
                for f in &done.files {
                    println!("installed {}", f.display());
                }
                if let Some(e) = &done.musl_missing {
                    eprintln!(
                        "logtap install: {e}. Installed the glibc library only: musl programs \
                         (Alpine images) will run untapped, unharmed"
                    );
                }
                // Single quotes: `$LIB` is for the dynamic loader, not for a shell.
                println!("LD_PRELOAD='{}'", done.preload.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e, 1),
        },
        Command::Run(args) => {
            let config = match configure(args.options, Mode::Run) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match runtime().block_on(run::run(config, args.command)) {
                Ok(code) => ExitCode::from(code),
                Err(e) => fail(&e, e.exit_code()),
            }
        }
        Command::Agent(args) => {
            let config = match configure(args.options, Mode::Agent) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match runtime().block_on(agent_main(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // A live agent's socket, or one we cannot judge: a usage error (2), not a
                    // failure of this agent.
                    let code = match e.downcast_ref::<StartError>() {
                        Some(StartError::Tap(
                            TapInputError::InUse { .. } | TapInputError::Unknown { .. },
                        )) => 2,
                        _ => 1,
                    };
                    fail(&*e, code)
                }
            }
        }
    }
}

/// `logtap agent`: start, wait for SIGTERM/SIGINT, drain within the grace period.
async fn agent_main(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let mut signals = StopSignals::new()?;
    // Each tap peer holds 3 descriptors: the common soft limit of 1024 would stop at ~320.
    logtap_agent::input::capacity::raise_descriptor_limit();
    let agent = Agent::start(&config).await?;
    // systemd's Type=notify: the tap socket listens now, so units ordered after us may start.
    if let Err(e) = logtap_agent::sys::notify_ready() {
        tracing::warn!(error = %e, "cannot tell systemd the agent is ready (NOTIFY_SOCKET)");
    }
    tracing::info!(outputs = ?config.output, version = env!("CARGO_PKG_VERSION"), "logtap agent running");
    let signal = signals.recv().await;
    tracing::info!(%signal, grace = %config.grace, "stopping: draining buffered records");
    tokio::select! {
        clean = agent.drain(config.grace.0) => {
            if !clean {
                tracing::warn!("stopped with records undelivered (see logtap_dropped_records_total)");
            }
        }
        again = signals.recv() => tracing::warn!(signal = %again, "second signal: stopping at once"),
    }
    Ok(())
}

/// Resolves the configuration and starts the log; on error prints it and returns exit code 2.
fn configure(options: config::Options, mode: Mode) -> Result<Config, ExitCode> {
    let config = Config::resolve(options, mode).map_err(|e| fail(&e, 2))?;
    // The multiline rule sets are compiled again at start; a bad one is a usage error, said
    // before anything starts.
    logtap_agent::pipeline::multiline::Multiline::from_config(&config).map_err(|e| fail(&e, 2))?;
    logging::init(config.log_format, &config.log_level);
    Ok(config)
}

/// Two worker threads: draining is cheap per record and the agent aims at less than one core;
/// a few blocking threads serve stdout and file writes.
fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("logtap: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}

fn fail(e: &dyn std::fmt::Display, code: u8) -> ExitCode {
    eprintln!("logtap: {e}");
    ExitCode::from(code)
}
