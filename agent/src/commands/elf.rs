//! What the dynamic loader will do with a program: enough ELF to tell whether `LD_PRELOAD` can
//! tap it (`logtap doctor`) and whether `logtap run` must capture it through pipes instead.
//!
//! Which program runs for a command is [`super::program`]'s; this reads its headers.
//! [`Elf::read`] reads the headers only, with positioned reads bounded by the file's size: the
//! interpreter (`PT_INTERP`: none → static, `ld-musl-*` → musl, else glibc), the class and
//! machine, the `GLIBC_2.x` versions the file needs (`.gnu.version_r`) and defines
//! (`.gnu.version_d`).
//!
//! Every malformed or hostile input is an [`ElfError`], never a panic: offsets and counts come
//! from the file and are checked against its length and a 16 MiB cap before use.

use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Most bytes of one header table or string table read from a file (a real libc's are < 64 KiB).
const MAX_TABLE: u64 = 16 << 20;
/// Most `#!` interpreters followed (Linux itself stops at 4 levels).
pub(super) const MAX_SCRIPT_DEPTH: usize = 4;
const PT_INTERP: u32 = 3;
const SHT_GNU_VERDEF: u32 = 0x6fff_fffd;
const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;

/// Why a file cannot be judged.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{0}: command not found (not a path, and not in PATH)")]
    NotFound(String),
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is neither an ELF program nor a #! script")]
    NotElf { path: PathBuf },
    #[error("{path}: malformed ELF ({what})")]
    Malformed { path: PathBuf, what: &'static str },
    #[error("{path}: #! scripts nested more than {MAX_SCRIPT_DEPTH} deep")]
    TooDeep { path: PathBuf },
}

/// Which C library's loader runs a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loader {
    /// No `PT_INTERP`: nothing loads a preload library.
    Static,
    /// `/lib/ld-musl-*`.
    Musl(String),
    /// Any other interpreter (`ld-linux*`): glibc's.
    Glibc(String),
}

/// The headers of one ELF file that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elf {
    /// 64-bit (`ELFCLASS64`).
    pub class64: bool,
    /// `e_machine`.
    pub machine: u16,
    pub loader: Loader,
    /// Highest `GLIBC_2.x` the file needs (`.gnu.version_r`), as (2, x).
    pub glibc_needed: Option<(u32, u32)>,
    /// Highest `GLIBC_2.x` the file defines (`.gnu.version_d`; a `libc.so.6`).
    pub glibc_defined: Option<(u32, u32)>,
}

/// Reads of one file, each bounded by its length.
struct Reader<'a> {
    file: File,
    len: u64,
    path: &'a Path,
    little: bool,
}

impl Reader<'_> {
    fn malformed(&self, what: &'static str) -> ElfError {
        ElfError::Malformed {
            path: self.path.to_owned(),
            what,
        }
    }

    fn bytes(&self, offset: u64, len: u64, what: &'static str) -> Result<Vec<u8>, ElfError> {
        let end = offset
            .checked_add(len)
            .ok_or_else(|| self.malformed(what))?;
        if end > self.len || len > MAX_TABLE {
            return Err(self.malformed(what));
        }
        let mut buf = vec![0; len as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|source| ElfError::Io {
                path: self.path.to_owned(),
                source,
            })?;
        Ok(buf)
    }
}

/// Little/big-endian integers at an offset of a buffer, 0 past its end (callers size the buffer
/// from the header first, so a short read is a malformed file caught by that size).
struct Fields<'a> {
    buf: &'a [u8],
    little: bool,
}

impl Fields<'_> {
    fn n<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        let mut a: [u8; N] = self.buf.get(at..at.checked_add(N)?)?.try_into().ok()?;
        if !self.little {
            a.reverse();
        }
        Some(a)
    }
    fn u16(&self, at: usize) -> Option<u16> {
        self.n::<2>(at).map(u16::from_le_bytes)
    }
    fn u32(&self, at: usize) -> Option<u32> {
        self.n::<4>(at).map(u32::from_le_bytes)
    }
    fn u64(&self, at: usize) -> Option<u64> {
        self.n::<8>(at).map(u64::from_le_bytes)
    }
}

/// A section header's fields we use.
struct Section {
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
    info: u32,
}

