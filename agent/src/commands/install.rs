//! `logtap install --to DIR`: the init-container step.
//!
//! Copies `liblogtap.so` (from beside the binary, or `--preload`) and the `logtap` binary itself
//! into DIR — typically an `emptyDir` volume shared with the app container, which then sets
//! `LD_PRELOAD=DIR/liblogtap.so`. Each file is written under a temporary name, synced, given
//! mode 0755 and renamed into place, so a reader never sees a half-written library.
//!
//! In the manifests the app needs the library only (`--library-only`): the agent runs from its
//! own image. DIR must be on a filesystem that allows execution: the dynamic linker cannot map a
//! library from a `noexec` mount (`/run`, `/tmp` and `/dev/shm` are `noexec` on many nodes), and
//! the app would run untapped, so `install` refuses such a DIR.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::preload::{PreloadNotFound, find_preload};
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

/// Copies the files; returns the installed paths.
pub fn install(args: &InstallArgs) -> Result<Vec<PathBuf>, InstallError> {
    let library = find_preload(args.preload.as_deref())?;
    let mut files = vec![(library, "liblogtap.so")];
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
    Ok(installed)
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
}
