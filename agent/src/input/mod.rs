//! Inputs: where records come from.
//!
//! - [`tap`] — the tap socket (Contract 2): accepts tapped processes.
//! - [`forward`] — the Forward protocol TCP input (`--forward-listen`), for relaying.
//! - [`peer`] — one tapped process: control frames and its ring.
//! - [`ring_reader`] — that process's ring, read in write order with its frames (`seq`).
//! - [`streams`] — that process's streams: bytes → lines → encoded records.
//! - [`drop_log`] — what that process lost, logged (rate-limited) besides the metrics.
//! - [`identity`] — who a peer is by the kernel (`SO_PEERCRED`, its cgroup) and the kubelet;
//!   [`access`] — who may connect; [`capacity`] — descriptors per peer, `RLIMIT_NOFILE`.
//!
//! Inputs feed the pipeline through a [`crate::pipeline::Ingest`]: encoded entries to be
//! batched ([`crate::pipeline::Ingest::send`]) or, for inputs that receive whole chunks, a
//! chunk straight into the buffer ([`crate::pipeline::Ingest::send_chunk`]).

pub mod access;
pub mod capacity;
pub mod drop_log;
pub mod forward;
pub mod identity;
pub mod peer;
pub mod ring_reader;
pub mod streams;
pub mod tap;
