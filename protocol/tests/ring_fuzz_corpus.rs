//! Replays the seed corpus of the `fuzz_ring_consumer` fuzz target (protocol/fuzz/corpus/) with
//! the same function the fuzzer runs, so `cargo test` catches a regression on any input the
//! fuzzer ever kept, without nightly. A few seeds also pin down their expected outcome.

use std::path::Path;

use logtap_protocol::ring::RingError;
use logtap_protocol::ring::fuzzing::consume_arbitrary_ring;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/fuzz_ring_consumer");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&path).expect("readable corpus file");
            (name, bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_seed_is_consumed_without_panic() {
    let files = corpus();
    assert!(
        files.len() >= 10,
        "seed corpus missing ({} files)",
        files.len()
    );
    for (name, data) in &files {
        // A panic here names the file through the test output's backtrace; print it first.
        eprintln!("replaying {name}");
        let _ = consume_arbitrary_ring(data);
    }
}

#[test]
fn seeds_with_known_outcomes() {
    let files = corpus();
    let run = |name: &str| {
        let data = &files.iter().find(|(n, _)| n == name).expect(name).1;
        consume_arbitrary_ring(data)
    };
    // Untouched ring with six seed records, one of them a stuck reservation: the other five
    // come out (the stuck timeout is zero in the harness).
    assert_eq!(run("patch-none").unwrap(), 5);
    assert_eq!(run("raw-valid-header").unwrap(), 0);
    assert!(matches!(
        run("raw-bad-version"),
        Err(RingError::Version { .. })
    ));
    assert!(matches!(
        run("patch-len-too-big"),
        Err(RingError::Inconsistent { .. })
    ));
    assert!(matches!(
        run("header-head-far-ahead"),
        Err(RingError::Inconsistent { .. })
    ));
    // An orphan continuation at the consumer's position is freed, and the rest delivered.
    assert_eq!(run("patch-orphan-cont").unwrap(), 4);
    // A first slot already freed for the next round (a consumer died before storing `tail`)
    // is stepped over.
    assert_eq!(run("patch-freed-not-published").unwrap(), 4);
}
