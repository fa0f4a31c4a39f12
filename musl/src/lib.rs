//! `liblogtap-musl.so`, the LD_PRELOAD library for dynamically linked musl programs (Alpine
//! images). The library itself is C (`csrc/logtap_musl.c`, the hooks) over a `no_std` Rust core
//! (`core/`, the protocol crate's ring producer and tap frames); `build.rs` builds it with
//! `musl-gcc` into `target/<profile>/liblogtap-musl.so`, beside `liblogtap.so`. This Rust
//! library only names it, for the tests and the agent.

/// File name of the library, in `target/<profile>/` and in install directories.
pub const LIBRARY_FILE: &str = "liblogtap-musl.so";

/// What to say when the library was not built (no `musl-gcc` on the build machine).
pub const NOT_BUILT: &str =
    "liblogtap-musl.so not built: install musl-tools (apt-get install musl-tools) and rebuild";
