//! Where `liblogtap.so` is, for `logtap run` (which preloads it) and `logtap install` (which
//! copies it).

use std::path::{Path, PathBuf};

/// `liblogtap.so` is not where it was looked for.
#[derive(Debug, thiserror::Error)]
#[error("liblogtap.so not found at {0}: put it beside the logtap binary or pass --preload PATH")]
pub struct PreloadNotFound(pub PathBuf);

/// Where `liblogtap.so` is: `--preload`, or beside the running binary.
pub fn find_preload(configured: Option<&Path>) -> Result<PathBuf, PreloadNotFound> {
    let path = match configured {
        Some(p) => p.to_owned(),
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("liblogtap.so")))
            .unwrap_or_else(|| PathBuf::from("liblogtap.so")),
    };
    if path.is_file() {
        Ok(std::fs::canonicalize(&path).unwrap_or(path))
    } else {
        Err(PreloadNotFound(path))
    }
}

/// The file name of the library musl's loader loads (built when `musl-gcc` is installed).
pub const MUSL_LIBRARY: &str = "liblogtap-musl.so";

/// `liblogtap-musl.so` is not where it was looked for.
#[derive(Debug, thiserror::Error)]
#[error(
    "liblogtap-musl.so not found at {0}: musl programs (Alpine images) run untapped. Install \
     musl-tools (musl-gcc) and rebuild so it is built beside liblogtap.so, or pass --preload-musl PATH"
)]
pub struct MuslNotFound(pub PathBuf);

/// Where `liblogtap-musl.so` is: `--preload-musl`, or beside `liblogtap.so` (`glibc`).
pub fn find_musl_preload(configured: Option<&Path>, glibc: &Path) -> Result<PathBuf, MuslNotFound> {
    let path = match configured {
        Some(p) => p.to_owned(),
        None => glibc
            .parent()
            .map_or_else(|| PathBuf::from(MUSL_LIBRARY), |d| d.join(MUSL_LIBRARY)),
    };
    if path.is_file() {
        Ok(std::fs::canonicalize(&path).unwrap_or(path))
    } else {
        Err(MuslNotFound(path))
    }
}

/// The directory name musl's loader sees in `LD_PRELOAD=DIR/$LIB/liblogtap.so`: musl does not
/// expand `$LIB`, so it opens a directory literally named `$LIB`, which holds the musl library.
pub const MUSL_DIR: &str = "$LIB";

/// What glibc may expand `$LIB` to (its configured library directory: `lib/x86_64-linux-gnu` on
/// Debian and Ubuntu, `lib64` on RHEL, Fedora and SUSE, `lib` on Arch and others); each holds
/// the glibc library.
pub fn glibc_dirs() -> [String; 3] {
    [
        format!("lib/{}-linux-gnu", std::env::consts::ARCH),
        "lib64".into(),
        "lib".into(),
    ]
}

/// The one `LD_PRELOAD` value for a [`glibc_dirs`] + [`MUSL_DIR`] layout under `root`: glibc
/// programs load the glibc library, musl programs the musl one (or none when it is missing: musl
/// skips a preload path that does not exist, glibc says so on stderr and goes on).
pub fn layout_preload(root: &Path) -> PathBuf {
    root.join(MUSL_DIR).join("liblogtap.so")
}
