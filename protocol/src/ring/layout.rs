//! The ring's byte layout, version 2: header offsets, slot geometry, stamp encoding and the
//! record header. Both sides compute every offset from these constants and from a [`Geometry`]
//! they validated once, so that nothing read from the (possibly hostile) shared memory later can
//! move an access outside the mapping.

use super::error::RingError;

/// Magic at offset 0 of the header page.
pub const MAGIC: [u8; 4] = *b"LTR1";
/// Layout version stored at offset 4; bumped with any change to this file. Version 2: stamps
/// carry the position's lap, not the position (see [`stamp`]).
pub const VERSION: u32 = 2;
/// Size of the header page; the data area (the slots) starts right after it.
pub const HEADER_BYTES: usize = 4096;
/// Size of one slot: an 8-byte stamp, then 120 bytes of data.
pub const SLOT_BYTES: usize = 128;
/// Bytes of a slot before its data: the stamp.
pub const STAMP_BYTES: usize = 8;
/// Size of the record header carried by the first slot of a record, after the stamp.
pub const RECORD_HEADER_BYTES: usize = 24;
/// Payload bytes carried by the first slot of a record.
pub const FIRST_SLOT_PAYLOAD: usize = SLOT_BYTES - STAMP_BYTES - RECORD_HEADER_BYTES;
/// Payload bytes carried by each continuation slot.
pub const CONT_SLOT_PAYLOAD: usize = SLOT_BYTES - STAMP_BYTES;
/// Hard cap on one record's payload, whatever the ring size.
pub const MAX_RECORD_PAYLOAD: usize = 64 * 1024;

/// Default size of the data area (1 MiB = 8192 slots).
pub const DEFAULT_RING_SIZE: usize = 1 << 20;
/// Smallest data area accepted (64 KiB = 512 slots).
pub const MIN_RING_SIZE: usize = 64 * 1024;
/// Largest data area accepted (256 MiB).
pub const MAX_RING_SIZE: usize = 256 * 1024 * 1024;

// Header field offsets. `head`, `tail` and `consumer_sleeping` each own a 64-byte cache line:
// producers hammer `head`, the consumer writes `tail`, and neither should slow the other.
pub const OFF_MAGIC: usize = 0;
pub const OFF_VERSION: usize = 4;
pub const OFF_SLOT_SIZE: usize = 8;
pub const OFF_SLOT_COUNT: usize = 12;
pub const OFF_CAPACITY: usize = 16;
pub const OFF_CREATOR_PID: usize = 24;
pub const OFF_HEAD: usize = 64;
pub const OFF_TAIL: usize = 128;
pub const OFF_CONSUMER_SLEEPING: usize = 192;
pub const OFF_DROPPED_RECORDS: usize = 256;
pub const OFF_DROPPED_BYTES: usize = 264;
pub const OFF_ABANDONED_SLOTS: usize = 272;
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

/// Largest valid slot position. Positions only grow (by at most a few million per second), so
/// 2^60 is never reached by an honest ring; bounding them keeps every `pos + k` and the stamp's
/// `pos << 2` free of overflow whatever a hostile header says.
pub const MAX_POSITION: u64 = 1 << 60;

/// Stamp state: the slot is free for the position encoded in the stamp.
pub const STATE_FREE: u64 = 0;
/// Stamp state: first slot of a record committed at the encoded position.
pub const STATE_FIRST: u64 = 1;
/// Stamp state: continuation slot committed at the encoded position.
pub const STATE_CONT: u64 = 2;

/// The stamp of a slot, for position `pos` in a ring of `slot_count` slots (a power of two):
/// `(lap << 2) | state`, where `lap = pos / slot_count`. A slot's index already says
/// `pos mod slot_count`, so the lap is all the stamp needs to name the position; and the first
/// lap's FREE stamps are 0, so a fresh (zeroed) memfd is an empty ring without writing a byte
/// of its data area: pages are allocated only as writers reach them (version 2; version 1
/// stamped `pos << 2` and had to write every slot at creation).
#[inline]
pub const fn stamp(pos: u64, slot_count: u64, state: u64) -> u64 {
    ((pos >> slot_count.trailing_zeros()) << 2) | state
}

