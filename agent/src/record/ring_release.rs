//! When a tapped process's ring space goes back to it: pins on ring positions.
//!
//! The agent reads each ring with a *holding* consumer (`Consumer::open_holding`): the records it
//! reads stay in the ring — the process cannot overwrite them — until they are **safe**: written
//! in a chunk file under `storage_path`, or, without a spool, acknowledged by every output. So a
//! killed agent loses nothing: its successor resumes at the ring's `tail` and reads the records
//! that were not safe yet again (duplicates after a crash; never loss).
//!
//! The records of one ring take many routes at once: line assembly joins records (a line's
//! first bytes may sit in the assembler while later records have already become lines), lines
//! go into entries per tag, entries of several rings into one chunk, and chunks are made safe
//! in any order (persisted or acknowledged out of order, several in flight). Therefore the
//! release point of a ring is **the start of the oldest record not yet safe**, and it is tracked
//! with pins:
//! - inside the peer task, the *floor*: the oldest position the task still holds itself (a line
//!   waiting in an assembler, encoded entries not handed off yet, a record held back for a `seq`
//!   gap), or its read position when it holds nothing. Updated by the peer after each handoff;
//! - outside it, a [`RingPin`] per handed-off run of entries: its lowest start position,
//!   counted in a [`RingTracker`]. Entries merged into a chunk keep only the lowest pin per
//!   ring (all of a chunk's records become safe at the same moment), and the chunk's pins are
//!   released when it is persisted (spool) or settled by every output (no spool).
//!
//! The ring is released up to `min(floor, lowest pin)` each time either moves. Pins are cheap:
//! one per handoff (≤ 64 KiB of entries) and one per chunk, never one per line.
//!
//! **Dropping a pin does not release it.** Only [`RingPin::release`] does, when the records are
//! safe or deliberately given up (an output's `retry_limit`, counted as a drop). A pin dropped
//! otherwise — the agent shutting down with chunks unacknowledged, a task torn down — leaves its
//! records in the ring for the next agent.
//!
//! **Pressure.** A ring whose unreleased part exceeds half of it is *pressured*: the batch stage
//! seals at once the open chunk that holds its *oldest* unreleased record (see [`PRESSURE`]),
//! and the peer emits a line still waiting for its newline as `partial` if that line is what
//! holds the ring. So the space producers wait for is never held back by `flush_interval` or
//! `partial_flush` (a quiet stream's chunk holding an old record while another stream floods the
//! ring); what is left is the time to persist (spool) or to be acknowledged (one round trip).
//! Only the oldest: sealing every chunk of a pressured ring would cut a flood into tiny chunks,
//! and tiny chunks fill a server's window of chunks in flight long before its bandwidth. The
//! chunks of a process that is gone are all sealed at once: its last records are made safe
//! without waiting for `flush_interval`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock, Weak};
use std::time::{Duration, Instant};

use logtap_protocol::ring::Release;
use tokio::sync::Notify;

/// Notified when a ring becomes (or stays) pressured: the batch stage then seals the open
/// chunks holding pins of pressured rings.
pub static PRESSURE: Notify = Notify::const_new();

/// How often the keeper beats the heartbeat of every ring while the agent makes progress.
pub const BEAT: Duration = Duration::from_millis(20);
/// The agent counts as making progress while it read records, released ring space or
/// delivered a chunk within this long: a process waiting for room keeps waiting while it does
/// (the heartbeat beats), then its own 200 ms. So a server that acknowledges within seconds, or
/// an output that writes its chunks in bursts on a loaded machine (a debug build rendering 16
/// chunks of JSON at once takes 300 ms and more), never makes it drop; a stuck agent (a dead
/// server, no spool, buffers full) makes it drop after about 5 s, once (later writes drop at
/// once until the agent makes progress again).
pub const PROGRESS_WINDOW: Duration = Duration::from_secs(5);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Milliseconds since [`epoch`] of the last progress (0: none yet).
static LAST_PROGRESS_MS: AtomicU64 = AtomicU64::new(0);

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The agent made progress: it read records, released ring space, or delivered a chunk.
pub fn note_progress() {
    LAST_PROGRESS_MS.store(now_ms(), Ordering::Relaxed);
}

