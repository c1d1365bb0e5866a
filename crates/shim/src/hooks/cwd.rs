//! The working directory and every call that returns a path: results under the tree are
//! mapped back to the mount path (getcwd, realpath, readlink incl. `/proc/self/cwd` and
//! `/proc/self/fd/N`).

use super::{at_path, real};
use crate::buf::PATH_MAX;
use crate::config;
use crate::cstr::cbytes;
use crate::cwd;
use crate::fdtable;
use crate::hydrate::{self, Pre};
use crate::loc::Loc;
use crate::path::{reverse, Rev};
use crate::ret::Ret;
use core::ffi::{c_char, c_int, CStr};
use libc::{size_t, ssize_t, AT_FDCWD};

/// The *list-before-use* rule: entering an unlisted directory lists it.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn chdir(path: *const c_char) -> c_int {
    let f = real!(chdir);
    let r = at_path(AT_FDCWD, path, Pre::ListDir, |_, p| f(p));
    if r == 0 && config::active() {
        cwd::refresh();
    }
    r
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fchdir(fd: c_int) -> c_int {
    let f = real!(fchdir);
    if !config::active() {
        return f(fd);
    }
    if fdtable::is_marked(fd) {
        if let Err(e) = hydrate::list_fd_if_unlisted(fd) {
            return Ret::fail(e);
        }
    }
    let r = f(fd);
    if r == 0 {
        cwd::refresh();
    }
    r
}

/// The virtual form of a real path into `out`, or `None` when it is not under the tree
/// (`Err(ENAMETOOLONG)` when the virtual form would not fit).
fn virtual_of(real: &[u8], out: &mut [u8]) -> Result<Option<usize>, c_int> {
    match reverse(&config::get().prefixes(), real, out) {
        Rev::NotTree => Ok(None),
        Rev::Mapped(n) => Ok(Some(n)),
        Rev::TooLong(_) => Err(libc::ENAMETOOLONG),
    }
}

