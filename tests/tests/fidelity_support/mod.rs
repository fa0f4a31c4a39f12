//! Shared by the `fidelity_*` tests: a pyenv-shaped shim script, and byte comparisons that say
//! where two outputs part.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A shim of pyenv's shape (`~/.pyenv/shims/python3` → `libexec/pyenv exec`): bash, `set -e`,
/// computes where it is and what to run with command substitutions (`$(readlink -f …)`,
/// `$(dirname …)`, `$(basename …)`, `$(cat … 2>/dev/null)`), probes for hooks and versions
/// sending the errors to /dev/null, then `exec`s the real interpreter `real` with its
/// arguments. It writes nothing to its stdout or stderr when all goes well.
pub fn pyenv_shim_text(real: &Path) -> String {
    SHIM.replace("@REAL@", &real.display().to_string())
}

const SHIM: &str = r#"#!/usr/bin/env bash
set -e
[ -n "$PYENV_DEBUG" ] && set -x

program="${0##*/}"
shim_dir="$(cd "$(dirname "$(readlink -f "$0")")" && pwd)"
root="$(dirname "$shim_dir")"
export PYENV_ROOT="$root"
version="$(cat "$root/version" 2>/dev/null || true)"
[ -n "$version" ] || version="$(cat "$PWD/.python-version" 2>/dev/null || echo system)"
hooks="$(ls "$root/pyenv.d/exec" 2>/dev/null || true)"
for hook in $hooks; do echo "hook $hook" >/dev/null; done
command -v pyenv-sh-rehash >/dev/null 2>&1 || true
ls "$root/versions/$version/bin" 2>/dev/null || true
grep -s "$program" "$root/.pyenv-version-file" 2>/dev/null || true
readlink "$root/no-such-link" 2>/dev/null || true
name="$(basename "$program")"
real="$(readlink -f "@REAL@")"
if ! type -P "$real" >/dev/null; then
  echo "pyenv: $name: command not found" >&2
  exit 127
fi
export PYENV_VERSION="$version"
exec "$real" "$@"
"#;

/// Writes the shim as `dir/name` (mode 0755) and returns its path.
pub fn write_pyenv_shim(dir: &Path, name: &str, real: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, pyenv_shim_text(real)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The `python3` found on PATH when it is a script (a pyenv shim, as on developer machines),
/// else None.
pub fn python3_shim_on_path() -> Option<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", "command -v python3"])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    let head = std::fs::read(&path).ok()?;
    head.starts_with(b"#!").then_some(path)
}

/// `None` when `got == want`, else where they part: lengths, the first differing offset and a
/// window of escaped text around it in both.
pub fn byte_diff(what: &str, got: &[u8], want: &[u8]) -> Option<String> {
    if got == want {
        return None;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let window = |b: &[u8]| -> String {
        let from = at.saturating_sub(48);
        let to = (at + 48).min(b.len());
        if from >= b.len() {
            return "(ends before)".to_owned();
        }
        format!(
            "{}\u{2502}{}",
            b[from..at.min(b.len())].escape_ascii(),
            b[at.min(b.len())..to].escape_ascii()
        )
    };
    Some(format!(
        "{what}: got {} bytes, want {} bytes; first difference at offset {at}\n      got:  \"{}\"\n      want: \"{}\"",
        got.len(),
        want.len(),
        window(got),
        window(want),
    ))
}

/// Short escaped excerpt of `b` for messages.
pub fn excerpt(b: &[u8]) -> String {
    if b.len() <= 160 {
        format!("\"{}\"", b.escape_ascii())
    } else {
        format!("\"{}…\" ({} bytes)", b[..160].escape_ascii(), b.len())
    }
}