impl Elf {
    /// Reads the headers of the ELF file at `path`.
    pub fn read(path: &Path) -> Result<Elf, ElfError> {
        let io = |source| ElfError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut r = Reader {
            file,
            len,
            path,
            little: true,
        };
        let ident = r.bytes(0, 16.min(len), "shorter than its identification")?;
        if !ident.starts_with(b"\x7fELF") {
            return Err(ElfError::NotElf {
                path: path.to_owned(),
            });
        }
        let class64 = match ident.get(4) {
            Some(1) => false,
            Some(2) => true,
            _ => return Err(r.malformed("unknown class")),
        };
        r.little = match ident.get(5) {
            Some(1) => true,
            Some(2) => false,
            _ => return Err(r.malformed("unknown byte order")),
        };
        let header = r.bytes(0, if class64 { 64 } else { 52 }, "truncated header")?;
        let h = Fields {
            buf: &header,
            little: r.little,
        };
        let bad = |what| r.malformed(what);
        let (phoff, shoff, rest) = if class64 {
            (h.u64(32), h.u64(40), 52)
        } else {
            (h.u32(28).map(u64::from), h.u32(32).map(u64::from), 40)
        };
        let machine = h.u16(18).ok_or_else(|| bad("truncated header"))?;
        let phoff = phoff.ok_or_else(|| bad("truncated header"))?;
        let shoff = shoff.ok_or_else(|| bad("truncated header"))?;
        let field = |i: usize| {
            h.u16(rest + 2 * i)
                .map(u64::from)
                .ok_or_else(|| bad("truncated header"))
        };
        let (phentsize, phnum, shentsize, shnum) = (field(1)?, field(2)?, field(3)?, field(4)?);

        let mut loader = Loader::Static;
        if phnum > 0 {
            if phentsize < if class64 { 56 } else { 32 } {
                return Err(bad("program header entries too small"));
            }
            let table = r.bytes(phoff, phentsize * phnum, "program headers outside the file")?;
            let t = Fields {
                buf: &table,
                little: r.little,
            };
            for i in 0..phnum as usize {
                let at = i * phentsize as usize;
                if t.u32(at) != Some(PT_INTERP) {
                    continue;
                }
                let (off, size) = if class64 {
                    (t.u64(at + 8), t.u64(at + 32))
                } else {
                    (t.u32(at + 4).map(u64::from), t.u32(at + 16).map(u64::from))
                };
                let (off, size) = off
                    .zip(size)
                    .ok_or_else(|| bad("truncated program header"))?;
                let raw = r.bytes(off, size.min(4096), "interpreter outside the file")?;
                let name = cstr(&raw).ok_or_else(|| bad("interpreter name not terminated"))?;
                let name = String::from_utf8_lossy(name).into_owned();
                let file = Path::new(&name).file_name().map(|f| f.as_bytes().to_vec());
                loader = if file.is_some_and(|f| f.starts_with(b"ld-musl-")) {
                    Loader::Musl(name)
                } else {
                    Loader::Glibc(name)
                };
            }
        }

        let mut sections = Vec::new();
        if shnum > 0 && shoff > 0 {
            if shentsize < if class64 { 64 } else { 40 } {
                return Err(bad("section header entries too small"));
            }
            let table = r.bytes(shoff, shentsize * shnum, "section headers outside the file")?;
            let t = Fields {
                buf: &table,
                little: r.little,
            };
            for i in 0..shnum as usize {
                let at = i * shentsize as usize;
                let (offset, size, link, info) = if class64 {
                    (
                        t.u64(at + 24),
                        t.u64(at + 32),
                        t.u32(at + 40),
                        t.u32(at + 44),
                    )
                } else {
                    (
                        t.u32(at + 16).map(u64::from),
                        t.u32(at + 20).map(u64::from),
                        t.u32(at + 24),
                        t.u32(at + 28),
                    )
                };
                let kind = t.u32(at + 4);
                match (kind, offset, size, link, info) {
                    (Some(kind), Some(offset), Some(size), Some(link), Some(info)) => sections
                        .push(Section {
                            kind,
                            offset,
                            size,
                            link,
                            info,
                        }),
                    _ => return Err(bad("truncated section header")),
                }
            }
        }
        let glibc_needed = versions(&r, &sections, SHT_GNU_VERNEED)?;
        let glibc_defined = versions(&r, &sections, SHT_GNU_VERDEF)?;
        Ok(Elf {
            class64,
            machine,
            loader,
            glibc_needed,
            glibc_defined,
        })
    }
}