/// Whether the agent made progress within [`PROGRESS_WINDOW`].
fn progressing() -> bool {
    let last = LAST_PROGRESS_MS.load(Ordering::Relaxed);
    last != 0 && now_ms().saturating_sub(last) < PROGRESS_WINDOW.as_millis() as u64
}

/// The rings the keeper beats.
static KEPT: Mutex<Vec<Weak<RingTracker>>> = Mutex::new(Vec::new());
static KEEPER: Once = Once::new();

/// Puts a ring in the keeper's care (and starts the keeper on first use). The keeper is a
/// plain thread, mostly asleep, so the kernel runs it promptly even while the runtime's threads
/// are busy (a task rendering chunks, a pipeline blocked behind a slow output): a live agent's
/// heartbeat does not stall with them.
pub fn keep(tracker: &Arc<RingTracker>) {
    note_progress();
    KEPT.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Arc::downgrade(tracker));
    KEEPER.call_once(|| {
        let started = std::thread::Builder::new()
            .name("logtap-ring-keeper".into())
            .spawn(keeper);
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the ring keeper thread");
        }
    });
}

/// Every [`BEAT`]: while the agent makes progress, beats the heartbeat of every ring whose
/// process is still connected. Allocates nothing and takes no lock but the list's (the agent's
/// malloc arenas are busy with its workers; a worker preempted while holding one must not hold
/// up the heartbeat).
fn keeper() {
    loop {
        std::thread::sleep(BEAT);
        let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|w| w.strong_count() > 0);
        if !progressing() {
            continue;
        }
        for ring in kept.iter().filter_map(Weak::upgrade) {
            if !ring.peer_gone() {
                ring.release.beat();
            }
        }
    }
}

/// The release state of one ring.
pub struct RingTracker {
    release: Release,
    state: Mutex<State>,
    pressured: AtomicBool,
    /// The peer task reading the ring has ended (the process exited or was dropped).
    peer_gone: AtomicBool,
}

struct State {
    /// Pins held outside the peer task: start position → count.
    pins: BTreeMap<u64, u32>,
    /// Everything below this the peer task holds no more (it was handed off with pins, or is
    /// safe without: an empty record, bytes of a line that is pinned lower).
    floor: u64,
    /// The consumer's read position when the floor was last set.
    read: u64,
}

impl std::fmt::Debug for RingTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingTracker")
            .field("released", &self.release.released())
            .finish()
    }
}

