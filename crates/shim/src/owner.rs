//! Which process owns the shim's shared state (fd table, cwd state).
//!
//! A `vfork` child (Python's subprocess, for one, vforks and then calls `chdir`,
//! `dup2` and `close_range` before exec) runs on its parent's memory: its hook calls must
//! not rewrite the parent's fd marks or cwd state. The owner's pid is recorded at load
//! and refreshed in the child of every `fork()` (a `pthread_atfork` child handler, which
//! glibc runs for fork and forkpty but not for vfork), so a process whose real pid
//! differs is a vfork (or raw clone) child. The check costs a `getpid` syscall and runs
//! only where a hook is about to change shared state, and only once the process may have
//! such a child (see [`children_may_share_memory`]).

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

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

/// Set (never cleared) before this process makes its first child that may share its
/// memory: the hooks of `vfork`, `clone` and `syscall(SYS_vfork/SYS_clone/SYS_clone3)`
/// set it before calling the real function. (`posix_spawn`, `system` and `popen` use
/// glibc's internal clone, and their children make only internal calls, never a hook.)
static SHARED_MEMORY_CHILDREN: AtomicBool = AtomicBool::new(false);

/// Records that a child sharing this process's memory may run from now on.
#[inline]
pub fn children_may_share_memory() {
    SHARED_MEMORY_CHILDREN.store(true, Ordering::SeqCst);
}

/// Whether the caller may change shared state. Until a child can share the memory every
/// caller is the owner, and the `getpid` system call is skipped: it ran on every fd mark
/// and unmark, two per open/close in the tree.
#[inline]
pub fn owns_state() -> bool {
    !SHARED_MEMORY_CHILDREN.load(Ordering::SeqCst) || getpid() == owner()
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
