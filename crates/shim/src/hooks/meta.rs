//! Names and metadata: mkdir/rmdir/unlink/remove, rename/link/symlink, chmod/chown,
//! truncate, the utime family, mkfifo/mknod.

use super::{at_path, real, two_paths};
use crate::config;
use crate::hydrate::{self, Pre};
use crate::loc::Loc;
use core::ffi::{c_char, c_int, c_uint};
use libc::{dev_t, gid_t, mode_t, off64_t, off_t, timespec, timeval, uid_t, utimbuf, AT_FDCWD};

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mkdir(path: *const c_char, mode: mode_t) -> c_int {
    let f = real!(mkdir);
    at_path(AT_FDCWD, path, Pre::Create, |_, p| f(p, mode))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int {
    let f = real!(mkdirat);
    at_path(dirfd, path, Pre::Create, |d, p| f(d, p, mode))
}

/// The *list-before-use* rule: an unlisted directory is listed before removal, so a
/// directory that is not empty in S3 gives ENOTEMPTY as natively.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn rmdir(path: *const c_char) -> c_int {
    let f = real!(rmdir);
    at_path(AT_FDCWD, path, Pre::ListDir, |_, p| f(p))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn unlink(path: *const c_char) -> c_int {
    let f = real!(unlink);
    at_path(AT_FDCWD, path, Pre::Nothing, |_, p| f(p))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    let f = real!(unlinkat);
    let pre = if flags & libc::AT_REMOVEDIR != 0 {
        Pre::ListDir
    } else {
        Pre::Nothing
    };
    at_path(dirfd, path, pre, |d, p| f(d, p, flags))
}

/// glibc's remove() calls its internal unlink/rmdir: the marker check (which only acts on
/// an unlisted directory) covers the rmdir half.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn remove(path: *const c_char) -> c_int {
    let f = real!(remove);
    at_path(AT_FDCWD, path, Pre::ListDir, |_, p| f(p))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn rename(old: *const c_char, new: *const c_char) -> c_int {
    let f = real!(rename);
    two_paths(AT_FDCWD, old, AT_FDCWD, new, false, false, |_, o, _, n| {
        f(o, n)
    })
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn renameat(
    od: c_int,
    old: *const c_char,
    nd: c_int,
    new: *const c_char,
) -> c_int {
    let f = real!(renameat);
    two_paths(od, old, nd, new, false, false, |a, o, b, n| f(a, o, b, n))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn renameat2(
    od: c_int,
    old: *const c_char,
    nd: c_int,
    new: *const c_char,
    flags: c_uint,
) -> c_int {
    let f = real!(renameat2);
    let exchange = flags & libc::RENAME_EXCHANGE != 0;
    two_paths(od, old, nd, new, exchange, false, |a, o, b, n| {
        f(a, o, b, n, flags)
    })
}

/// The *boundary* rule both ways: a hard link across the tree boundary would share an inode
/// whose bytes may still be in S3, or that the agent never sees change.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn link(old: *const c_char, new: *const c_char) -> c_int {
    let f = real!(link);
    two_paths(AT_FDCWD, old, AT_FDCWD, new, true, false, |_, o, _, n| {
        f(o, n)
    })
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn linkat(
    od: c_int,
    old: *const c_char,
    nd: c_int,
    new: *const c_char,
    flags: c_int,
) -> c_int {
    let f = real!(linkat);
    let empty_is_fd = flags & libc::AT_EMPTY_PATH != 0;
    two_paths(od, old, nd, new, true, empty_is_fd, |a, o, b, n| {
        f(a, o, b, n, flags)
    })
}

/// The target is stored verbatim; only the link's own path is mapped.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn symlink(target: *const c_char, linkpath: *const c_char) -> c_int {
    let f = real!(symlink);
    at_path(AT_FDCWD, linkpath, Pre::Create, |_, p| f(target, p))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn symlinkat(
    target: *const c_char,
    dirfd: c_int,
    linkpath: *const c_char,
) -> c_int {
    let f = real!(symlinkat);
    at_path(dirfd, linkpath, Pre::Create, |d, p| f(target, d, p))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn chmod(path: *const c_char, mode: mode_t) -> c_int {
    let f = real!(chmod);
    at_path(AT_FDCWD, path, Pre::Nothing, |_, p| f(p, mode))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fchmodat(
    dirfd: c_int,
    path: *const c_char,
    mode: mode_t,
    flags: c_int,
) -> c_int {
    let f = real!(fchmodat);
    at_path(dirfd, path, Pre::Nothing, |d, p| f(d, p, mode, flags))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn chown(path: *const c_char, uid: uid_t, gid: gid_t) -> c_int {
    let f = real!(chown);
    at_path(AT_FDCWD, path, Pre::Nothing, |_, p| f(p, uid, gid))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn lchown(path: *const c_char, uid: uid_t, gid: gid_t) -> c_int {
    let f = real!(lchown);
    at_path(AT_FDCWD, path, Pre::Nothing, |_, p| f(p, uid, gid))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fchownat(
    dirfd: c_int,
    path: *const c_char,
    uid: uid_t,
    gid: gid_t,
    flags: c_int,
) -> c_int {
    let f = real!(fchownat);
    at_path(dirfd, path, Pre::Nothing, |d, p| f(d, p, uid, gid, flags))
}

/// The *length* rule: growing or cutting a placeholder to a non-zero length needs its
/// bytes; a truncation to zero replaces them, so the marker goes.
unsafe fn truncate_like(
    path: *const c_char,
    len: i64,
    call: impl Fn(*const c_char) -> c_int,
) -> c_int {
    if !config::active() {
        return call(path);
    }
    let mut loc = Loc::new();
    if let Err(e) = hydrate::resolve(&mut loc, AT_FDCWD, path) {
        return crate::ret::Ret::fail(e);
    }
    if !loc.in_tree {
        return call(loc.ptr());
    }
    let pre = if len > 0 {
        Pre::Fetch
    } else {
        Pre::Replace { create: false }
    };
    let r = super::in_tree(&loc, pre, &mut |_, p| call(p));
    if r == 0 && len == 0 {
        let mut buf = [0u8; crate::buf::PATH_MAX];
        if let Some(p) = loc.xattr_path(&mut buf) {
            crate::marker::unmark_at(p);
        }
    }
    r
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn truncate(path: *const c_char, len: off_t) -> c_int {
    let f = real!(truncate);
    truncate_like(path, len, |p| f(p, len))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn truncate64(path: *const c_char, len: off64_t) -> c_int {
    let f = real!(truncate64);
    truncate_like(path, len, |p| f(p, len))
}

/// `utimensat(fd, NULL, ...)` is futimens: a NULL path is never mapped.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn utimensat(
    dirfd: c_int,
    path: *const c_char,
    times: *const timespec,
    flags: c_int,
) -> c_int {
    let f = real!(utimensat);
    at_path(dirfd, path, Pre::Nothing, |d, p| f(d, p, times, flags))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn utimes(path: *const c_char, times: *const timeval) -> c_int {
    let f = real!(utimes);
    at_path(AT_FDCWD, path, Pre::Nothing, |_, p| f(p, times))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn lutimes(path: *const c_char, times: *const timeval) -> c_int {
    let f = real!(lutimes);
    at_path(AT_FDCWD, path, Pre::Nothing, |_, p| f(p, times))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn futimesat(
    dirfd: c_int,
    path: *const c_char,
    times: *const timeval,
) -> c_int {
    let f = real!(futimesat);
    at_path(dirfd, path, Pre::Nothing, |d, p| f(d, p, times))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn utime(path: *const c_char, times: *const utimbuf) -> c_int {
    let f = real!(utime);
    at_path(AT_FDCWD, path, Pre::Nothing, |_, p| f(p, times))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mkfifo(path: *const c_char, mode: mode_t) -> c_int {
    let f = real!(mkfifo);
    at_path(AT_FDCWD, path, Pre::Create, |_, p| f(p, mode))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mkfifoat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int {
    let f = real!(mkfifoat);
    at_path(dirfd, path, Pre::Create, |d, p| f(d, p, mode))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mknod(path: *const c_char, mode: mode_t, dev: dev_t) -> c_int {
    let f = real!(mknod);
    at_path(AT_FDCWD, path, Pre::Create, |_, p| f(p, mode, dev))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mknodat(
    dirfd: c_int,
    path: *const c_char,
    mode: mode_t,
    dev: dev_t,
) -> c_int {
    let f = real!(mknodat);
    at_path(dirfd, path, Pre::Create, |d, p| f(d, p, mode, dev))
}

/// The pre-2.33 name binaries built against older glibc import (`ver` passed through).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __xmknod(
    ver: c_int,
    path: *const c_char,
    mode: mode_t,
    dev: *mut dev_t,
) -> c_int {
    let f = real!(__xmknod);
    at_path(AT_FDCWD, path, Pre::Create, |_, p| f(ver, p, mode, dev))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __xmknodat(
    ver: c_int,
    dirfd: c_int,
    path: *const c_char,
    mode: mode_t,
    dev: *mut dev_t,
) -> c_int {
    let f = real!(__xmknodat);
    at_path(dirfd, path, Pre::Create, |d, p| f(ver, d, p, mode, dev))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn lchmod(path: *const c_char, mode: mode_t) -> c_int {
    let f = real!(lchmod);
    at_path(AT_FDCWD, path, Pre::Nothing, |_, p| f(p, mode))
}
