//! `libs3shim.so`: loaded with `LD_PRELOAD` into code-server and every process it starts.
//!
//! It maps the mount path (`S3SHIM_MOUNT`, e.g. `/workspace`) onto the cache tree
//! (`$S3SHIM_CACHE/tree`), asks the agent (`S3SHIM_SOCKET`) to hydrate placeholders on
//! the slow paths, maps result paths back, and re-injects itself into every program the
//! process execs.
//!
//! Layout:
//! * [`real`]: the real libc functions, resolved with `dlsym(RTLD_NEXT)` when first needed.
//! * [`config`]: the configuration, parsed once at load into static buffers.
//! * [`path`]: the pure mapping core (normalisation, mapping, reverse mapping).
//! * [`loc`]: resolves a `(dirfd, path)` argument through the core, cwd and fd table.
//! * [`cwd`], [`fdtable`]: process state the mapping needs (lock-free atomics), and
//!   [`owner`], which keeps vfork children from changing their parent's copy.
//! * [`hydrate`], [`agent`]: markers and the agent protocol (slow paths only).
//! * [`env`]: the environment rebuilt for exec, and the `PATH` search.
//! * [`hooks`]: the exported libc entry points, one module per family.
//!
//! Rules that hold everywhere: no panics and no allocation or lock on paths a forked
//! child can reach, errno preserved on success, the shim's own I/O through raw syscalls
//! (rustix), and every hook is a plain forward when the shim is inert.

// The hooks are libc functions: their safety contract is libc's, documented there.
#![allow(clippy::missing_safety_doc)]
// Release builds (panic = "abort") link no standard library: its runtime (panic hook and
// backtrace printer, thread-locals, allocator) stayed in the library through the
// assertions in std's fd types, and loading it cost every process ~40 symbol lookups
// and ~700 relocations. Debug builds (panic = "unwind", which needs std's personality
// routine) and unit tests keep std; the code is the same, written against `core`.
#![cfg_attr(all(not(test), panic = "abort"), no_std)]

pub mod agent;
pub mod config;
pub mod cwd;
pub mod env;
pub mod fdtable;
pub mod hooks;
pub mod hydrate;
pub mod intercept;
pub mod loc;
pub mod owner;
pub mod path;
pub mod real;
pub mod resolve;
pub mod ret;
pub mod static_exec;
pub mod sys;

use core::ffi::{c_char, c_int};

/// Runs once when the library is loaded, before `main` and before most other code of the
/// process. Reads the configuration; everything else (the real functions, the cwd state,
/// the marks of inherited fds) is computed when first needed, because most programs
/// need little of it and every program pays for what is done here.
#[cfg_attr(test, allow(dead_code))]
// With the other constructor-only functions, next to `_init`: one page-fault window of
// code for what every process runs at load, where they were spread over three.
#[cfg_attr(not(test), link_section = ".text.startup.s3shim")]
unsafe extern "C" fn init(_argc: c_int, _argv: *const *const c_char, envp: *const *const c_char) {
    // The cwd state, the marks of inherited fds and the owner of both are computed on
    // first use (see `cwd::state`, `fdtable::is_marked`, `owner`): most programs never
    // need them.
    config::init(envp);
}

/// ELF constructor: glibc calls `.init_array` entries with `(argc, argv, envp)`.
#[cfg(not(test))]
#[used]
#[link_section = ".init_array"]
static INIT: unsafe extern "C" fn(c_int, *const *const c_char, *const *const c_char) = init;

/// A panic in a release build aborts the process, as panic = "abort" with std did (the
/// code is written not to panic: no indexing or unwrapping on the hooks' paths).
#[cfg(all(not(test), panic = "abort"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: abort has no preconditions.
    unsafe { libc::abort() }
}
