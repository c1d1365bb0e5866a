//! Directory streams and walkers. glibc's opendir/scandir/fts open internally, so each
//! public entry point is wrapped itself.

use super::{at_path, real};
use crate::buf::PATH_MAX;
use crate::config;
use crate::env::{count, Arena};
use crate::errno::{errno, set_errno};
use crate::fdtable;
use crate::hydrate::{self, Pre};
use crate::loc::Loc;
use crate::real::Opaque;
use crate::ret::Ret;
use core::ffi::{c_char, c_int, c_void};
use libc::{AT_FDCWD, DIR};

/// The *list-before-use* rule: the directory is listed (if unlisted) right after the open,
/// before the first readdir: one fgetxattr on the new fd decides.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn opendir(path: *const c_char) -> *mut DIR {
    let f = real!(opendir);
    if !config::active() {
        return f(path);
    }
    let mut loc = Loc::new();
    if let Err(e) = hydrate::resolve(&mut loc, AT_FDCWD, path) {
        return Ret::fail(e);
    }
    if !loc.in_tree {
        return f(loc.ptr());
    }
    let saved = errno();
    let d = super::in_tree(&loc, Pre::Nothing, &mut |_, p| f(p));
    if d.is_null() {
        return d;
    }
    let fd = libc::dirfd(d);
    fdtable::mark(fd);
    if let Err(e) = hydrate::list_fd_if_unlisted(fd) {
        closedir(d);
        return Ret::fail(e);
    }
    set_errno(saved);
    d
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fdopendir(fd: c_int) -> *mut DIR {
    let f = real!(fdopendir);
    if config::active() && fdtable::is_marked(fd) {
        if let Err(e) = hydrate::list_fd_if_unlisted(fd) {
            return Ret::fail(e);
        }
    }
    f(fd)
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn closedir(d: *mut DIR) -> c_int {
    let f = real!(closedir);
    if config::active() && !d.is_null() {
        fdtable::clear(libc::dirfd(d));
    }
    f(d)
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn scandir(
    path: *const c_char,
    list: *mut c_void,
    filter: Opaque,
    cmp: Opaque,
) -> c_int {
    let f = real!(scandir);
    at_path(AT_FDCWD, path, Pre::ListDir, |_, p| f(p, list, filter, cmp))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn scandir64(
    path: *const c_char,
    list: *mut c_void,
    filter: Opaque,
    cmp: Opaque,
) -> c_int {
    let f = real!(scandir64);
    at_path(AT_FDCWD, path, Pre::ListDir, |_, p| f(p, list, filter, cmp))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn scandirat(
    dirfd: c_int,
    path: *const c_char,
    list: *mut c_void,
    filter: Opaque,
    cmp: Opaque,
) -> c_int {
    let f = real!(scandirat);
    at_path(dirfd, path, Pre::ListDir, |d, p| f(d, p, list, filter, cmp))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn scandirat64(
    dirfd: c_int,
    path: *const c_char,
    list: *mut c_void,
    filter: Opaque,
    cmp: Opaque,
) -> c_int {
    let f = real!(scandirat64);
    at_path(dirfd, path, Pre::ListDir, |d, p| f(d, p, list, filter, cmp))
}

/// The *walker* rule: glibc's fts walks with internal calls the shim never sees, so each
/// root in the tree is listed whole (`ListTree`) first and the real fts gets the mapped
/// roots (it copies them, so the arena can go when it returns). Results keep real paths.
unsafe fn fts_like(
    argv: *const *const c_char,
    options: c_int,
    cmp: Opaque,
    f: unsafe extern "C" fn(*const *const c_char, c_int, Opaque) -> *mut c_void,
) -> *mut c_void {
    if !config::active() || argv.is_null() {
        return f(argv, options, cmp);
    }
    let saved = errno();
    let n = count(argv);
    let table = (n + 1) * core::mem::size_of::<*const c_char>();
    let Some(mut arena) = n
        .checked_mul(PATH_MAX)
        .and_then(|s| s.checked_add(table))
        .and_then(Arena::new)
    else {
        return Ret::fail(libc::ENOMEM);
    };
    let bytes = arena.bytes();
    let (ptrs, strings) = bytes.split_at_mut(table);
    let ptrs = ptrs.as_mut_ptr() as *mut *const c_char;
    for i in 0..n {
        let root = *argv.add(i);
        let mut loc = Loc::new();
        if let Err(e) = hydrate::resolve(&mut loc, AT_FDCWD, root) {
            return Ret::fail(e);
        }
        if loc.in_tree {
            if let Err(e) = hydrate::list_tree(&loc) {
                return Ret::fail(e);
            }
        }
        let src = loc.bytes();
        let Some(slot) = strings.get_mut(i * PATH_MAX..(i + 1) * PATH_MAX) else {
            return Ret::fail(libc::ENOMEM);
        };
        let mut w = crate::buf::Writer::new(slot);
        if w.put(src).is_none() {
            return Ret::fail(libc::ENAMETOOLONG);
        }
        ptrs.add(i).write(slot.as_ptr().cast());
    }
    ptrs.add(n).write(core::ptr::null());
    set_errno(saved);
    f(ptrs, options, cmp)
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fts_open(
    argv: *const *const c_char,
    options: c_int,
    cmp: Opaque,
) -> *mut c_void {
    let f = real!(fts_open);
    fts_like(argv, options, cmp, f)
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fts64_open(
    argv: *const *const c_char,
    options: c_int,
    cmp: Opaque,
) -> *mut c_void {
    let f = real!(fts64_open);
    fts_like(argv, options, cmp, f)
}
