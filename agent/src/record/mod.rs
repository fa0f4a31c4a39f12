//! The units that travel from the inputs to the outputs.
//!
//! A record is stored in the form the Forward protocol sends it, from the moment it is made:
//! a PackedForward *entry* `[EventTime, {record map}]` (MessagePack), written with the protocol
//! crate's encoder ([`logtap_protocol::forward::write_entry`]). Nothing is re-encoded on the
//! way: [`Entries`] collects entries of one tag (built by a tap peer's task or by the forward
//! input), the batch stage concatenates them into a [`Chunk`], the buffer holds the chunk until
//! every output has delivered it, and the forward output sends `chunk.entries` as is inside
//! `[tag, bin(entries), {chunk, size}]` ([`logtap_protocol::forward::PackedForward::frame`]).
//! The stdout output decodes the entries to JSON.
//!
//! [`ring_release`]: the ring positions a run of tapped entries holds until it is safe; they
//! travel with the entries through the pipeline and the buffer, which releases them.
//!
//! Record map keys (Contract 3): `message` (str, or bin when not UTF-8), `stream`, `file`
//! (file stream only), `pid`, `comm`, `host`, `pod_name`, `namespace`, `container_name`,
//! `node_name` (when known), `container_id` (from the process's cgroup, when known),
//! `meta_claimed` (only when true: the pod names are the process's unverified claims, README
//! "Trust model"), `partial` (only when true).

use std::sync::Arc;

use bytes::Bytes;
pub use logtap_protocol::forward::ChunkId;

pub mod ring_release;

use self::ring_release::RingPins;

/// A run of encoded entries that share one tag: what inputs hand to the batch stage.
#[derive(Debug, Default)]
pub struct Entries {
    /// The tag of every entry in `buf`.
    pub tag: Arc<str>,
    /// Concatenated `[EventTime, map]` MessagePack entries.
    pub buf: Vec<u8>,
    /// How many entries `buf` holds.
    pub records: u32,
    /// The ring positions the entries' records hold until they are safe (tap input only).
    pub pins: RingPins,
    /// Their ring was pressured (more than half of it held) when they were handed off: the
    /// chunk taking them closes at [`PRESSURED_CHUNK`] instead of `chunk_limit_size`.
    pub pressured: bool,
}

/// Under ring pressure a chunk closes at this size: records stay in their ring until their
/// chunk is safe, so a chunk sized for throughput (2 MB) would hold a 1 MiB ring whole and let
/// one chunk at a time be in flight; chunks of a quarter of it keep several in flight while the
/// ring refills (the size chunks had before issue 14).
pub const PRESSURED_CHUNK: usize = 256 * 1024;

impl Entries {
    /// An empty run for `tag`.
    pub fn new(tag: Arc<str>) -> Entries {
        Entries {
            tag,
            buf: Vec::new(),
            records: 0,
            pins: RingPins::default(),
            pressured: false,
        }
    }
}

/// A batch of entries of one tag, the unit of buffering, delivery and acknowledgement.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Unique id ([`ChunkId::generate`]); the Forward `chunk` option, the spool file name.
    pub id: ChunkId,
    pub tag: Arc<str>,
    /// Concatenated `[EventTime, map]` entries: the PackedForward payload.
    pub entries: Bytes,
    /// Number of entries.
    pub records: u32,
}

impl Chunk {
    /// Bytes this chunk occupies in the buffer.
    pub fn size(&self) -> usize {
        self.entries.len() + self.tag.len()
    }
}
