//! `logtap doctor -- CMD`: can CMD be tapped, and if not, why — before a user finds out from
//! missing logs.
//!
//! CMD is found like `execvp` finds it and followed through `#!` lines ([`super::program`]); the
//! program that really runs is judged:
//!
//! | program | verdict | exit |
//! |---|---|---|
//! | glibc, its `libc.so.6` ≥ what `liblogtap.so` needs | `tappable (glibc 2.36 ≥ 2.34 needed by liblogtap.so)` | 0 |
//! | musl, `liblogtap-musl.so` installed | `tappable with liblogtap-musl.so` | 0 |
//! | no `PT_INTERP` | `not tappable by preload: statically linked — logtap run captures …` | 1 |
//! | musl, no `liblogtap-musl.so` | `musl program but liblogtap-musl.so is not installed …` | 1 |
//! | setuid / setgid | `setuid: the loader ignores LD_PRELOAD …` | 1 |
//! | glibc older than needed | `glibc 2.17 older than 2.34 needed by liblogtap.so` | 1 |
//! | other class or machine | `32-bit program: liblogtap.so is 64-bit …` | 1 |
//!
//! `--root DIR` judges a program of an unpacked image (`docker export` …): CMD, its `#!`
//! interpreters and its `libc.so.6` are looked for inside DIR (absolute symlinks too), with the
//! usual PATH; the libraries judged against are this machine's.
//!
//! Exit 2 when it cannot tell: CMD not found, not a program, malformed, `liblogtap.so` or the
//! program's `libc.so.6` not found.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::elf::{self, Elf, Loader};
use super::preload::{find_musl_preload, find_preload};
use super::program::{self, Resolved};
use crate::config::cli::DoctorArgs;

/// What `doctor` concludes about one program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A glibc program whose `libc.so.6` is recent enough: (its version, the library's need).
    Glibc { has: (u32, u32), needs: (u32, u32) },
    /// A musl program, and `liblogtap-musl.so` is there.
    Musl,
    /// No loader: `logtap run` captures its output through pipes.
    Static,
    /// A musl program without `liblogtap-musl.so`.
    MuslMissing,
    /// setuid or setgid: secure mode.
    SetId,
    /// glibc too old for `liblogtap.so`.
    GlibcTooOld { has: (u32, u32), needs: (u32, u32) },
    /// Another ELF class or machine than `liblogtap.so`'s.
    OtherArch { program: String, library: String },
    /// A glibc program whose `libc.so.6` was not found.
    NoLibc { interpreter: String },
}

impl Verdict {
    /// Whether `LD_PRELOAD` taps the program.
    pub fn tappable(&self) -> bool {
        matches!(self, Verdict::Glibc { .. } | Verdict::Musl)
    }

    /// 0 tappable, 1 not tappable, 2 cannot tell.
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Glibc { .. } | Verdict::Musl => 0,
            Verdict::NoLibc { .. } => 2,
            _ => 1,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = |(a, b): (u32, u32)| format!("{a}.{b}");
        match self {
            Verdict::Glibc { has, needs } => write!(
                f,
                "tappable (glibc {} ≥ {} needed by liblogtap.so)",
                v(*has),
                v(*needs)
            ),
            Verdict::Musl => write!(f, "tappable with liblogtap-musl.so"),
            Verdict::Static => write!(
                f,
                "not tappable by preload: statically linked — logtap run captures stdout/stderr \
                 through pipes"
            ),
            Verdict::MuslMissing => write!(
                f,
                "musl program but liblogtap-musl.so is not installed (install musl-tools and \
                 rebuild / logtap install): it runs untapped"
            ),
            Verdict::SetId => write!(
                f,
                "setuid: the loader ignores LD_PRELOAD (secure mode) when the program runs as \
                 another user than the one starting it"
            ),
            Verdict::GlibcTooOld { has, needs } => write!(
                f,
                "glibc {} older than {} needed by liblogtap.so: the loader refuses the library \
                 and the program runs untapped",
                v(*has),
                v(*needs)
            ),
            Verdict::OtherArch { program, library } => write!(
                f,
                "{program} program: liblogtap.so is {library}; the loader skips it and the \
                 program runs untapped"
            ),
            Verdict::NoLibc { interpreter } => write!(
                f,
                "glibc program (interpreter {interpreter}) but its libc.so.6 was not found: \
                 cannot tell which glibc it runs with"
            ),
        }
    }
}

