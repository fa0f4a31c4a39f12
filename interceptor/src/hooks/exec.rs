//! Leaving the process image without the destructor: `_exit`/`_Exit` and the `exec` family.
//!
//! The library's destructor hands a ring that still holds records to the agent (one connection
//! attempt, see [`crate::sender::on_exit`]) when the process was never connected. `_exit` (dash
//! ends with it) and `exec` (a shell script's last command, a pyenv shim) skip destructors, and
//! `exec` closes the ring's memfd (close-on-exec): without these hooks such a process's records
//! would die with it. The variadic `execl`, `execlp` and `execle` are in the C shim and call
//! [`logtap_before_exec`]. A `vfork()` child (it shares the parent's memory and ring) leaves
//! them alone; stdio buffers are not tapped here: neither `_exit` nor `exec` writes them out.

use core::ffi::{c_char, c_int, c_void};

use super::RealFn;
use crate::guard::Guard;
use crate::sys;

static EXIT: RealFn = RealFn::new(c"_exit");
static EXIT2: RealFn = RealFn::new(c"_Exit");
static EXECVE: RealFn = RealFn::new(c"execve");
static EXECV: RealFn = RealFn::new(c"execv");
static EXECVP: RealFn = RealFn::new(c"execvp");
static EXECVPE: RealFn = RealFn::new(c"execvpe");
static FEXECVE: RealFn = RealFn::new(c"fexecve");

type ExitFn = unsafe extern "C" fn(c_int) -> !;
type ExecveFn =
    unsafe extern "C" fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
type ExecvFn = unsafe extern "C" fn(*const c_char, *const *const c_char) -> c_int;
type FexecveFn = unsafe extern "C" fn(c_int, *const *const c_char, *const *const c_char) -> c_int;

/// Resolves every real function of this module (constructor).
pub fn resolve() {
    for f in [&EXIT, &EXIT2, &EXECVE, &EXECV, &EXECVP, &EXECVPE, &FEXECVE] {
        let _ = f.get();
    }
}

/// Hands the ring to the agent if it still holds records and no agent has it (bounded: one
/// non-blocking attempt). Preserves errno.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn logtap_before_exec() {
    if crate::process::in_vfork_child() {
        return; // a vfork child: the ring is the parent's
    }
    let _errno = sys::ErrnoGuard::save();
    let Some(_guard) = Guard::enter() else { return };
    crate::sender::on_exit();
}

fn exit_with(f: &RealFn, status: c_int) -> ! {
    logtap_before_exec();
    match f.get() {
        // SAFETY: dlsym of an _exit name has _exit's signature.
        Some(p) => unsafe { core::mem::transmute::<*mut c_void, ExitFn>(p)(status) },
        None => {
            // SAFETY: the raw exit_group system call does not return.
            unsafe { libc::syscall(libc::SYS_exit_group, status) };
            #[allow(clippy::empty_loop)]
            loop {}
        }
    }
}

/// `_exit(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn _exit(status: c_int) -> ! {
    exit_with(&EXIT, status)
}

/// `_Exit(3)` (the C name, hence not snake case).
#[allow(non_snake_case)]
#[cfg_attr(not(test), unsafe(no_mangle))]
pub extern "C" fn _Exit(status: c_int) -> ! {
    exit_with(&EXIT2, status)
}

fn no_real() -> c_int {
    sys::set_errno(libc::ENOSYS);
    -1
}

/// Shared by `execve` and `execvpe` (`f` is the real one): the ring is handed over first.
///
/// # Safety
/// `execve(2)`'s contract: `path` a NUL-terminated string, `argv` and `envp` NULL-terminated
/// arrays of them.
unsafe fn execve_common(
    f: &RealFn,
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    logtap_before_exec();
    match f.get() {
        // SAFETY: dlsym of execve/execvpe has execve's signature; the caller's arguments.
        Some(p) => unsafe { core::mem::transmute::<*mut c_void, ExecveFn>(p)(path, argv, envp) },
        None => no_real(),
    }
}

/// `execve(2)`.
///
/// # Safety
/// The caller's contract of `execve(2)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: the caller's contract of execve(2) is ours.
    unsafe { execve_common(&EXECVE, path, argv, envp) }
}

/// `execvpe(3)`.
///
/// # Safety
/// The caller's contract of `execvpe(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: the caller's contract of execvpe(3) is ours.
    unsafe { execve_common(&EXECVPE, file, argv, envp) }
}

/// Shared by `execv` and `execvp` (`f` is the real one): the ring is handed over first.
///
/// # Safety
/// `execv(3)`'s contract: `path` a NUL-terminated string, `argv` a NULL-terminated array of
/// them.
unsafe fn execv_common(f: &RealFn, path: *const c_char, argv: *const *const c_char) -> c_int {
    logtap_before_exec();
    match f.get() {
        // SAFETY: dlsym of execv/execvp has execv's signature; the caller's arguments.
        Some(p) => unsafe { core::mem::transmute::<*mut c_void, ExecvFn>(p)(path, argv) },
        None => no_real(),
    }
}

/// `execv(3)`.
///
/// # Safety
/// The caller's contract of `execv(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: the caller's contract of execv(3) is ours.
    unsafe { execv_common(&EXECV, path, argv) }
}

/// `execvp(3)`.
///
/// # Safety
/// The caller's contract of `execvp(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: the caller's contract of execvp(3) is ours.
    unsafe { execv_common(&EXECVP, file, argv) }
}

/// `fexecve(3)`.
///
/// # Safety
/// The caller's contract of `fexecve(3)`.
#[cfg_attr(not(test), unsafe(no_mangle))]
pub unsafe extern "C" fn fexecve(
    fd: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    logtap_before_exec();
    match FEXECVE.get() {
        // SAFETY: dlsym("fexecve") has fexecve's signature; the caller's arguments.
        Some(p) => unsafe { core::mem::transmute::<*mut c_void, FexecveFn>(p)(fd, argv, envp) },
        None => no_real(),
    }
}
