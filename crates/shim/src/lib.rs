//! `libs3shim.so`: loaded with `LD_PRELOAD` into code-server and every process it starts.
//!
//! It maps the mount path (`S3SHIM_MOUNT`, e.g. `/workspace`) onto the cache tree
//! (`$S3SHIM_CACHE/tree`), asks the agent (`S3SHIM_SOCKET`) to hydrate placeholders on
//! the slow paths, maps result paths back, and re-injects itself into every program the
//! process execs.
//!
//! Layout, from the bottom up (a module uses only modules above it in this list, or
//! beside it on one line; no import cycles, which `tests/module_graph.rs` checks):
//! * [`errno`], [`buf`] (fixed NUL-terminated path buffers), [`marker`] (the marker
//!   xattr), [`sys`] (the shim's own raw system calls), [`ret`] (a hook's failure value).
//! * [`real`]: the real libc functions, resolved with `dlsym(RTLD_NEXT)` when first needed.
//! * [`path`]: the pure mapping core (normalisation, mapping, reverse mapping).
//! * [`cstr`]: reading the caller's C strings without faulting.
//! * [`env`]: the environment rebuilt for exec, and the `PATH` search.
//! * [`config`]: the configuration, parsed once at load into static buffers.
//! * [`cwd`], [`fdtable`]: process state the mapping needs (lock-free atomics), and
//!   [`owner`], which keeps vfork children from changing their parent's copy.
//! * [`resolve`]: physical resolution (symlinks, `..`) inside the tree; it never asks
//!   the agent, it stops at a directory that needs listing.
//! * [`loc`]: where a path is mapped: a `(dirfd, path)` argument through the core, cwd
//!   and fd table.
//! * [`agent`]: where the agent is asked (the socket protocol); [`hydrate`]: what to ask
//!   it for and when (the rules below), including resolution that needs a listing.
//! * [`script`], [`static_exec`]: what exec needs beyond mapping (`#!` lines, programs
//!   the shim cannot enter).
//! * [`hooks`]: where a hook lives: the exported libc entry points, one module per
//!   family (`hooks::open`, `hooks::exec`, `hooks::spawn`, `hooks::stat`, …).
//! * [`capi`]: the C API of `include/s3shim.h` (`s3shim_flush`, `s3shim_status`, …).
//!
//! # Rules
//!
//! How a hook keeps the cache complete enough for the call it wraps; the hooks cite them
//! by name.
//! * *missing-entry*: a call that finds no entry looks for the deepest existing ancestor;
//!   only when that one is unlisted is the agent asked to look the path up, and the call
//!   is retried. A miss in a listed directory costs one xattr read.
//! * *open*: an open that may create lists the parent first; after an in-tree open the
//!   new fd is marked and its marker decides: a directory is listed, a placeholder is
//!   fetched and opened again, a truncating open drops the marker.
//! * *list-before-use*: a directory is listed before it is read, entered or removed.
//! * *fopen*: glibc's fopen opens internally, so its mode string decides as the flags
//!   of an open would.
//! * *length*: a placeholder cut or grown to a non-zero length is fetched first; cut to
//!   zero, its marker goes.
//! * *walker*: a walk whose reads the shim cannot see (fts, nftw, a static program
//!   started in the tree) gets its whole subtree made local first.
//! * *boundary*: a rename or hard link from the tree to outside (and a link or exchange
//!   the other way) fails with `EXDEV`, as across filesystems: a placeholder carries no
//!   bytes out, and the agent would not see a shared inode change.
//!
//! Rules that hold everywhere: no panics and no allocation or lock on paths a forked
//! child can reach, errno preserved on success, the shim's own I/O through raw syscalls
//! (rustix), and every hook is a plain forward when the shim is inert.

// What runs inside other people's processes cannot index out of bounds, unwrap or panic:
// a panic there aborts someone's program (see the panic handler below).
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented,
    )
)]
// Debt: the hooks' bodies (684 operations) predate the workspace's
// `unsafe_op_in_unsafe_fn`; each needs its own block and SAFETY note, not one blanket
// block per function, so the rule is lifted here until they get them.
#![allow(unsafe_op_in_unsafe_fn)]
// The hooks are libc functions: their safety contract is libc's, documented there.
#![allow(clippy::missing_safety_doc)]
// Release builds (panic = "abort") link no standard library: its runtime (panic hook and
// backtrace printer, thread-locals, allocator) stayed in the library through the
// assertions in std's fd types, and loading it cost every process ~40 symbol lookups
// and ~700 relocations. Debug builds (panic = "unwind", which needs std's personality
// routine) and unit tests keep std; the code is the same, written against `core`.
#![cfg_attr(all(not(test), panic = "abort"), no_std)]

pub mod agent;
pub mod buf;
pub mod capi;
pub mod config;
pub mod cstr;
pub mod cwd;
pub mod env;
pub mod errno;
pub mod fdtable;
pub mod hooks;
pub mod hydrate;
pub mod intercept;
pub mod loc;
pub mod marker;
pub mod owner;
pub mod path;
pub mod real;
pub mod resolve;
pub mod ret;
pub mod script;
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
    agent::set_wait(config::env_value(
        envp,
        s3shim_protocol::layout::ENV_AGENT_WAIT,
    ));
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