/// Stamp value "free for position `pos`" in a ring of `slot_count` slots.
#[inline]
pub const fn free(pos: u64, slot_count: u64) -> u64 {
    stamp(pos, slot_count, STATE_FREE)
}

/// Stamp value "first slot of a record committed at `pos`" in a ring of `slot_count` slots.
#[inline]
pub const fn first(pos: u64, slot_count: u64) -> u64 {
    stamp(pos, slot_count, STATE_FIRST)
}

/// Stamp value "continuation slot committed at `pos`" in a ring of `slot_count` slots.
#[inline]
pub const fn cont(pos: u64, slot_count: u64) -> u64 {
    stamp(pos, slot_count, STATE_CONT)
}

/// Number of slots a record with `payload_len` bytes occupies (always ≥ 1).
#[inline]
pub const fn slots_for(payload_len: usize) -> usize {
    if payload_len <= FIRST_SLOT_PAYLOAD {
        1
    } else {
        1 + (payload_len - FIRST_SLOT_PAYLOAD).div_ceil(CONT_SLOT_PAYLOAD)
    }
}

/// Largest payload of one record in a ring of `slot_count` slots: 64 KiB, or less so that one
/// record never takes more than a quarter of the slots (a big write must not starve the others).
#[inline]
pub const fn max_payload_for(slot_count: usize) -> usize {
    let quarter = slot_count / 4;
    let fits = FIRST_SLOT_PAYLOAD + (quarter.saturating_sub(1)) * CONT_SLOT_PAYLOAD;
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
    /// Number of slots, a power of two.
    pub slot_count: u64,
    /// Largest payload one record may carry in this ring.
    pub max_payload: usize,
    /// Total size of the mapping: header page plus data area.
    pub map_len: usize,
}

impl Geometry {
    /// Geometry for a data area of `data_bytes` (already normalized).
    pub fn for_data_bytes(data_bytes: usize) -> Geometry {
        let slot_count = data_bytes / SLOT_BYTES;
        Geometry {
            slot_count: slot_count as u64,
            max_payload: max_payload_for(slot_count),
            map_len: HEADER_BYTES + data_bytes,
        }
    }

    /// Validates the fixed header fields (`header` is a private copy of the first bytes of the
    /// header page) against the size of the file, and returns the geometry they describe.
    pub fn from_header(header: &[u8; 32], file_size: u64) -> Result<Geometry, RingError> {
        let bad = |reason: &'static str| Err(RingError::BadHeader { reason });
        let u32_at = |off: usize| {
            u32::from_le_bytes([
                header[off],
                header[off + 1],
                header[off + 2],
                header[off + 3],
            ])
        };
        if header[OFF_MAGIC..OFF_MAGIC + 4] != MAGIC {
            return bad("magic is not LTR1 (not a logtap ring)");
        }
        let version = u32_at(OFF_VERSION);
        if version != VERSION {
            return Err(RingError::Version {
                found: version,
                expected: VERSION,
            });
        }
        if u32_at(OFF_SLOT_SIZE) as usize != SLOT_BYTES {
            return bad("slot size is not 128");
        }
        let slot_count = u32_at(OFF_SLOT_COUNT) as usize;
        if !slot_count.is_power_of_two() {
            return bad("slot count is not a power of two");
        }
        let data_bytes = slot_count.saturating_mul(SLOT_BYTES);
        if !(MIN_RING_SIZE..=MAX_RING_SIZE).contains(&data_bytes) {
            return bad("data area size outside 64 KiB ..= 256 MiB");
        }
        let mut cap = [0u8; 8];
        cap.copy_from_slice(&header[OFF_CAPACITY..OFF_CAPACITY + 8]);
        if u64::from_le_bytes(cap) != data_bytes as u64 {
            return bad("capacity does not match slot size × slot count");
        }
        let geometry = Geometry::for_data_bytes(data_bytes);
        if file_size != geometry.map_len as u64 {
            return Err(RingError::BadSize {
                size: file_size,
                expected: geometry.map_len as u64,
            });
        }
        Ok(geometry)
    }

    /// Stamp "free for position `pos`" (see [`stamp`]).
    #[inline]
    pub fn free(&self, pos: u64) -> u64 {
        free(pos, self.slot_count)
    }

    /// Stamp "first slot of a record committed at `pos`".
    #[inline]
    pub fn first(&self, pos: u64) -> u64 {
        first(pos, self.slot_count)
    }

