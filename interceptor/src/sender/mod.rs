//! Delivering tapped bytes to `LLT_TARGET`: the `file:` target, or the agent (Contract 2).
//!
//! # Layout
//! - [`payload`] — the bytes of one tapped call (one buffer or an iovec array) cut into
//!   record-sized chunks without copying.
//! - [`file_target`] — `file:PATH`: raw bytes appended to a file, as the seed does.
//! - [`ring`] — the process's shared-memory ring: created on first use, pushed to by every
//!   tapped write, replaced in a forked child.
//! - [`connection`] — the control connection: rate-limited connects, HELLO with the ring's
//!   fds, hang-up detection without a syscall per write.
//! - [`frames`] — the DATA-frame transport (`LLT_TRANSPORT=socket`): DATA frames on the
//!   control connection.
//! - [`hello`] — what the HELLO says about the process.
//! - [`loss`] — copies dropped outside the ring, reported in LOSS frames.
//!
//! [`deliver`] returns how many leading bytes reached a place from which the agent will get
//! them. For a *suppressed* stream the caller writes the rest to the real descriptor (fail
//! open); for other streams a shortfall is counted as loss.

pub mod connection;
pub mod file_target;
pub mod frames;
pub mod hello;
pub mod loss;
pub mod payload;
pub mod ring;

use crate::config::{self, TargetKind, Transport};
pub use payload::Payload;

use crate::process::{self, Route};

/// Delivers the first `len` bytes of `data`; returns how many leading bytes were delivered.
pub fn deliver(route: Route, data: &Payload<'_>, len: usize) -> usize {
    let Some(cfg) = config::get() else { return 0 };
    let len = len.min(data.len());
    if len == 0 {
        return 0;
    }
    let now = crate::clock::record_time_ns();
    match cfg.target_kind {
        TargetKind::File => file_target::deliver(cfg, data, len, now),
        TargetKind::Socket => {
            let connected = connection::maintain(cfg, now);
            let ring = match cfg.transport {
                // Without its memfd (closed behind our back) the ring could not be passed to
                // an agent again: fall back to DATA frames.
                Transport::Ring => ring::get_or_create(cfg).filter(|_| ring::passable()),
                Transport::Socket => None,
            };
            match ring {
                Some(producer) => ring::deliver(producer, route, data, len, now, connected),
                None => frames::deliver_frames(route, data, len, now, connected),
            }
        }
    }
}

/// Called at exit: hands the ring to the agent if that has not happened yet (one immediate
/// connection attempt), then reports losses still pending (bounded wait).
pub fn on_exit() {
    if let Some(cfg) = config::get()
        && cfg.target_kind == TargetKind::Socket
    {
        connection::connect_at_exit(cfg);
        connection::flush_at_exit();
    }
}

/// The destructor's exit (a normal `exit`): [`on_exit`], then, if still no agent holds the
/// ring, the suppressed records no agent made safe are written where the program wrote them
/// ([`ring::write_back_suppressed`]; allocates, so not from the `_exit`/`exec` hooks).
pub fn on_exit_destructor() {
    on_exit();
    if let Some(cfg) = config::get()
        && cfg.target_kind == TargetKind::Socket
        && cfg.transport == Transport::Ring
        && !connection::is_connected()
    {
        let _ = ring::write_back_suppressed(cfg);
    }
}

/// Called in the child after `fork()`: the child is a new process with its own ring,
/// connection and sequence numbers, and inherits nothing of ours that could disturb the parent.
pub fn after_fork_child() {
    process::set_pid(crate::sys::getpid());
    crate::clock::after_fork_child();
    crate::guard::after_fork_child();
    ring::forget_in_child();
    connection::forget_in_child();
    frames::forget_in_child();
    loss::reset();
    crate::tap_files::reset_announced();
}
