//! Load and unload: the constructor that reads the environment and prepares every hook, the
//! `pthread_atfork` child handler, and the destructor that reports pending losses at exit.
//!
//! The constructor runs from `.init_array` before the program's `main`, single-threaded in
//! practice; it is the only place that may allocate (`setenv`). It holds the recursion guard,
//! so writes made while it runs (debug lines go through raw syscalls anyway) are not tapped.

use crate::config::{self, TargetKind};
use crate::guard::Guard;
use crate::sender::{self, connection};
use crate::{debug, hooks, own_fds, streams, sys};

unsafe extern "C" {
    /// Resolves the C shim's real functions (csrc/stdio_shim.c).
    fn logtap_shim_init();
}

/// The value of an environment variable, if set (getenv; constructor only).
fn env(name: &'static str) -> Option<&'static [u8]> {
    let mut buf = [0u8; 64];
    let c_name = buf.get_mut(..name.len())?;
    c_name.copy_from_slice(name.as_bytes());
    // SAFETY: `buf` is NUL-terminated (zeroed past the name; names are < 64 bytes).
    let v = unsafe { libc::getenv(buf.as_ptr().cast()) };
    if v.is_null() {
        return None;
    }
    // SAFETY: getenv returns a NUL-terminated string that lives as long as the environment
    // entry; the constructor copies what it keeps before returning.
    Some(unsafe { core::ffi::CStr::from_ptr(v) }.to_bytes())
}

extern "C" fn on_load() {
    let Some(_guard) = Guard::enter() else { return };
    let _errno = sys::ErrnoGuard::save();
    // Before the first clock read: if rdtsc faults here (inherited PR_SET_TSC), so would the
    // vDSO's clock_gettime.
    crate::clock::detect_faulting_rdtsc();
    let now = sys::now_ns();
    crate::process::set_pid(sys::getpid());
    let (cfg, warnings) = config::parse(env);
    debug::set_enabled(cfg.debug);
    for (name, expected) in warnings.iter() {
        if config::reported_always(name) {
            // Said even without debug mode (one line per process tree): see `config`.
            debug::report_malformed_once(name, env(name).unwrap_or(&[]), expected);
        } else {
            crate::debug!("ignoring malformed {name} (expected {expected}); using the default");
        }
    }
    crate::clock::init(cfg.clock_tsc);
    hooks::write::resolve();
    hooks::open::resolve();
    hooks::exec::resolve();
    // SAFETY: a plain C function of the shim; it only calls dlsym.
    unsafe { logtap_shim_init() };
    own_fds::init_base();
    let mut ids = [0u8; 96];
    if let Some(len) = streams::init(env(streams::ENV), &mut ids) {
        // The first tapped process of its tree: its descendants inherit which descriptors are
        // the real stdout and stderr (overwrite = 0 keeps a value set meanwhile).
        if ids.get(len) == Some(&0) {
            // SAFETY: NUL-terminated name and value (`format` ends it with a NUL).
            unsafe { libc::setenv(c"LLT_STREAM_IDS".as_ptr(), ids.as_ptr().cast(), 0) };
        }
    }
    hooks::open::reclassify(1);
    hooks::open::reclassify(2);
    crate::sender::hello::capture_meta();
    connection::set_load_time(now);
    if cfg.passive_ms > 0 {
        hooks::set_passive_until(now.saturating_add(cfg.passive_ms.saturating_mul(1_000_000)));
    }
    // SAFETY: registering a plain extern "C" handler without arguments.
    unsafe { libc::pthread_atfork(None, None, Some(on_fork_child)) };
    let mut unpreloaded = false;
    if !cfg.tap_children {
        unpreloaded = remove_self_from_preload();
    }
    let mut injected = false;
    if cfg.python_unbuffered && env("PYTHONUNBUFFERED").is_none() {
        // SAFETY: NUL-terminated literals; overwrite = 0 keeps a value set meanwhile.
        injected = unsafe { libc::setenv(c"PYTHONUNBUFFERED".as_ptr(), c"1".as_ptr(), 0) } == 0;
    }
    config::install(cfg);
    if let Some(cfg) = config::get() {
        crate::debug!(
            "liblogtap active (debug mode){} - target {}:{} - tapping stdout={} stderr={} files={} - clock {}",
            if injected {
                " - injected PYTHONUNBUFFERED=1"
            } else {
                ""
            },
            match cfg.target_kind {
                TargetKind::File => "file",
                TargetKind::Socket => "socket",
            },
            debug::Bytes(cfg.target_path.as_bytes()),
            cfg.tap_stdout,
            cfg.tap_stderr,
            debug::Bytes(cfg.tap_files.as_bytes()),
            if crate::clock::uses_tsc() {
                "tsc"
            } else {
                "realtime"
            },
        );
        if unpreloaded {
            crate::debug!("LLT_TAP_CHILDREN=false: programs exec'd from here are not tapped");
        }
    }
}

/// `LLT_TAP_CHILDREN=false`: takes this library out of the `LD_PRELOAD` that programs
/// `exec`ed from here inherit (glibc has already loaded it for this process). Returns whether
/// the variable changed.
fn remove_self_from_preload() -> bool {
    let Some(current) = env("LD_PRELOAD") else {
        return false;
    };
    let mut info = libc::Dl_info {
        dli_fname: core::ptr::null(),
        dli_fbase: core::ptr::null_mut(),
        dli_sname: core::ptr::null(),
        dli_saddr: core::ptr::null_mut(),
    };
    // SAFETY: dladdr fills `info` for an address inside this library (this function).
    let found = unsafe { libc::dladdr(remove_self_from_preload as *const libc::c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return false;
    }
    // SAFETY: dladdr returned a NUL-terminated path that lives as long as the library.
    let me = unsafe { core::ffi::CStr::from_ptr(info.dli_fname) }.to_bytes();
    let kept = config::preload_without(current, me);
    if kept.len() == current.len() {
        return false;
    }
    let Ok(value) = std::ffi::CString::new(kept) else {
        return false;
    };
    // SAFETY: NUL-terminated name and value; the constructor runs before any other thread.
    unsafe { libc::setenv(c"LD_PRELOAD".as_ptr(), value.as_ptr(), 1) == 0 }
}

extern "C" fn on_fork_child() {
    let _errno = sys::ErrnoGuard::save();
    sender::after_fork_child();
    hooks::stdio::after_fork_child();
}

extern "C" fn on_unload() {
    {
        // Before the guard (with it held nothing is tapped): exit writes the stdio buffers out
        // after this destructor, so their waiting bytes are tapped now.
        let _errno = sys::ErrnoGuard::save();
        hooks::stdio::at_exit();
    }
    let Some(_guard) = Guard::enter() else { return };
    sender::on_exit_destructor();
}

#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = on_load;

#[cfg(not(test))]
#[used]
#[unsafe(link_section = ".fini_array")]
static FINI: extern "C" fn() = on_unload;
