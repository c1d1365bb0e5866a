//! Where the process's working directory is relative to the tree, kept in one atomic so
//! relative paths cost a load and a flag check. Computed from the raw `getcwd` on first
//! use (not at load: most programs never pass a relative path the shim must place) and
//! after every successful `chdir`/`fchdir` through the hooks.
//!
//! The value is tagged with the pid that computed it. A vfork child shares this memory
//! but has its own cwd: its `chdir` stores a value tagged with its own pid, which the
//! owner (see [`crate::owner`]) then sees as foreign and recomputes instead of trusting.

use crate::buf::PATH_MAX;
use crate::path::{depth, under, Prefixes};
use core::sync::atomic::{AtomicU64, Ordering};

/// The cwd is unrelated to the mount: relative paths stay outside (unless they climb with
/// `..`, which is resolved).
pub const OUTSIDE: u32 = 0;
/// The cwd is TREE or below: relative paths are in the tree.
pub const INSIDE: u32 = 1;
/// The cwd is a strict ancestor of MOUNT (e.g. `/`): `workspace/x` reaches the mount.
pub const ANCESTOR: u32 = 2;

/// `(pid << 32) | pack(state, depth)`; pid 0 = not computed yet.
static STATE: AtomicU64 = AtomicU64::new(0);

/// Set in every packed value: tells a computed state from the initial 0 (whose tag, 0,
/// is also the owner's until a child may share the memory).
const COMPUTED: u32 = 1 << 31;

/// Packs the state with the cwd's depth (for the ANCESTOR quick filter).
fn pack(state: u32, depth: usize) -> u32 {
    COMPUTED
        | state
        | (u32::try_from(depth)
            .unwrap_or(u32::MAX)
            .min((COMPUTED - 1) >> 2)
            << 2)
}

/// `(state, depth of the cwd)`.
#[inline]
pub fn state() -> (u32, usize) {
    let v = STATE.load(Ordering::Relaxed);
    let packed = if (v >> 32) as u32 == crate::owner::owner() && v as u32 & COMPUTED != 0 {
        v as u32
    } else {
        // Computed by another process sharing this memory (a vfork child): ask the
        // kernel, and keep the answer only if this is the owner.
        let fresh = compute();
        if crate::owner::owns_state() {
            STATE.store(tagged(crate::owner::owner(), fresh), Ordering::Relaxed);
        }
        fresh
    };
    (packed & 3, ((packed & !COMPUTED) >> 2) as usize)
}

fn tagged(pid: u32, packed: u32) -> u64 {
    (u64::from(pid) << 32) | u64::from(packed)
}

/// Classifies a real cwd.
pub fn classify(p: &Prefixes<'_>, cwd: &[u8]) -> (u32, usize) {
    if under(cwd, p.tree).is_some() {
        return (INSIDE, depth(cwd));
    }
    // `cwd` is a strict ancestor of MOUNT when MOUNT lies under it.
    let ancestor = cwd == b"/" || under(p.mount, cwd).is_some_and(|rest| !rest.is_empty());
    if ancestor {
        (ANCESTOR, depth(cwd))
    } else {
        (OUTSIDE, depth(cwd))
    }
}

fn compute() -> u32 {
    let mut buf = [0u8; PATH_MAX];
    match crate::sys::getcwd(&mut buf) {
        Ok(n) => {
            let cfg = crate::config::get();
            let p = cfg.prefixes();
            let cwd = buf.get(..n).unwrap_or(&[]);
            if cwd == p.mount && enter_tree(cfg) {
                return pack(INSIDE, depth(p.tree));
            }
            let (s, d) = classify(&p, cwd);
            pack(s, d)
        }
        Err(_) => pack(OUTSIDE, 0),
    }
}

/// A process started with the real mount directory as its cwd (`cd /workspace` in a
/// shell without the shim, then `s3shim run -- cmd`) means the folder: left there, its
/// relative paths would read and write the empty directory under the mount, which is
/// never uploaded. It is moved to the tree, which is where a `chdir` to the mount path
/// through the hooks would have put it. Raw syscall: no errno change, no hook.
fn enter_tree(cfg: &crate::config::Config) -> bool {
    cfg.tree_cstr()
        .is_some_and(|t| rustix::process::chdir(t).is_ok())
}

/// Recomputes the state from the kernel's cwd (after a chdir), tagged as
/// [`crate::owner::caller_tag`] says.
pub fn refresh() {
    let v = compute();
    STATE.store(tagged(crate::owner::caller_tag(), v), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Prefixes<'static> = Prefixes {
        mount: b"/home/u/ws",
        tree: b"/c/tree",
    };

    #[test]
    fn classification() {
        assert_eq!(classify(&P, b"/c/tree"), (INSIDE, 2));
        assert_eq!(classify(&P, b"/c/tree/a/b"), (INSIDE, 4));
        assert_eq!(classify(&P, b"/c/treex"), (OUTSIDE, 2));
        assert_eq!(classify(&P, b"/"), (ANCESTOR, 0));
        assert_eq!(classify(&P, b"/home"), (ANCESTOR, 1));
        assert_eq!(classify(&P, b"/home/u"), (ANCESTOR, 2));
        assert_eq!(
            classify(&P, b"/home/u/ws"),
            (OUTSIDE, 3),
            "the real mount dir is not the tree"
        );
        assert_eq!(classify(&P, b"/home/us"), (OUTSIDE, 2));
        assert_eq!(classify(&P, b"/tmp"), (OUTSIDE, 1));
    }

    #[test]
    fn packing() {
        let v = pack(ANCESTOR, 7);
        assert_eq!((v & 3, ((v & !COMPUTED) >> 2) as usize), (ANCESTOR, 7));
        assert_ne!(
            pack(OUTSIDE, 0),
            0,
            "a computed state is never the initial 0"
        );
    }
}