impl RingTracker {
    /// A tracker for the ring behind `release`, starting where it is released now.
    pub fn new(release: Release) -> Arc<RingTracker> {
        let at = release.released();
        Arc::new(RingTracker {
            release,
            state: Mutex::new(State {
                pins: BTreeMap::new(),
                floor: at,
                read: at,
            }),
            pressured: AtomicBool::new(false),
            peer_gone: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pins position `pos`: the ring is not released past it until the pin is released.
    pub fn pin(self: &Arc<Self>, pos: u64) -> RingPin {
        *self.lock().pins.entry(pos).or_insert(0) += 1;
        RingPin {
            tracker: Arc::clone(self),
            pos,
        }
    }

    /// The peer's floor (see the module docs) and the consumer's read position; releases what
    /// became safe. Returns whether the ring is pressured and the floor is what holds it most
    /// (the peer's own pending lines are the oldest unreleased records).
    pub fn set_floor(&self, floor: u64, read: u64) -> (bool, bool) {
        let mut st = self.lock();
        st.floor = floor.min(read);
        st.read = read;
        let oldest_is_local =
            st.pins.keys().next().is_none_or(|&p| st.floor < p) && st.floor < read;
        let pressured = self.advance(&st);
        drop(st);
        if pressured {
            PRESSURE.notify_one();
        }
        (pressured, oldest_is_local)
    }

    /// Whether more than half of the ring is read and not released.
    pub fn pressured(&self) -> bool {
        self.pressured.load(Ordering::Relaxed)
    }

    /// Whether a chunk holding `pin` should be sealed now: its process is gone, or the ring is
    /// pressured and `pin` is its oldest.
    fn urgent(&self, pin: u64) -> bool {
        self.peer_gone()
            || (self.pressured() && self.lock().pins.keys().next().is_some_and(|&p| p >= pin))
    }

    /// The peer task has ended (its process exited, or was dropped): what its pins still hold
    /// dies with the ring once nobody maps it. Its chunks are then sealed at once, like a
    /// pressured ring's: a process that exits with suppressed records not yet safe waits for
    /// them (bounded) before it writes them to the original stream itself.
    pub fn set_peer_gone(&self) {
        self.peer_gone.store(true, Ordering::Relaxed);
        PRESSURE.notify_one();
    }

    /// See [`RingTracker::set_peer_gone`].
    pub fn peer_gone(&self) -> bool {
        self.peer_gone.load(Ordering::Relaxed)
    }

    /// The position released so far.
    pub fn released(&self) -> u64 {
        self.release.released()
    }

    fn unpin(&self, pos: u64) {
        let mut st = self.lock();
        if let Some(n) = st.pins.get_mut(&pos) {
            *n -= 1;
            if *n == 0 {
                st.pins.remove(&pos);
            }
        }
        if self.advance(&st) {
            // Another pin may be the oldest now: let the batch stage look again.
            PRESSURE.notify_one();
        }
    }

    /// Releases up to the oldest position still held; returns (and records) the pressure.
    fn advance(&self, st: &State) -> bool {
        let target = st.pins.keys().next().map_or(st.floor, |&p| p.min(st.floor));
        if target > self.release.released() {
            self.release.release(target);
            note_progress();
        }
        let unreleased = st.read.saturating_sub(self.release.released());
        let pressured = unreleased > self.release.capacity_words() / 2;
        self.pressured.store(pressured, Ordering::Relaxed);
        pressured
    }
}

/// A hold on a ring position (see the module docs). Dropping it keeps holding; only
/// [`RingPin::release`] gives the position up.
pub struct RingPin {
    tracker: Arc<RingTracker>,
    pos: u64,
}

impl RingPin {
    /// The records this pin holds are safe (or given up): release the position.
    pub fn release(self) {
        self.tracker.unpin(self.pos);
    }

    /// The pinned position.
    pub fn position(&self) -> u64 {
        self.pos
    }
}

/// Unit-test helper: a tracker on a fresh ring holding `records` one-byte records (3 words each), read and
/// not released (the floor still at 0: call `set_floor(records, records)` once pinned), and
/// the producer side keeping the ring alive.
#[cfg(test)]
pub fn test_tracker(records: u64) -> (Arc<RingTracker>, logtap_protocol::ring::Producer) {
    use logtap_protocol::ring::{Consumer, MIN_RING_SIZE, Producer, RecordMeta, create_ring_memfd};
    use std::os::fd::AsFd;
    let fd = create_ring_memfd(MIN_RING_SIZE, 1).expect("memfd");
    let producer = Producer::map(fd.as_fd()).expect("map");
    let (mut consumer, release) = Consumer::open_holding(fd, Default::default()).expect("ring");
    for _ in 0..records {
        producer
            .try_push(&RecordMeta::default(), b"x")
            .expect("room");
        consumer
            .next(&mut Vec::new())
            .expect("ring")
            .expect("record");
    }
    let tracker = RingTracker::new(release);
    tracker.set_floor(0, consumer.read_position());
    (tracker, producer)
}

#[cfg(test)]
impl RingPin {
    /// A pin on a fresh ring of its own (unit tests of the units that carry pins).
    pub fn for_test(pos: u64) -> RingPin {
        use logtap_protocol::ring::{Consumer, MIN_RING_SIZE, create_ring_memfd};
        let fd = create_ring_memfd(MIN_RING_SIZE, 1).expect("memfd");
        let (_consumer, release) = Consumer::open_holding(fd, Default::default()).expect("ring");
        RingTracker::new(release).pin(pos)
    }
}

impl std::fmt::Debug for RingPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RingPin({})", self.pos)
    }
}

/// The pins of one unit in transit (entries, a chunk): at most one per ring, the lowest.
#[derive(Debug, Default)]
pub struct RingPins(Vec<RingPin>);

impl RingPins {
    /// One pin.
    pub fn one(pin: RingPin) -> RingPins {
        RingPins(vec![pin])
    }

    /// Adds `pin`, keeping the lower of two pins of the same ring (the other is released:
    /// everything above the kept pin is held by it, and becomes safe with it).
    pub fn add(&mut self, pin: RingPin) {
        match self
            .0
            .iter_mut()
            .find(|p| Arc::ptr_eq(&p.tracker, &pin.tracker))
        {
            Some(kept) if kept.pos <= pin.pos => pin.release(),
            Some(kept) => std::mem::replace(kept, pin).release(),
            None => self.0.push(pin),
        }
    }

