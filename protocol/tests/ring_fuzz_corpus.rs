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
    // Untouched ring (layout version 3) with six seed records behind four drained fillers, so
    // that they wrap around the end of the data area behind a PAD; one of them is a stuck
    // reservation: the other five come out (the stuck timeout is zero in the harness).
    assert_eq!(run("patch-none").unwrap(), 5);
    assert_eq!(run("raw-valid-header").unwrap(), 0);
    assert!(matches!(
        run("raw-bad-version"),
        Err(RingError::Version {
            found: 2,
            expected: 3
        })
    ));
    for name in [
        "patch-len-too-big",
        "patch-head-far-ahead",
        "patch-other-lap",
        "patch-pad-contradicts-len",
    ] {
        assert!(
            matches!(run(name), Err(RingError::Inconsistent { .. })),
            "{name}"
        );
    }
    // The first record turned into a PAD (as an abandoned one is) is stepped over; so is a
    // stuck reservation after the timeout; and a release a killed consumer announced is
    // finished at open: the other four come out.
    assert_eq!(run("patch-pad-skipped").unwrap(), 4);
    assert_eq!(run("patch-reserved-stuck").unwrap(), 4);
    assert_eq!(run("patch-release-half-done").unwrap(), 4);
    // `tail` beyond `head`: nothing claimed there, nothing to read.
    assert_eq!(run("header-tail-past-head").unwrap(), 0);
}
