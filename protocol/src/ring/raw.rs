//! The ring's algorithm over a raw view of one mapping — reserve, write and commit (the
//! producer), look at and copy out a record, clear released words (the consumer) — in `core`
//! only: no `std`, no allocation, no lock, no system call, no panic. The interceptor's hook
//! calls it through [`Producer`](super::Producer); the interceptor's `no_std` (musl) build
//! compiles this file and `layout.rs`/`record.rs` as they are. Mapping the memory and the
//! eventfd wake-up live elsewhere (`mapping`, `producer`).
//!
//! Every access goes through [`RawRing::word`], which bounds-checks the index: whatever the
//! shared bytes say, nothing here reads or writes outside the view.

use core::sync::atomic::{AtomicU64, Ordering};

use super::layout::{
    self, Control, Geometry, MAX_POSITION, OFF_CONSUMER_SLEEPING, OFF_HEAD, OFF_TAIL,
    RECORD_HEADER_WORDS, STATE_COMMITTED, STATE_PAD, WORD_BYTES,
};

/// CAS attempts before a push gives up and reports `Full`. Every failed attempt means another
/// writer claimed, so the ring is making progress; the bound only keeps a writer from spinning
/// for ever under extreme contention or on a corrupted ring (the caller then drops and counts,
/// as when full).
const MAX_RESERVE_ATTEMPTS: u32 = 1024;

/// Where an out-of-range index lands (a bug, never data-driven: indices derive from a
/// validated geometry and masked positions): a harmless private word instead of a panic.
static SINK: AtomicU64 = AtomicU64::new(0);

/// A record could not be pushed; the caller decides what to do with the bytes (drop and count
/// with `Producer::note_dropped`, or fall back to the real write for a suppressed stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// Not enough free room: the consumer is absent or slow.
    Full,
    /// The payload exceeds `Producer::max_payload`; split it or send it as DATA frames.
    TooLarge {
        /// Payload length asked for.
        len: usize,
        /// The ring's limit.
        max: usize,
    },
    /// The record's stream (> 3) or file index (> 255) does not fit a version-3 record; send it
    /// as DATA frames.
    Unencodable,
    /// The consumer declared this reservation stuck and skipped it before it was committed (the
    /// writer was descheduled longer than the consumer's stuck timeout); the record is lost and
    /// the consumer already counted it in `abandoned_records`.
    Abandoned,
}

impl core::fmt::Display for PushError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PushError::Full => f.write_str("ring full"),
            PushError::TooLarge { len, max } => write!(
                f,
                "record of {len} bytes exceeds the ring's largest record ({max} bytes)"
            ),
            PushError::Unencodable => f.write_str(
                "record's stream or file index does not fit a ring record (stream ≤ 3, file ≤ 255)",
            ),
            PushError::Abandoned => {
                f.write_str("reservation was abandoned by the consumer before commit")
            }
        }
    }
}

impl core::error::Error for PushError {}

/// What the control word at a position says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// FREE for this position: nothing claimed here yet.
    Free,
    /// A word claimed for this position (its raw value and fields).
    Claimed(u64, Control),
    /// Anything else (a corrupted ring, or a position the consumer should not look at).
    Invalid,
}

/// The atomic view of a whole mapping (header page and data area) and its geometry.
#[derive(Clone, Copy)]
pub struct RawRing<'a> {
    words: &'a [AtomicU64],
    geometry: Geometry,
}

impl<'a> RawRing<'a> {
    /// A view of `words` (the whole mapping) with the validated `geometry`. `words` should hold
    /// `geometry.map_len / 8` words; any shortfall only sends accesses to a private word.
    #[inline(always)]
    pub fn new(words: &'a [AtomicU64], geometry: Geometry) -> RawRing<'a> {
        RawRing { words, geometry }
    }

    /// The word at index `i` of the mapping.
    #[inline(always)]
    fn word(&self, i: usize) -> &'a AtomicU64 {
        match self.words.get(i) {
            Some(w) => w,
            None => &SINK,
        }
    }

