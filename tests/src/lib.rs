//! Helpers shared by the end-to-end tests in `tests/tests/`.
//!
//! # Layout
//! - [`artifacts`] — where the real `liblogtap.so`, `liblogtap-musl.so` and `logtap` binary are (built by
//!   `cargo build --workspace`, which the README's test command runs first).
//! - [`tap_receiver`] — a test receiver of Contract 2 built from `protocol::tap` and
//!   `protocol::ring`: listens on a `SOCK_SEQPACKET` socket, maps each peer's ring, collects
//!   frames and records.
//! - [`forward_support`] — ports, a test CA (rcgen), and an independent Python Forward client.
//! - [`http`] — `GET` on the agent's HTTP endpoints.
//! - [`scm`] — datagrams with `SCM_RIGHTS` descriptors (HELLO's ring memfd and eventfd).
//! - [`agent_harness`] — starts the real `logtap` binary as a process and talks to it.
//! - [`fault`] — the fault suite's programs, agents, proxy and figures.

pub mod agent_harness;
pub mod artifacts;
pub mod fault;
pub mod forward_support;
pub mod http;
pub mod scm;
pub mod tap_receiver;
