//! Issue 14, the agent keeps up: acks in flight never stop it reading, chunks are large and
//! their size is a setting, gzip runs on several workers — against the real `logtap agent`,
//! a real program under the real `liblogtap.so`, and a Forward receiver over TCP that decodes
//! every chunk with the protocol crate and acknowledges it when the test says.
//!
//! - `acks_held_back_do_not_stop_the_reading`: the receiver acknowledges nothing until every
//!   line of a 50,000-line burst (≈ 8 MB of chunks, twice the former 4 MB `mem_buf_limit`) has
//!   arrived. An agent that stopped reading while acks are outstanding would never send the
//!   rest (and the test would time out); ours sends it all, in chunks of ≈ 2 MB (Fluent Bit's
//!   size, the default), nothing dropped, every line once.
//! - `gzip_chunks_from_several_workers_arrive_once_and_in_order`: 200-odd small gzip chunks,
//!   compressed concurrently; every one decodes, every line arrives once, in the order written.
//! - `chunk_size_setting_is_honoured`: `--chunk-size 100KB` gives chunks of 100 KiB (closed by
//!   size, at most one read's worth above it), not the default's 2 MB.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use logtap_protocol::forward::{ClientMessage, Compression, ServerDecoder, Value};
use logtap_tests::agent_harness::Agent;
use logtap_tests::artifacts::{self, TempDir};

const LIMIT: Duration = Duration::from_secs(90);

/// Writes `argv[1]` lines of 100 bytes (`line NNNNNNNN xxx…\n`), one `write()` each, then
/// sleeps `argv[2]` seconds: a process still there, so that its records are not hurried out
/// in small chunks as those of a gone process are (`pipeline::batch`, urgent chunks).
const LINES_C: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    char line[100];
    memset(line, 'x', sizeof line);
    line[99] = '\n';
    for (long i = 0; i < n; i++) {
        char head[16];
        int len = snprintf(head, sizeof head, "line %08ld ", i);
        memcpy(line, head, (size_t)len);
        if (write(1, line, sizeof line) != (ssize_t)sizeof line) return 2;
    }
    if (argc > 2) sleep((unsigned)atoi(argv[2]));
    return 0;
}
"#;

fn compile_lines(dir: &Path) -> PathBuf {
    let src = dir.join("lines.c");
    std::fs::write(&src, LINES_C).unwrap();
    artifacts::gcc(&src, &dir.join("lines"), &["-O2", "-Wall", "-Werror"])
}

/// When the receiver acknowledges a chunk.
#[derive(Clone, Copy)]
enum Acks {
    /// This long after it arrived.
    After(Duration),
    /// Once this many lines arrived in all (then every held ack at once, and later ones at once).
    WhenLines(usize),
}

/// One chunk as received.
#[derive(Clone, Debug)]
struct Got {
    /// Bytes of its Forward message on the wire.
    wire: usize,
    compressed: bool,
    chunk: Option<Vec<u8>>,
    /// The numbers of its lines, in order.
    lines: Vec<u64>,
}

