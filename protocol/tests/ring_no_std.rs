//! The ring's algorithm — `layout.rs`, `raw.rs`, `record.rs` — is the producer the
//! interceptor's `no_std` (musl) build compiles as is. This test keeps it that way: it type-checks
//! those three files as a `#![no_std]` crate with the `rustc` that builds the workspace, so a
//! `std` path slipping into them fails here, not in the other build.

use std::path::Path;
use std::process::Command;

#[test]
fn the_ring_algorithm_compiles_without_std() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ring");
    let dir = std::env::temp_dir().join(format!("logtap-ring-no-std-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let module = |name: &str| {
        format!(
            "    #[path = {:?}]\n    pub mod {name};\n",
            src.join(format!("{name}.rs"))
        )
    };
    let lib = format!(
        "#![no_std]\npub mod ring {{\n{}{}{}}}\n",
        module("layout"),
        module("raw"),
        module("record")
    );
    std::fs::write(dir.join("lib.rs"), lib).expect("lib.rs");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .current_dir(&dir)
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "lib",
            "--emit",
            "metadata",
            "-o",
            "ring.rmeta",
            "lib.rs",
        ])
        .output()
        .expect("rustc runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "layout.rs, raw.rs and record.rs must stay `core`-only (the interceptor's no_std build \
         compiles them):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