    /// Stamp "continuation slot committed at `pos`".
    #[inline]
    pub fn cont(&self, pos: u64) -> u64 {
        cont(pos, self.slot_count)
    }

    /// Mask turning a position into a slot index.
    #[inline]
    pub fn mask(&self) -> u64 {
        self.slot_count - 1
    }

    /// Byte offset (into the mapping) of the slot that holds position `pos`. Always in bounds:
    /// the index is masked by the validated slot count.
    #[inline]
    pub fn slot_offset(&self, pos: u64) -> usize {
        HEADER_BYTES + ((pos & self.mask()) as usize) * SLOT_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_counts_follow_payload_length() {
        assert_eq!(slots_for(0), 1);
        assert_eq!(slots_for(FIRST_SLOT_PAYLOAD), 1);
        assert_eq!(slots_for(FIRST_SLOT_PAYLOAD + 1), 2);
        assert_eq!(slots_for(FIRST_SLOT_PAYLOAD + CONT_SLOT_PAYLOAD), 2);
        assert_eq!(slots_for(FIRST_SLOT_PAYLOAD + CONT_SLOT_PAYLOAD + 1), 3);
    }

    #[test]
    fn max_payload_is_capped_by_a_quarter_of_the_ring_and_64k() {
        // 512 slots: a quarter is 128 slots = 96 + 127 × 120 bytes.
        assert_eq!(max_payload_for(512), 96 + 127 * 120);
        assert!(slots_for(max_payload_for(512)) <= 128);
        assert_eq!(max_payload_for(8192), MAX_RECORD_PAYLOAD);
    }

    #[test]
    fn stamps_name_the_lap_and_a_fresh_ring_is_all_free() {
        let g = Geometry::for_data_bytes(MIN_RING_SIZE);
        let n = g.slot_count;
        // Lap 0: a zeroed slot is free for its own position.
        assert_eq!(g.free(0), 0);
        assert_eq!(g.free(n - 1), 0);
        assert_eq!(g.free(n), 4);
        assert_eq!(g.first(n + 5), 5);
        assert_eq!(g.cont(3 * n + 1), 14);
        // Positions of one slot stay apart, lap by lap and state by state.
        let stamps: std::collections::HashSet<u64> = (0..4)
            .flat_map(|lap| {
                [
                    g.free(lap * n + 7),
                    g.first(lap * n + 7),
                    g.cont(lap * n + 7),
                ]
            })
            .collect();
        assert_eq!(stamps.len(), 12);
    }

    #[test]
    fn ring_sizes_are_normalized() {
        assert_eq!(normalized_ring_size(0), MIN_RING_SIZE);
        assert_eq!(normalized_ring_size(100_000), 128 * 1024);
        assert_eq!(normalized_ring_size(usize::MAX), MAX_RING_SIZE);
    }

    #[test]
    fn header_validation_rejects_each_bad_field() {
        let geometry = Geometry::for_data_bytes(MIN_RING_SIZE);
        let mut header = [0u8; 32];
        header[0..4].copy_from_slice(&MAGIC);
        header[4..8].copy_from_slice(&VERSION.to_le_bytes());
        header[8..12].copy_from_slice(&(SLOT_BYTES as u32).to_le_bytes());
        header[12..16].copy_from_slice(&512u32.to_le_bytes());
        header[16..24].copy_from_slice(&(MIN_RING_SIZE as u64).to_le_bytes());
        let size = geometry.map_len as u64;
        assert_eq!(Geometry::from_header(&header, size).ok(), Some(geometry));
        assert!(matches!(
            Geometry::from_header(&header, size + 1),
            Err(RingError::BadSize { .. })
        ));
        let mut other_version = header;
        for other in [1, VERSION + 1] {
            other_version[4..8].copy_from_slice(&other.to_le_bytes());
            assert!(matches!(
                Geometry::from_header(&other_version, size),
                Err(RingError::Version { found, expected: VERSION }) if found == other
            ));
        }
        for (off, value) in [(0, 0u8), (8, 64), (12, 3), (16, 1)] {
            let mut h = header;
            h[off] = value;
            assert!(
                matches!(
                    Geometry::from_header(&h, size),
                    Err(RingError::BadHeader { .. })
                ),
                "offset {off}"
            );
        }
    }
}
