//! liblogtap.so — taps what an unmodified program writes to stdout, stderr and its log files,
//! and hands a copy to the logtap agent (or appends it to a file), under `LD_PRELOAD`.
//!
//! # Layout
//! - [`config`] — the `LLT_*` variables, parsed once at load.
//! - [`hooks`] — the interposed functions: `write` family, stdio (with `csrc/stdio_shim.c`),
//!   open/dup/close family.
//! - [`fd_table`], [`tap_files`], [`glob`] — which descriptors are tap files, and their index.
//! - [`sender`] — delivering copies: `file:` target, ring, control connection, LOSS.
//! - [`own_fds`] — the library's own descriptors and how they are kept out of the app's way.
//! - [`clock`] — record timestamps (`CLOCK_REALTIME` from the TSC where the kernel uses it).
//! - [`sys`] — raw syscalls for the library's own I/O; [`guard`] — the recursion guard;
//!   [`debug`](mod@debug) — `LLT_DEBUG_MODE` lines.
//!
//! # Design note: how each rule of Contract 1 is met
//! - **No heap allocation on the hook path.** State is statics (atomics, fixed arrays); bytes
//!   go from the app's buffer straight into the ring (or into a `sendmsg` iovec); small
//!   vectored writes are gathered in a 512-byte stack buffer; HELLO is encoded into a static
//!   scratch area owned by the one thread that connects. Creating the ring and connecting
//!   happen lazily inside a hook, using only syscalls (`memfd_create`, `mmap`, `socket`,
//!   `connect`, `sendmsg`) and no allocator. Only the constructor allocates (glibc's `setenv`
//!   for `PYTHONUNBUFFERED`), before `main`. The stdio shim formats into a per-thread buffer or
//!   an anonymous `mmap`, never `malloc`.
//! - **No mutex.** Config: written once by the constructor, published with Release. Fd table,
//!   tap-file registry, connection state and loss counters: atomics with CAS. The ring
//!   reserves by CAS (`protocol::ring`). The only lock taken is the app's own `flockfile` in
//!   stdio hooks, which keeps the tapped order equal to the FILE's order (stdio is not
//!   async-signal-safe anyway).
//! - **No panics.** The crate denies `indexing_slicing`, `arithmetic_side_effects`,
//!   `unwrap_used`, `expect_used` and `panic` outside tests: every access is `get`, every sum
//!   saturating/checked/wrapping. Each hook falls back to the real call when anything is off.
//! - **`errno` and return values.** Saved before, restored after any library work
//!   ([`sys::ErrnoGuard`]); the real call's result is returned unchanged, or the full count
//!   for a suppressed stream whose copy was delivered.
//! - **Recursion guard.** The library's own I/O uses raw syscalls ([`sys`]) that never reach a
//!   hook; code that does call interposed names (protocol crate, `dlsym`, constructor) runs
//!   under a per-thread guard ([`guard`]) during which hooks pass through.
//! - **Never hangs; waits only for a live agent.** Sends are `MSG_DONTWAIT | MSG_NOSIGNAL` on a
//!   non-blocking socket; `connect` on a non-blocking Unix socket completes or fails at once.
//!   A write that finds the ring full waits for room by default (`LLT_RING_FULL=block`, as
//!   Docker's log drivers do) — but only while an agent holds the ring and its `tail` moves:
//!   `nanosleep` naps of 50 µs and retries, the eventfd written if the consumer sleeps; raw
//!   syscalls and atomics only, no lock, no allocation. Once the tail has not moved for 200 ms
//!   (of rounds in which the program itself ran; 1 s of wall time at most) the agent is taken
//!   for stopped or dead: the copy is dropped and counted — in the ring header
//!   (`note_dropped`) or in LOSS frames — and later writes drop at once until the tail moves
//!   again, so a SIGSTOPped agent costs a program one 200 ms wait ([`sender::ring`]).
//!   No agent: no wait. A full control socket (`LLT_TRANSPORT=socket`) is waited on the same
//!   way (`poll`). `LLT_RING_FULL=drop` drops at once, except the parts of a write larger
//!   than one record, which wait (same bound) so that it is not cut in the middle. A
//!   suppressed stream whose copy is not taken writes for real (fail open).
//! - **Rate-limited reconnects.** Atomic timestamps. The first attempt is at once (first
//!   tapped write); inside `LLT_TARGET_1STCONNECT` a process never connected retries every
//!   100 ms, afterwards once per `LLT_TARGET_RECONNECT`; at exit one more attempt hands the
//!   ring over ([`sender::connection`]). Hang-up is noticed by a `recv(MSG_PEEK)` at most once
//!   a second, not per write.
//! - **Our descriptors.** Close-on-exec, moved to ≥ 900 (or ¾ of a small `RLIMIT_NOFILE`),
//!   never 0/1/2; reconnects `dup3` onto the same number; `close`/`close_range` of our numbers
//!   by the app is skipped; `dup2` onto one moves ours away first ([`own_fds`]). A descriptor
//!   closed behind our back with a raw syscall is noticed by its (dev, inode) within a second
//!   and forgotten, never closed or written again.
//! - **fork / exec.** `pthread_atfork` child handler: new pid, `seq` from 0, our copies of the
//!   parent's ring and socket closed, a new ring and connection on the child's first tapped
//!   write. exec: everything of ours is close-on-exec; `LD_PRELOAD` is inherited, so the new
//!   image loads the library anew and keeps tapping. A `vfork()` child (CPython's subprocess,
//!   which closes every fd above 2 before `exec`) shares the parent's memory and runs no
//!   atfork handler: the close/open/dup hooks notice it by its pid and leave the parent's fd
//!   table alone.
//! - **Only accepted bytes.** The real call runs first and only its first `r` bytes are
//!   tapped (stdio: the bytes the FILE accepted; bytes inlined `putc_unlocked` & co. put into
//!   a FILE's buffer are caught up from the buffer where the FILE may write it out — see
//!   `csrc/stdio_shim.c`).
//! - **What a tapped write costs, and why.** Beyond the real call: one route lookup, one
//!   timestamp, one `seq`, one ring record. The timestamp is a plain `rdtsc` converted with a
//!   calibration that is re-anchored to `CLOCK_REALTIME` every millisecond ([`clock`]; where
//!   the kernel does not keep time with the TSC, or with `LLT_CLOCK=realtime`, a
//!   `clock_gettime` call). `seq` is a locked `fetch_add`, except while glibc says the process
//!   has a single thread (`__libc_single_threaded`): then one non-locked `xadd` instruction,
//!   which a signal handler cannot split ([`process::reserve_seq`]). The ring record costs two
//!   locked compare-exchanges (reserve, commit) on lines that the push before prefetched for
//!   writing. `printf` on a fully buffered FILE (stdout into a pipe or file, the container
//!   case) is formatted by the real `vfprintf` straight into the FILE's buffer and tapped from
//!   there, once; only when the buffer fills up in mid-call is the output formatted a second
//!   time for the tap (see `csrc/stdio_shim.c`). Figures: bench/RESULTS.md.
//! - **Never fault where the program would not.** `rdtsc` (ours, and the vDSO's inside
//!   `clock_gettime`) raises SIGSEGV once a thread calls `prctl(PR_SET_TSC, PR_TSC_SIGSEGV)`:
//!   the shim hooks `prctl` and, before the call, switches the library to the
//!   `clock_gettime` system call for good ([`clock`]).
//! - **Large writes.** Split into ring records of at most `max_payload` bytes (DATA frames of
//!   at most 64 KiB) with CONTINUED on all but the last and consecutive `seq` numbers.
//!
//! # Decisions the seed left open
//! - `LLT_SUPPRESS_STDOUT` suppresses fd 1 only; `LLT_SUPPRESS_STDERR` (new) suppresses fd 2.
//! - The stream of a write is decided by descriptor: a tap file's descriptor is "file" even
//!   when it is 1 or 2 (after `dup2`); otherwise fd 1 / fd 2 are stdout / stderr only while
//!   they are the stdout / stderr of the first tapped process of the tree, and a descriptor
//!   redirected onto the other one is tapped as that one (`2>&1` onto the real stdout: stdout).
//!   Anything else (a command substitution's pipe, `/dev/null`, a file) is neither tapped nor
//!   suppressed ([`streams`]).
//! - `LLT_TARGET_1STCONNECT` (default 5 s) is the time during which a missing agent is
//!   expected (a sidecar starting): the first attempt is at once, failed ones are retried every
//!   100 ms inside it, every `LLT_TARGET_RECONNECT` after it. Records written before the agent
//!   is reached wait in the ring (socket transport: counted as lost; suppressed: written); at
//!   exit a process not yet connected tries once more, so a short-lived program's ring still
//!   reaches the agent (a process that ends with `_exit` or `exec` runs no destructor).
//! - `LLT_RING_FULL` (new): `block` (default, Docker's `mode: blocking`) or `drop` (Docker's
//!   `mode: non-blocking`); the wait's 200 ms bound is documented in [`sender::ring`].
//! - `LLT_TAP_INTO` also takes `none`, `stdout`, `stderr`, `both`. A malformed value taps
//!   nothing and, unlike other malformed values, is said on stderr without debug mode
//!   (`[liblogtap] ignoring malformed LLT_TAP_INTO=…`), once per process tree
//!   (`LLT_TAP_INTO_REPORTED` in the environment the children inherit).
//! - A suppressed stream counts as delivered only while an agent holds the ring.
//! - `PYTHONUNBUFFERED=1` is injected only when unset, and not with `LLT_PYTHONUNBUFFERED=false`.
//! - `LLT_CLOCK` (new): `auto` (default) or `realtime`; see [`clock`].
//! - `LLT_TAP_CHILDREN` (new, default `true`, as the seed: `LD_PRELOAD` is inherited): `false`
//!   takes the library out of the `LD_PRELOAD` that `exec`ed programs inherit (constructor).

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
