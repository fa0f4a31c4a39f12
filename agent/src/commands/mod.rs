//! The subcommands other than `logtap agent` (whose assembly is [`crate::agent`]): each takes
//! its configuration from [`crate::config`] and drives the data path.
//!
//! - [`run`] — `logtap run -- CMD`: tap one command with an embedded agent.
//! - [`check`] — `logtap check`: validate the configuration, print it redacted, probe the servers.
//! - [`install`] — `logtap install --to DIR`: the init-container step (both libraries, the `$LIB`
//!   layout).
//! - [`doctor`] — `logtap doctor -- CMD`: can CMD be tapped, and if not, why.
//! - [`program`] — which program runs for a command (PATH, `#!` scripts, an image's root) and its
//!   `libc.so.6`; [`elf`] — what the loader will do with it (static, musl, glibc versions), for
//!   `doctor` and `run`.
//! - [`pipe_capture`] — `logtap run` of a static CMD: its stdout/stderr through pipes.
//! - [`preload`] — where `liblogtap.so` and `liblogtap-musl.so` are, and the `$LIB` layout
//!   (shared by `run` and `install`).
//! - [`cat`] — `logtap cat`: standard input lines as forward events, waiting for their acks.

pub mod cat;
pub mod check;
pub mod doctor;
pub mod elf;
pub mod install;
pub mod pipe_capture;
pub mod preload;
pub mod program;
pub mod run;
