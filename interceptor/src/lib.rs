//! liblogtap.so — taps what an unmodified program writes to stdout, stderr and its log files,
//! and hands a copy to the logtap agent (or appends it to a file), under `LD_PRELOAD`.
//!
//! What it taps, its `LLT_*` settings and its guarantees: `interceptor/README.md`. The rules
//! its hook path keeps (Contract 1) and the wire it speaks to the agent (Contract 2):
//! `DESIGN.md`. What it costs: `bench/RESULTS.md`.
//!
//! # One tapped write, in folder order
//! 1. [`hooks`] — the interposed function (`write` family, stdio with `csrc/stdio_shim.c`)
//!    makes the real call and asks [`hooks::route_for_fd`] whether the descriptor is tapped:
//!    [`streams`] (is fd 1/2 the stdout/stderr the tap was set up for?), [`fd_table`] (is it a
//!    tap file's?).
//! 2. [`sender`] — [`sender::deliver`] stamps the bytes ([`clock`], [`process`]'s pid and
//!    `seq`) and puts them into the ring ([`sender::ring`], over `protocol::ring`), as DATA
//!    frames ([`sender::frames`]) or into a `file:` target; [`sender::connection`] keeps the
//!    agent's control connection.
//!
//! # Below them
//! - [`config`] — the `LLT_*` variables, parsed once at load; [`tap_files`] and [`glob`] —
//!   which paths are tap files, and their index.
//! - [`own_fds`] — the library's own descriptors, kept out of the program's way.
//! - [`process`] — pid, `seq`, the route of a write; [`statics`] — the safe wrappers of the
//!   process-wide statics; [`guard`] — the recursion guard; [`sys`] — raw syscalls, `errno`;
//!   [`debug`](mod@debug) — `LLT_DEBUG_MODE` lines.
//! - `init` — the constructor and destructor.
//!
//! # Where each rule of Contract 1 is kept
//! - No allocation on the hook path: fixed statics ([`statics`]), stack buffers
//!   ([`sender::payload`]); only the constructor allocates (`init`). Checked end to end by
//!   `tests/tests/interceptor_no_alloc.rs`.
//! - No lock: atomics and compare-exchanges ([`statics`], [`sender::connection`],
//!   `protocol::ring`); the only lock is the program's own `flockfile` (`csrc/stdio_shim.c`).
//! - No panic: the lints below; every hook falls back to the real call ([`hooks`]).
//! - `errno` and return values are the real call's ([`sys::ErrnoGuard`], [`hooks`]).
//! - No recursion: raw syscalls ([`sys`]) and the [`guard`].
//! - Never hangs, waits only for a live agent: [`sender::ring`] (full ring),
//!   [`sender::frames`] (full socket), [`sender::connection`] (rate-limited connects).
//! - Our descriptors stay out of the program's way: [`own_fds`]; fork, exec and vfork:
//!   [`sender::after_fork_child`], [`hooks::exec`], [`process::in_vfork_child`].
//! - Only accepted bytes are tapped: [`hooks`], `csrc/stdio_shim.c`; what a tapped write costs
//!   and why: [`process::reserve_seq`], [`clock`], [`sender::ring`].
//! - Large writes are split into records with `CONTINUED`: [`sender::ring`], [`sender::frames`].
//! - Never faults where the program would not (`PR_SET_TSC`): [`clock`].
//! - Which descriptor is which stream: [`streams`].

#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented,
        clippy::unreachable
    )
)]

pub mod clock;
pub mod config;
pub mod debug;
pub mod fd_table;
pub mod glob;
pub mod guard;
pub mod hooks;
pub mod own_fds;
pub mod process;
pub mod sender;
pub mod statics;
pub mod streams;
pub mod sys;
pub mod tap_files;

#[cfg(not(test))]
mod init;
