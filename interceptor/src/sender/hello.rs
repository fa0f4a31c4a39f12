//! What the HELLO frame says about the process: pid, ppid, comm, exe, hostname, container id,
//! the tap files known so far (position = file index), metadata and the library version.
//!
//! Everything is read with raw syscalls into caller-provided scratch buffers (the connecting
//! thread owns a static scratch area while it connects), so building a HELLO inside a hook
//! allocates nothing. Metadata are copied from the environment once, at load: the Downward-API
//! variables `POD_NAME`, `POD_NAMESPACE`, `CONTAINER_NAME`, `NODE_NAME`, and every
//! `LLT_META_<KEY>=value` (key lower-cased) — the app's environment is the one that knows its pod.

use core::ffi::{CStr, c_char};

use logtap_protocol::tap::{self, HelloFields, TapError};

use crate::config::FixedBytes;
use crate::statics::{Fill, Published};
use crate::{sys, tap_files};

/// Scratch space for one HELLO.
pub struct Scratch {
    /// The encoded payload (the protocol's cap on control payloads).
    pub payload: [u8; tap::MAX_CONTROL_PAYLOAD],
    exe: [u8; 1024],
    comm: [u8; 64],
    cgroup: [u8; 4096],
    uts: libc::utsname,
}

impl Scratch {
    /// An empty scratch area.
    pub const fn new() -> Scratch {
        Scratch {
            payload: [0; tap::MAX_CONTROL_PAYLOAD],
            exe: [0; 1024],
            comm: [0; 64],
            cgroup: [0; 4096],
            uts: libc::utsname {
                sysname: [0; 65],
                nodename: [0; 65],
                release: [0; 65],
                version: [0; 65],
                machine: [0; 65],
                domainname: [0; 65],
            },
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::new()
    }
}

const META_PAIRS: usize = 16;
/// `key\0value\0` pairs captured at load (by the constructor, once).
static META: Published<FixedBytes<2048>> = Published::new();

unsafe extern "C" {
    static environ: *const *const c_char;
}

/// Copies the metadata variables from the environment (constructor only, before any thread).
pub fn capture_meta() {
    let mut buf = [0u8; 2048];
    let mut at = 0usize;
    let mut pairs = 0usize;
    // SAFETY: `environ` is libc's NULL-terminated array of NUL-terminated strings; the
    // constructor runs before the program can change it.
    let mut p = unsafe { environ };
    while !p.is_null() && pairs < META_PAIRS {
        // SAFETY: `p` points into the environ array, which ends with a NULL entry.
        let entry = unsafe { *p };
        if entry.is_null() {
            break;
        }
        // SAFETY: each environ entry is a NUL-terminated string.
        let kv = unsafe { CStr::from_ptr(entry) }.to_bytes();
        // SAFETY: not past the terminating NULL entry (checked above).
        p = unsafe { p.add(1) };
        let Some(eq) = kv.iter().position(|b| *b == b'=') else {
            continue;
        };
        let (name, value) = (
            kv.get(..eq).unwrap_or(&[]),
            kv.get(eq.saturating_add(1)..).unwrap_or(&[]),
        );
        let mut key = [0u8; 64];
        let key_len = if let Some(k) = name.strip_prefix(b"LLT_META_") {
            k.len()
        } else if matches!(
            name,
            b"POD_NAME" | b"POD_NAMESPACE" | b"CONTAINER_NAME" | b"NODE_NAME"
        ) {
            name.len()
        } else {
            continue;
        };
        let src = name
            .get(name.len().saturating_sub(key_len)..)
            .unwrap_or(&[]);
        let Some(dst) = key.get_mut(..key_len) else {
            continue;
        };
        dst.copy_from_slice(src);
        dst.make_ascii_lowercase();
        let need = key_len.saturating_add(value.len()).saturating_add(2);
        let Some(out) = buf.get_mut(at..at.saturating_add(need)) else {
            continue;
        };
        let (k_out, rest) = out.split_at_mut(key_len);
        k_out.copy_from_slice(dst);
        if let Some((nul, rest)) = rest.split_first_mut() {
            *nul = 0;
            if let Some(v_out) = rest.get_mut(..value.len()) {
                v_out.copy_from_slice(value);
            }
        }
        at = at.saturating_add(need);
        pairs = pairs.saturating_add(1);
    }
    let captured =
        FixedBytes::from_bytes(buf.get(..at).unwrap_or(&[])).unwrap_or(FixedBytes::empty());
    let _ = META.fill(|| Ok::<_, (Fill, ())>(captured));
}

type Pair = (&'static [u8], &'static [u8]);

fn meta_pairs() -> ([Pair; META_PAIRS], usize) {
    let mut out: [Pair; META_PAIRS] = [(&[], &[]); META_PAIRS];
    let bytes: &'static [u8] = META.get().map_or(&[], |m| m.as_bytes());
    let mut n = 0usize;
    let mut parts = bytes.split(|b| *b == 0);
    while let (Some(k), Some(v)) = (parts.next(), parts.next()) {
        if k.is_empty() {
            break;
        }
        if let Some(slot) = out.get_mut(n) {
            *slot = (k, v);
            n = n.saturating_add(1);
        }
    }
    (out, n)
}

fn trim_nl(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\n").unwrap_or(b)
}

fn c_field(field: &[c_char]) -> &[u8] {
    let len = field.iter().position(|c| *c == 0).unwrap_or(field.len());
    // SAFETY: c_char and u8 have the same size and alignment; `len` is within the field.
    unsafe { core::slice::from_raw_parts(field.as_ptr().cast::<u8>(), len) }
}

/// The container id: the last run of 64 hex digits in `/proc/self/cgroup` (Docker, containerd
/// and CRI-O put it there under cgroup v1 and in most v2 setups), or empty.
fn container_id(cgroup: &[u8]) -> &[u8] {
    let mut best: &[u8] = &[];
    let mut start = None;
    for (i, b) in cgroup.iter().chain(core::iter::once(&b'/')).enumerate() {
        if b.is_ascii_hexdigit() {
            start.get_or_insert(i);
        } else if let Some(s) = start.take()
            && i.saturating_sub(s) == 64
        {
            best = cgroup.get(s..i).unwrap_or(&[]);
        }
    }
    best
}

/// Encodes the HELLO payload into `s.payload`; returns (length, number of files listed).
pub fn encode(s: &mut Scratch, ring: bool) -> Result<(usize, usize), TapError> {
    let exe_len = sys::readlink(b"/proc/self/exe\0", &mut s.exe);
    let comm_len = sys::read_file(b"/proc/self/comm\0", &mut s.comm);
    let cg_len = sys::read_file(b"/proc/self/cgroup\0", &mut s.cgroup);
    // SAFETY: valid out pointer for the raw uname syscall.
    unsafe { libc::syscall(libc::SYS_uname, &raw mut s.uts) };
    let fields = HelloFields {
        pid: crate::process::pid(),
        ppid: sys::getppid(),
        comm: trim_nl(s.comm.get(..comm_len).unwrap_or(&[])),
        exe: s.exe.get(..exe_len).unwrap_or(&[]),
        hostname: c_field(&s.uts.nodename),
        container_id: container_id(s.cgroup.get(..cg_len).unwrap_or(&[])),
        version: env!("CARGO_PKG_VERSION").as_bytes(),
        ring,
    };
    let (meta, n_meta) = meta_pairs();
    let meta = meta.get(..n_meta).unwrap_or(&[]);
    // List as many files as fit; the rest are announced with FILE frames.
    let mut files = tap_files::contiguous_count();
    loop {
        let paths = (0..files).map(|i| tap_files::path(i).unwrap_or(&[]));
        match tap::encode_hello(&mut s.payload, &fields, paths, meta.iter().copied()) {
            Ok(n) => return Ok((n, files)),
            Err(TapError::BufferTooSmall) if files > 0 => files = files.saturating_sub(1),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_id_is_found_in_cgroup_lines() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let cg = format!("0::/system.slice/docker-{id}.scope\n");
        assert_eq!(container_id(cg.as_bytes()), id.as_bytes());
        assert_eq!(container_id(b"0::/\n"), b"");
    }

    #[test]
    fn hello_encodes_and_decodes() {
        let mut s = Box::new(Scratch::new());
        let (n, _) = encode(&mut s, true).unwrap();
        let hello = tap::Hello::decode(&s.payload[..n]).unwrap();
        assert!(hello.ring);
        assert_eq!(hello.version, env!("CARGO_PKG_VERSION"));
        assert!(!hello.exe.is_empty());
    }
}
