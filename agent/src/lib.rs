//! The `logtap` agent as a library (the binary is `main.rs`): taps the log output of unmodified programs (with `liblogtap.so`) and ships it to
//! Fluentd / Fluent Bit over the Forward protocol, or prints it as JSON lines.
//!
//! # Layout (the data path in folder order)
//! - [`input`] — the tap socket and one task per tapped process (ring draining, frames).
//! - [`pipeline`] — lines → records (Contract 3) → chunks.
//! - [`buffer`] — bounded memory (`mem_buf_limit`); chunks leave when every output acked them.
//! - [`output`] — stdout JSON, null (and forward).
//! - [`agent`] — assembles the above; [`shutdown`] — the signals and the drain order.
//! - [`cli`], [`options`], [`config`], [`config_types`], [`units`] — options: flags,
//!   `LOGTAP_*`, TOML, and the effective configuration.
//! - [`run`], [`install`], [`check`] — the other subcommands.
//! - [`http`], [`metrics`], [`logging`] — observability. [`record`] — the units in transit.
//! - [`sys`] — the only `unsafe` (seqpacket sockets, `SCM_RIGHTS`, `kill`).

#![deny(unsafe_code)]

pub mod agent;
pub mod buffer;
pub mod commands;
pub mod config;
pub mod http;
pub mod input;
pub mod logging;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod record;
pub mod shutdown;
#[allow(unsafe_code)]
pub mod sys;
pub mod tls;
