//! Contract 2's shared-memory ring: the interceptor's hook copies each tapped write into it
//! ([`Producer`]), the agent drains it ([`Consumer`]). This page is the specification of the
//! ring's layout, **version 1** (magic `LTR1`); change it only together with the version.
//!
//! # Why slots
//! A writer may reserve space and never commit it: its thread is killed, or a signal handler
//! `siglongjmp`s out of the hook between reserve and commit. The consumer must then find the
//! next record without the stuck one's help. So the data area is an array of fixed-size
//! **slots**, each starting with its own atomic **stamp** (Vyukov's bounded queue): the consumer
//! reads slot by slot and never needs a length written by a writer that may never finish. A
//! record spans `k ≥ 1` consecutive slots. (DESIGN.md sketches variable-length records with
//! PADDING; this layout replaces it and needs no padding: slot indices wrap, records do not care.)
//!
//! # Layout
//! Native byte order, which is little-endian on every target logtap supports. One file (a memfd
//! sealed with `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`) of `4096 + N × 128` bytes:
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `LTR1` |
//! | 4 | 4 | version = 1 |
//! | 8 | 4 | slot size = 128 |
//! | 12 | 4 | slot count `N` (power of two, 512 ..= 2^21) |
//! | 16 | 8 | capacity = data area bytes = `N × 128` (64 KiB ..= 256 MiB) |
//! | 24 | 4 | creator pid |
//! | 64 | 8 | `head`: positions reserved by producers (CAS) |
//! | 128 | 8 | `tail`: the consumer's position (all positions below are consumed) |
//! | 192 | 4 | `consumer_sleeping`: 1 while the consumer waits on the wake eventfd |
//! | 256 | 8 | `dropped_records` (producers add when they drop) |
//! | 264 | 8 | `dropped_bytes` |
//! | 272 | 8 | `abandoned_slots` (the consumer adds when it skips an uncommitted slot) |
//! | 320 | 24 | consumer-owned: `dropped_records`, `dropped_bytes`, `abandoned_slots` as already reported by a consumer (0 in a new ring), so that a consumer taking the ring over — an agent restarted — reports the losses that happened meanwhile, and none twice |
//! | 4096 | N × 128 | slots; position `p` (a u64 that only grows) lives in slot `p mod N` |
//!
//! Slot: an 8-byte **stamp**, then 120 data bytes. `stamp = (p << 2) | state` where `p` is the
//! position the stamp speaks of and `state` is 0 FREE (the slot is free for position `p`),
//! 1 FIRST (first slot of a record committed at `p`) or 2 CONT (continuation slot committed at
//! `p`). Initially slot `i` holds FREE(`i`). A record at position `p` with `len` payload bytes
//! takes `k = 1` slot if `len ≤ 96`, else `1 + ⌈(len − 96) / 120⌉`. Its first slot carries, after
//! the stamp, the 24-byte record header — payload_len u32, stream u8, flags u8 (bit 0
//! CONTINUED: the write goes on in the next record), file_index u16, pid u32, seq u32, time_ns
//! u64 — and the first 96 payload bytes; continuation slots carry 120 payload bytes each.
//! `payload_len` is at most `min(64 KiB, 96 + (N/4 − 1) × 120)` (a record never takes more than a
//! quarter of the ring); longer writes are split by the caller (CONTINUED) or sent as DATA frames.
//!
//! # Protocol
//! - **Reserve** (producer): read `head` = h and `tail` = t (a process-local copy of `tail`,
//!   re-read from the header only when it says full); if `h + k − t > N` the ring is full (drop
//!   and count with `note_dropped`); else CAS `head` h → h + k.
//! - **Write and commit**: for each slot, check its stamp is still FREE(p) (else the consumer
//!   skipped us: give up), write the data; then CAS each continuation FREE(p+j) → CONT(p+j), and
//!   last the first slot FREE(p) → FIRST(p) (SeqCst). A failed CAS means the consumer skipped
//!   the reservation: `PushError::Abandoned`.
//! - **Wake**: SeqCst load of `consumer_sleeping`; if it is 1, swap it to 0 and write 1 to the
//!   wake eventfd (raw `SYS_write`, errno preserved).
//! - **Consume** at position `p = tail`: stamp FIRST(p) → bounds-check the header (length ≤ max,
//!   `p + k ≤ head` when k > 1, every continuation CONT), copy the payload out, re-check the first stamp,
//!   set every slot to FREE(p + j + N), store `tail = p + k` (Release). FREE(p) with
//!   `head > p`: reserved, not committed yet: wait; after `stuck_timeout` skip it by CAS
//!   FREE(p) → FREE(p + N) (count `abandoned_slots`). CONT(p): an orphan continuation whose
//!   first slot was skipped: free it the same way. FREE(p + N): a previous consumer freed the
//!   slot but died before storing `tail`: step over it. Anything else: the ring is inconsistent.
//! - **Sleep**: the consumer stores `consumer_sleeping = 1` (SeqCst), re-checks its slot
//!   (SeqCst); it sleeps on the eventfd only if nothing is committed there, with a periodic
//!   timeout no longer than `stuck_timeout` (a stuck writer sends no wake-up). Together with
//!   the producer's SeqCst commit and flag load this is Dekker's handshake: no lost wake-up.
//!
//! A ring outlives both sides: a new consumer on the same memfd resumes at `tail`, and a
//! consumer drains what a dead producer committed.
//!
//! # Known limit
//! A writer descheduled for longer than `stuck_timeout` *in the middle of copying its data*
//! (after its per-slot stamp check) may, when it resumes, overwrite a slot the consumer already
//! skipped and handed to a newer record. Its commit then fails (`Abandoned`), but the newer
//! record may be delivered with damaged bytes or be reported inconsistent. The window is the
//! duration of one `memcpy` of at most 120 bytes per slot, against a timeout of seconds.
//!
//! # Modules
//! - [`layout`] — constants, offsets, stamp encoding, validated geometry.
//! - `record` — the 24-byte record header ([`RecordMeta`]).
//! - `mapping` — the bounds-checked atomic view of one mapping.
//! - `memfd` — creating a sealed ring ([`create_ring_memfd`]), checking seals and size.
//! - `producer` / `consumer` — the two sides.

mod consumer;
mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod layout;
mod mapping;
mod memfd;
mod producer;
mod record;

pub use consumer::{Consumer, ConsumerOptions, Release, RingCounters, unreleased_records};
pub use error::{PushError, RingError};
pub use layout::{DEFAULT_RING_SIZE, MAX_RING_SIZE, MIN_RING_SIZE};
pub use memfd::create_ring_memfd;
pub use producer::Producer;
pub use record::{RECORD_CONTINUED, RecordMeta};
