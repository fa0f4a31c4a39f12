//! The metadata of one record, and how it maps onto the 16-byte record header of layout
//! version 3: the control word carries stream, CONTINUED, file index and seq beside the state and
//! the length; the second word carries the time; the pid is not stored (a ring belongs to one
//! process: the creator pid in the header page). `core` only.

use super::layout::{self, Control, MAX_FILE_INDEX, MAX_STREAM, WORD_BYTES};
use super::raw::PushError;

/// Metadata of one record (one tapped write, or one piece of a split write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordMeta {
    /// 1 stdout, 2 stderr, 3 file (Contract 2); at most 3 (two bits in the record).
    pub stream: u8,
    /// Bit 0 [`RECORD_CONTINUED`]: the write goes on in the next record. No other bit is
    /// carried.
    pub flags: u8,
    /// Index of the tapped file (stream 3), else 0; at most 255 in a ring record.
    pub file_index: u16,
    /// Writer's pid. Not stored in the record: the consumer reports the ring's creator pid
    /// (a forked child makes its own ring), the producer ignores it.
    pub pid: u32,
    /// Per-process sequence counter (wrapping; gaps reveal loss).
    pub seq: u32,
    /// Time of the write, ns since the Unix epoch (CLOCK_REALTIME).
    pub time_ns: u64,
}

/// `RecordMeta::flags` bit: the write continues in the next record of the same pid and stream.
pub const RECORD_CONTINUED: u8 = 1;

/// The RESERVED control word's fields for a record of `payload_len` bytes (the caller checked
/// it against the ring's largest record), or `Unencodable`.
#[inline(always)]
pub fn control(meta: &RecordMeta, payload_len: usize) -> Result<Control, PushError> {
    if meta.stream > MAX_STREAM || meta.file_index > MAX_FILE_INDEX {
        return Err(PushError::Unencodable);
    }
    let len_words = layout::words_for(payload_len);
    let rounded = payload_len.div_ceil(WORD_BYTES) * WORD_BYTES;
    Ok(Control {
        state: layout::STATE_RESERVED,
        len_words,
        pad_bytes: (rounded - payload_len) as u8,
        stream: meta.stream,
        continued: meta.flags & RECORD_CONTINUED != 0,
        file_index: meta.file_index as u8,
        seq: meta.seq,
    })
}

/// The metadata of a committed record: its control word's fields, its time word, and the
/// ring's creator pid.
#[inline]
pub fn meta(c: &Control, time_ns: u64, pid: u32) -> RecordMeta {
    RecordMeta {
        stream: c.stream,
        flags: if c.continued { RECORD_CONTINUED } else { 0 },
        file_index: u16::from(c.file_index),
        pid,
        seq: c.seq,
        time_ns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::layout::{Geometry, MIN_RING_SIZE, decode_control, encode_control};

    #[test]
    fn every_field_round_trips_through_the_header() {
        let g = Geometry::for_data_bytes(MIN_RING_SIZE);
        for (stream, flags, file_index, seq, len) in [
            (1, 0, 0, 0, 0),
            (2, RECORD_CONTINUED, 0, u32::MAX, 1),
            (3, 0, 255, 0x8000_0001, 101),
            (3, RECORD_CONTINUED, 17, 7, 16_368),
        ] {
            let m = RecordMeta {
                stream,
                flags,
                file_index,
                pid: 4242,
                seq,
                time_ns: 1_700_000_000_123_456_789,
            };
            let c = control(&m, len).unwrap();
            let word = encode_control(&c, 12_345, g.shift);
            let back = decode_control(word, 12_345, g.shift).unwrap();
            assert_eq!(meta(&back, m.time_ns, 4242), m);
            assert_eq!(
                (back.len_words - 2) as usize * 8 - usize::from(back.pad_bytes),
                len
            );
        }
    }

    #[test]
    fn fields_a_record_cannot_carry_are_refused() {
        let big_file = RecordMeta {
            stream: 3,
            file_index: 256,
            ..RecordMeta::default()
        };
        assert_eq!(control(&big_file, 1), Err(PushError::Unencodable));
        let bad_stream = RecordMeta {
            stream: 4,
            ..RecordMeta::default()
        };
        assert_eq!(control(&bad_stream, 1), Err(PushError::Unencodable));
    }
}