/// Copies `s` + NUL into `buf`/`size` with getcwd's rules (NULL buf allocates).
unsafe fn deliver_cwd(s: &[u8], buf: *mut c_char, size: size_t) -> *mut c_char {
    let need = s.len() + 1;
    let dst = if buf.is_null() {
        let cap = if size == 0 { need } else { size };
        if need > cap {
            return Ret::fail(libc::ERANGE);
        }
        let p = libc::malloc(cap) as *mut c_char;
        if p.is_null() {
            return Ret::fail(libc::ENOMEM);
        }
        p
    } else {
        if size == 0 {
            return Ret::fail(libc::EINVAL);
        }
        if need > size {
            return Ret::fail(libc::ERANGE);
        }
        buf
    };
    core::ptr::copy_nonoverlapping(s.as_ptr(), dst.cast(), s.len());
    *dst.add(s.len()) = 0;
    dst
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn getcwd(buf: *mut c_char, size: size_t) -> *mut c_char {
    let f = real!(getcwd);
    if !config::active() {
        return f(buf, size);
    }
    let mut real_cwd = [0u8; PATH_MAX];
    if f(real_cwd.as_mut_ptr().cast(), PATH_MAX).is_null() {
        // Longer than PATH_MAX (so not a tree path the shim could map) or gone: let
        // glibc answer with the caller's buffer.
        return f(buf, size);
    }
    let real_bytes = CStr::from_bytes_until_nul(&real_cwd)
        .map(|c| c.to_bytes())
        .unwrap_or(&[]);
    let mut virt = [0u8; PATH_MAX];
    match virtual_of(real_bytes, &mut virt) {
        Ok(Some(n)) => deliver_cwd(virt.get(..n).unwrap_or(&[]), buf, size),
        Ok(None) => deliver_cwd(real_bytes, buf, size),
        Err(e) => Ret::fail(e),
    }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __getcwd_chk(
    buf: *mut c_char,
    size: size_t,
    buflen: size_t,
) -> *mut c_char {
    if size > buflen {
        // glibc's checker reports the overflow and aborts.
        let f = real!(__getcwd_chk);
        return f(buf, size, buflen);
    }
    getcwd(buf, size)
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn getwd(buf: *mut c_char) -> *mut c_char {
    let f = real!(getwd);
    let r = f(buf);
    if r.is_null() || !config::active() {
        return r;
    }
    let mut virt = [0u8; PATH_MAX];
    let real_bytes = cbytes(r).unwrap_or(&[]);
    if let Ok(Some(n)) = virtual_of(real_bytes, &mut virt) {
        // getwd's buffer is at least PATH_MAX bytes, and `virt` holds n + NUL <= PATH_MAX.
        core::ptr::copy_nonoverlapping(virt.as_ptr(), r.cast(), n + 1);
    }
    r
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __getwd_chk(buf: *mut c_char, buflen: size_t) -> *mut c_char {
    if buflen < PATH_MAX {
        // glibc's checker reports the overflow and aborts.
        let f = real!(__getwd_chk);
        return f(buf, buflen);
    }
    getwd(buf)
}

/// glibc returns `$PWD` when it names the cwd (keeping symlinks); its internal stat of
/// `$PWD` would miss the mapping, so this is done here, then getcwd.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn get_current_dir_name() -> *mut c_char {
    let f = real!(get_current_dir_name);
    if !config::active() {
        return f();
    }
    let pwd = libc::getenv(c"PWD".as_ptr());
    if let Some(b'/') = cbytes(pwd).and_then(|b| b.first().copied()) {
        let mut loc = Loc::new();
        if hydrate::resolve(&mut loc, AT_FDCWD, pwd).is_ok() {
            let p = CStr::from_ptr(loc.ptr());
            if let (Ok(a), Ok(b)) = (rustix::fs::stat(p), rustix::fs::stat(c".")) {
                if a.st_dev == b.st_dev && a.st_ino == b.st_ino {
                    return libc::strdup(pwd);
                }
            }
        }
    }
    getcwd(core::ptr::null_mut(), 0)
}

/// Reads the link into a PATH_MAX buffer, maps a tree target back, and copies with
/// readlink's truncation rule (no NUL, at most `size` bytes).
unsafe fn readlink_like(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
    call: impl Fn(c_int, *const c_char, *mut c_char, size_t) -> ssize_t,
) -> ssize_t {
    if !config::active() || buf.is_null() || size == 0 {
        return call(dirfd, path, buf, size);
    }
    let mut tmp = [0u8; PATH_MAX];
    let tp = tmp.as_mut_ptr().cast::<c_char>();
    let r = at_path(dirfd, path, Pre::Nothing, |d, p| call(d, p, tp, PATH_MAX));
    if r < 0 {
        return r;
    }
    let got = tmp.get(..r as usize).unwrap_or(&[]);
    let mut virt = [0u8; PATH_MAX];
    let out = match virtual_of(got, &mut virt) {
        Ok(Some(n)) => virt.get(..n).unwrap_or(got),
        _ => got,
    };
    let n = out.len().min(size);
    core::ptr::copy_nonoverlapping(out.as_ptr(), buf.cast(), n);
    n as ssize_t
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn readlink(path: *const c_char, buf: *mut c_char, size: size_t) -> ssize_t {
    let f = real!(readlink);
    readlink_like(AT_FDCWD, path, buf, size, |_, p, b, s| f(p, b, s))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn readlinkat(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
) -> ssize_t {
    let f = real!(readlinkat);
    readlink_like(dirfd, path, buf, size, |d, p, b, s| f(d, p, b, s))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __readlink_chk(
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
    buflen: size_t,
) -> ssize_t {
    if size > buflen {
        let f = real!(__readlink_chk);
        return f(path, buf, size, buflen);
    }
    readlink(path, buf, size)
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __readlinkat_chk(
    dirfd: c_int,
    path: *const c_char,
    buf: *mut c_char,
    size: size_t,
    buflen: size_t,
) -> ssize_t {
    if size > buflen {
        let f = real!(__readlinkat_chk);
        return f(dirfd, path, buf, size, buflen);
    }
    readlinkat(dirfd, path, buf, size)
}

/// Maps a realpath-style result back in place, or into a new malloc'd string when the
/// result was malloc'd and the virtual form is longer.
unsafe fn fix_result(r: *mut c_char, owned: bool) -> *mut c_char {
    let real_bytes = cbytes(r).unwrap_or(&[]);
    let mut virt = [0u8; PATH_MAX];
    let n = match virtual_of(real_bytes, &mut virt) {
        Ok(Some(n)) => n,
        Ok(None) => return r,
        Err(e) => {
            if owned {
                libc::free(r.cast());
            }
            return Ret::fail(e);
        }
    };
    if !owned || n <= real_bytes.len() {
        // A caller buffer is at least PATH_MAX bytes; `virt` holds n + NUL <= PATH_MAX.
        core::ptr::copy_nonoverlapping(virt.as_ptr(), r.cast(), n + 1);
        return r;
    }
    let p = libc::malloc(n + 1) as *mut c_char;
    libc::free(r.cast());
    if p.is_null() {
        return Ret::fail(libc::ENOMEM);
    }
    core::ptr::copy_nonoverlapping(virt.as_ptr(), p.cast(), n + 1);
    p
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn realpath(path: *const c_char, resolved: *mut c_char) -> *mut c_char {
    let f = real!(realpath);
    if !config::active() {
        return f(path, resolved);
    }
    let saved = crate::errno::errno();
    let r = at_path(AT_FDCWD, path, Pre::Nothing, |_, p| f(p, resolved));
    if r.is_null() {
        return r;
    }
    let out = fix_result(r, resolved.is_null());
    if !out.is_null() {
        crate::errno::set_errno(saved);
    }
    out
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __realpath_chk(
    path: *const c_char,
    resolved: *mut c_char,
    len: size_t,
) -> *mut c_char {
    if len < PATH_MAX {
        let f = real!(__realpath_chk);
        return f(path, resolved, len);
    }
    realpath(path, resolved)
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn canonicalize_file_name(path: *const c_char) -> *mut c_char {
    realpath(path, core::ptr::null_mut())
}
