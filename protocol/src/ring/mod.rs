//! Contract 2's shared-memory ring: the interceptor's hook copies each tapped write into it
//! ([`Producer`]), the agent drains it ([`Consumer`]). This page is the specification of the
//! ring's layout, **version 3** (magic `LTR1`); change it only together with the version.
//! Version 3 (issue 14, "Ring layout") packs variable-length records at 8-byte granularity
//! behind a 16-byte header: a 100-byte line takes 120 bytes of ring instead of version 2's two
//! 128-byte slots (256 bytes), so the default 1 MiB ring holds 8,738 such lines instead of
//! 4,096. Version 2 made a fresh, zero-filled memfd an empty ring (creating a ring writes its
//! header page only); version 3 keeps that.
//!
//! # Versions: an old library and a new agent
//! Both sides check the header's magic and version (offset 4) when they map a ring, and read
//! only their own version. An agent handed a ring of another version (the library and the agent
//! come from different releases) refuses it with [`RingError::Version`], which names both
//! versions and the remedy; the agent logs it (`dropping tap peer`, with the pid), counts the
//! peer as rejected and closes the connection. The tap protocol has no message from the agent
//! to the library, so the library only sees the hang-up: it reconnects (on its usual schedule,
//! `LLT_TARGET_RECONNECT`) and hands the same ring over again, which is refused and logged
//! again. It does not fall back to DATA frames by itself (a hang-up looks the same as an agent
//! restarting, which must find the ring). Meanwhile its copies wait in the ring; once it is
//! full they are dropped and counted in the ring's header (which no agent reads). The program
//! is not held up (no agent holds the ring: no wait for room) and its own output is intact —
//! except a *suppressed* stream: its copies go into the ring while the library believes itself
//! connected, which against an agent that accepts and hangs up is nearly always (and at exit
//! too, so the exit's write-back does not run): they are lost, uncounted
//! (`tests/tests/interceptor_refused_ring.rs` pins this gap down). So the two do not work
//! together and say so in the agent's log; the fix is a library and an agent of one release, or `LLT_TRANSPORT=socket` in
//! the tapped program until then (DATA frames do not depend on the ring layout). Concretely: a
//! version-2 library (the release before issue 14's dense ring) and this agent refuse each other
//! this way, in both directions (a version-2 agent rejects a version-3 ring with "ring layout
//! version 3, this build reads version 2 only"). Test:
//! `tests/tests/agent_tap.rs::a_ring_of_another_layout_version_is_refused_by_name` (versions 1,
//! 2 and the next).
//!
//! # Layout
//! Native byte order, which is little-endian on every target logtap supports. One file (a memfd
//! sealed with `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`) of `4096 + W × 8` bytes:
//!
//! | off | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `LTR1` |
//! | 4 | 4 | version = 3 |
//! | 8 | 4 | bytes per position = 8 |
//! | 12 | 4 | word count `W` (power of two, 8,192 ..= 2^25) |
//! | 16 | 8 | capacity = data area bytes = `W × 8` (64 KiB ..= 256 MiB) |
//! | 24 | 4 | creator pid: every record of the ring is reported with it |
//! | 64 | 8 | `head`: the position the next record is claimed at |
//! | 128 | 8 | `tail`: the release position — every position below it is *released* (safe with the consumer, or consumed by a non-holding one), and its words free for producers |
//! | 192 | 8 | `consumer_sleeping`: non-zero while the consumer waits on the wake eventfd |
//! | 256 | 8 | `dropped_records` (producers add when they drop) |
//! | 264 | 8 | `dropped_bytes` |
//! | 272 | 8 | `abandoned_records` (the consumer adds when it skips an uncommitted reservation) |
//! | 320 | 24 | consumer-owned: `dropped_records`, `dropped_bytes`, `abandoned_records` as already reported by a consumer (0 in a new ring), so that a consumer taking the ring over — an agent restarted — reports the losses that happened meanwhile, and none twice |
//! | 344 | 8 | consumer-owned: the *read position* of a holding consumer (0 in a new ring; diagnostic — a successor counts the records it reads twice) |
//! | 352 | 8 | consumer-owned: the *heartbeat*, a counter a holding consumer increments (every 20 ms in the agent) while it makes progress; a producer waiting for room keeps waiting while `tail` or the heartbeat moves ([`Producer::consumed`]) |
//! | 360 | 8 | consumer-owned: *releasing*, the position a release is clearing up to (see Release) |
//! | 4096 | W × 8 | data area; position `p` (a u64 that only grows, counting 8-byte words) lives in word `p mod W` |
//!
//! **Records.** A record at position `p` takes `2 + ⌈len / 8⌉` words (`len` payload bytes):
//! the *control word*, the *time word* (ns since the Unix epoch, CLOCK_REALTIME at the write),
//! then the payload, its last word completed with zeros. A record never crosses the end of the
//! data area: a PAD record fills the gap before one that would. `len` is at most
//! `min(64 KiB, (W/4 − 2) × 8)` (a record never takes more than a quarter of the ring); longer
//! writes are split by the caller (CONTINUED) or sent as DATA frames.
//!
//! **Control word.** Bits 0–1 the *state*: 0 FREE, 1 RESERVED, 2 COMMITTED, 3 PAD. A FREE word
//! is `lap << 2` with `lap = p / W`, the whole lap of the position it is free for: so the
//! zero-filled memfd is FREE for every position of lap 0, and nothing is written at creation.
//! A claimed word (RESERVED, COMMITTED, PAD) carries: bits 2–3 the lap's two low bits; 4–17
//! the record's length in words (header included); 18–20 the bytes of the last word that are
//! not payload (0–7, so `len = (words − 2) × 8 − pad`); 21–22 the stream (1 stdout, 2 stderr,
//! 3 file); 23 CONTINUED (the write goes on in the next record); 24–31 the file index
//! (0–255; the interceptor taps at most 64 files); 32–63 `seq` (the per-process sequence
//! number, all 32 bits: it orders ring records against DATA/LOSS frames).
//!
//! **What the record does not carry** (version 2 had a 24-byte header with them): the pid — a
//! ring belongs to one process: the creator pid in the header page (a forked child drops its
//! parent's ring in its `atfork` handler, together with its cached pid, and creates its own on
//! its first tapped write; an exec'd image starts anew; so a record in a ring is always its
//! creator's), and a separate payload length (the length in words plus the pad). Time, seq,
//! stream, CONTINUED and file index are exact: the agent's records are the same as with
//! version 2 (`tests/tests/interceptor_*`, `agent_tap`).
//!
//! **Laps.** Every word a consumer releases is cleared to FREE for its next lap, so a stale word
//! is at most one lap old and two lap bits tell it from a current one; the FREE word a producer
//! claims names the whole lap, so a producer that read `head` long ago cannot claim a word of a
//! later lap (no ABA); a commit is a CAS of the whole RESERVED word (with its 32-bit `seq`).
//!
//! # Protocol
//! - **Reserve** (producer): read `head` = h and `tail` = t (a process-local copy of `tail`,
//!   re-read from the header only when it says full). If the record (of `k` words) does not
//!   fit before the end of the data area, it needs a PAD of the `W − h mod W` words left first.
//!   If `h − t + pad + k > W` the ring is full (drop and count with `note_dropped`). Else CAS the
//!   control word at `h` from FREE(h) to RESERVED(h, k, …) — or to PAD(h, pad) first — and then
//!   CAS `head` from h to h + k. A producer whose claim CAS fails because another one claimed
//!   `h` (the word is claimed for `h`'s lap) moves `head` past that claim itself and retries:
//!   so a producer interrupted between its claim and its move of `head` (by a signal handler
//!   that writes too) blocks nobody.
//! - **Write and commit**: check the control word is still ours, write the time word and the
//!   payload, then CAS RESERVED → COMMITTED (SeqCst). A failed CAS means the consumer skipped
//!   the reservation: `PushError::Abandoned`.
//! - **Wake**: SeqCst load of `consumer_sleeping`; if set, swap it to 0 and write 1 to the
//!   wake eventfd (raw `SYS_write`, errno preserved).
//! - **Consume** at the consumer's *read position* `p` (private; it starts at `tail`): FREE(p):
//!   nothing there yet. COMMITTED for `p`: bounds-check the length (≥ 2 words, ≤ the largest
//!   record, not past the end of the data area, not past one ring beyond `tail`) and the pad,
//!   copy the time and payload out, re-check the control word, move the read position on by the
//!   length. PAD for `p`: move on by its length. RESERVED for `p`: wait (and move `head` past it,
//!   for a producer stopped before it did); after `stuck_timeout` skip it: CAS RESERVED → PAD of
//!   the same length (its writer's commit then fails), count it in `abandoned_records`, move
//!   on. Anything else: the ring is inconsistent. When the read position is a whole ring ahead
//!   of `tail` (everything read, nothing released), nothing can be read until a release.
//! - **Release** up to position `q` (≤ the read position, a record boundary), once every record
//!   read below it is safe: store *releasing* = `q`, clear every word in `tail .. q` to
//!   FREE for its next lap, then store `tail = q` (Release). A consumer that opens the ring and
//!   finds *releasing* beyond `tail` (its predecessor was killed inside a release) finishes that
//!   release first: the cleared words no longer say where the records were. A *non-holding*
//!   consumer ([`Consumer::open`]) releases each record as it reads it; the agent holds
//!   ([`Consumer::open_holding`] and [`Release`]) — see below. Clearing costs the consumer one
//!   store per word (≈ a `memset` of what it read); the producers' hot path does not see it.
//! - **Sleep**: the consumer stores `consumer_sleeping = 1` (SeqCst), re-checks its position
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
//! records in flight. With `R` words (131,072 for the default 1 MiB), `s` words per record
//! (2 + ⌈len / 8⌉: 15 for a 100-byte line), a chunk of `c` records and a *release latency*
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
//!   window slot (16 chunks) and for `mem_buf_limit`. Default ring, 100-byte lines (`s` = 15,
//!   `R/2s` ≈ 4,369; version 2: 2,048): loopback (`L` ≈ 1 ms) ≈ 4 M lines/s — far above what
//!   the agent itself processes; `RTT` 20 ms ≈ 200 k lines/s; 100 ms ≈ 40 k lines/s. A program
//!   that writes faster
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
//! (after its check that its control word is still RESERVED) may, when it resumes, overwrite
//! words the consumer already skipped, released and handed to a newer record. Its commit then
//! fails (`Abandoned`), but the newer record may be delivered with damaged bytes or be reported
//! inconsistent. The window is the duration of one `memcpy` of the record, against a timeout of
//! seconds (and the words must have been reused meanwhile: a whole lap of the ring).
//!
//! # Modules
//! - [`layout`] — constants, offsets, control-word encoding, geometry (`core` only).
//! - `record` — [`RecordMeta`] and how it maps onto the 16-byte header (`core` only).
//! - `raw` — the algorithm: reserve, write, commit, look, copy out, clear, over a raw atomic
//!   view of the mapping (`core` only: no `std`, no allocation; the interceptor's `no_std` build
//!   compiles it as is).
//! - `mapping` — one `mmap` of a ring and its atomic view.
//! - `memfd` — creating a sealed ring ([`create_ring_memfd`]), checking seals, size and header.
//! - `producer` / `consumer` — the two sides, on top of `raw`.

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