    /// The 8-byte header field at byte offset `off`.
    #[inline(always)]
    pub fn header(&self, off: usize) -> &'a AtomicU64 {
        self.word(off / WORD_BYTES)
    }

    /// The data word holding position `pos`.
    #[inline(always)]
    pub fn data(&self, pos: u64) -> &'a AtomicU64 {
        self.word(self.geometry.index(pos))
    }

    /// The `n` data words from position `pos` on, if they do not cross the end of the data
    /// area (records never do: a PAD fills the gap).
    #[inline(always)]
    fn data_run(&self, pos: u64, n: usize) -> Option<&'a [AtomicU64]> {
        let start = self.geometry.index(pos);
        self.words.get(start..start.checked_add(n)?)
    }

    // ---- producer ---------------------------------------------------------------------

    /// Claims room for a record of `ctl.len_words` words: CAS of the control word at `head`
    /// from FREE to RESERVED (with the record's length and fields), *then* `head` moves past it
    /// — by us or by any writer that finds the claimed word at `head` first, so a writer
    /// interrupted between the two (by a signal handler that writes too) blocks no one. A
    /// record that would cross the end of the data area is preceded by a PAD claimed the same
    /// way. Returns the position and the RESERVED word. `tail_seen` is the caller's cached
    /// copy of `tail` (never ahead of it), refreshed only when the ring looks full.
    #[inline(always)]
    pub fn reserve(&self, ctl: &Control, tail_seen: &AtomicU64) -> Result<(u64, u64), PushError> {
        let g = self.geometry;
        let n = g.word_count;
        let len = ctl.len_words;
        let head = self.header(OFF_HEAD);
        let mut h = head.load(Ordering::Relaxed);
        // Acquire (here and on the refresh below): the consumer clears the words it releases
        // before it publishes `tail` with Release; a tail read through this chain guarantees
        // our claim CAS and data stores come after those clears.
        let mut t = tail_seen.load(Ordering::Acquire);
        for _ in 0..MAX_RESERVE_ATTEMPTS {
            if h > MAX_POSITION {
                return Err(PushError::Full);
            }
            let to_end = n - g.offset(h);
            let pad = if len > to_end { to_end } else { 0 };
            // A stale `h` below `t` saturates to 0; the CAS below then fails and reloads.
            if h.saturating_sub(t) + pad + len > n {
                // Our copy of the tail may be old: refresh it before calling the ring full.
                t = self.header(OFF_TAIL).load(Ordering::Acquire);
                // Only write our shared copy when it moves (writers spinning on a full ring
                // would otherwise fight over its cache line).
                if t > tail_seen.load(Ordering::Relaxed) {
                    tail_seen.fetch_max(t, Ordering::AcqRel);
                }
                if h.saturating_sub(t) + pad + len > n {
                    return Err(PushError::Full);
                }
            }
            let (claim, step) = if pad > 0 {
                let p = Control {
                    state: STATE_PAD,
                    len_words: pad,
                    pad_bytes: 0,
                    stream: 0,
                    continued: false,
                    file_index: 0,
                    seq: 0,
                };
                (layout::encode_control(&p, h, g.shift), pad)
            } else {
                (layout::encode_control(ctl, h, g.shift), len)
            };
            // The expected FREE word names the whole lap of `h`: a writer that read `head`
            // long ago cannot claim a word of a later lap (no ABA).
            match self.data(h).compare_exchange(
                g.free(h),
                claim,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    // Move `head` past our claim unless someone did already. A plain store,
                    // not a CAS (a locked instruction fewer on the hook's path): if a helper
                    // moved `head` and a later writer moved it on between our load and our
                    // store, `head` goes back to the end of our claim — behind words that are
                    // all claimed for their positions (the consumer cannot pass our
                    // uncommitted claim, so none of them is released yet), which the next
                    // writer steps over by helping, as below. (After a stall longer than the
                    // consumer's stuck timeout they may be released: see the heal below.)
                    if head.load(Ordering::Relaxed) == h {
                        head.store(h + step, Ordering::Relaxed);
                    }
                    if pad == 0 {
                        return Ok((h, claim));
                    }
                    h += step;
                }
                Err(seen) => {
                    // Claimed by another writer that has not moved `head` yet: help it.
                    if let Some(other) = layout::decode_control(seen, h, g.shift)
                        && other.len_words > 0
                    {
                        let _ = head.compare_exchange(
                            h,
                            h + other.len_words,
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                        );
                    } else {
                        // Heal: a `head` set back below `tail` (a writer stalled between its
                        // load and store of `head` for longer than the stuck timeout) points
                        // at released words; `tail` is a record boundary, and everything from
                        // it to the real head is claimed: resume there.
                        let t = self.header(OFF_TAIL).load(Ordering::Acquire);
                        if h < t {
                            let _ =
                                head.compare_exchange(h, t, Ordering::Relaxed, Ordering::Relaxed);
                        }
                    }
                    h = head.load(Ordering::Relaxed);
                }
            }
        }
        Err(PushError::Full)
    }

    /// Writes the time word and the payload of the record reserved at `pos` (whose RESERVED
    /// word is `reserved`), then commits it: CAS RESERVED → COMMITTED (SeqCst: the store half
    /// of the Dekker handshake with the sleeping consumer). `Abandoned` if the consumer skipped
    /// the reservation meanwhile.
    #[inline(always)]
    pub fn write_and_commit(
        &self,
        pos: u64,
        reserved: u64,
        time_ns: u64,
        payload: &[u8],
    ) -> Result<(), PushError> {
        let control = self.data(pos);
        // If the consumer already skipped us (we were descheduled past its stuck timeout),
        // the words may belong to a newer writer now: do not touch them.
        if control.load(Ordering::Relaxed) != reserved {
            return Err(PushError::Abandoned);
        }
        let words = payload.len().div_ceil(WORD_BYTES);
        let Some(run) = self.data_run(pos, RECORD_HEADER_WORDS as usize + words) else {
            return Err(PushError::Abandoned);
        };
        let mut run = run.iter();
        let _control = run.next();
        if let Some(t) = run.next() {
            t.store(time_ns.to_le(), Ordering::Relaxed);
        }
        let mut chunks = payload.chunks_exact(WORD_BYTES);
        // `chunks` first: `zip` stops at its first `None` without taking a word from `run`.
        for (chunk, dst) in (&mut chunks).zip(&mut run) {
            let mut word = [0u8; WORD_BYTES];
            word.copy_from_slice(chunk);
            dst.store(u64::from_ne_bytes(word), Ordering::Relaxed);
        }
        let rest = chunks.remainder();
        if let Some(dst) = run.next() {
            let mut word = [0u8; WORD_BYTES];
            if let Some(head) = word.get_mut(..rest.len()) {
                head.copy_from_slice(rest);
            }
            dst.store(u64::from_ne_bytes(word), Ordering::Relaxed);
        }
        control
            .compare_exchange(
                reserved,
                layout::with_state(reserved, STATE_COMMITTED),
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .map(|_| ())
            .map_err(|_| PushError::Abandoned)
    }

    /// Whether a sleeping consumer must be woken (it announced sleep; the flag is reset here so
    /// that one writer wakes it). Our SeqCst commit CAS and SeqCst load of the flag pair with
    /// the consumer's SeqCst store of the flag and load of the control word (Dekker): either
    /// the consumer sees our commit before it sleeps, or we see its flag.
    #[inline(always)]
    pub fn take_wake(&self) -> bool {
        let sleeping = self.header(OFF_CONSUMER_SLEEPING);
        sleeping.load(Ordering::SeqCst) != 0 && sleeping.swap(0, Ordering::SeqCst) != 0
    }

    /// Hints the CPU to fetch the cache line of position `pos` for writing (x86-64
    /// `prefetchw`; elsewhere nothing).
    #[inline(always)]
    pub fn prefetch_write(&self, pos: u64) {
        let w = self.data(pos);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch never faults and changes no architectural state; the address is
        // that of a word of the view.
        unsafe {
            core::arch::asm!(
                "prefetchw [{0}]",
                in(reg) w.as_ptr(),
                options(nostack, preserves_flags, readonly)
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = w;
    }

    // ---- consumer ---------------------------------------------------------------------

    /// What the control word at `pos` says (Acquire).
    #[inline]
    pub fn look(&self, pos: u64) -> Seen {
        let g = &self.geometry;
        let word = self.data(pos).load(Ordering::Acquire);
        if word == g.free(pos) {
            return Seen::Free;
        }
        match layout::decode_control(word, pos, g.shift) {
            Some(c) => Seen::Claimed(word, c),
            None => Seen::Invalid,
        }
    }

    /// Whether a claimed record at `pos` fits the ring: its length is at least its header
    /// (one word for a PAD), at most the ring's largest record (or, for a PAD, the rest of the
    /// data area) and it does not cross the end of the data area.
    #[inline]
    pub fn fits(&self, pos: u64, c: &Control) -> bool {
        let g = &self.geometry;
        let to_end = g.word_count - g.offset(pos);
        let (min, max) = if c.state == STATE_PAD {
            (1, g.max_record_words())
        } else {
            (RECORD_HEADER_WORDS, g.max_record_words())
        };
        (min..=max).contains(&c.len_words) && c.len_words <= to_end
    }

    /// Payload length of a RESERVED or COMMITTED record (header checked with [`RawRing::fits`]),
    /// or `None` if its pad bytes contradict its length.
    #[inline]
    pub fn payload_len(&self, c: &Control) -> Option<usize> {
        let bytes = (c.len_words.checked_sub(RECORD_HEADER_WORDS)? as usize) * WORD_BYTES;
        let len = bytes.checked_sub(usize::from(c.pad_bytes))?;
        (len <= self.geometry.max_payload && (c.pad_bytes == 0 || len > 0)).then_some(len)
    }

    /// The time word of the record at `pos`.
    #[inline]
    pub fn time(&self, pos: u64) -> u64 {
        u64::from_le(self.data(pos + 1).load(Ordering::Relaxed))
    }

    /// Copies the payload of the record at `pos` into `dst` (its length is the payload's). A
    /// record that would cross the end of the data area copies nothing (`false`).
    #[inline]
    pub fn copy_payload(&self, pos: u64, dst: &mut [u8]) -> bool {
        let words = dst.len().div_ceil(WORD_BYTES);
        let Some(run) = self.data_run(pos + RECORD_HEADER_WORDS, words) else {
            return false;
        };
        for (chunk, src) in dst.chunks_mut(WORD_BYTES).zip(run) {
            let bytes = src.load(Ordering::Relaxed).to_ne_bytes();
            if let Some(b) = bytes.get(..chunk.len()) {
                chunk.copy_from_slice(b);
            }
        }
        true
    }

    /// Skips the reservation at `pos` (RESERVED word `reserved`) as abandoned: CAS to PAD of
    /// the same length, so that its writer's commit fails. `false` if the word changed (the
    /// writer committed at this very moment).
    #[inline]
    pub fn abandon(&self, pos: u64, reserved: u64) -> bool {
        self.data(pos)
            .compare_exchange(
                reserved,
                layout::with_state(reserved, STATE_PAD),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Helps a writer interrupted between its claim at `pos` (of `len` words) and its move of
    /// `head`.
    #[inline]
    pub fn help_head(&self, pos: u64, len: u64) {
        let _ = self.header(OFF_HEAD).compare_exchange(
            pos,
            pos + len,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Clears the words of positions `from .. to` (at most one ring) to FREE for their next
    /// lap: every word a writer may claim in that lap is then FREE for its position, whatever
    /// the record boundaries of the lap before.
    pub fn clear(&self, from: u64, to: u64) {
        let g = self.geometry;
        let to = to.min(from.saturating_add(g.word_count));
        let mut p = from;
        while p < to {
            // Runs up to the end of the data area, then from its start.
            let run_len = (to - p).min(g.word_count - g.offset(p));
            let next_lap = g.free(p + g.word_count);
            let lap_end = (p | (g.word_count - 1)) + 1;
            if let Some(run) = self.data_run(p, run_len as usize) {
                // All positions of one run share a lap (the run stops at the end of the area).
                debug_assert!(p + run_len <= lap_end);
                for w in run {
                    w.store(next_lap, Ordering::Relaxed);
                }
            }
            p += run_len;
        }
    }
}
