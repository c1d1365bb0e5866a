//! open, openat, creat, their 64-bit and fortify twins, and the stdio opens.
//!
//! `mode` is declared as a fixed third argument: on x86_64 and aarch64 Linux a variadic
//! integer travels exactly like a fixed one, and it is forwarded untouched (glibc reads it
//! for `O_CREAT` and `O_TMPFILE`).

use super::{in_tree, real};
use crate::config;
use crate::cstr::cbytes;
use crate::errno::{errno, set_errno};
use crate::fdtable;
use crate::hydrate::{self, Pre};
use crate::loc::{scan, Loc, Scan};
use crate::marker::{marker_fd, Mark};
use crate::ret::Ret;
use crate::sys;
use core::ffi::{c_char, c_int};
use libc::{mode_t, AT_FDCWD, FILE};

/// The *open* rule around an open-like call: the create pre-check, the ENOENT rule, the fd
/// mark, and the marker check on the new fd (list a directory, fetch a placeholder and
/// reopen, or drop the marker when the content is being truncated away).
pub(crate) unsafe fn open_like(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    call: impl Fn(c_int, *const c_char) -> c_int,
) -> c_int {
    if !config::active() {
        return call(dirfd, path);
    }
    match scan(dirfd, path) {
        Scan::PassThrough => call(dirfd, path),
        Scan::Map(bytes, plain) => open_mapped(dirfd, path, bytes, plain, flags, call),
    }
}

