//! AF_UNIX socket names: `bind`/`connect` to a path in the tree use the cache path, and
//! `getsockname`/`getpeername` give the mount path back. Abstract names and other
//! families pass untouched.

use super::{at_path, real};
use crate::config;
use crate::hydrate::Pre;
use crate::path::{reverse, Rev};
use crate::ret::Ret;
use core::ffi::{c_char, c_int, c_void};
use libc::{sockaddr_un, socklen_t, AF_UNIX, AT_FDCWD};

/// Offset of `sun_path` in `sockaddr_un`.
const PATH_OFF: usize = core::mem::offset_of!(sockaddr_un, sun_path);
const SUN_PATH: usize = 108;

/// The `sun_path` of a path-named AF_UNIX address as a NUL-terminated copy, else `None`.
unsafe fn unix_path(addr: *const c_void, len: socklen_t) -> Option<[u8; SUN_PATH + 1]> {
    let len = len as usize;
    if len <= PATH_OFF
        || len > core::mem::size_of::<sockaddr_un>()
        || !crate::cstr::readable(addr.cast(), len)
    {
        // Not an AF_UNIX path, or an unmapped address: the kernel's own answer (EFAULT).
        return None;
    }
    let sa = &*addr.cast::<sockaddr_un>();
    if c_int::from(sa.sun_family) != AF_UNIX || sa.sun_path.first().is_none_or(|&b| b == 0) {
        return None;
    }
    let mut out = [0u8; SUN_PATH + 1];
    let given = sa.sun_path.iter().take(len - PATH_OFF);
    for (o, b) in out.iter_mut().zip(given.take_while(|&&b| b != 0)) {
        *o = *b as u8;
    }
    Some(out)
}

/// Calls `f` with the address rewritten to the mapped path when it names the tree.
unsafe fn with_mapped_addr(
    addr: *const c_void,
    len: socklen_t,
    pre: Pre,
    f: impl Fn(*const c_void, socklen_t) -> c_int,
) -> c_int {
    if !config::active() {
        return f(addr, len);
    }
    let Some(path) = unix_path(addr, len) else {
        return f(addr, len);
    };
    at_path(AT_FDCWD, path.as_ptr().cast::<c_char>(), pre, |_, p| {
        let mapped = crate::cstr::cbytes(p).unwrap_or(&[]);
        if p == path.as_ptr().cast() {
            return f(addr, len);
        }
        if mapped.len() >= SUN_PATH {
            return Ret::fail(libc::ENAMETOOLONG);
        }
        let mut sa: sockaddr_un = core::mem::zeroed();
        sa.sun_family = AF_UNIX as libc::sa_family_t;
        for (d, s) in sa.sun_path.iter_mut().zip(mapped) {
            *d = *s as c_char;
        }
        let n = (PATH_OFF + mapped.len() + 1) as socklen_t;
        f(core::ptr::addr_of!(sa).cast(), n)
    })
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn bind(fd: c_int, addr: *const c_void, len: socklen_t) -> c_int {
    let f = real!(bind);
    with_mapped_addr(addr, len, Pre::Create, |a, l| f(fd, a, l))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const c_void, len: socklen_t) -> c_int {
    let f = real!(connect);
    with_mapped_addr(addr, len, Pre::Nothing, |a, l| f(fd, a, l))
}

/// Rewrites a returned cache path to the mount path, with getsockname's truncation
/// rule (`*len` is the full size; at most the caller's size is written).
unsafe fn name_back(addr: *mut c_void, len: *mut socklen_t, cap: socklen_t) {
    if !config::active() || len.is_null() {
        return;
    }
    let Some(path) = unix_path(addr, (*len).min(cap)) else {
        return;
    };
    let real_bytes = crate::cstr::cbytes(path.as_ptr().cast()).unwrap_or(&[]);
    let mut virt = [0u8; crate::buf::PATH_MAX];
    let Rev::Mapped(n) = reverse(&config::get().prefixes(), real_bytes, &mut virt) else {
        return;
    };
    let full = PATH_OFF + n + 1;
    let room = (cap as usize).saturating_sub(PATH_OFF).min(SUN_PATH);
    let dst = addr.cast::<u8>().add(PATH_OFF);
    core::ptr::copy_nonoverlapping(virt.as_ptr(), dst, (n + 1).min(room));
    *len = full as socklen_t;
}

macro_rules! name_hook {
    ($name:ident) => {
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(fd: c_int, addr: *mut c_void, len: *mut socklen_t) -> c_int {
            let f = real!($name);
            let cap = if len.is_null() { 0 } else { *len };
            let r = f(fd, addr, len);
            if r == 0 {
                name_back(addr, len, cap);
            }
            r
        }
    };
}

name_hook!(getsockname);
name_hook!(getpeername);
