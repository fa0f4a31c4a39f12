// The `no_std` Rust core of liblogtap-musl.so, compiled by `build.rs` with `$RUSTC` for the
// host (gnu) target as a `panic = abort` staticlib and linked by `musl-gcc -shared` with
// `csrc/logtap_musl.c`. It is the only Rust the musl library contains: the ring producer, the
// ring's memfd creation and the tap frames, compiled from the protocol crate's own source
// files (`ring/{layout,record,error,mapping,memfd,producer}.rs`, `msgpack.rs`, `tap.rs`),
// which `build.rs` copies into `gen/` with a mechanical rewrite: `thiserror` derives and their
// attributes removed, `std::` and `libc::` paths resolved to the small facades below.
// Everything here is the adapter between those sources and the C hook layer: the `extern "C"`
// functions at the end.

#![no_std]
#![allow(dead_code, unused_imports, unused_macros, clippy::all)]

extern crate alloc;

/// Names the rewritten sources import with `use crate::prelude_shim::*;` (the std prelude's
/// allocation types, which a `no_std` crate lacks).
pub mod prelude_shim {
    pub use alloc::borrow::ToOwned;
    pub use alloc::string::String;
    pub use alloc::vec::Vec;
}

/// The part of `std` the protocol sources name, over `core` and musl's libc.
pub mod std_shim {
    pub use core::{mem, ptr, slice, sync};

    pub mod io {
        /// `std::io::Error` reduced to the errno it carries.
        #[derive(Debug)]
        pub struct Error(pub i32);

        impl Error {
            pub fn last_os_error() -> Error {
                // SAFETY: musl's errno location is valid for the calling thread.
                Error(unsafe { *crate::libc::__errno_location() })
            }
        }
    }

    pub mod os {
        pub mod fd {
            use core::marker::PhantomData;

            pub type RawFd = i32;

            #[derive(Clone, Copy)]
            pub struct BorrowedFd<'a> {
                fd: RawFd,
                _life: PhantomData<&'a ()>,
            }

            impl BorrowedFd<'_> {
                /// # Safety
                /// `fd` stays open for the borrow.
                pub const unsafe fn borrow_raw(fd: RawFd) -> Self {
                    BorrowedFd {
                        fd,
                        _life: PhantomData,
                    }
                }
            }

            pub struct OwnedFd {
                fd: RawFd,
            }

            impl Drop for OwnedFd {
                fn drop(&mut self) {
                    // SAFETY: our own fd.
                    unsafe { crate::libc::close(self.fd) };
                }
            }

            impl OwnedFd {
                /// Gives the fd up without closing it.
                pub fn into_raw(self) -> RawFd {
                    let fd = self.fd;
                    core::mem::forget(self);
                    fd
                }
            }

            pub trait AsRawFd {
                fn as_raw_fd(&self) -> RawFd;
            }
            pub trait AsFd {
                fn as_fd(&self) -> BorrowedFd<'_>;
            }
            pub trait FromRawFd {
                /// # Safety
                /// `fd` is open and owned by nobody else.
                unsafe fn from_raw_fd(fd: RawFd) -> Self;
            }

            impl AsRawFd for BorrowedFd<'_> {
                fn as_raw_fd(&self) -> RawFd {
                    self.fd
                }
            }
            impl AsRawFd for OwnedFd {
                fn as_raw_fd(&self) -> RawFd {
                    self.fd
                }
            }
            impl AsFd for OwnedFd {
                fn as_fd(&self) -> BorrowedFd<'_> {
                    BorrowedFd {
                        fd: self.fd,
                        _life: PhantomData,
                    }
                }
            }
            impl FromRawFd for OwnedFd {
                unsafe fn from_raw_fd(fd: RawFd) -> Self {
                    OwnedFd { fd }
                }
            }
        }
    }
}

/// The libc items the protocol sources call, declared against musl (x86_64 Linux).
pub mod libc {
    pub type c_int = i32;
    pub type c_long = i64;
    pub type c_char = i8;
    pub type c_void = core::ffi::c_void;
    pub type off_t = i64;
    pub type size_t = usize;