    /// Adds every pin of `other`.
    pub fn merge(&mut self, other: RingPins) {
        for pin in other.0 {
            self.add(pin);
        }
    }

    /// The records are safe (or given up): release every pin.
    pub fn release(self) {
        for pin in self.0 {
            pin.release();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the unit should be sealed now: it holds the oldest record of a pressured ring,
    /// or records of a process that is gone (see the module docs).
    pub fn urgent(&self) -> bool {
        self.0.iter().any(|p| p.tracker.urgent(p.pos))
    }

    /// Whether one of the rings pinned belongs to a peer that is gone.
    pub fn any_peer_gone(&self) -> bool {
        self.0.iter().any(|p| p.tracker.peer_gone())
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use logtap_protocol::ring::{
        Consumer, ConsumerOptions, MIN_RING_SIZE, Producer, RecordMeta, create_ring_memfd,
    };

    use super::*;

    /// A ring with `n` one-byte records (3 words each) read (not released) by a holding consumer.
    fn ring(n: u64) -> (Producer, Consumer, Arc<RingTracker>) {
        let fd = create_ring_memfd(MIN_RING_SIZE, 1).unwrap();
        let producer = Producer::map(fd.as_fd()).unwrap();
        let (mut consumer, release) =
            Consumer::open_holding(fd, ConsumerOptions::default()).unwrap();
        for i in 0..n {
            producer
                .try_push(
                    &RecordMeta {
                        stream: 1,
                        seq: i as u32,
                        ..RecordMeta::default()
                    },
                    b"x",
                )
                .unwrap();
            consumer.next(&mut Vec::new()).unwrap().unwrap();
        }
        (producer, consumer, RingTracker::new(release))
    }

    #[test]
    fn the_oldest_pin_or_the_floor_bounds_the_release() {
        let (_p, consumer, t) = ring(10);
        let read = consumer.read_position();
        let (a, b, c) = (t.pin(2), t.pin(5), t.pin(7));
        t.set_floor(8, read);
        assert_eq!(t.released(), 2);
        b.release(); // out of order: nothing moves while 2 is held
        assert_eq!(t.released(), 2);
        a.release();
        assert_eq!(t.released(), 7);
        c.release();
        assert_eq!(t.released(), 8, "now the floor holds");
        t.set_floor(10, read);
        assert_eq!(t.released(), 10);
    }

    #[test]
    fn a_dropped_pin_keeps_holding() {
        let (_p, consumer, t) = ring(4);
        let pin = t.pin(1);
        t.set_floor(4, consumer.read_position());
        drop(pin);
        assert_eq!(t.released(), 1, "only release() gives a position up");
    }

    #[test]
    fn pins_of_one_ring_collapse_to_the_lowest() {
        let (_p, consumer, t) = ring(10);
        let mut pins = RingPins::default();
        pins.add(t.pin(6));
        pins.add(t.pin(3));
        pins.add(t.pin(8));
        t.set_floor(10, consumer.read_position());
        assert_eq!(pins.0.len(), 1);
        assert_eq!(pins.0[0].position(), 3);
        assert_eq!(t.released(), 3, "the higher pins went at once");
        pins.release();
        assert_eq!(t.released(), 10);
    }

    #[test]
    fn more_than_half_unreleased_is_pressure() {
        // Records of 3 words: just over half of the ring's words.
        let records = (MIN_RING_SIZE / 8 / 2 / 3) as u64 + 1;
        let (_p, consumer, t) = ring(records);
        let pin = t.pin(0);
        let (pressured, local) = t.set_floor(consumer.read_position(), consumer.read_position());
        assert!(pressured && !local && t.pressured());
        let one = RingPins::one(t.pin(1));
        assert!(!one.urgent(), "not the oldest: 0 is");
        let oldest = RingPins::one(pin);
        assert!(oldest.urgent(), "the oldest of a pressured ring");
        one.release();
        oldest.release();
        assert!(!t.pressured());
        let (_p, consumer, t) = ring(records);
        let _pin = t.pin(5);
        let (pressured, local) = t.set_floor(0, consumer.read_position());
        assert!(
            pressured && local,
            "the peer's own pending line is what holds the ring"
        );
    }
}
