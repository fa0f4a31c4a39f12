//! logtap's wire formats, shared by the interceptor (`liblogtap.so`) and the agent (`logtap`).
//!
//! # Layout
//! - [`tap`] — Contract 2's control frames (HELLO, DATA, LOSS, FILE) sent by the interceptor to
//!   the agent over a `SOCK_SEQPACKET` socket. Encoding needs no allocation and no std I/O: the
//!   interceptor calls it from inside `write()`.
//! - [`ring`] — Contract 2's shared-memory ring: the lock-free multi-producer [`ring::Producer`]
//!   (the interceptor's hook path) and the [`ring::Consumer`] (the agent), which treats the ring
//!   as hostile memory.
//! - [`forward`] — Contract 4, the Fluentd Forward protocol v1 (feature `forward`, on by default):
//!   EventTime, the four modes, options, acks, the HELO/PING/PONG handshake and a streaming
//!   decoder (a tokio-util codec with feature `codec`).
//! - [`msgpack`] — a tiny allocation-free MessagePack writer and a bounded reader, used by the
//!   tap payloads (HELLO, LOSS, FILE).
//!
//! The interceptor depends on this crate with `default-features = false`: `tap`, `ring` and
//! `msgpack` only, no allocation on their write paths.

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod msgpack;
pub mod ring;
pub mod tap;

#[cfg(feature = "forward")]
pub mod forward;