struct Receiver {
    port: u16,
    chunks: Arc<Mutex<Vec<Got>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(acks: Acks) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let chunks = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let lines = Arc::new(AtomicUsize::new(0));
        let (c, s) = (Arc::clone(&chunks), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let (c, s, l) = (Arc::clone(&c), Arc::clone(&s), Arc::clone(&lines));
                        conns.push(std::thread::spawn(move || serve(sock, &c, &s, &l, acks)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for t in conns {
                let _ = t.join();
            }
        });
        Receiver {
            port,
            chunks,
            stop,
            thread: Some(thread),
        }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn chunks(&self) -> Vec<Got> {
        self.chunks.lock().unwrap().clone()
    }

    fn lines(&self) -> usize {
        self.chunks().iter().map(|c| c.lines.len()).sum()
    }

    /// Waits until `n` lines arrived; panics after `limit` saying how many did.
    fn wait_lines(&self, n: usize, limit: Duration) -> Vec<Got> {
        let deadline = Instant::now() + limit;
        loop {
            let got = self.lines();
            if got >= n {
                return self.chunks();
            }
            assert!(
                Instant::now() < deadline,
                "the receiver got {got} of {n} lines in {} chunks within {limit:?}",
                self.chunks().len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The line number of a record whose `message` is `line NNNNNNNN xxx…`.
fn line_number(record: &Value) -> u64 {
    let Some(Value::Str(m)) = record.get("message") else {
        panic!("a record without a string message: {record:?}");
    };
    let digits = m.get(5..13).expect("a message of at least 13 bytes");
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("not a line of the test: {:?}", String::from_utf8_lossy(m)))
}

fn serve(
    mut sock: TcpStream,
    chunks: &Mutex<Vec<Got>>,
    stop: &AtomicBool,
    lines: &AtomicUsize,
    acks: Acks,
) {
    sock.set_nonblocking(false).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let mut decoder = ServerDecoder::default();
    let mut buf = BytesMut::new();
    let mut read = vec![0u8; 1 << 16];
    // Acks not sent yet: when each is due (None: when the line count is reached).
    let mut held: Vec<(Option<Instant>, Vec<u8>)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match sock.read(&mut read) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&read[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
        loop {
            let before = buf.len();
            let msg = match decoder.decode(&mut buf) {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => panic!("the receiver cannot decode what it got: {e}"),
            };
            let ClientMessage::Events(batch) = msg else {
                panic!("the receiver expected events (no handshake configured)");
            };
            let got = Got {
                wire: before - buf.len(),
                compressed: batch.options.compressed == Compression::Gzip,
                chunk: batch.options.chunk.as_ref().map(|c| c.bytes.to_vec()),
                lines: batch
                    .events
                    .iter()
                    .map(|e| line_number(&e.record))
                    .collect(),
            };
            lines.fetch_add(got.lines.len(), Ordering::SeqCst);
            chunks.lock().unwrap().push(got);
            if let Some(ack) = batch.ack() {
                let due = match acks {
                    Acks::After(d) => Some(Instant::now() + d),
                    Acks::WhenLines(_) => None,
                };
                held.push((due, ack.to_vec()));
            }
        }
        let now = Instant::now();
        let all_in = matches!(acks, Acks::WhenLines(n) if lines.load(Ordering::SeqCst) >= n);
        let mut i = 0;
        while i < held.len() {
            let due = match held[i].0 {
                Some(t) => t <= now,
                None => all_in,
            };
            if due {
                let (_, ack) = held.remove(i);
                if sock.write_all(&ack).is_err() {
                    return;
                }
            } else {
                i += 1;
            }
        }
    }
}

/// A counter of the agent's `/metrics` (0 when absent).
fn metric(port: u16, name: &str) -> u64 {
    let (status, body) = logtap_tests::http::get_local(port, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "GET /metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Every line of `0..n` exactly once.
fn assert_each_line_once(chunks: &[Got], n: usize) {
    let mut seen = HashSet::new();
    for c in chunks {
        for &l in &c.lines {
            assert!(seen.insert(l), "line {l} arrived twice");
        }
    }
    assert_eq!(seen.len(), n, "distinct lines received");
    assert!(seen.iter().all(|&l| l < n as u64), "only lines written");
}

/// Starts the lines program for `n` lines (then a sleep of `linger` s) under the tap of
/// `agent`, with `env`.
fn write_lines(agent: &Agent, exe: &Path, n: usize, linger: u32, env: &[(&str, &str)]) -> Child {
    let mut cmd = agent.tapped_shell(&format!("exec {} {n} {linger}", exe.display()));
    cmd.envs(env.iter().copied());
    cmd.spawn().expect("start the lines program")
}

fn assert_exits_ok(mut child: Child) {
    let status = logtap_tests::agent_harness::wait_bounded(&mut child, LIMIT);
    assert!(status.success(), "the lines program failed: {status}");
}

#[test]
fn acks_held_back_do_not_stop_the_reading() {
    const N: usize = 50_000;
    let dir = TempDir::new("thr-held");
    let exe = compile_lines(dir.path());
    let receiver = Receiver::start(Acks::WhenLines(N));
    let agent = Agent::start(
        "thr-held-agent",
        &[
            "--forward",
            &receiver.address(),
            "--http-listen",
            "127.0.0.1:0",
            "--flush-interval",
            "200ms",
            // Longer than the wait below: no ack timeout, no resend, can bring the rest.
            "--ack-response-timeout",
            "300s",
        ],
    );
    let http = agent.http_port();
    // A ring the whole burst fits in: its records stay there until acknowledged (released when
    // safe), so only the agent's reading is in question. `drop`: a stall would show as drops.
    let writer = write_lines(
        &agent,
        &exe,
        N,
        3,
        &[("LLT_RING_SIZE", "64M"), ("LLT_RING_FULL", "drop")],
    );
    let chunks = receiver.wait_lines(N, Duration::from_secs(60));
    assert_exits_ok(writer);
    let total: usize = chunks.iter().map(|c| c.wire).sum();
    assert!(
        total > 4 << 20,
        "the burst ({total} bytes of chunks) must exceed the former 4 MB mem_buf_limit"
    );
    let largest = chunks.iter().map(|c| c.wire).max().unwrap_or(0);
    assert!(
        largest > 1 << 20 && largest <= (2 << 20) + (128 << 10),
        "default chunks of about 2 MB (Fluent Bit's size); the largest was {largest} bytes"
    );
    // Every ack is out now: nothing is resent, nothing was dropped.
    std::thread::sleep(Duration::from_millis(500));
    let chunks = receiver.chunks();
    assert_each_line_once(&chunks, N);
    let ids: HashSet<_> = chunks.iter().map(|c| c.chunk.clone()).collect();
    assert_eq!(
        ids.len(),
        chunks.len(),
        "every chunk once, each with its id"
    );
    assert_eq!(
        metric(http, "logtap_dropped_records_total{reason=\"ring_full\"}"),
        0,
        "no record dropped for a full ring"
    );
}

#[test]
fn gzip_chunks_from_several_workers_arrive_once_and_in_order() {
    const N: usize = 50_000;
    let dir = TempDir::new("thr-gzip");
    let exe = compile_lines(dir.path());
    let receiver = Receiver::start(Acks::After(Duration::from_millis(20)));
    let agent = Agent::start(
        "thr-gzip-agent",
        &[
            "--forward",
            &receiver.address(),
            "--compress",
            "gzip",
            "--chunk-size",
            "32KB",
            "--flush-interval",
            "200ms",
        ],
    );
    let writer = write_lines(&agent, &exe, N, 0, &[("LLT_RING_SIZE", "16M")]);
    receiver.wait_lines(N, LIMIT);
    assert_exits_ok(writer);
    std::thread::sleep(Duration::from_millis(300));
    let chunks = receiver.chunks();
    assert!(
        chunks.len() >= 100,
        "many chunks to compress at once: {}",
        chunks.len()
    );
    assert!(chunks.iter().all(|c| c.compressed), "every chunk gzip");
    assert_each_line_once(&chunks, N);
    // Compressed concurrently, sent in order: the lines come in the order they were written.
    let order: Vec<u64> = chunks
        .iter()
        .flat_map(|c| c.lines.iter().copied())
        .collect();
    if let Some(w) = order.windows(2).find(|w| w[0] >= w[1]) {
        panic!("line {} arrived after line {}", w[1], w[0]);
    }
    let ids: HashSet<_> = chunks.iter().map(|c| c.chunk.clone()).collect();
    assert_eq!(ids.len(), chunks.len(), "every chunk once");
}

#[test]
fn chunk_size_setting_is_honoured() {
    const N: usize = 20_000;
    let dir = TempDir::new("thr-size");
    let exe = compile_lines(dir.path());
    let receiver = Receiver::start(Acks::After(Duration::ZERO));
    let agent = Agent::start(
        "thr-size-agent",
        &[
            "--forward",
            &receiver.address(),
            "--chunk-size",
            "100KB",
            "--flush-interval",
            "2s",
        ],
    );
    // The writer lingers past the 2 s flush interval: only the last chunk closes by time.
    let writer = write_lines(&agent, &exe, N, 4, &[("LLT_RING_SIZE", "64M")]);
    let chunks = receiver.wait_lines(N, LIMIT);
    assert_exits_ok(writer);
    assert_each_line_once(&chunks, N);
    let limit = 100 << 10;
    // A chunk closes once it reaches the size; it may exceed it by one read of the ring
    // (at most 64 KiB of entries) and its framing.
    for c in &chunks {
        assert!(
            c.wire <= limit + (64 << 10) + 1024,
            "a chunk of {} bytes with --chunk-size 100KB",
            c.wire
        );
    }
    let (last, full) = chunks.split_last().expect("chunks");
    assert!(
        full.len() >= 10,
        "the burst cut into chunks of 100 KiB: {} chunks",
        chunks.len()
    );
    for c in full {
        assert!(
            c.wire >= limit,
            "a chunk of {} bytes closed before --chunk-size 100KB (the flush interval is 2 s)",
            c.wire
        );
    }
    assert!(last.wire <= limit + (64 << 10) + 1024);
}
