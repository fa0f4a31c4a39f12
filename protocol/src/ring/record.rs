//! The record header carried by the first slot of every record, after the stamp: the metadata of
//! one tapped write. Encoded as three little-endian 64-bit words so that both sides move it with
//! three atomic accesses and the consumer parses its own private copy.

/// Metadata of one record (one tapped write, or one piece of a split write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordMeta {
    /// 1 stdout, 2 stderr, 3 file (Contract 2). Carried as is; the agent validates it.
    pub stream: u8,
    /// Bit 0 [`RECORD_CONTINUED`]: the write goes on in the next record.
    pub flags: u8,
    /// Index of the tapped file (stream 3), else 0.
    pub file_index: u16,
    /// Writer's pid.
    pub pid: u32,
    /// Per-process sequence counter (wrapping; gaps reveal loss).
    pub seq: u32,
    /// Time of the write, ns since the Unix epoch (CLOCK_REALTIME).
    pub time_ns: u64,
}

/// `RecordMeta::flags` bit: the write continues in the next record of the same pid and stream.
pub const RECORD_CONTINUED: u8 = 1;

/// The header words of a record with `payload_len` bytes:
/// word 0 = payload_len u32 | stream u8 | flags u8 | file_index u16 (in that byte order),
/// word 1 = pid u32 | seq u32, word 2 = time_ns u64; all little-endian.
#[inline]
pub fn encode(meta: &RecordMeta, payload_len: u32) -> [u64; 3] {
    let w0 = u64::from(payload_len)
        | (u64::from(meta.stream) << 32)
        | (u64::from(meta.flags) << 40)
        | (u64::from(meta.file_index) << 48);
    let w1 = u64::from(meta.pid) | (u64::from(meta.seq) << 32);
    [w0.to_le(), w1.to_le(), meta.time_ns.to_le()]
}

/// Inverse of [`encode`]: the metadata and the declared payload length (not yet trusted).
#[inline]
pub fn decode(words: [u64; 3]) -> (RecordMeta, u32) {
    let [w0, w1, w2] = words.map(u64::from_le);
    let meta = RecordMeta {
        stream: (w0 >> 32) as u8,
        flags: (w0 >> 40) as u8,
        file_index: (w0 >> 48) as u16,
        pid: w1 as u32,
        seq: (w1 >> 32) as u32,
        time_ns: w2,
    };
    (meta, w0 as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_every_field() {
        let meta = RecordMeta {
            stream: 3,
            flags: RECORD_CONTINUED,
            file_index: 0xBEEF,
            pid: 0x1234_5678,
            seq: 0xFFFF_FFFE,
            time_ns: 1_700_000_000_123_456_789,
        };
        assert_eq!(decode(encode(&meta, 65_536)), (meta, 65_536));
    }

    #[test]
    fn header_bytes_are_little_endian_in_documented_order() {
        let meta = RecordMeta {
            stream: 2,
            flags: 1,
            file_index: 0x0304,
            pid: 0x0A0B_0C0D,
            seq: 7,
            time_ns: 9,
        };
        let words = encode(&meta, 0x11);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(
            bytes,
            [
                0x11, 0, 0, 0, 2, 1, 0x04, 0x03, // payload_len, stream, flags, file_index
                0x0D, 0x0C, 0x0B, 0x0A, 7, 0, 0, 0, // pid, seq
                9, 0, 0, 0, 0, 0, 0, 0, // time_ns
            ]
        );
    }
}
