//! Builds `liblogtap-musl.so` into `target/<profile>/`, beside `liblogtap.so`.
//!
//! Route (see the README's musl section): this machine's Rust has only the gnu target's
//! standard library, and a library that links Rust's `std` drags glibc-only symbols in. So:
//! 1. the protocol crate's producer and frame sources (`ring/{error,layout,record,mapping,
//!    memfd,producer}.rs`, `msgpack.rs`, `tap.rs`) are copied into `$OUT_DIR/core/` with a
//!    mechanical rewrite (no `thiserror`, `std::`/`libc::` paths to `core/lib.rs`'s facades) —
//!    the same code, not a second implementation;
//! 2. `core/lib.rs` (`no_std`, the C-callable adapter) is compiled with `$RUSTC` for the host
//!    target as a `panic = abort` staticlib (the workspace itself keeps unwinding);
//! 3. `musl-gcc -shared` links it with `csrc/logtap_musl.c` (the hooks) against musl's libc.
//!
//! Without `musl-gcc` nothing is built and nothing is printed (a fresh Debian with Rust only
//! builds the workspace); `LOGTAP_REQUIRE_MUSL=1` (CI) turns that into an error. A failure of
//! the steps above is an error with `LOGTAP_REQUIRE_MUSL=1`, else a cargo warning (the rest of
//! the workspace builds; the musl tests then say the library is missing).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The message tests and `logtap` print when the library is missing; keep in sync with
/// `src/lib.rs`.
const NOT_BUILT: &str =
    "liblogtap-musl.so not built: install musl-tools (apt-get install musl-tools) and rebuild";

/// Protocol sources compiled into the core: (path under `protocol/src/`, module file name).
const SOURCES: &[(&str, &str)] = &[
    ("ring/error.rs", "error.rs"),
    ("ring/layout.rs", "layout.rs"),
    ("ring/record.rs", "record.rs"),
    ("ring/raw.rs", "raw.rs"),
    ("ring/mapping.rs", "mapping.rs"),
    ("ring/memfd.rs", "memfd.rs"),
    ("ring/producer.rs", "producer.rs"),
    ("msgpack.rs", "msgpack.rs"),
    ("tap.rs", "tap.rs"),
];

fn main() {
    println!("cargo:rerun-if-env-changed=LOGTAP_REQUIRE_MUSL");
    println!("cargo:rerun-if-env-changed=MUSL_GCC");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=core");
    println!("cargo:rerun-if-changed=csrc");
    if let Err(e) = build() {
        // CI (LOGTAP_REQUIRE_MUSL=1) fails; elsewhere the rest of the workspace still builds
        // and cargo shows why this library did not (the tests then say it is missing).
        if require_musl() {
            panic!("building liblogtap-musl.so failed: {e}");
        }
        for line in format!("liblogtap-musl.so not built: {e}").lines() {
            println!("cargo:warning={line}");
        }
    }
}

fn require_musl() -> bool {
    env::var("LOGTAP_REQUIRE_MUSL").is_ok_and(|v| v == "1")
}

