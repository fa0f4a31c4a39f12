//! The ring's byte layout, version 3: header offsets, geometry and the encoding of the
//! *control word* that starts every record. Both sides compute every index from these constants
//! and from a [`Geometry`] they validated once, so that nothing read from the (possibly hostile)
//! shared memory later can move an access outside the mapping.
//!
//! `core` only (no `std`): the interceptor's `no_std` build compiles this file as is.

/// Magic at offset 0 of the header page.
pub const MAGIC: [u8; 4] = *b"LTR1";
/// Layout version stored at offset 4; bumped with any change to this file. Version 3:
/// variable-length records at 8-byte granularity (version 2: 128-byte slots).
pub const VERSION: u32 = 3;
/// Size of the header page; the data area starts right after it.
pub const HEADER_BYTES: usize = 4096;
/// Bytes per position: positions count 8-byte words of the data area.
pub const WORD_BYTES: usize = 8;
/// Words of a record before its payload: the control word, then the time word.
pub const RECORD_HEADER_WORDS: u64 = 2;
/// Bytes of a record before its payload (16).
pub const RECORD_HEADER_BYTES: usize = RECORD_HEADER_WORDS as usize * WORD_BYTES;
/// Hard cap on one record's payload, whatever the ring size.
pub const MAX_RECORD_PAYLOAD: usize = 64 * 1024;
/// Largest file index a record carries (8 bits; the interceptor taps at most 64 files).
pub const MAX_FILE_INDEX: u16 = 255;
/// Largest stream number a record carries (2 bits: 1 stdout, 2 stderr, 3 file).
pub const MAX_STREAM: u8 = 3;

/// Default size of the data area (1 MiB = 131,072 words).
pub const DEFAULT_RING_SIZE: usize = 1 << 20;
/// Smallest data area accepted (64 KiB = 8,192 words).
pub const MIN_RING_SIZE: usize = 64 * 1024;
/// Largest data area accepted (256 MiB).
pub const MAX_RING_SIZE: usize = 256 * 1024 * 1024;

// Header field offsets. `head`, `tail` and `consumer_sleeping` each own a 64-byte cache line:
// producers hammer `head`, the consumer writes `tail`, and neither should slow the other.
pub const OFF_MAGIC: usize = 0;
pub const OFF_VERSION: usize = 4;
/// Bytes per position (8).
pub const OFF_WORD_BYTES: usize = 8;
/// Number of words of the data area (a power of two).
pub const OFF_WORD_COUNT: usize = 12;
pub const OFF_CAPACITY: usize = 16;
pub const OFF_CREATOR_PID: usize = 24;
pub const OFF_HEAD: usize = 64;
pub const OFF_TAIL: usize = 128;
/// 8 bytes in version 3 (4 in version 2), non-zero while the consumer sleeps.
pub const OFF_CONSUMER_SLEEPING: usize = 192;
pub const OFF_DROPPED_RECORDS: usize = 256;
pub const OFF_DROPPED_BYTES: usize = 264;
/// Records the consumer skipped because their reservation was never committed.
pub const OFF_ABANDONED_RECORDS: usize = 272;
/// Consumer-owned: the three loss counters above as far as a consumer already reported them,
/// so that a consumer that takes the ring over (an agent restarted) reports only the rest.
pub const OFF_REPORTED_RECORDS: usize = 320;
/// Consumer-owned, see [`OFF_REPORTED_RECORDS`].
pub const OFF_REPORTED_BYTES: usize = 328;
/// Consumer-owned, see [`OFF_REPORTED_RECORDS`].
pub const OFF_REPORTED_ABANDONED: usize = 336;
/// Consumer-owned: the read position of a *holding* consumer (0 in a new ring). Diagnostic
/// only: a successor counts the records below it that it reads again (possible duplicates).
pub const OFF_READ_HINT: usize = 344;
/// Consumer-owned: a counter a holding consumer increments while it makes progress (reads,
/// delivers), so that a producer waiting for room tells a live consumer whose records await an
/// acknowledgement from a stopped or stuck one (see `Producer::consumed`).
pub const OFF_HEARTBEAT: usize = 352;
/// Consumer-owned: the position a release is clearing up to (stored before the words are
/// cleared, `tail` after): a consumer that finds it beyond `tail` at open finishes the release
/// a killed predecessor began.
pub const OFF_RELEASING: usize = 360;

/// Largest valid position. Positions only grow (by at most a few hundred million per second),
/// so 2^60 is never reached by an honest ring; bounding them keeps every `pos + len` and the
/// FREE word's `lap << 2` free of overflow whatever a hostile header says.
pub const MAX_POSITION: u64 = 1 << 60;

