//! Helpers shared by the `ring_*` integration tests: self-checking payloads (producer id,
//! counter, and filler derived from both, so a delivered record proves where it came from and
//! that no byte was damaged), a raw view of a ring file for tests that play a broken or hostile
//! peer, and deadlines that keep every test bounded in time.

#![allow(dead_code)]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use logtap_protocol::ring::layout;
use logtap_protocol::ring::{Consumer, ConsumerOptions, RecordMeta};

/// Largest payload the tests build on the stack.
pub const MAX_TEST_PAYLOAD: usize = 4096;

/// Length of record `counter` of producer `id`: mostly a short line, regularly up to 1 KB,
/// sometimes up to 4 KB; every length mod 8 (so every padding); always ≥ 8 (id + counter).
pub fn len_for(id: u32, counter: u32, max: usize) -> usize {
    let x = id.wrapping_mul(2_654_435_761) ^ counter.wrapping_mul(40_503);
    let len = match x % 10 {
        0..=5 => 8 + (x as usize / 10) % 89,    // v2: one slot
        6..=8 => 8 + (x as usize / 10) % 1_000, // v2: up to 9 slots
        _ => 8 + (x as usize / 10) % (MAX_TEST_PAYLOAD - 8),
    };
    len.min(max).max(8)
}

/// Fills `buf[..len]` with the self-checking payload of record `counter` of producer `id`.
pub fn fill_payload(buf: &mut [u8], id: u32, counter: u32, len: usize) {
    buf[..4].copy_from_slice(&id.to_le_bytes());
    buf[4..8].copy_from_slice(&counter.to_le_bytes());
    for (i, b) in buf[8..len].iter_mut().enumerate() {
        *b = filler(id, counter, i);
    }
}

fn filler(id: u32, counter: u32, i: usize) -> u8 {
    (id.wrapping_mul(31) ^ counter.wrapping_mul(7)).wrapping_add(i as u32) as u8
}

/// Checks a delivered payload and its metadata; returns (id, counter).
pub fn check_payload(meta: &RecordMeta, payload: &[u8], max: usize) -> (u32, u32) {
    assert!(payload.len() >= 8, "payload too short: {}", payload.len());
    let word = |at: usize| {
        u32::from_le_bytes([
            payload[at],
            payload[at + 1],
            payload[at + 2],
            payload[at + 3],
        ])
    };
    let (id, counter) = (word(0), word(4));
    assert_eq!(
        payload.len(),
        len_for(id, counter, max),
        "length of {id}/{counter}"
    );
    for (i, b) in payload[8..].iter().enumerate() {
        assert_eq!(
            *b,
            filler(id, counter, i),
            "byte {i} of record {id}/{counter}"
        );
    }
    // Every field as pushed; the pid is the ring's creator's (records do not carry one).
    assert_eq!(
        *meta,
        RecordMeta {
            pid: meta.pid,
            ..meta_for(id, counter)
        },
        "metadata of {id}/{counter}"
    );
    (id, counter)
}

/// The metadata the tests attach to record `counter` of producer `id`.
pub fn meta_for(id: u32, counter: u32) -> RecordMeta {
    RecordMeta {
        stream: 1 + (counter % 3) as u8,
        flags: (counter % 2) as u8,
        file_index: (counter % 5) as u16,
        pid: id,
        seq: counter,
        time_ns: u64::from(counter) * 3,
    }
}

/// Per-producer bookkeeping on the consumer side: every record exactly once, in order.
pub struct OrderCheck {
    next: Vec<u32>,
}

impl OrderCheck {
    pub fn new(producers: usize) -> Self {
        OrderCheck {
            next: vec![0; producers],
        }
    }

    /// Records a delivered (id, counter); fails on a duplicate, a gap or a reordering.
    pub fn see(&mut self, id: u32, counter: u32) {
        let expected = &mut self.next[id as usize];
        assert_eq!(
            counter, *expected,
            "producer {id}: got {counter}, expected {expected}"
        );
        *expected += 1;
    }

    pub fn counts(&self) -> &[u32] {
        &self.next
    }
}

/// Consumer options with a short stuck timeout.
pub fn opts(stuck_ms: u64) -> ConsumerOptions {
    ConsumerOptions {
        stuck_timeout: Duration::from_millis(stuck_ms),
    }
}

/// Panics if `deadline` has passed: keeps loops of the tests bounded.
pub fn check_deadline(deadline: Instant, what: &str) {
    assert!(Instant::now() < deadline, "timed out: {what}");
}

/// Drains `consumer` until it returns `None` `idle_rounds` times in a row (sleeping 1 ms in
/// between), feeding every record to `f`.
pub fn drain(
    consumer: &mut Consumer,
    idle_rounds: u32,
    deadline: Instant,
    mut f: impl FnMut(&RecordMeta, &[u8]),
) {
    let mut payload = Vec::new();
    let mut idle = 0;
    while idle < idle_rounds {
        check_deadline(deadline, "drain");
        match consumer.next(&mut payload).expect("consistent ring") {
            Some(meta) => {
                idle = 0;
                f(&meta, &payload);
            }
            None => {
                idle += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// A second, raw mapping of a ring file: lets a test act as a broken or hostile peer.
pub struct RawRing {
    base: *mut u8,
    len: usize,
    pub word_count: u64,
    pub shift: u32,
}

impl RawRing {
    pub fn map(fd: BorrowedFd<'_>) -> RawRing {
        // SAFETY: `stat` is plain old data.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and out pointer.
        assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
        let len = st.st_size as usize;
        // SAFETY: fresh shared mapping of the whole file.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let word_count = ((len - layout::HEADER_BYTES) / layout::WORD_BYTES) as u64;
        RawRing {
            base: base.cast(),
            len,
            word_count,
            shift: word_count.trailing_zeros(),
        }
    }

    pub fn word(&self, off: usize) -> &AtomicU64 {
        assert!(off + 8 <= self.len && off.is_multiple_of(8));
        // SAFETY: in bounds and aligned, the mapping lives as long as `self`.
        unsafe { AtomicU64::from_ptr(self.base.add(off).cast()) }
    }

    /// The data word holding position `pos` (a record's control word at its start).
    pub fn data(&self, pos: u64) -> &AtomicU64 {
        let idx = (pos % self.word_count) as usize;
        self.word(layout::HEADER_BYTES + idx * layout::WORD_BYTES)
    }

    /// The fields of the claimed control word at `pos`, if it is one for `pos`'s lap.
    pub fn control(&self, pos: u64) -> Option<layout::Control> {
        layout::decode_control(self.data(pos).load(Ordering::SeqCst), pos, self.shift)
    }

    pub fn head(&self) -> u64 {
        self.word(layout::OFF_HEAD).load(Ordering::SeqCst)
    }

    pub fn tail(&self) -> u64 {
        self.word(layout::OFF_TAIL).load(Ordering::SeqCst)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Writes one byte anywhere in the file.
    pub fn poke(&self, off: usize, byte: u8) {
        assert!(off < self.len);
        // SAFETY: in bounds; racing with the consumer on purpose (a hostile peer), through a
        // volatile write so the compiler keeps it.
        unsafe { self.base.add(off).write_volatile(byte) }
    }
}

impl Drop for RawRing {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map`.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

// SAFETY: shared memory accessed only through atomics and volatile writes.
unsafe impl Send for RawRing {}
// SAFETY: as above.
unsafe impl Sync for RawRing {}

/// `fd.as_fd()` for any owner.
pub fn borrow<F: AsFd>(fd: &F) -> BorrowedFd<'_> {
    fd.as_fd()
}
