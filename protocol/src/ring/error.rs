//! Errors of the ring: [`RingError`] for setting a ring up and for a consumer that finds the ring
//! inconsistent. The producer's [`PushError`](super::PushError) lives with the algorithm in `raw`
//! (`core` only: the hook must neither allocate nor format anything).

use std::io;

/// Creating, mapping or consuming a ring failed.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// A system call failed (memfd_create, ftruncate, mmap, fcntl, fstat).
    #[error("ring: {op} failed: {source}")]
    Syscall {
        /// The call that failed.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The fd is not sealed against shrinking and growing: its owner could truncate it under our
    /// mapping (SIGBUS). The peer must create its ring with `create_ring_memfd`.
    #[error(
        "ring memfd is not sealed against shrink and grow (seals {seals:#x}); \
         the peer must create it with create_ring_memfd"
    )]
    NotSealed {
        /// The seals found (F_GET_SEALS), or -1 if the fd cannot carry seals.
        seals: i32,
    },
    /// The file's size does not match the geometry its header declares.
    #[error("ring memfd has {size} bytes, its header declares {expected}")]
    BadSize {
        /// Size reported by fstat.
        size: u64,
        /// Header page plus the declared data area.
        expected: u64,
    },
    /// The ring is a logtap ring of another layout version: the library that created it and
    /// this agent come from releases that do not share Contract 2's ring layout.
    #[error(
        "ring layout version {found}, this build reads version {expected} only: liblogtap.so \
         and the logtap agent come from different releases; install matching versions, or \
         set LLT_TRANSPORT=socket in the tapped program until they match"
    )]
    Version {
        /// The version in the ring's header (offset 4).
        found: u32,
        /// The only version this build reads ([`super::layout::VERSION`]).
        expected: u32,
    },
    /// The header's fixed fields are not those of a version-3 logtap ring.
    #[error("not a usable logtap ring: {reason}")]
    BadHeader {
        /// Which field is wrong.
        reason: &'static str,
    },
    /// The ring's content contradicts the protocol (corrupted or hostile peer). The consumer
    /// cannot go on safely: drop the peer.
    #[error("ring inconsistent at position {pos}: {reason}; dropping this peer's ring")]
    Inconsistent {
        /// Consumer position (in 8-byte words) where the inconsistency was found.
        pos: u64,
        /// What was wrong.
        reason: &'static str,
    },
}

impl RingError {
    /// The error for the last OS error of call `op`.
    pub(crate) fn last_os(op: &'static str) -> RingError {
        RingError::Syscall {
            op,
            source: io::Error::last_os_error(),
        }
    }
}