fn build() -> Result<(), String> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let protocol = manifest.join("../protocol/src");
    for (src, _) in SOURCES {
        println!("cargo:rerun-if-changed={}", protocol.join(src).display());
    }
    // target/<profile>/build/logtap-musl-<hash>/out → target/<profile>
    let profile_dir = out
        .ancestors()
        .nth(3)
        .ok_or("OUT_DIR is not under target/<profile>/build")?
        .to_path_buf();
    let product = profile_dir.join("liblogtap-musl.so");

    let Some(musl_gcc) = find_musl_gcc() else {
        // Look again once musl-gcc is installed: when a directory on PATH changes (not on
        // every change of PATH itself, which would rebuild the tests crate needlessly).
        if let Some(path) = env::var_os("PATH") {
            for dir in env::split_paths(&path).filter(|d| d.is_dir()) {
                println!("cargo:rerun-if-changed={}", dir.display());
            }
        }
        // Remove a stale product so that nothing runs an old library by mistake.
        let _ = fs::remove_file(&product);
        if require_musl() {
            return Err(format!(
                "{NOT_BUILT} (LOGTAP_REQUIRE_MUSL=1 and no musl-gcc on PATH)"
            ));
        }
        return Ok(());
    };

    println!("cargo:rerun-if-changed={}", musl_gcc.display());
    // Until the new library is in place, no old one stays behind to be tested by mistake.
    let _ = fs::remove_file(&product);

    // 1. The core's sources.
    let core = out.join("core");
    for dir in ["gen", "ring"] {
        let dir = core.join(dir);
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    for file in ["lib.rs", "adapter.rs"] {
        copy(&manifest.join("core").join(file), &core.join(file))?;
    }
    for (src, name) in SOURCES {
        let path = protocol.join(src);
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let text = rewrite(&text);
        // ring/* → core/ring/ (`mod ring`'s directory), the others → core/gen/.
        let dir = if src.starts_with("ring/") {
            "ring"
        } else {
            "gen"
        };
        fs::write(core.join(dir).join(name), text).map_err(|e| format!("{name}: {e}"))?;
    }

    // 2. The staticlib.
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let staticlib = out.join("libllt_core.a");
    run(Command::new(&rustc)
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "staticlib",
            "--crate-name",
            "llt_core",
        ])
        .args([
            "-C",
            "panic=abort",
            "-C",
            "opt-level=2",
            "-C",
            "relocation-model=pic",
        ])
        .args(["-C", "debug-assertions=off", "-C", "overflow-checks=off"])
        .args(["-C", "codegen-units=1", "--cap-lints", "allow"])
        .arg("-o")
        .arg(&staticlib)
        .arg(core.join("lib.rs")))?;

    // 3. The shared library.
    let tmp = out.join("liblogtap-musl.so");
    run(Command::new(&musl_gcc)
        .args([
            "-shared",
            "-fPIC",
            "-O2",
            "-g1",
            "-std=gnu11",
            "-Wall",
            "-Wextra",
            "-Werror",
        ])
        .args([
            "-fvisibility=hidden",
            "-fno-stack-protector",
            "-D_GNU_SOURCE",
        ])
        .arg("-o")
        .arg(&tmp)
        .arg(manifest.join("csrc/logtap_musl.c"))
        .arg(&staticlib)
        .args([
            "-Wl,--gc-sections",
            "-Wl,--exclude-libs,ALL",
            "-Wl,-z,defs",
            "-Wl,-z,now",
        ])
        .args(["-static-libgcc", "-Wl,--as-needed"]))?;
    fs::copy(&tmp, &product).map_err(|e| format!("{}: {e}", product.display()))?;
    Ok(())
}

fn find_musl_gcc() -> Option<PathBuf> {
    if let Some(p) = env::var_os("MUSL_GCC").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    env::split_paths(&env::var_os("PATH")?)
        .map(|d| d.join("musl-gcc"))
        .find(|p| p.is_file())
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("{} → {}: {e}", from.display(), to.display()))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let output = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{cmd:?} exited with {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// The mechanical rewrite that lets a protocol source compile in the `no_std` core:
/// inner doc comments become plain comments (the file is a `#[path]` module), the
/// `thiserror::Error` derive and its `#[error(..)]`/`#[source]` attributes go (the core only
/// matches on the errors), `std::`/`libc::` name the facades in `core/lib.rs`, and the std
/// prelude's `Vec`/`String`/`ToOwned` are imported.
fn rewrite(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 128);
    let mut body = String::with_capacity(text.len());
    let mut header = true;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if header && trimmed.starts_with("//!") {
            out.push_str("// ");
            out.push_str(trimmed.trim_start_matches("//!"));
            out.push('\n');
            continue;
        }
        header = false;
        body.push_str(line);
        body.push('\n');
    }
    out.push_str("#[allow(unused_imports)]\nuse crate::prelude_shim::*;\n");
    let body = body
        .replace(", thiserror::Error", "")
        .replace("thiserror::Error, ", "")
        .replace("#[source]", "");
    let body = strip_attr(&body, "#[error(");
    let body = replace_path(&body, "std::", "crate::std_shim::");
    let body = replace_path(&body, "libc::", "crate::libc::");
    out.push_str(&body);
    out
}

/// Removes every attribute that starts with `open` (balanced parentheses, strings skipped).
fn strip_attr(text: &str, open: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(open) {
        out.push_str(&rest[..at]);
        let tail = &rest[at + open.len()..];
        let mut depth = 1usize;
        let mut in_str = false;
        let mut escaped = false;
        let mut end = tail.len();
        for (i, c) in tail.char_indices() {
            if in_str {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_str = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => in_str = true,
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        // Skip the closing `)]`.
                        end = (i + 2).min(tail.len());
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Replaces the path prefix `from` with `to` where it starts a path (not after an identifier
/// character or `::`).
fn replace_path(text: &str, from: &str, to: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let before = out.chars().last().or_else(|| rest[..at].chars().last());
        let prev = rest[..at].chars().last().or(before);
        out.push_str(&rest[..at]);
        let starts_path = !prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        out.push_str(if starts_path { to } else { from });
        rest = &rest[at + from.len()..];
    }
    out.push_str(rest);
    out
}
