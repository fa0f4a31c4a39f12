//! The body of the `fuzz_forward_decode` target, shared with `protocol/tests/forward_corpus.rs`
//! (which replays the committed corpus under `cargo test`) through `#[path]`.
//!
//! Input: the first byte `k` (mod 8) says how many of the following bytes are read sizes; the rest
//! is the stream. The stream is fed to the server-side decoder in 255-byte reads and in reads of
//! the given sizes (cycled; 0 counts as 1), and the two traces must be equal; then it is fed to the
//! client-side decoder. Nothing may panic.

use bytes::BytesMut;
use logtap_protocol::forward::{ClientMessage, DecodeLimits, Frame, ServerMessage, StreamDecoder};

/// Small caps so the fuzzer reaches them; the same code paths as the defaults.
pub const LIMITS: DecodeLimits = DecodeLimits {
    max_message_bytes: 1 << 20,
    max_decompressed_bytes: 1 << 20,
    max_decoded_bytes: 1 << 20,
    max_depth: 32,
};

/// What decoding produced: one line per message or error; a fatal error ends it.
pub fn trace<T: Frame + std::fmt::Debug>(data: &[u8], sizes: &[u8]) -> Vec<String> {
    let mut dec = StreamDecoder::<T>::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < data.len() {
        let n = if sizes.is_empty() {
            1
        } else {
            (sizes[i % sizes.len()] as usize).max(1)
        };
        i += 1;
        let end = (at + n).min(data.len());
        buf.extend_from_slice(&data[at..end]);
        at = end;
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(m)) => out.push(format!("{m:?}")),
                Ok(None) => break,
                Err(e) if e.is_recoverable() => out.push(format!("err {e}")),
                Err(e) => {
                    out.push(format!("fatal {e}"));
                    return out;
                }
            }
        }
    }
    out
}

/// Runs one fuzz input; returns the server-side trace. Panics on any inconsistency.
pub fn run(input: &[u8]) -> Vec<String> {
    let Some((&k, rest)) = input.split_first() else {
        return Vec::new();
    };
    let k = (k as usize % 8).min(rest.len());
    let (sizes, data) = rest.split_at(k);
    let whole = trace::<ClientMessage>(data, &[255]);
    let split = trace::<ClientMessage>(data, sizes);
    // Decoding is a pure function of the bytes buffered so far: how they were split must not
    // change what comes out (messages, recoverable errors, the fatal error that stops it).
    assert_eq!(
        mask_arrival(&whole),
        mask_arrival(&split),
        "the split changed the decoding"
    );
    trace::<ServerMessage>(data, sizes);
    whole
}

/// The traces with every event time within a day of the wall clock written as `arrival`: an
/// event whose time is nil or 0 seconds is stamped with its time of arrival (as Fluentd's
/// in_forward does), which differs between two decodings of the same bytes.
fn mask_arrival(trace: &[String]) -> Vec<String> {
    const OPEN: &str = "EventTime { secs: ";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    trace
        .iter()
        .map(|line| {
            let mut out = String::with_capacity(line.len());
            let mut rest = line.as_str();
            while let Some(at) = rest.find(OPEN) {
                out.push_str(&rest[..at]);
                let after = &rest[at..];
                let end = after.find('}').map_or(after.len(), |e| e + 1);
                let secs = after[OPEN.len()..]
                    .split(',')
                    .next()
                    .and_then(|n| n.trim().parse::<u64>().ok());
                match secs {
                    Some(s) if s.abs_diff(now) <= 86_400 => out.push_str("EventTime { arrival }"),
                    _ => out.push_str(&after[..end]),
                }
                rest = &after[end..];
            }
            out.push_str(rest);
            out
        })
        .collect()
}