/// Control-word state: the word is free for the position its lap names (the whole word is
/// `lap << 2`).
pub const STATE_FREE: u64 = 0;
/// Control-word state: a producer claimed the record and is writing it.
pub const STATE_RESERVED: u64 = 1;
/// Control-word state: the record is complete.
pub const STATE_COMMITTED: u64 = 2;
/// Control-word state: `len` words to step over — the padding before the end of the data area,
/// or a reservation the consumer skipped as abandoned.
pub const STATE_PAD: u64 = 3;

/// Largest length (in words) a control word carries (14 bits).
pub const MAX_LEN_WORDS: u64 = (1 << 14) - 1;

/// The fields of a claimed control word (RESERVED, COMMITTED or PAD); see the module docs of
/// `ring` for the bit layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Control {
    /// [`STATE_RESERVED`], [`STATE_COMMITTED`] or [`STATE_PAD`].
    pub state: u64,
    /// Length of the record in words, header included (1 ..= [`MAX_LEN_WORDS`]).
    pub len_words: u64,
    /// Bytes of the last payload word that are not payload (0..=7).
    pub pad_bytes: u8,
    /// 0..=3.
    pub stream: u8,
    /// The CONTINUED flag.
    pub continued: bool,
    /// 0..=255.
    pub file_index: u8,
    /// The writer's sequence number.
    pub seq: u32,
}

/// Word "free for position `pos`" in a ring of `2^shift` words: `lap << 2` with
/// `lap = pos >> shift`. The first lap's FREE words are 0, so a fresh (zeroed) memfd is an
/// empty ring without a byte of its data area written.
#[inline]
pub const fn free(pos: u64, shift: u32) -> u64 {
    (pos >> shift) << 2
}

/// The claimed control word for position `pos` (lap low bits from `pos >> shift`).
#[inline]
pub const fn encode_control(c: &Control, pos: u64, shift: u32) -> u64 {
    (c.state & 3)
        | (((pos >> shift) & 3) << 2)
        | ((c.len_words & MAX_LEN_WORDS) << 4)
        | (((c.pad_bytes & 7) as u64) << 18)
        | (((c.stream & 3) as u64) << 21)
        | ((c.continued as u64) << 23)
        | ((c.file_index as u64) << 24)
        | ((c.seq as u64) << 32)
}

/// Decodes a control word seen at position `pos`: `None` unless it is a claimed word (state
/// other than FREE) of `pos`'s lap (its two low lap bits: a word is at most one lap stale in
/// an honest ring, every word being cleared when it is released).
#[inline]
pub const fn decode_control(word: u64, pos: u64, shift: u32) -> Option<Control> {
    let state = word & 3;
    if state == STATE_FREE || (word >> 2) & 3 != (pos >> shift) & 3 {
        return None;
    }
    Some(Control {
        state,
        len_words: (word >> 4) & MAX_LEN_WORDS,
        pad_bytes: ((word >> 18) & 7) as u8,
        stream: ((word >> 21) & 3) as u8,
        continued: (word >> 23) & 1 == 1,
        file_index: (word >> 24) as u8,
        seq: (word >> 32) as u32,
    })
}

/// The same claimed word with another state.
#[inline]
pub const fn with_state(word: u64, state: u64) -> u64 {
    (word & !3) | (state & 3)
}

/// Words a record with `payload_len` bytes occupies: 2 header words, then the payload rounded
/// up to a word (a 100-byte line: 2 + 13 = 15 words, 120 bytes).
#[inline]
pub const fn words_for(payload_len: usize) -> u64 {
    RECORD_HEADER_WORDS + payload_len.div_ceil(WORD_BYTES) as u64
}

/// Largest payload of one record in a ring of `word_count` words: 64 KiB, or less so that one
/// record never takes more than a quarter of the ring (a big write must not starve the others).
#[inline]
pub const fn max_payload_for(word_count: u64) -> usize {
    let fits = (word_count / 4).saturating_sub(RECORD_HEADER_WORDS) as usize * WORD_BYTES;
    if fits < MAX_RECORD_PAYLOAD {
        fits
    } else {
        MAX_RECORD_PAYLOAD
    }
}

/// The data-area size `create_ring_memfd` uses for a requested size: clamped to
/// [`MIN_RING_SIZE`, `MAX_RING_SIZE`] and rounded up to a power of two.
pub fn normalized_ring_size(requested: usize) -> usize {
    requested
        .clamp(MIN_RING_SIZE, MAX_RING_SIZE)
        .next_power_of_two()
}

