//! Which process owns the shim's shared state (fd table, cwd state).
//!
//! A `vfork` child (Python's subprocess, for one, vforks and then calls `chdir`,
//! `dup2` and `close_range` before exec) runs on its parent's memory: its hook calls must
//! not rewrite the parent's fd marks or cwd state. Until a process may make such a child
//! every caller owns the state and nothing is recorded (no `getpid` and no fork handler
//! at load: every program started pays for what the constructor does). The first
//! `vfork`/`clone` hook records the owner's pid and registers a `pthread_atfork` child
//! handler (glibc runs it for fork and forkpty, not for vfork) that records the pid
//! again in each forked child; from then on a caller whose real pid differs is a vfork
//! (or raw clone) child. The check costs a `getpid` and runs only where a hook is about
//! to change shared state.

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

static OWNER: AtomicU32 = AtomicU32::new(0);

/// The caller's pid straight from the kernel (glibc no longer caches it).
#[inline]
pub fn getpid() -> u32 {
    rustix::process::getpid().as_raw_nonzero().get() as u32
}

/// The pid recorded as owner; 0 until a child may share this process's memory.
#[inline]
pub fn owner() -> u32 {
    OWNER.load(Ordering::Relaxed)
}

/// The tag a caller stamps on shared state it computed: the owner's while no child can
/// share the memory (every caller is the owner), else the caller's real pid, which the
/// owner sees as foreign when a vfork child wrote it.
#[inline]
pub fn caller_tag() -> u32 {
    if SHARED_MEMORY_CHILDREN.load(Ordering::SeqCst) {
        getpid()
    } else {
        owner()
    }
}

/// Set (never cleared) before this process makes its first child that may share its
/// memory: the hooks of `vfork`, `clone` and `syscall(SYS_vfork/SYS_clone/SYS_clone3)`
/// set it before calling the real function. (`posix_spawn`, `system` and `popen` use
/// glibc's internal clone, and their children make only internal calls, never a hook.)
static SHARED_MEMORY_CHILDREN: AtomicBool = AtomicBool::new(false);

/// Records that a child sharing this process's memory may run from now on (called by
/// the parent, before the real `vfork`/`clone`): the first time, the owner's pid and the
/// fork handler that keeps it right in forked children.
#[inline]
pub fn children_may_share_memory() {
    if !SHARED_MEMORY_CHILDREN.load(Ordering::SeqCst) {
        OWNER.store(getpid(), Ordering::Relaxed);
        if !ATFORK_REGISTERED.swap(true, Ordering::SeqCst) {
            // SAFETY: registering a handler that only does a raw syscall and an atomic
            // store.
            unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        }
    }
    SHARED_MEMORY_CHILDREN.store(true, Ordering::SeqCst);
}

static ATFORK_REGISTERED: AtomicBool = AtomicBool::new(false);

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