/// The highest `GLIBC_2.x` named by the version sections of `kind` (needs or definitions).
fn versions(
    r: &Reader<'_>,
    sections: &[Section],
    kind: u32,
) -> Result<Option<(u32, u32)>, ElfError> {
    let mut best = None;
    for s in sections.iter().filter(|s| s.kind == kind) {
        let data = r.bytes(s.offset, s.size, "version section outside the file")?;
        let strtab = sections
            .get(s.link as usize)
            .ok_or_else(|| r.malformed("version section names no string table"))?;
        let strings = r.bytes(strtab.offset, strtab.size, "string table outside the file")?;
        let f = Fields {
            buf: &data,
            little: r.little,
        };
        let trunc = || r.malformed("truncated version entry");
        let mut at = 0usize;
        // sh_info: the number of entries; bounded again by the section's size.
        for _ in 0..s.info.min(4096) {
            let (count, aux, next) = if kind == SHT_GNU_VERNEED {
                (
                    f.u16(at.saturating_add(2)),
                    f.u32(at.saturating_add(8)),
                    f.u32(at.saturating_add(12)),
                )
            } else {
                (
                    f.u16(at.saturating_add(6)),
                    f.u32(at.saturating_add(12)),
                    f.u32(at.saturating_add(16)),
                )
            };
            let (count, aux, next) = (
                count.ok_or_else(trunc)?,
                aux.ok_or_else(trunc)?,
                next.ok_or_else(trunc)?,
            );
            let mut a = at.checked_add(aux as usize).ok_or_else(trunc)?;
            for _ in 0..count {
                let (name, anext) = if kind == SHT_GNU_VERNEED {
                    (f.u32(a.saturating_add(8)), f.u32(a.saturating_add(12)))
                } else {
                    (f.u32(a), f.u32(a.saturating_add(4)))
                };
                let (name, anext) = (name.ok_or_else(trunc)?, anext.ok_or_else(trunc)?);
                let version = strings
                    .get(name as usize..)
                    .and_then(cstr)
                    .and_then(glibc_version);
                best = best.max(version);
                if anext == 0 {
                    break;
                }
                a = a.checked_add(anext as usize).ok_or_else(trunc)?;
            }
            if next == 0 {
                break;
            }
            at = at.checked_add(next as usize).ok_or_else(trunc)?;
        }
    }
    Ok(best)
}

/// The bytes before the first NUL (None without one).
fn cstr(bytes: &[u8]) -> Option<&[u8]> {
    bytes
        .iter()
        .position(|&b| b == 0)
        .and_then(|end| bytes.get(..end))
}

/// `GLIBC_2.34` → (2, 34); `GLIBC_PRIVATE` and other names → None.
fn glibc_version(name: &[u8]) -> Option<(u32, u32)> {
    let rest = std::str::from_utf8(name.strip_prefix(b"GLIBC_")?).ok()?;
    let mut parts = rest.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("logtap-elf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn truncated_and_corrupted_files_are_errors_not_panics() {
        let dir = temp("hostile");
        let whole = std::fs::read("/bin/sh").unwrap();
        let path = dir.join("f");
        // Every prefix of the headers, then every header byte set to 0xff and to 0.
        for len in (0..4096.min(whole.len())).chain([whole.len() / 2, whole.len() - 1]) {
            std::fs::write(&path, &whole[..len]).unwrap();
            let _ = Elf::read(&path);
        }
        for at in 0..64 {
            for value in [0x00, 0xff, 0x7f] {
                let mut bytes = whole.clone();
                bytes[at] = value;
                std::fs::write(&path, &bytes).unwrap();
                let _ = Elf::read(&path);
            }
        }
        // A section table that says its version sections are huge and everywhere.
        let mut bytes = whole.clone();
        let shoff = u64::from_le_bytes(bytes[40..48].try_into().unwrap()) as usize;
        for i in 0..usize::from(u16::from_le_bytes([bytes[60], bytes[61]])) {
            let at = shoff + i * 64;
            bytes[at + 24..at + 32].copy_from_slice(&8u64.to_le_bytes());
            bytes[at + 44..at + 48].copy_from_slice(&u32::MAX.to_le_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();
        let _ = Elf::read(&path);
        std::fs::write(&path, &whole[..10]).unwrap();
        assert!(matches!(Elf::read(&path), Err(ElfError::Malformed { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn glibc_version_names() {
        assert_eq!(glibc_version(b"GLIBC_2.34"), Some((2, 34)));
        assert_eq!(glibc_version(b"GLIBC_2.2.5"), Some((2, 2)));
        assert_eq!(glibc_version(b"GLIBC_PRIVATE"), None);
        assert_eq!(glibc_version(b"GCC_3.0"), None);
    }
}
