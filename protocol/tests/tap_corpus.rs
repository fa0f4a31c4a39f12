//! Replays the `fuzz_tap_decode` seed corpus (and whatever the fuzzer added to it) through the
//! tap decoders, so the ordinary test suite checks every input the fuzzer was ever seeded with,
//! and that the hand-made seeds still mean what their names say.

use logtap_protocol::tap::{FileAnnounce, Hello, Kind, Loss, TapError, decode_frame};
use std::path::Path;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/fuzz_tap_decode");
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.expect("corpus entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("corpus file"),
            )
        })
        .collect();
    out.sort();
    out
}

/// Full decode of one datagram, as the agent does it.
fn decode_all(data: &[u8]) -> Result<Kind, TapError> {
    let f = decode_frame(data)?;
    match f.header.kind {
        Kind::Hello => Hello::decode(f.payload).map(|_| ()),
        Kind::Loss => Loss::decode(f.payload).map(|_| ()),
        Kind::File => FileAnnounce::decode(f.payload).map(|_| ()),
        Kind::Data => Ok(()),
    }?;
    Ok(f.header.kind)
}

#[test]
fn every_corpus_file_decodes_or_errors_cleanly() {
    let files = corpus();
    assert!(files.len() >= 13, "the seed corpus is missing");
    for (name, data) in &files {
        let r = decode_all(data);
        if name.starts_with("hostile-") {
            assert!(r.is_err(), "{name} should be rejected, got {r:?}");
        } else if !(name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit())) {
            // A hand-made seed (the fuzzer names its finds by their SHA-1).
            assert!(r.is_ok(), "{name} should decode: {r:?}");
        }
        // Every prefix of every input must also be handled without panicking.
        for cut in 0..data.len() {
            let _ = decode_all(&data[..cut]);
        }
    }
}

#[test]
fn seeds_decode_to_what_python_msgpack_encoded() {
    let files: std::collections::HashMap<_, _> = corpus().into_iter().collect();
    let f = decode_frame(&files["hello"]).unwrap();
    let h = Hello::decode(f.payload).unwrap();
    assert_eq!((h.pid, h.comm.as_str(), h.ring), (4242, "python3", true));
    assert_eq!(h.files, vec!["/var/log/app/*.log".to_string()]);
    assert_eq!(h.meta, vec![("POD_NAME".into(), "web-0".into())]);
    let f = decode_frame(&files["loss"]).unwrap();
    assert_eq!(
        Loss::decode(f.payload).unwrap(),
        Loss {
            frames: 12,
            bytes: 3456
        }
    );
    let f = decode_frame(&files["data-continued"]).unwrap();
    assert_eq!(f.header.flags, logtap_protocol::tap::FLAG_CONTINUED);
    assert_eq!(f.header.time_ns, 1_795_486_809_501_046_366);
    let f = decode_frame(&files["data-file"]).unwrap();
    assert_eq!(f.header.file_index, 2);
}
