//! Which process owns the shim's shared state (fd table, cwd state).
//!
//! A `vfork` child (Python's subprocess, for one, vforks and then calls `chdir`,
//! `dup2` and `close_range` before exec) runs on its parent's memory: its hook calls must
//! not rewrite the parent's fd marks or cwd state. The owner's pid is recorded at load
//! and refreshed in the child of every `fork()` (a `pthread_atfork` child handler, which
//! glibc runs for fork and forkpty but not for vfork), so a process whose real pid
//! differs is a vfork (or raw clone) child. The check costs a `getpid` syscall and runs
//! only where a hook is about to change shared state.

use core::sync::atomic::{AtomicU32, Ordering};

static OWNER: AtomicU32 = AtomicU32::new(0);

/// The caller's pid straight from the kernel (glibc no longer caches it).
#[inline]
pub fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// The pid recorded as owner.
#[inline]
pub fn owner() -> u32 {
    OWNER.load(Ordering::Relaxed)
}

/// Whether the caller may change shared state.
#[inline]
pub fn owns_state() -> bool {
    getpid() == owner()
}

extern "C" fn after_fork_in_child() {
    OWNER.store(getpid(), Ordering::Relaxed);
}

/// Records this process as owner and registers the fork handler (from the constructor).
pub fn init() {
    OWNER.store(getpid(), Ordering::Relaxed);
    // SAFETY: registering a handler that only does a raw syscall and an atomic store.
    unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
}
