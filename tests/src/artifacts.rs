//! Where the real build products are.
//!
//! The end-to-end tests run the real `liblogtap.so` and the real `logtap` binary, built by
//! `cargo build --workspace` (the README's test command does that before `cargo nextest run`).
//! Both live in the same profile directory as the test executable's `deps/` folder.

use std::path::{Path, PathBuf};

/// The profile directory (`target/debug` or `target/release`) of the running test.
pub fn profile_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LOGTAP_ARTIFACTS_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>
    let deps = exe.parent().expect("test binary has a parent directory");
    let profile = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps has a parent")
    } else {
        deps
    };
    profile.to_path_buf()
}

fn must_exist(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} not found at {}: run `cargo build --workspace` first (the README's test command does)",
        path.display()
    );
    path
}

/// Path of the real `liblogtap.so`.
pub fn liblogtap() -> PathBuf {
    must_exist(profile_dir().join("liblogtap.so"), "liblogtap.so")
}

/// Path of the real `logtap` binary.
pub fn logtap_bin() -> PathBuf {
    must_exist(profile_dir().join("logtap"), "the logtap binary")
}

/// A fresh temporary directory for one test, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/logtap-test-<name>-<pid>-<n>`.
    pub fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("logtap-test-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    /// The directory's path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("LOGTAP_KEEP_TEMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Compiles the C program `src` into `exe` with `gcc <flags> -o exe src`; panics with gcc's
/// messages when it fails (every test that needs a C program of its own calls this).
pub fn gcc(src: &Path, exe: &Path, flags: &[&str]) -> PathBuf {
    let out = std::process::Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(exe)
        .arg(src)
        .output()
        .expect("gcc must be installed");
    assert!(
        out.status.success(),
        "gcc {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    exe.to_path_buf()
}

/// A port for a third-party server that must be told its port (nginx), with no listener of
/// ours to hand it: one the kernel found free a moment ago. Another process may take it before
/// the server binds it, so a caller starts the server in a loop and, when the server says
/// "Address already in use", tries again with another ([`PORT_ATTEMPTS`] times). Our own
/// programs are never given such a port: they listen on port 0 and report the one they got.
pub fn candidate_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// How many [`candidate_port`]s a caller tries before failing.
pub const PORT_ATTEMPTS: usize = 10;

/// Whether a server's error output says its listen address was taken (EADDRINUSE).
pub fn says_address_in_use(text: &str) -> bool {
    text.contains("Address already in use") || text.contains("(98:")
}

/// Path of the real `liblogtap-musl.so` (built by the workspace when `musl-gcc` is installed);
/// panics with the install hint when it was not built.
pub fn musl_library() -> PathBuf {
    let path = profile_dir().join(logtap_musl::LIBRARY_FILE);
    assert!(
        path.exists(),
        "{} (looked for {})",
        logtap_musl::NOT_BUILT,
        path.display()
    );
    path
}

/// Path of `musl-gcc` (Debian's `musl-tools`); panics with the install hint when it is missing.
pub fn musl_gcc() -> PathBuf {
    let found = std::env::var_os("MUSL_GCC")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH")?)
                .map(|d| d.join("musl-gcc"))
                .find(|p| p.is_file())
        });
    found.unwrap_or_else(|| {
        panic!("musl-gcc not found: install musl-tools (apt-get install musl musl-tools)")
    })
}

/// Compiles the C program `src` into `exe` with `musl-gcc <flags>` (a dynamically linked musl
/// program, run by `/lib/ld-musl-x86_64.so.1`); panics with the compiler's messages on failure.
pub fn musl_cc(src: &Path, exe: &Path, flags: &[&str]) -> PathBuf {
    let out = std::process::Command::new(musl_gcc())
        .args(flags)
        .arg("-o")
        .arg(exe)
        .arg(src)
        .output()
        .expect("run musl-gcc");
    assert!(
        out.status.success(),
        "musl-gcc {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    exe.to_path_buf()
}
