//! `logtap install --to DIR`: the init-container step.
//!
//! Copies `liblogtap.so` (from beside the binary, or `--preload`), `liblogtap-musl.so` (beside
//! it, or `--preload-musl`) and the `logtap` binary itself into DIR — typically an `emptyDir`
//! volume shared with the app container — and lays out one `LD_PRELOAD` value for both C
//! libraries, `LD_PRELOAD='DIR/$LIB/liblogtap.so'` (quoted: nothing may expand it):
//!
//! ```text
//! DIR/liblogtap.so, DIR/liblogtap-musl.so       the libraries
//! DIR/lib/x86_64-linux-gnu/liblogtap.so         → ../../liblogtap.so  (glibc's $LIB, Debian)
//! DIR/lib64/liblogtap.so                        → ../liblogtap.so     (glibc's $LIB, RHEL)
//! DIR/lib/liblogtap.so                          → ../liblogtap.so     (glibc's $LIB, others)
//! DIR/$LIB/liblogtap.so                         → ../liblogtap-musl.so (musl: no expansion)
//! ```
//!
//! glibc expands `$LIB` to its library directory; musl does not and opens the directory
//! literally named `$LIB`. So every process, Alpine or Debian, even a musl program started by a
//! glibc shell, loads its own library, with no per-image choice. Without the musl library the
//! `$LIB` directory is absent and musl skips the missing path: an Alpine app runs untapped but
//! runs (preloading the glibc library into it would stop it at start, exit 127). install says so
//! on stderr and still succeeds. The links are relative, so the app may mount DIR anywhere.
//!
//! Each file is written under a temporary name, synced, given mode 0755 and renamed into place,
//! so a reader never sees a half-written library.
//!
//! In the manifests the app needs the library only (`--library-only`): the agent runs from its
//! own image. DIR must be on a filesystem that allows execution: the dynamic linker cannot map a
//! library from a `noexec` mount (`/run`, `/tmp` and `/dev/shm` are `noexec` on many nodes), and
//! the app would run untapped, so `install` refuses such a DIR.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::preload::{
    MUSL_DIR, MUSL_LIBRARY, MuslNotFound, PreloadNotFound, find_musl_preload, find_preload,
    glibc_dirs, layout_preload,
};
use crate::config::cli::InstallArgs;

/// Why the installation failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    NoLibrary(#[from] PreloadNotFound),
    #[error("cannot find the running logtap binary: {0}")]
    Exe(io::Error),
    #[error(
        "{dir} is on a noexec mount: a program cannot preload liblogtap.so from there (ld.so: \
         \"failed to map segment from shared object\") and would run untapped. Install into a \
         directory that allows execution: an emptyDir, or a host directory outside /run, /tmp and \
         /dev/shm (check with: findmnt -T DIR -o OPTIONS)"
    )]
    Noexec { dir: PathBuf },
    #[error("cannot create or inspect {dir}: {source}")]
    Dir { dir: PathBuf, source: io::Error },
    #[error("cannot install {what} into {dir}: {source}")]
    Copy {
        what: String,
        dir: PathBuf,
        source: io::Error,
    },
}

/// What [`install`] did.
#[derive(Debug)]
pub struct Installed {
    /// The files and links written.
    pub files: Vec<PathBuf>,
    /// The `LD_PRELOAD` value for the app: `DIR/$LIB/liblogtap.so`.
    pub preload: PathBuf,
    /// Why `liblogtap-musl.so` was not installed (musl programs then run untapped).
    pub musl_missing: Option<MuslNotFound>,
}

/// Copies the files and lays out the `$LIB` links.
pub fn install(args: &InstallArgs) -> Result<Installed, InstallError> {
    let library = find_preload(args.preload.as_deref())?;
    let musl = find_musl_preload(args.preload_musl.as_deref(), &library);
    let mut files = vec![(library, "liblogtap.so")];
    let musl_missing = match musl {
        Ok(path) => {
            files.push((path, MUSL_LIBRARY));
            None
        }
        Err(e) => Some(e),
    };
    if !args.library_only {
        files.push((
            std::env::current_exe().map_err(InstallError::Exe)?,
            "logtap",
        ));
    }
    let prepare = |source| InstallError::Dir {
        dir: args.to.clone(),
        source,
    };
    fs::create_dir_all(&args.to).map_err(prepare)?;
    if crate::sys::is_noexec(&args.to).map_err(prepare)? {
        return Err(InstallError::Noexec {
            dir: args.to.clone(),
        });
    }
    let mut installed = Vec::new();
    for (src, name) in files {
        let dst = copy_atomically(&src, &args.to, name).map_err(|source| InstallError::Copy {
            what: src.display().to_string(),
            dir: args.to.clone(),
            source,
        })?;
        installed.push(dst);
    }
    let mut links: Vec<(String, &str)> = glibc_dirs()
        .into_iter()
        .map(|d| (d, "liblogtap.so"))
        .collect();
    if musl_missing.is_none() {
        links.push((MUSL_DIR.to_owned(), MUSL_LIBRARY));
    }
    for (sub, target) in links {
        let link =
            link_atomically(&args.to, &sub, target).map_err(|source| InstallError::Copy {
                what: format!("the link {sub}/liblogtap.so"),
                dir: args.to.clone(),
                source,
            })?;
        installed.push(link);
    }
    Ok(Installed {
        files: installed,
        preload: layout_preload(&args.to),
        musl_missing,
    })
}

/// `dir/sub/liblogtap.so` → `../…/target` (relative: valid wherever `dir` is mounted).
fn link_atomically(dir: &Path, sub: &str, target: &str) -> io::Result<PathBuf> {
    let parent = dir.join(sub);
    fs::create_dir_all(&parent)?;
    let up = "../".repeat(Path::new(sub).components().count());
    let link = parent.join("liblogtap.so");
    let tmp = parent.join(format!(".liblogtap.so.tmp-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("{up}{target}"), &tmp)?;
    if let Err(e) = fs::rename(&tmp, &link) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(link)
}

fn copy_atomically(src: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let dst = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        fs::copy(src, &tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, &dst)?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(dst)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_with_mode_0755_and_replaces() {
        let dir = std::env::temp_dir().join(format!("logtap-install-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let src = dir.join("src.so");
        fs::write(&src, b"one").unwrap();
        let out = dir.join("out");
        let dst = copy_atomically(&src, &out, "liblogtap.so").unwrap();
        fs::write(&src, b"two").unwrap();
        copy_atomically(&src, &out, "liblogtap.so").unwrap();
        assert_eq!(fs::read(&dst).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&dst).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(
            fs::read_dir(&out).unwrap().count(),
            1,
            "no temporary file left"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn links_are_relative_and_replaced() {
        let dir = std::env::temp_dir().join(format!("logtap-install-links-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("liblogtap.so"), b"glibc").unwrap();
        let link = link_atomically(&dir, "lib/x86_64-linux-gnu", "liblogtap.so").unwrap();
        link_atomically(&dir, "lib/x86_64-linux-gnu", "liblogtap.so").unwrap();
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new("../../liblogtap.so")
        );
        assert_eq!(fs::read(&link).unwrap(), b"glibc");
        fs::remove_dir_all(&dir).unwrap();
    }
}