/// [`open_like`] past its fast path, out of line so the hook's own frame stays small.
#[inline(never)]
unsafe fn open_mapped(
    dirfd: c_int,
    path: *const c_char,
    bytes: &[u8],
    plain: bool,
    flags: c_int,
    call: impl Fn(c_int, *const c_char) -> c_int,
) -> c_int {
    let mut loc = Loc::new();
    if let Err(e) = hydrate::resolve_scanned(&mut loc, dirfd, path, bytes, plain) {
        return Ret::fail(e);
    }
    if !loc.in_tree {
        return call(loc.dirfd, loc.ptr());
    }
    let saved = errno();
    let creates = flags & libc::O_CREAT != 0;
    let pre = if flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY {
        Pre::Replace { create: creates }
    } else if creates {
        Pre::Create
    } else {
        Pre::Nothing
    };
    let mut c = |d, p| call(d, p);
    let fd = in_tree(&loc, pre, &mut c);
    if fd < 0 {
        return fd;
    }
    fdtable::mark(fd);
    // An O_PATH fd reads nothing, and a file this call created (O_CREAT|O_EXCL, or
    // O_TMPFILE) cannot be a placeholder: no marker to look for (one system call fewer
    // per new file).
    let excl = libc::O_CREAT | libc::O_EXCL;
    if flags & libc::O_PATH != 0
        || flags & excl == excl
        || flags & libc::O_TMPFILE == libc::O_TMPFILE
    {
        set_errno(saved);
        return fd;
    }
    let r = hydrate::after_open(
        fd,
        flags,
        &loc,
        // The mark goes before the close: once closed, the number may be another
        // thread's new fd, outside the tree.
        |fd| {
            fdtable::clear(fd);
            sys::close_fd(fd);
        },
        || {
            let fd2 = call(loc.dirfd, loc.ptr());
            if fd2 >= 0 {
                fdtable::mark(fd2);
            }
            fd2
        },
    );
    if r >= 0 {
        set_errno(saved);
    }
    r
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    let f = real!(open);
    open_like(AT_FDCWD, path, flags, |_, p| f(p, flags, mode))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
    let f = real!(open64);
    open_like(AT_FDCWD, path, flags, |_, p| f(p, flags, mode))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __open_2(path: *const c_char, flags: c_int) -> c_int {
    let f = real!(__open_2);
    open_like(AT_FDCWD, path, flags, |_, p| f(p, flags))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
    let f = real!(__open64_2);
    open_like(AT_FDCWD, path, flags, |_, p| f(p, flags))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn openat(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
) -> c_int {
    let f = real!(openat);
    open_like(dirfd, path, flags, |d, p| f(d, p, flags, mode))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn openat64(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mode: mode_t,
) -> c_int {
    let f = real!(openat64);
    open_like(dirfd, path, flags, |d, p| f(d, p, flags, mode))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    let f = real!(__openat_2);
    open_like(dirfd, path, flags, |d, p| f(d, p, flags))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
    let f = real!(__openat64_2);
    open_like(dirfd, path, flags, |d, p| f(d, p, flags))
}

const CREAT_FLAGS: c_int = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC;

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn creat(path: *const c_char, mode: mode_t) -> c_int {
    let f = real!(creat);
    open_like(AT_FDCWD, path, CREAT_FLAGS, |_, p| f(p, mode))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn creat64(path: *const c_char, mode: mode_t) -> c_int {
    let f = real!(creat64);
    open_like(AT_FDCWD, path, CREAT_FLAGS, |_, p| f(p, mode))
}

/// The *fopen* rule: glibc's fopen opens internally (not through the open hook), so decide
/// from the mode: "w" drops the marker of what it truncated; "r"/"a" (and "+") on a
/// placeholder fetch it and open again; "w"/"a" create, so the parent is listed first.
unsafe fn fopen_like(
    path: *const c_char,
    mode: *const c_char,
    open: impl Fn(*const c_char) -> *mut FILE,
    reopen: impl Fn(*mut FILE, *const c_char) -> *mut FILE,
) -> *mut FILE {
    if !config::active() {
        return open(path);
    }
    let mut loc = Loc::new();
    if let Err(e) = hydrate::resolve(&mut loc, AT_FDCWD, path) {
        return Ret::fail(e);
    }
    if !loc.in_tree {
        return open(loc.ptr());
    }
    let saved = errno();
    let kind = cbytes(mode)
        .and_then(|m| m.first().copied())
        .unwrap_or(b'r');
    let pre = match kind {
        b'w' => Pre::Replace { create: true },
        b'a' => Pre::Create,
        _ => Pre::Nothing,
    };
    let mut c = |_, p| open(p);
    let fp = in_tree(&loc, pre, &mut c);
    if fp.is_null() {
        return fp;
    }
    let fd = libc::fileno(fp);
    fdtable::mark(fd);
    if kind == b'w' {
        crate::marker::unmark_fd(fd);
        return fp;
    }
    match marker_fd(fd) {
        Mark::Placeholder => {
            let mut abs = [0u8; crate::buf::PATH_MAX];
            let n = sys::fd_path(fd, &mut abs).or_else(|| loc.real_abs(&mut abs));
            let fetched = match n {
                Some(n) => crate::hydrate::fetch_abs(abs.get(..n).unwrap_or(&[])),
                None => Err(libc::EIO),
            };
            fdtable::clear(fd);
            match fetched {
                Ok(()) => {
                    let fp2 = reopen(fp, loc.ptr());
                    if !fp2.is_null() {
                        fdtable::mark(libc::fileno(fp2));
                        set_errno(saved);
                    }
                    fp2
                }
                Err(e) => {
                    if let Some(close) = crate::real::fclose::get() {
                        close(fp);
                    }
                    Ret::fail(e)
                }
            }
        }
        _ => {
            set_errno(saved);
            fp
        }
    }
}

unsafe fn fopen_with(
    path: *const c_char,
    mode: *const c_char,
    f: unsafe extern "C" fn(*const c_char, *const c_char) -> *mut FILE,
) -> *mut FILE {
    fopen_like(
        path,
        mode,
        |p| f(p, mode),
        |old, p| {
            if let Some(close) = crate::real::fclose::get() {
                close(old);
            }
            f(p, mode)
        },
    )
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fopen(path: *const c_char, mode: *const c_char) -> *mut FILE {
    let f = real!(fopen);
    fopen_with(path, mode, f)
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fopen64(path: *const c_char, mode: *const c_char) -> *mut FILE {
    let f = real!(fopen64);
    fopen_with(path, mode, f)
}

unsafe fn freopen_with(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut FILE,
    f: unsafe extern "C" fn(*const c_char, *const c_char, *mut FILE) -> *mut FILE,
) -> *mut FILE {
    // NULL path: a mode change on the same file.
    if path.is_null() || !config::active() {
        return f(path, mode, stream);
    }
    if !stream.is_null() {
        // freopen closes the old fd first; forget its mark before it can be reused.
        fdtable::clear(libc::fileno(stream));
    }
    fopen_like(path, mode, |p| f(p, mode, stream), |old, p| f(p, mode, old))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn freopen(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut FILE,
) -> *mut FILE {
    let f = real!(freopen);
    freopen_with(path, mode, stream, f)
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn freopen64(
    path: *const c_char,
    mode: *const c_char,
    stream: *mut FILE,
) -> *mut FILE {
    let f = real!(freopen64);
    freopen_with(path, mode, stream, f)
}
