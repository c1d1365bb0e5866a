//! mkstemp and friends: glibc generates the name and opens or creates it with internal
//! calls, so the template is mapped here, the real function fills the mapped copy, and
//! the generated characters (the `XXXXXX` and the suffix after them, which mapping
//! never changes) are copied back into the caller's template.

use super::{in_tree, real};
use crate::buf::PATH_MAX;
use crate::config;
use crate::cstr::cbytes;
use crate::fdtable;
use crate::hydrate::{self, Pre};
use crate::loc::Loc;
use crate::ret::Ret;
use core::ffi::{c_char, c_int};
use libc::AT_FDCWD;

/// Runs `call` on a mapped copy of `template` and copies the generated tail back.
/// `call` gets the copy; its result is returned as is.
unsafe fn temp_like<R: Ret>(
    template: *mut c_char,
    suffix: c_int,
    call: impl Fn(*mut c_char) -> R,
) -> R {
    if !config::active() {
        return call(template);
    }
    let mut loc = Loc::new();
    if let Err(e) = hydrate::resolve(&mut loc, AT_FDCWD, template) {
        return R::fail(e);
    }
    if !loc.in_tree && core::ptr::eq(loc.ptr(), template) {
        return call(template);
    }
    if loc.in_tree {
        if let Err(e) = hydrate::pre(&loc, Pre::Create) {
            return R::fail(e);
        }
    }
    let tail = 6 + usize::try_from(suffix).unwrap_or(0);
    let tlen = cbytes(template).map_or(0, <[u8]>::len);
    let mut attempt = |_: c_int, _: *const c_char| {
        // A fresh copy per attempt: a failed attempt may have changed the X's.
        let src = loc.bytes();
        let mut buf = [0u8; PATH_MAX];
        let mut w = crate::buf::Writer::new(&mut buf);
        if w.put(src).is_none() {
            return R::fail(libc::ENAMETOOLONG);
        }
        let blen = w.len;
        let r = call(buf.as_mut_ptr().cast());
        if !r.failed() && tail <= tlen && tail <= blen {
            core::ptr::copy_nonoverlapping(
                buf.as_ptr().add(blen - tail),
                template.cast::<u8>().add(tlen - tail),
                tail,
            );
        }
        r
    };
    if loc.in_tree {
        in_tree(&loc, Pre::Nothing, &mut attempt)
    } else {
        attempt(AT_FDCWD, template)
    }
}

/// The fd variants: the new fd is in the tree when the template is.
unsafe fn temp_fd(
    template: *mut c_char,
    suffix: c_int,
    call: impl Fn(*mut c_char) -> c_int,
) -> c_int {
    let fd = temp_like(template, suffix, call);
    if fd >= 0 && config::active() {
        let mut loc = Loc::new();
        if hydrate::resolve(&mut loc, AT_FDCWD, template).is_ok() && loc.in_tree {
            fdtable::mark(fd);
        }
    }
    fd
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mkstemp(template: *mut c_char) -> c_int {
    let f = real!(mkstemp);
    temp_fd(template, 0, |t| f(t))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mkstemp64(template: *mut c_char) -> c_int {
    let f = real!(mkstemp64);
    temp_fd(template, 0, |t| f(t))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mkostemp(template: *mut c_char, flags: c_int) -> c_int {
    let f = real!(mkostemp);
    temp_fd(template, 0, |t| f(t, flags))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mkostemp64(template: *mut c_char, flags: c_int) -> c_int {
    let f = real!(mkostemp64);
    temp_fd(template, 0, |t| f(t, flags))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mkstemps(template: *mut c_char, suffix: c_int) -> c_int {
    let f = real!(mkstemps);
    temp_fd(template, suffix, |t| f(t, suffix))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mkstemps64(template: *mut c_char, suffix: c_int) -> c_int {
    let f = real!(mkstemps64);
    temp_fd(template, suffix, |t| f(t, suffix))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mkostemps(template: *mut c_char, suffix: c_int, flags: c_int) -> c_int {
    let f = real!(mkostemps);
    temp_fd(template, suffix, |t| f(t, suffix, flags))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mkostemps64(template: *mut c_char, suffix: c_int, flags: c_int) -> c_int {
    let f = real!(mkostemps64);
    temp_fd(template, suffix, |t| f(t, suffix, flags))
}

/// Returns the caller's template (filled in), not the mapped copy.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mkdtemp(template: *mut c_char) -> *mut c_char {
    let f = real!(mkdtemp);
    temp_like(template, 0, |t| {
        if f(t).is_null() {
            core::ptr::null_mut()
        } else {
            template
        }
    })
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn mktemp(template: *mut c_char) -> *mut c_char {
    let f = real!(mktemp);
    temp_like(template, 0, |t| {
        let r = f(t);
        // mktemp reports failure with an empty template, not NULL.
        if !r.is_null() && *r == 0 {
            *template = 0;
        }
        template
    })
}

extern "C" {
    /// glibc's `getenv` that answers NULL in a setuid program, as `tempnam` reads `$TMPDIR`.
    fn secure_getenv(name: *const c_char) -> *mut c_char;
}

/// Whether `dir` names a directory, as glibc's `tempnam` checks it (through the stat hook,
/// so a directory under the mount counts); errno is left alone.
unsafe fn is_dir(dir: *const c_char) -> bool {
    if cbytes(dir).is_none() {
        return false;
    }
    crate::errno::keep_errno(|| {
        let mut st = core::mem::MaybeUninit::<libc::stat>::uninit();
        super::stat::stat(dir, st.as_mut_ptr().cast()) == 0
            && st.assume_init().st_mode & libc::S_IFMT == libc::S_IFDIR
    })
}

/// glibc's `tempnam` picks `$TMPDIR`, else `dir`, when it is a directory, with internal
/// stat calls that miss the mount. When that choice is under the mount it is made here:
/// the real function gets the mapped directory (its own `$TMPDIR` check fails on the mount
/// path, which is no real directory), and the name it makes is returned under the
/// directory as the caller wrote it, never under the cache path.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn tempnam(dir: *const c_char, pfx: *const c_char) -> *mut c_char {
    let f = real!(tempnam);
    if !config::active() {
        return f(dir, pfx);
    }
    let tmpdir = secure_getenv(c"TMPDIR".as_ptr());
    let Some(chosen) = [tmpdir.cast_const(), dir].into_iter().find(|&d| is_dir(d)) else {
        return f(dir, pfx);
    };
    let mut loc = Loc::new();
    if hydrate::resolve(&mut loc, AT_FDCWD, chosen).is_err() || !loc.in_tree {
        return f(dir, pfx);
    }
    let made = f(loc.ptr(), pfx);
    let (Some(made_bytes), Some(given)) = (cbytes(made), cbytes(chosen)) else {
        return made;
    };
    // glibc drops the directory's trailing slashes and adds one.
    let mut dir = given;
    while let Some(rest) = dir.strip_suffix(b"/").filter(|r| !r.is_empty()) {
        dir = rest;
    }
    let base = made_bytes
        .rsplit(|&c| c == b'/')
        .next()
        .unwrap_or(made_bytes);
    // With the slash between and the NUL.
    let len = dir.len() + base.len() + 2;
    let out = libc::malloc(len).cast::<u8>();
    if out.is_null() {
        libc::free(made.cast());
        return core::ptr::null_mut();
    }
    let mut w = crate::buf::Writer::new(core::slice::from_raw_parts_mut(out, len));
    // Cannot fail: the buffer was sized for exactly this.
    let _ = (w.put(dir), w.put(b"/"), w.put(base));
    libc::free(made.cast());
    out.cast()
}
