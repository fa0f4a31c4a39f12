//! Which program really runs for a command: found like `execvp` finds it, `#!` scripts followed
//! to their interpreter, on this machine or inside an unpacked image (`--root`).
//!
//! - [`resolve`] / [`resolve_under`] — CMD (PATH) → `#!` interpreters → the ELF program and its
//!   headers ([`super::elf::Elf`]); a shell script is as tappable as its shell, and
//!   `#!/usr/bin/env python3` is the `python3` that `env` finds.
//! - [`find_libc`] — the `libc.so.6` a glibc program runs with (beside its loader, or in the
//!   usual directories).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::elf::{Elf, ElfError, MAX_SCRIPT_DEPTH};

/// A command resolved to the program the kernel runs.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// CMD's path, then each `#!` interpreter in turn; the last is the ELF program.
    pub chain: Vec<PathBuf>,
    pub elf: Elf,
    /// The ELF program's setuid or setgid bit: the loader runs in secure mode when that changes
    /// the process's identity, and ignores a preload path with a slash.
    pub setid: bool,
}

impl Resolved {
    /// The ELF program.
    pub fn program(&self) -> &Path {
        self.chain.last().map_or(Path::new(""), PathBuf::as_path)
    }

    /// `script → /bin/sh` (only the path when CMD is the program itself).
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self.chain.iter().map(|p| p.display().to_string()).collect();
        parts.join(" → ")
    }
}

/// Finds `cmd` like `execvp` and follows `#!` lines to the ELF program that runs.
pub fn resolve(cmd: &OsStr) -> Result<Resolved, ElfError> {
    resolve_under(cmd, Path::new("/"))
}

/// [`resolve`] inside `root`, an unpacked image (`/`: this machine): CMD's PATH lookup, `#!`
/// interpreters and absolute symlinks are taken inside it. The chain names the image's paths.
pub fn resolve_under(cmd: &OsStr, root: &Path) -> Result<Resolved, ElfError> {
    let mut path =
        which_under(cmd, root).ok_or_else(|| ElfError::NotFound(cmd.to_string_lossy().into()))?;
    let mut chain = vec![path.clone()];
    loop {
        let real = real_path(root, &path);
        let head = read_head(&real)?;
        if head.starts_with(b"\x7fELF") {
            let elf = Elf::read(&real)?;
            let mode = std::fs::metadata(&real)
                .map_err(|source| ElfError::Io {
                    path: real.clone(),
                    source,
                })?
                .permissions()
                .mode();
            return Ok(Resolved {
                chain,
                elf,
                setid: mode & 0o6000 != 0,
            });
        }
        let Some(next) = shebang(&head, root) else {
            return Err(ElfError::NotElf { path: real });
        };
        if chain.len() > MAX_SCRIPT_DEPTH {
            return Err(ElfError::TooDeep { path: real });
        }
        path = next;
        chain.push(path.clone());
    }
}

/// `cmd` as `execvp` finds it: a name with a slash is a path; otherwise the first executable
/// regular file of that name in PATH (or `/usr/local/bin:/usr/bin:/bin` without one).
pub fn which(cmd: &OsStr) -> Option<PathBuf> {
    which_under(cmd, Path::new("/"))
}

