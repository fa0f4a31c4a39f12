//! Replays the committed seed corpus of the `fuzz_forward_decode` fuzz target
//! (`protocol/fuzz/corpus/fuzz_forward_decode/`) through the same harness under `cargo test`, so
//! every input that once crashed the decoder stays fixed. Names tell what each seed must do:
//! `fixture-*`, `valid-*`, `server-*`, `client-*` decode without error; `hostile-*` produce an
//! error; anything else (crashers found by the fuzzer) must only not panic.

#![cfg(feature = "forward")]

#[path = "../fuzz/harness/forward_decode.rs"]
mod harness;

use logtap_protocol::forward::ServerMessage;

#[test]
fn every_corpus_input_replays() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/fuzz_forward_decode");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if name.starts_with('.') {
            continue;
        }
        let input = std::fs::read(&path).expect("read corpus file");
        let trace = harness::run(&input);
        let failed = trace
            .iter()
            .any(|t| t.starts_with("err ") || t.starts_with("fatal "));
        if name.starts_with("server-") {
            let k = (input[0] as usize % 8).min(input.len() - 1);
            let t = harness::trace::<ServerMessage>(&input[1 + k..], &[1]);
            assert!(
                t.len() == 1 && !t[0].starts_with("err") && !t[0].starts_with("fatal"),
                "{name}: {t:?}"
            );
        } else if name.starts_with("fixture-")
            || name.starts_with("valid-")
            || name.starts_with("client-")
        {
            assert!(!trace.is_empty() && !failed, "{name}: {trace:?}");
        } else if name.starts_with("hostile-") {
            assert!(failed, "{name} must be rejected: {trace:?}");
        }
        n += 1;
    }
    assert!(n >= 30, "only {n} corpus files");
}
