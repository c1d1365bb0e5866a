//! The exported libc entry points, one module per family, all over the same core:
//! [`at_path`] for calls with one path argument, plus the few shapes that need more
//! (open, rename/link, exec, result paths).
//!
//! Each hook is `#[cfg_attr(not(test), no_mangle)]`: unit tests build the crate without
//! interposing the test binary itself.

pub mod cwd;
pub mod dir;
pub mod exec;
pub mod fd;
pub mod meta;
pub mod open;
pub mod stat;
pub mod syscall;
pub mod temp;
pub mod xattr;

use crate::config;
use crate::hydrate::{self, Missing, Pre};
use crate::loc::Loc;
use crate::ret::Ret;
use crate::sys::{errno, set_errno};
use core::ffi::{c_char, c_int};

/// The real function, or return the hook's `ENOSYS` failure when libc lacks it.
macro_rules! real {
    ($name:ident) => {
        match $crate::real::$name::get() {
            Some(f) => f,
            None => return $crate::ret::Ret::enosys(),
        }
    };
}
pub(crate) use real;

/// A call with one path argument: forward untouched when inert or outside the tree,
/// otherwise run the pre-check and the call with the ENOENT rule.
#[inline(always)]
pub(crate) unsafe fn at_path<R: Ret>(
    dirfd: c_int,
    path: *const c_char,
    pre: Pre,
    mut call: impl FnMut(c_int, *const c_char) -> R,
) -> R {
    if !config::active() {
        return call(dirfd, path);
    }
    let mut loc = Loc::new();
    if let Err(e) = loc.resolve(dirfd, path) {
        return R::fail(e);
    }
    if !loc.in_tree {
        return call(loc.dirfd, loc.ptr());
    }
    in_tree(&loc, pre, &mut call)
}

/// The in-tree part of [`at_path`]: pre-check, call, and on ENOENT the lookup rule
/// (once; the pre-check runs again on what the lookup brought in).
pub(crate) fn in_tree<R: Ret>(
    loc: &Loc,
    pre: Pre,
    call: &mut impl FnMut(c_int, *const c_char) -> R,
) -> R {
    let saved = errno();
    if let Err(e) = hydrate::pre(loc, pre) {
        return R::fail(e);
    }
    let r = call(loc.dirfd, loc.ptr());
    if !r.failed() || errno() != libc::ENOENT {
        return r;
    }
    match hydrate::lookup_missing(loc) {
        Missing::Retry => {
            if let Err(e) = hydrate::pre(loc, pre) {
                return R::fail(e);
            }
            let r = call(loc.dirfd, loc.ptr());
            if !r.failed() {
                set_errno(saved);
            }
            r
        }
        Missing::Authoritative => {
            set_errno(libc::ENOENT);
            r
        }
        Missing::Failed(e) => R::fail(e),
    }
}

/// Two-path calls (rename, link): both resolved; a source in the tree with a destination
/// outside gives `EXDEV` (a placeholder carries no bytes out of the tree), and so does
/// the reverse when `both_ways` (link, RENAME_EXCHANGE). The destination's parent is
/// listed and an unlisted destination directory is listed first (so replacing a
/// non-empty remote directory fails as natively).
pub(crate) unsafe fn two_paths(
    od: c_int,
    op: *const c_char,
    nd: c_int,
    np: *const c_char,
    both_ways: bool,
    source_empty_is_fd: bool,
    call: impl Fn(c_int, *const c_char, c_int, *const c_char) -> c_int,
) -> c_int {
    if !config::active() {
        return call(od, op, nd, np);
    }
    let mut lo = Loc::new();
    let mut ln = Loc::new();
    if let Err(e) = lo.resolve(od, op).and_then(|_| ln.resolve(nd, np)) {
        return Ret::fail(e);
    }
    let mut src_in = lo.in_tree;
    if source_empty_is_fd && lo.kind == crate::loc::Kind::Empty {
        src_in = crate::fdtable::is_marked(od);
    }
    let dst_in = ln.in_tree;
    if (src_in && !dst_in) || (both_ways && dst_in && !src_in) {
        return Ret::fail(libc::EXDEV);
    }
    let go = || call(lo.dirfd, lo.ptr(), ln.dirfd, ln.ptr());
    if !src_in && !dst_in {
        return go();
    }
    let saved = errno();
    if dst_in {
        if let Err(e) = hydrate::pre(&ln, Pre::Create).and_then(|_| hydrate::pre(&ln, Pre::ListDir))
        {
            return Ret::fail(e);
        }
    }
    let r = go();
    if r == 0 || errno() != libc::ENOENT {
        return r;
    }
    let mut retry = false;
    for (l, inside) in [(&lo, lo.in_tree), (&ln, dst_in)] {
        if !inside || retry {
            continue;
        }
        match hydrate::lookup_missing(l) {
            Missing::Retry => retry = true,
            Missing::Failed(e) => return Ret::fail(e),
            Missing::Authoritative => {}
        }
    }
    if !retry {
        set_errno(libc::ENOENT);
        return r;
    }
    let r = go();
    if r == 0 {
        set_errno(saved);
    }
    r
}