/// [`which`] inside `root`; an image's PATH is not known, so there the usual one is searched.
fn which_under(cmd: &OsStr, root: &Path) -> Option<PathBuf> {
    if cmd.is_empty() {
        return None;
    }
    if cmd.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(cmd));
    }
    let path = match std::env::var_os("PATH") {
        Some(p) if is_host(root) => p,
        _ => OsString::from("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
    };
    std::env::split_paths(&path)
        .map(|dir| dir.join(cmd))
        .find(|p| {
            std::fs::metadata(real_path(root, p))
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

fn is_host(root: &Path) -> bool {
    root == Path::new("/")
}

/// Where the image path `path` is on this machine: itself for the host; inside `root`, with its
/// absolute symlinks taken inside `root` too (as the image's own loader sees them).
fn real_path(root: &Path, path: &Path) -> PathBuf {
    if is_host(root) {
        return path.to_owned();
    }
    let inside = if path.is_absolute() {
        root.join(path.strip_prefix("/").unwrap_or(path))
    } else {
        path.to_owned()
    };
    resolve_in(root, &inside).unwrap_or(inside)
}

/// The first 256 bytes (enough for the ELF magic and a `#!` line).
fn read_head(path: &Path) -> Result<Vec<u8>, ElfError> {
    use std::io::Read;
    let io = |source| ElfError::Io {
        path: path.to_owned(),
        source,
    };
    let mut head = Vec::with_capacity(256);
    File::open(path)
        .map_err(io)?
        .take(256)
        .read_to_end(&mut head)
        .map_err(io)?;
    Ok(head)
}

/// The program a `#!` line runs: its interpreter, or for `env` the program `env` looks up.
fn shebang(head: &[u8], root: &Path) -> Option<PathBuf> {
    let line = head.strip_prefix(b"#!")?;
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let mut words = line
        .get(..end)?
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let interpreter = PathBuf::from(OsStr::from_bytes(words.next()?));
    if interpreter.file_name() == Some(OsStr::new("env")) {
        // `env [-S] [NAME=VALUE…] PROG`: PROG is what runs (found in PATH, like env does).
        let prog = words.find(|w| !w.starts_with(b"-") && !w.contains(&b'='));
        if let Some(found) = prog.and_then(|p| which_under(OsStr::from_bytes(p), root)) {
            return Some(found);
        }
    }
    Some(interpreter)
}

/// `libc.so.6` of a glibc program: beside its interpreter (followed through symlinks), then the
/// usual library directories, all under `root` (an unpacked image, or `/`).
pub fn find_libc(root: &Path, interpreter: &str, class64: bool) -> Option<PathBuf> {
    let under = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let mut dirs = Vec::new();
    let interp = under(Path::new(interpreter));
    if let Some(dir) = interp.parent() {
        dirs.push(dir.to_owned());
    }
    if let Some(dir) = resolve_in(root, &interp).and_then(|p| p.parent().map(Path::to_owned)) {
        dirs.push(dir);
    }
    let arch = std::env::consts::ARCH;
    for d in [
        format!("/lib/{arch}-linux-gnu"),
        format!("/usr/lib/{arch}-linux-gnu"),
        "/lib64".into(),
        "/usr/lib64".into(),
        "/lib".into(),
        "/usr/lib".into(),
    ] {
        dirs.push(under(Path::new(&d)));
    }
    dirs.into_iter()
        .map(|d| d.join("libc.so.6"))
        .find(|p| Elf::read(p).is_ok_and(|e| e.class64 == class64 && e.glibc_defined.is_some()))
}

/// `path` with its symlinks followed inside `root` (an absolute link target is taken under
/// `root`, as the image's own loader would see it); at most 16 links.
fn resolve_in(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut p = path.to_owned();
    for _ in 0..16 {
        let Ok(target) = std::fs::read_link(&p) else {
            return Some(p);
        };
        p = if target.is_absolute() {
            root.join(target.strip_prefix("/").unwrap_or(&target))
        } else {
            p.parent()?.join(target)
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::elf::Loader;
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("logtap-program-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_dynamic_glibc_program_and_its_libc() {
        let elf = Elf::read(Path::new("/bin/sh")).unwrap();
        let Loader::Glibc(interp) = &elf.loader else {
            panic!("{elf:?}")
        };
        assert!(interp.contains("ld-linux"), "{interp}");
        assert!(elf.glibc_needed.is_some_and(|v| v >= (2, 2)), "{elf:?}");
        let libc = find_libc(Path::new("/"), interp, elf.class64).expect("libc.so.6");
        let defined = Elf::read(&libc).unwrap().glibc_defined.unwrap();
        assert!(defined >= elf.glibc_needed.unwrap(), "{defined:?}");
    }

    #[test]
    fn shebang_lines() {
        assert_eq!(
            shebang(b"#!/bin/sh -e\necho", Path::new("/")),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(
            shebang(b"#! /bin/bash", Path::new("/")),
            Some(PathBuf::from("/bin/bash"))
        );
        // env finds PROG in PATH; a PROG it cannot find leaves env itself.
        assert_eq!(
            shebang(b"#!/usr/bin/env -S A=1 sh -x\n", Path::new("/")),
            which(OsStr::new("sh"))
        );
        assert_eq!(
            shebang(b"#!/usr/bin/env no-such-prog-logtap\n", Path::new("/")),
            Some(PathBuf::from("/usr/bin/env"))
        );
        assert_eq!(shebang(b"#!\n", Path::new("/")), None);
        assert_eq!(shebang(b"\x7fELF", Path::new("/")), None);
    }

    #[test]
    fn scripts_nested_too_deep_are_an_error() {
        let dir = temp("deep");
        for i in 0..8 {
            let next = dir.join(format!("s{}", i + 1));
            std::fs::write(dir.join(format!("s{i}")), format!("#!{}\n", next.display())).unwrap();
        }
        assert!(matches!(
            resolve(dir.join("s0").as_os_str()),
            Err(ElfError::TooDeep { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