    pub const PROT_READ: c_int = 1;
    pub const PROT_WRITE: c_int = 2;
    pub const MAP_SHARED: c_int = 1;
    pub const MAP_FAILED: *mut c_void = !0usize as *mut c_void;
    pub const MFD_CLOEXEC: u32 = 1;
    pub const MFD_ALLOW_SEALING: u32 = 2;
    pub const F_ADD_SEALS: c_int = 1033;
    pub const F_GET_SEALS: c_int = 1034;
    pub const F_SEAL_SEAL: c_int = 1;
    pub const F_SEAL_SHRINK: c_int = 2;
    pub const F_SEAL_GROW: c_int = 4;
    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFREG: u32 = 0o100000;
    pub const SYS_write: c_long = 1;

    /// x86_64's `struct stat` (the kernel's, the same in musl and glibc).
    #[repr(C)]
    pub struct stat {
        pub st_dev: u64,
        pub st_ino: u64,
        pub st_nlink: u64,
        pub st_mode: u32,
        pub st_uid: u32,
        pub st_gid: u32,
        pub __pad0: c_int,
        pub st_rdev: u64,
        pub st_size: i64,
        pub st_blksize: i64,
        pub st_blocks: i64,
        pub st_atime: i64,
        pub st_atime_nsec: i64,
        pub st_mtime: i64,
        pub st_mtime_nsec: i64,
        pub st_ctime: i64,
        pub st_ctime_nsec: i64,
        pub __unused: [i64; 3],
    }

    unsafe extern "C" {
        pub fn __errno_location() -> *mut c_int;
        pub fn syscall(num: c_long, ...) -> c_long;
        pub fn mmap(
            addr: *mut c_void,
            len: size_t,
            prot: c_int,
            flags: c_int,
            fd: c_int,
            off: off_t,
        ) -> *mut c_void;
        pub fn munmap(addr: *mut c_void, len: size_t) -> c_int;
        pub fn memfd_create(name: *const c_char, flags: u32) -> c_int;
        pub fn ftruncate(fd: c_int, len: off_t) -> c_int;
        pub fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
        pub fn fstat(fd: c_int, st: *mut stat) -> c_int;
        pub fn close(fd: c_int) -> c_int;
        pub fn malloc(n: size_t) -> *mut c_void;
        pub fn free(p: *mut c_void);
        pub fn abort() -> !;
    }
}

pub mod ring {
    #[path = "error.rs"]
    pub mod error;
    #[path = "layout.rs"]
    pub mod layout;
    #[path = "mapping.rs"]
    pub mod mapping;
    #[path = "memfd.rs"]
    pub mod memfd;
    #[path = "producer.rs"]
    pub mod producer;
    #[path = "raw.rs"]
    pub mod raw;
    #[path = "record.rs"]
    pub mod record;
}

#[path = "gen/msgpack.rs"]
pub mod msgpack;
#[path = "gen/tap.rs"]
pub mod tap;

mod adapter;

/// Allocation (never on the hook path: the rewritten sources' decoders, which the library does
/// not call, are what needs an allocator to link) goes to musl's malloc.
struct MuslMalloc;

// SAFETY: malloc returns 16-byte aligned memory; larger alignments are refused (null).
unsafe impl core::alloc::GlobalAlloc for MuslMalloc {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        if layout.align() > 16 {
            return core::ptr::null_mut();
        }
        // SAFETY: plain malloc.
        unsafe { libc::malloc(layout.size()).cast() }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: core::alloc::Layout) {
        // SAFETY: `ptr` came from `alloc` above.
        unsafe { libc::free(ptr.cast()) }
    }
}

#[global_allocator]
static ALLOCATOR: MuslMalloc = MuslMalloc;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // Code in the core is written not to panic (bounds are checked by hand, as in the glibc
    // library); should one still happen, unwinding into C is impossible with panic = abort.
    // SAFETY: plain abort.
    unsafe { libc::abort() }
}