/// The validated shape of one ring, copied out of the header once at map/open time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Number of words of the data area, a power of two.
    pub word_count: u64,
    /// `log2(word_count)`.
    pub shift: u32,
    /// Largest payload one record may carry in this ring.
    pub max_payload: usize,
    /// Total size of the mapping: header page plus data area.
    pub map_len: usize,
}

impl Geometry {
    /// Geometry for a data area of `data_bytes` (already normalized: a power of two within
    /// [`MIN_RING_SIZE`] ..= [`MAX_RING_SIZE`]).
    pub const fn for_data_bytes(data_bytes: usize) -> Geometry {
        let word_count = (data_bytes / WORD_BYTES) as u64;
        Geometry {
            word_count,
            shift: word_count.trailing_zeros(),
            max_payload: max_payload_for(word_count),
            map_len: HEADER_BYTES + data_bytes,
        }
    }

    /// Word "free for position `pos`".
    #[inline]
    pub const fn free(&self, pos: u64) -> u64 {
        free(pos, self.shift)
    }

    /// Index (in words, into the whole mapping) of the data word holding position `pos`.
    /// In bounds of a mapping of `map_len` bytes: the position is masked by the word count.
    #[inline]
    pub const fn index(&self, pos: u64) -> usize {
        HEADER_BYTES / WORD_BYTES + (pos & (self.word_count - 1)) as usize
    }

    /// Offset of `pos` within the data area, in words.
    #[inline]
    pub const fn offset(&self, pos: u64) -> u64 {
        pos & (self.word_count - 1)
    }

    /// Largest record in words (header included) in this ring.
    #[inline]
    pub const fn max_record_words(&self) -> u64 {
        words_for(self.max_payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_100_byte_line_takes_120_bytes() {
        assert_eq!(words_for(0), 2);
        assert_eq!(words_for(1), 3);
        assert_eq!(words_for(8), 3);
        assert_eq!(words_for(9), 4);
        assert_eq!(words_for(100) * WORD_BYTES as u64, 120);
        assert_eq!(words_for(101) * WORD_BYTES as u64, 120);
    }

    #[test]
    fn max_payload_is_capped_by_a_quarter_of_the_ring_and_64k() {
        let min = Geometry::for_data_bytes(MIN_RING_SIZE);
        assert_eq!(min.word_count, 8192);
        assert_eq!(min.max_payload, (2048 - 2) * 8);
        assert_eq!(min.max_record_words(), 2048);
        let default = Geometry::for_data_bytes(DEFAULT_RING_SIZE);
        assert_eq!(default.max_payload, MAX_RECORD_PAYLOAD);
        assert!(default.max_record_words() <= MAX_LEN_WORDS);
        assert!(default.max_record_words() <= default.word_count / 4);
    }

    #[test]
    fn control_words_round_trip_and_name_the_lap() {
        let g = Geometry::for_data_bytes(MIN_RING_SIZE);
        let n = g.word_count;
        let c = Control {
            state: STATE_RESERVED,
            len_words: 2048,
            pad_bytes: 7,
            stream: 3,
            continued: true,
            file_index: 255,
            seq: 0xFFFF_FFFE,
        };
        for pos in [0, 5, n + 5, 7 * n + 1] {
            let w = encode_control(&c, pos, g.shift);
            assert_eq!(decode_control(w, pos, g.shift), Some(c));
            // The previous and the next lap do not take it for theirs.
            assert_eq!(decode_control(w, pos + n, g.shift), None);
            assert_eq!(decode_control(w, pos.wrapping_sub(n), g.shift), None);
            let done = with_state(w, STATE_COMMITTED);
            assert_eq!(
                decode_control(done, pos, g.shift).map(|d| d.state),
                Some(STATE_COMMITTED)
            );
        }
        // FREE words: a zeroed data area is free for lap 0; FREE is never a claimed word.
        assert_eq!(g.free(0), 0);
        assert_eq!(g.free(n - 1), 0);
        assert_eq!(g.free(n), 4);
        assert_eq!(decode_control(g.free(3 * n), 3 * n, g.shift), None);
    }

    #[test]
    fn ring_sizes_are_normalized() {
        assert_eq!(normalized_ring_size(0), MIN_RING_SIZE);
        assert_eq!(normalized_ring_size(100_000), 128 * 1024);
        assert_eq!(normalized_ring_size(usize::MAX), MAX_RING_SIZE);
    }
}
