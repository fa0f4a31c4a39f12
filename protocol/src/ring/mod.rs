//! Contract 2's shared-memory ring: the interceptor's hook copies each tapped write into it
//! ([`Producer`]), the agent drains it ([`Consumer`]). This page is the specification of the
//! ring's layout, **version 2** (magic `LTR1`); change it only together with the version.
//! Version 2 differs from version 1 in the stamp only: it names the position's *lap* instead of
//! the position, so that a fresh, zero-filled memfd is already an empty ring (issue 14: version
//! 1 wrote every slot's stamp at creation, which allocated and zeroed the whole ring in the
//! process's first tapped write — 65,540 page faults and 0.2–0.3 s for a 256 MiB ring, 0.8 ms
//! and 1 MiB of memory at the default size, even for a program that writes one line; now 5–8
//! faults and 0.1 ms whatever the size, and pages are allocated as the writer reaches them).
//!
//! # Versions: an old library and a new agent
//! Both sides check the header's magic and version (offset 4) when they map a ring, and read
//! only their own version. An agent handed a ring of another version (the library and the agent
//! come from different releases) refuses it with [`RingError::Version`], which names both
//! versions and the remedy; the agent logs it (`dropping tap peer`, with the pid), counts the
//! peer as rejected and closes the connection. The tap protocol has no message from the agent
//! to the library, so the library only sees the hang-up: it reconnects (on its usual schedule,
//! `LLT_TARGET_RECONNECT`) and hands the same ring over again, which is refused and logged
//! again. Meanwhile its copies wait in the ring; once it is full they are dropped and counted
//! in the ring's header (which no agent reads), and a suppressed stream is written for real
//! (fail-open). So the two do not work together and say so in the agent's log; the fix is a
//! library and an agent of one release, or `LLT_TRANSPORT=socket` in the tapped program until
//! then (DATA frames do not depend on the ring layout). Concretely: a library from before
//! version 2 (issue 14) and this agent refuse each other this way, in both directions (an old
//! agent rejects a version-2 ring with "unsupported ring layout version"). Test:
//! `tests/tests/agent_tap.rs::a_ring_of_another_layout_version_is_refused_by_name`.
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
//! | 4 | 4 | version = 2 |
//! | 8 | 4 | slot size = 128 |
//! | 12 | 4 | slot count `N` (power of two, 512 ..= 2^21) |
//! | 16 | 8 | capacity = data area bytes = `N × 128` (64 KiB ..= 256 MiB) |
//! | 24 | 4 | creator pid |
//! | 64 | 8 | `head`: positions reserved by producers (CAS) |
//! | 128 | 8 | `tail`: the release position — every position below it is *released* (safe with the consumer, or consumed by a non-holding one), and its slots free for producers |
//! | 192 | 4 | `consumer_sleeping`: 1 while the consumer waits on the wake eventfd |
//! | 256 | 8 | `dropped_records` (producers add when they drop) |
//! | 264 | 8 | `dropped_bytes` |
//! | 272 | 8 | `abandoned_slots` (the consumer adds when it skips an uncommitted slot) |
//! | 320 | 24 | consumer-owned: `dropped_records`, `dropped_bytes`, `abandoned_slots` as already reported by a consumer (0 in a new ring), so that a consumer taking the ring over — an agent restarted — reports the losses that happened meanwhile, and none twice |
//! | 344 | 8 | consumer-owned: the *read position* of a holding consumer (0 in a new ring; diagnostic — a successor counts the records it reads twice) |
//! | 352 | 8 | consumer-owned: the *heartbeat*, a counter a holding consumer increments (every 20 ms in the agent) while it makes progress; a producer waiting for room keeps waiting while `tail` or the heartbeat moves ([`Producer::consumed`]) |
//! | 4096 | N × 128 | slots; position `p` (a u64 that only grows) lives in slot `p mod N` |
//!
//! Slot: an 8-byte **stamp**, then 120 data bytes. `stamp = ((p / N) << 2) | state` where `p` is the
//! position the stamp speaks of (the slot's index is `p mod N`, so the lap `p / N` names it) and `state` is 0 FREE (the slot is free for position `p`),
//! 1 FIRST (first slot of a record committed at `p`) or 2 CONT (continuation slot committed at
//! `p`). Initially slot `i` holds FREE(`i`), which is 0: a new ring's data area is
//! never written at creation (the memfd is zero-filled). A record at position `p` with `len` payload bytes
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
//! - **Consume** at the consumer's *read position* `p` (private; it starts at `tail`): stamp
//!   FIRST(p) → bounds-check the header (length ≤ max, `p + k ≤ head` when k > 1, every
//!   continuation CONT), copy the payload out, re-check the first stamp, move the read position
//!   to `p + k`. FREE(p) with `head > p`: reserved, not committed yet: wait; after
//!   `stuck_timeout` skip it by CAS FREE(p) → FREE(p + N) (count `abandoned_slots`). CONT(p):
//!   an orphan continuation whose first slot was skipped: free it the same way. FREE(p + N): a
//!   previous consumer released the slot but died before storing `tail`, or skipped it as
//!   abandoned: step over it. Anything else: the ring is inconsistent. When the read position is
//!   a whole ring ahead of `tail` (everything read, nothing released), nothing can be read until
//!   a release (the slot there still holds the record of the previous round).
//! - **Release** up to position `q` (≤ the read position), once every record read below `q`
//!   is safe: set every slot in `tail .. q` to FREE(p + N) (first slot first), then store
//!   `tail = q` (Release). A *non-holding* consumer ([`Consumer::open`]) releases each record as
//!   it reads it; the agent holds ([`Consumer::open_holding`] and [`Release`]) — see below.
//! - **Sleep**: the consumer stores `consumer_sleeping = 1` (SeqCst), re-checks its slot
//!   (SeqCst); it sleeps on the eventfd only if nothing is committed there, with a periodic
//!   timeout no longer than `stuck_timeout` (a stuck writer sends no wake-up). Together with
//!   the producer's SeqCst commit and flag load this is Dekker's handshake: no lost wake-up.
//!
//! A ring outlives both sides: a new consumer on the same memfd resumes at `tail`, and a
//! consumer drains what a dead producer committed.
//!
//! # When a record is released (the agent)
//! The space producers may reuse (`tail`) moves only past records that are **safe**: written in
//! a chunk file under the agent's `storage_path`, or — without one — acknowledged by every
//! output (a Forward server's ack, a line written to stdout, or an output giving the chunk up
//! after its `retry_limit`, which is counted as a drop). The agent's read position is its own.
//! So an agent killed at any moment loses nothing: the next agent (the process reconnects and
//! passes the same memfd) resumes at `tail` and reads again every record that was not safe.
//! Records that *were* delivered but not yet released come twice: duplicates after a crash are
//! possible and counted (`logtap_ring_records_reread_total`, from the read position at offset
//! 344); loss is not. The agent tracks, per ring, the start of the oldest record not yet safe —
//! records of one ring end up in many chunks, line assembly joins records, and chunks become
//! safe in any order — and releases up to it; see the agent's `record::ring_release`.
//!
//! # What bounds the throughput
//! Holding records until they are safe costs nothing while the ring is large enough for the
//! records in flight. With `R` slots (8,192 for the default 1 MiB), `s` slots per record (1 up
//! to 96 bytes, then one more per 120 bytes), a chunk of `c` records and a *release latency*
//! `L` (from a chunk's closing to its release), a writer of `λ` records per second finds room
//! as long as the ring holds what fills the open chunk plus what arrives during `L`:
//!
//! ```text
//! s · (c + λ · L) ≤ R        ⇒        λ ≤ (R/s − c) / L
//! ```
//!
//! - `c`: a chunk closes at 256 KiB of encoded records (≈ 1,300 lines of 100 bytes), after
//!   `flush_interval`, or — *ring pressure* — as soon as more than half of a ring is read and
//!   not released while it holds the ring's oldest record; so the ring never waits for
//!   `flush_interval`, and `λ ≥ R / (2 s L)` can always be had. Chunks are sent as soon as they
//!   close, up to 16 in flight per server.
//! - `L` with `storage_path`: one write of the chunk file into the page cache (≈ 0.1–0.3 ms per
//!   256 KiB; no fsync on the way: the spool syncs what is still undelivered after 100 ms). The
//!   ring is never the bound.
//! - `L` without: one ack round trip `RTT` plus the server's processing, and the wait for a
//!   window slot (16 chunks) and for `mem_buf_limit`. Default ring, 100-byte lines (`s` = 2,
//!   `R/2s` = 2,048): loopback (`L` ≈ 1 ms) ≈ 2 M lines/s — far above what the agent itself
//!   processes; `RTT` 20 ms ≈ 100 k lines/s; 100 ms ≈ 20 k lines/s. A program that writes faster
//!   than that through a slow link needs a larger ring (`LLT_RING_SIZE`, up to 256 MiB) or a
//!   spool. The window bounds it too: 16 × 256 KiB per `RTT`.
//!
//! When the bound is reached the ring fills and the writer waits for room (bounded) or drops
//! and counts, as for any full ring.
//!
//! # The socket transport
//! DATA frames (`LLT_TRANSPORT=socket`, or a process whose memfd was refused) cannot be held
//! like ring records: a frame is gone from the kernel once the agent read it, and the frames
//! still queued on the connection are discarded when the agent dies. So across an agent crash
//! the socket transport loses what the agent had read and not yet made safe — at most its open
//! chunks (`flush_interval`, 256 KiB each) and, without `storage_path`, the chunks not yet
//! acknowledged (`mem_buf_limit`) — plus what was queued on the socket; and these losses are not
//! counted (the agent that knew is dead). Everything else in this section holds for it.
//!
//! # Suppressed streams
//! A suppressed stream's bytes exist only as ring records while an agent holds the ring. They
//! are released like any other record: an agent that dies before they are safe leaves them in
//! the ring, and the next agent delivers them. If the process exits while records it wrote are
//! still unreleased and no agent holds the ring at a normal exit (the library's destructor),
//! the interceptor writes the records of suppressed streams still unreleased to the original
//! stream or file itself (fail-open; [`unreleased_records`] lists them). A record may so arrive
//! twice. Not covered: a process whose agent is still connected at exit (the agent has the ring
//! and seals a gone process's chunks at once) but then dies before they are safe, and a process
//! that ends with `_exit` or `exec` (no destructor; the ring is only handed to an agent there).
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
mod raw;
mod record;

pub use consumer::{Consumer, ConsumerOptions, Release, RingCounters, unreleased_records};
pub use error::RingError;
pub use layout::{DEFAULT_RING_SIZE, MAX_RING_SIZE, MIN_RING_SIZE};
pub use memfd::create_ring_memfd;
pub use producer::Producer;
pub use raw::PushError;
pub use record::{RECORD_CONTINUED, RecordMeta};