/// Judges `program` for `library` (`liblogtap.so`'s headers); `musl_installed`: whether
/// `liblogtap-musl.so` is there; `root`: where the program's libraries are looked for.
pub fn judge(program: &Resolved, library: &Elf, musl_installed: bool, root: &Path) -> Verdict {
    let elf = &program.elf;
    match &elf.loader {
        Loader::Static => return Verdict::Static,
        _ if program.setid => return Verdict::SetId,
        Loader::Musl(_) if !musl_installed => return Verdict::MuslMissing,
        Loader::Musl(_) => return Verdict::Musl,
        Loader::Glibc(_) => {}
    }
    if (elf.class64, elf.machine) != (library.class64, library.machine) {
        return Verdict::OtherArch {
            program: arch(elf),
            library: arch(library),
        };
    }
    let Loader::Glibc(interpreter) = &elf.loader else {
        return Verdict::Static;
    };
    let needs = library.glibc_needed.unwrap_or((2, 0));
    match program::find_libc(root, interpreter, elf.class64)
        .and_then(|p| Elf::read(&p).ok())
        .and_then(|libc| libc.glibc_defined)
    {
        Some(has) if has >= needs => Verdict::Glibc { has, needs },
        Some(has) => Verdict::GlibcTooOld { has, needs },
        None => Verdict::NoLibc {
            interpreter: interpreter.clone(),
        },
    }
}

fn arch(elf: &Elf) -> String {
    let bits = if elf.class64 { 64 } else { 32 };
    match elf.machine {
        3 => format!("{bits}-bit x86"),
        62 => format!("{bits}-bit x86-64"),
        183 => format!("{bits}-bit aarch64"),
        m => format!("{bits}-bit (machine {m})"),
    }
}

/// `logtap doctor`: prints `logtap doctor: CHAIN: VERDICT` on stdout; see the module doc for
/// the exit codes.
pub fn main(args: DoctorArgs) -> ExitCode {
    match doctor(&args) {
        Ok((resolved, verdict)) => {
            println!("logtap doctor: {}: {verdict}", resolved.describe());
            ExitCode::from(verdict.exit_code())
        }
        Err(e) => {
            eprintln!("logtap doctor: {e}");
            ExitCode::from(2)
        }
    }
}

/// Why `doctor` cannot tell.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error(transparent)]
    Elf(#[from] elf::ElfError),
    #[error(transparent)]
    NoLibrary(#[from] super::preload::PreloadNotFound),
    #[error("no command given: logtap doctor -- CMD [ARGS…]")]
    NoCommand,
}

fn doctor(args: &DoctorArgs) -> Result<(Resolved, Verdict), DoctorError> {
    let cmd: &OsString = args.command.first().ok_or(DoctorError::NoCommand)?;
    let root = args.root.as_deref().unwrap_or(Path::new("/"));
    let resolved = program::resolve_under(cmd, root)?;
    let library_path: PathBuf = find_preload(args.preload.as_deref())?;
    let library = Elf::read(&library_path)?;
    let musl = find_musl_preload(args.preload_musl.as_deref(), &library_path).is_ok();
    let verdict = judge(&resolved, &library, musl, root);
    Ok((resolved, verdict))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_architectures_are_compared() {
        let sh = program::resolve(std::ffi::OsStr::new("/bin/sh")).unwrap();
        let lib = Elf {
            glibc_needed: Some((2, 2)),
            ..sh.elf.clone()
        };
        let root = Path::new("/");
        assert!(matches!(
            judge(&sh, &lib, false, root),
            Verdict::Glibc { .. }
        ));
        let future = Elf {
            glibc_needed: Some((2, 999)),
            ..lib.clone()
        };
        let v = judge(&sh, &future, false, root);
        assert!(
            matches!(
                v,
                Verdict::GlibcTooOld {
                    needs: (2, 999),
                    ..
                }
            ),
            "{v}"
        );
        assert_eq!(v.exit_code(), 1);
        assert!(v.to_string().ends_with("older than 2.999 needed by liblogtap.so: the loader refuses the library and the program runs untapped"), "{v}");
        let other = Elf {
            class64: !lib.class64,
            ..lib
        };
        let v = judge(&sh, &other, false, root);
        assert!(matches!(v, Verdict::OtherArch { .. }), "{v}");
        // Under a root without a libc.so.6 nothing can be said about the glibc.
        let v = judge(&sh, &future, false, Path::new("/nonexistent"));
        assert!(matches!(v, Verdict::NoLibc { .. }), "{v}");
        assert_eq!(v.exit_code(), 2);
    }
}
