//! Shared by the `fuzz_ring_consumer` fuzz target and the test that replays its seed corpus:
//! builds a ring memfd whose bytes come from the fuzzer, then consumes it to the end. Not part
//! of the API (hidden from the docs); it lives here so that the corpus replay in `cargo test`
//! runs exactly the code the fuzzer runs.
//!
//! Input: byte 0 selects how the rest is used, so that the fuzzer reaches the consumer's deep
//! paths without first having to guess a valid header:
//! - `0`: raw — the bytes are the file's content from offset 0 (header and slots);
//! - `1`: a valid header; the bytes overwrite the file from offset 64 (head, tail, counters...);
//! - other: a valid ring holding a few records, a stuck reservation and a PAD (the records
//!   wrap around the end of the data area); the bytes are patches
//!   `[offset u32 LE][len u8][len bytes]` applied anywhere in the file.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use super::{
    Consumer, ConsumerOptions, MIN_RING_SIZE, Producer, RECORD_CONTINUED, RecordMeta, RingError,
    create_ring_memfd, layout,
};

/// Records and stuck reservations the patch mode starts from: (payload length, committed).
const SEED_RECORDS: [(usize, bool); 6] = [
    (0, true),
    (64, true),
    (300, true),
    (17, false),
    (1000, true),
    (96, true),
];

/// Builds a ring from `data` (see the module docs) and consumes it until `None` three times in
/// a row or an error. Returns the number of records delivered, or the first error. Panics only
/// if the consumer breaks one of its own guarantees (the fuzzer's finding).
pub fn consume_arbitrary_ring(data: &[u8]) -> Result<usize, RingError> {
    // The same ring once more, read by a holding consumer that releases late (the agent's
    // mode): it must hold the same guarantees.
    let held = build(data)?;
    let _ = consume(held, true);
    consume(build(data)?, false)
}

/// The ring file `data` describes (see the module docs).
fn build(data: &[u8]) -> Result<OwnedFd, RingError> {
    let fd = create_ring_memfd(MIN_RING_SIZE, 42)?;
    let map_len = (layout::HEADER_BYTES + MIN_RING_SIZE) as u64;
    match data.split_first() {
        None => {}
        Some((0, rest)) => pwrite(&fd, 0, rest),
        Some((1, rest)) => pwrite(&fd, 64, rest),
        Some((_, mut rest)) => {
            fill(&fd)?;
            while let [a, b, c, d, len, tail @ ..] = rest {
                let offset = u64::from(u32::from_le_bytes([*a, *b, *c, *d])) % map_len;
                let n = usize::from(*len).min(tail.len());
                pwrite(&fd, offset, &tail[..n]);
                rest = &tail[n..];
            }
        }
    }
    Ok(fd)
}

/// Consumes the ring until `None` three times in a row or an error; `holding`: in holding
/// mode, releasing all but the last two slots read after each record.
fn consume(fd: OwnedFd, holding: bool) -> Result<usize, RingError> {
    let opts = ConsumerOptions {
        stuck_timeout: Duration::ZERO,
    };
    let (mut consumer, release) = if holding {
        let (c, r) = Consumer::open_holding(fd, opts)?;
        (c, Some(r))
    } else {
        (Consumer::open(fd, opts)?, None)
    };
    let mut payload = Vec::new();
    let (mut delivered, mut idle) = (0usize, 0u32);
    // Every call moves the consumer on or returns None; the bound is a safety net only.
    for _ in 0..4 * (MIN_RING_SIZE / layout::WORD_BYTES) {
        match consumer.next(&mut payload)? {
            Some(_) => {
                assert!(
                    payload.len() <= consumer.max_payload(),
                    "consumer delivered more than its largest record"
                );
                assert!(
                    consumer.read_position() <= released_limit(&release, &consumer),
                    "read beyond one ring ahead of what is released"
                );
                delivered += 1;
                idle = 0;
                if let Some(r) = &release {
                    r.release(consumer.read_position().saturating_sub(2));
                    assert!(
                        r.released() <= consumer.read_position(),
                        "released past the read position"
                    );
                }
            }
            None => {
                idle += 1;
                if idle >= 3 {
                    break;
                }
            }
        }
    }
    let _ = consumer.prepare_sleep();
    let _ = consumer.counters();
    Ok(delivered)
}

/// One ring beyond what the consumer released (itself when it does not hold).
fn released_limit(release: &Option<super::Release>, consumer: &Consumer) -> u64 {
    let released = release
        .as_ref()
        .map_or(consumer.read_position(), |r| r.released());
    released + consumer.capacity_words()
}

/// Pushes the seed records (and leaves one reservation uncommitted) after fillers that a
/// consumer drained, so that they wrap around the end of the data area behind a PAD.
fn fill(fd: &OwnedFd) -> Result<(), RingError> {
    let producer = Producer::map(fd.as_fd())?;
    let filler = [0xA5u8; 2023 * 8];
    for _ in 0..4 {
        let _ = producer.try_push(&RecordMeta::default(), &filler);
    }
    let dup = fd
        .try_clone()
        .map_err(|source| RingError::Syscall { op: "dup", source })?;
    let mut drain = Consumer::open(dup, ConsumerOptions::default())?;
    let mut sink = Vec::new();
    while drain.next(&mut sink)?.is_some() {}
    let bytes: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    for (seq, (len, committed)) in SEED_RECORDS.iter().enumerate() {
        let meta = RecordMeta {
            stream: 1,
            flags: if seq % 2 == 0 { RECORD_CONTINUED } else { 0 },
            file_index: 0,
            pid: 7,
            seq: seq as u32,
            time_ns: 1_000 + seq as u64,
        };
        // A full ring or a stuck slot only means fewer seed records; the fuzz input decides.
        if *committed {
            let _ = producer.try_push(&meta, &bytes[..*len]);
        } else {
            let _ = producer.reserve_for_test(&meta, *len);
        }
    }
    Ok(())
}

/// Writes `bytes` at `offset` of the memfd, clipped to its size (the seals forbid growing it).
fn pwrite(fd: &OwnedFd, offset: u64, bytes: &[u8]) {
    let size = (layout::HEADER_BYTES + MIN_RING_SIZE) as u64;
    let n = bytes.len().min(size.saturating_sub(offset) as usize);
    if n == 0 {
        return;
    }
    // SAFETY: writes at most `n ≤ bytes.len()` bytes from a live slice into our own memfd.
    // A short or failed write only changes which ring the consumer sees, which is fine here.
    unsafe {
        libc::pwrite(
            fd.as_raw_fd(),
            bytes.as_ptr().cast(),
            n,
            offset as libc::off_t,
        );
    }
}
