//! Builds the C shim (`csrc/stdio_shim.c`, the stdio family; `csrc/variadic.c`, the variadic
//! `open`/`fcntl` entry points of `src/hooks/open.rs`) and exports its symbols from
//! `liblogtap.so`.
//!
//! Why C: defining C-variadic functions (`printf(fmt, ...)`, `open(path, flags, ...)`) is
//! unstable in Rust 1.95, so those entry points are C. Why a second version script: rustc
//! links a cdylib with its own version script that exports only Rust `#[no_mangle]` items and
//! makes everything else local; GNU ld merges a second script, which adds the shim's symbols
//! to the dynamic symbol table so that `LD_PRELOAD` interposes them.

use std::path::PathBuf;

/// Every symbol the C files define for interposition. Keep in sync with `csrc/*.c`.
const SHIM_EXPORTS: &[&str] = &[
    // stdio
    "printf",
    "vprintf",
    "fprintf",
    "vfprintf",
    "dprintf",
    "vdprintf",
    "puts",
    "fputs",
    "fputs_unlocked",
    "fputc",
    "putc",
    "_IO_putc",
    "putchar",
    "fputc_unlocked",
    "putc_unlocked",
    "putchar_unlocked",
    "fwrite",
    "fwrite_unlocked",
    "perror",
    "__printf_chk",
    "__fprintf_chk",
    "__vprintf_chk",
    "__vfprintf_chk",
    "__dprintf_chk",
    "__vdprintf_chk",
    // where a FILE writes its buffer out (bytes inlined putc_unlocked & co. left there)
    "__overflow",
    "fflush",
    "fflush_unlocked",
    "fseek",
    "fseeko",
    "fseeko64",
    "rewind",
    "fsetpos",
    "fsetpos64",
    // glibc's diagnostics, printed through internal calls otherwise
    "error",
    "error_at_line",
    "err",
    "errx",
    "verr",
    "verrx",
    "warn",
    "warnx",
    "vwarn",
    "vwarnx",
    // leaving the image without the destructor (the rest are in hooks/exec.rs)
    "execl",
    "execlp",
    "execle",
    // opening and duplicating descriptors (variadic; csrc/variadic.c)
    "open",
    "open64",
    "openat",
    "openat64",
    "fcntl",
    "fcntl64",
    // the program may make rdtsc fault (interceptor/src/clock.rs)
    "prctl",
];

fn main() {
    println!("cargo:rerun-if-changed=csrc/stdio_shim.c");
    println!("cargo:rerun-if-changed=csrc/variadic.c");
    println!("cargo:rerun-if-changed=build.rs");
    cc::Build::new()
        .file("csrc/stdio_shim.c")
        .file("csrc/variadic.c")
        .flag_if_supported("-fvisibility=default")
        .flag_if_supported("-Wno-builtin-declaration-mismatch")
        .warnings(true)
        // Linked into the cdylib only (below): the unit-test binary must not interpose
        // `open64`, `printf`, … of the test runner itself.
        .cargo_metadata(false)
        .compile("logtap_stdio_shim");

    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    println!("cargo:rustc-cdylib-link-arg=-Wl,--whole-archive");
    println!(
        "cargo:rustc-cdylib-link-arg={}",
        out.join("liblogtap_stdio_shim.a").display()
    );
    println!("cargo:rustc-cdylib-link-arg=-Wl,--no-whole-archive");
    let script = out.join("shim_exports.map");
    let body = format!("{{ global: {}; }};\n", SHIM_EXPORTS.join("; "));
    if let Err(e) = std::fs::write(&script, body) {
        println!("cargo:warning=cannot write {}: {e}", script.display());
        std::process::exit(1);
    }
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        script.display()
    );
}
