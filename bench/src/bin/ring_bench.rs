//! Ring micro-benchmark: produce + consume of 64-byte records through `protocol::ring`, with one
//! and with four producer threads, beside baselines measured in the same run — a plain 64-byte
//! `memcpy` into a buffer (the least a copy can cost) and a `Mutex<VecDeque>` queue (what a
//! naive shared queue costs).
//!
//! Run: `cargo run --release -p logtap-bench --bin ring_bench` (`LOGTAP_BENCH_ROUNDS=N` for more
//! rounds). The figures go to `bench/RESULTS.md`.

use std::collections::VecDeque;
use std::hint::black_box;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use logtap_bench::{Case, Sample, rounds, side_by_side};
use logtap_protocol::ring::{
    Consumer, ConsumerOptions, DEFAULT_RING_SIZE, Producer, PushError, RecordMeta,
    create_ring_memfd,
};

const RECORD: usize = 64;
/// Records per run of every case.
const N: u64 = 400_000;

type BoxError = Box<dyn std::error::Error>;

/// A ring with its producer and consumer, fresh for a run.
fn ring() -> Result<(Arc<Producer>, Consumer), BoxError> {
    let fd: OwnedFd = create_ring_memfd(DEFAULT_RING_SIZE, std::process::id())?;
    let producer = Arc::new(Producer::map(fd.as_fd())?);
    let consumer = Consumer::open(fd, ConsumerOptions::default())?;
    Ok((producer, consumer))
}

fn meta(seq: u32) -> RecordMeta {
    RecordMeta {
        stream: 1,
        pid: 1,
        seq,
        ..RecordMeta::default()
    }
}

/// Baseline: copy each 64-byte record into a 1 MiB buffer, round robin.
fn memcpy_run() -> Sample {
    let src = [0x5Au8; RECORD];
    let mut dst = vec![0u8; DEFAULT_RING_SIZE];
    let slots = dst.len() / RECORD;
    Sample::time(N, N * RECORD as u64, || {
        for i in 0..N as usize {
            let at = (i % slots) * RECORD;
            dst[at..at + RECORD].copy_from_slice(black_box(&src));
        }
        black_box(&dst);
    })
}

/// Uncontended: one thread pushes a batch of 32 records, then consumes them.
fn ring_same_thread_run(producer: &Producer, consumer: &mut Consumer) -> Sample {
    let src = [0x5Au8; RECORD];
    let mut payload = Vec::with_capacity(RECORD);
    Sample::time(N, N * RECORD as u64, || {
        let mut seq = 0u32;
        while u64::from(seq) < N {
            for _ in 0..32 {
                let _ = producer.try_push(&meta(seq), black_box(&src));
                seq += 1;
            }
            while let Ok(Some(m)) = consumer.next(&mut payload) {
                black_box(m);
            }
        }
    })
}

/// The producer's share alone (what a hook adds to a write): batches of 4,096 timed pushes,
/// each followed by an untimed drain.
fn ring_push_only_run(producer: &Producer, consumer: &mut Consumer) -> Sample {
    let src = [0x5Au8; RECORD];
    let mut payload = Vec::with_capacity(RECORD);
    let mut elapsed = std::time::Duration::ZERO;
    let mut seq = 0u32;
    while u64::from(seq) < N {
        let start = Instant::now();
        for _ in 0..4096 {
            let _ = producer.try_push(&meta(seq), black_box(&src));
            seq += 1;
        }
        elapsed += start.elapsed();
        while let Ok(Some(m)) = consumer.next(&mut payload) {
            black_box(m);
        }
    }
    Sample {
        items: u64::from(seq),
        bytes: u64::from(seq) * RECORD as u64,
        elapsed,
    }
}

/// `threads` producer threads push N records in all while this thread consumes them.
fn ring_threads_run(threads: u64, producer: &Arc<Producer>, consumer: &mut Consumer) -> Sample {
    let per_thread = N / threads;
    let total = per_thread * threads;
    let mut payload = Vec::with_capacity(RECORD);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let producer = Arc::clone(producer);
            thread::spawn(move || {
                let src = [0x5Au8; RECORD];
                for seq in 0..per_thread as u32 {
                    while let Err(PushError::Full) = producer.try_push(&meta(seq), &src) {
                        thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let mut seen = 0;
    while seen < total {
        match consumer.next(&mut payload) {
            Ok(Some(_)) => seen += 1,
            Ok(None) => thread::yield_now(),
            Err(_) => break,
        }
    }
    for h in handles {
        let _ = h.join();
    }
    Sample {
        items: total,
        bytes: total * RECORD as u64,
        elapsed: start.elapsed(),
    }
}

/// Baseline: the same exchange through a `Mutex<VecDeque<[u8; 64]>>` bounded like the ring.
fn mutex_queue_run(threads: u64) -> Sample {
    let queue = Arc::new(Mutex::new(VecDeque::<[u8; RECORD]>::with_capacity(8192)));
    let per_thread = N / threads;
    let total = per_thread * threads;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let queue = Arc::clone(&queue);
            thread::spawn(move || {
                let src = [0x5Au8; RECORD];
                let mut pushed = 0;
                while pushed < per_thread {
                    let accepted = queue.lock().is_ok_and(|mut q| {
                        let room = q.len() < 8192;
                        if room {
                            q.push_back(src);
                        }
                        room
                    });
                    if accepted {
                        pushed += 1;
                    } else {
                        thread::yield_now();
                    }
                }
            })
        })
        .collect();
    let mut seen = 0;
    let mut out = Vec::with_capacity(RECORD);
    while seen < total {
        let record = queue.lock().ok().and_then(|mut q| q.pop_front());
        if let Some(r) = record {
            out.clear();
            out.extend_from_slice(&r);
            black_box(&out);
            seen += 1;
        } else {
            thread::yield_now();
        }
    }
    for h in handles {
        let _ = h.join();
    }
    Sample {
        items: total,
        bytes: total * RECORD as u64,
        elapsed: start.elapsed(),
    }
}

fn main() -> Result<(), BoxError> {
    let rounds = rounds(7);
    let (p_same, mut c_same) = ring()?;
    let (p_push, mut c_push) = ring()?;
    let (p1, mut c1) = ring()?;
    let (p4, mut c4) = ring()?;
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    println!("ring_bench: {N} records of {RECORD} bytes per run, {cpus} CPUs available");
    let mut cases = vec![
        Case::new("baseline: memcpy 64 B into a buffer", memcpy_run),
        Case::new("ring: push + consume, one thread (uncontended)", || {
            ring_same_thread_run(&p_same, &mut c_same)
        }),
        Case::new("ring: try_push alone (the hook's share)", || {
            ring_push_only_run(&p_push, &mut c_push)
        }),
        Case::new("ring: 1 producer thread → 1 consumer thread", || {
            ring_threads_run(1, &p1, &mut c1)
        }),
        Case::new("ring: 4 producer threads → 1 consumer thread", || {
            ring_threads_run(4, &p4, &mut c4)
        }),
        Case::new(
            "baseline: Mutex<VecDeque>, 1 producer → 1 consumer",
            || mutex_queue_run(1),
        ),
        Case::new(
            "baseline: Mutex<VecDeque>, 4 producers → 1 consumer",
            || mutex_queue_run(4),
        ),
    ];
    side_by_side(
        "ring produce + consume, 64-byte records",
        rounds,
        &mut cases,
    );
    Ok(())
}
