//! The `logtap` agent as a library (the binary is `main.rs`): taps the log output of unmodified programs (with `liblogtap.so`) and ships it to
//! Fluentd / Fluent Bit over the Forward protocol, or prints it as JSON lines.
//!
//! # Map (the data path in folder order; each folder imports only those below it)
//! - [`input`] — the tap socket and one task per tapped process; the forward input.
//! - [`pipeline`] — lines → records (Contract 3) → chunks.
//! - [`buffer`] — bounded memory and the spool; its [`buffer::Router`] hands each chunk to every
//!   output.
//! - [`output`] — receive [`output::Delivery`]s: stdout JSON, null, forward.
//! - [`record`] — what travels along it: entries, chunks, and the ring positions they hold.
//!
//! At the sides: [`config`] (flags, `LOGTAP_*`, TOML → the effective configuration),
//! [`commands`] (`run`, `cat`, `check`, `install`), [`agent`] (`logtap agent`: assembles the
//! path; [`shutdown`] — its signals and drain order), [`http`], [`metrics`], [`logging`]
//! (observability), [`tls`], and [`sys`] — the only `unsafe` (seqpacket sockets,
//! `SCM_RIGHTS`, `kill`).

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
