//! Extended attributes: the path calls are mapped (ls -l asks libselinux, which calls
//! `lgetxattr`), and the shim's own marker (`user.s3shim`) is hidden inside the tree so
//! tools that copy attributes (`cp -a`, `rsync -X`) never turn a copy into a placeholder.

use super::{at_path, real};
use crate::config;
use crate::cstr::cbytes;
use crate::fdtable;
use crate::hydrate::Pre;
use crate::marker::MARKER_NAME;
use crate::ret::Ret;
use core::ffi::{c_char, c_int, c_void};
use libc::{size_t, ssize_t, AT_FDCWD};

fn is_marker(name: *const c_char) -> bool {
    // SAFETY: `name` is the caller's C string (or NULL).
    unsafe { cbytes(name) }.is_some_and(|n| n == MARKER_NAME.to_bytes())
}

/// Removes the marker name from a listxattr result in place; returns the new length.
unsafe fn strip_marker(list: *mut c_char, len: ssize_t) -> ssize_t {
    if list.is_null() || len <= 0 {
        return len;
    }
    let buf = core::slice::from_raw_parts_mut(list.cast::<u8>(), len as usize);
    let name = MARKER_NAME.to_bytes_with_nul();
    let mut i = 0usize;
    let mut end = buf.len();
    while i < end {
        let rest = buf.get(i..end).unwrap_or(&[]);
        let item_len = rest
            .iter()
            .position(|&b| b == 0)
            .map_or(rest.len(), |p| p + 1);
        if rest.get(..item_len) == Some(name) {
            buf.copy_within(i + item_len..end, i);
            end -= item_len;
        } else {
            i += item_len;
        }
    }
    end as ssize_t
}

macro_rules! get_hook {
    ($name:ident) => {
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(
            path: *const c_char,
            name: *const c_char,
            value: *mut c_void,
            size: size_t,
        ) -> ssize_t {
            let f = real!($name);
            let marker = config::active() && is_marker(name);
            at_path(AT_FDCWD, path, Pre::Nothing, |_, p| {
                if marker {
                    // Exists? Then answer as if the attribute were absent.
                    let r = f(p, name, core::ptr::null_mut(), 0);
                    if r >= 0 || crate::errno::errno() == libc::ENODATA {
                        return Ret::fail(libc::ENODATA);
                    }
                    return r;
                }
                f(p, name, value, size)
            })
        }
    };
}

get_hook!(getxattr);
get_hook!(lgetxattr);

macro_rules! set_hook {
    ($name:ident) => {
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(
            path: *const c_char,
            name: *const c_char,
            value: *const c_void,
            size: size_t,
            flags: c_int,
        ) -> c_int {
            let f = real!($name);
            if config::active() && is_marker(name) {
                return Ret::fail(libc::EPERM);
            }
            at_path(AT_FDCWD, path, Pre::Nothing, |_, p| {
                f(p, name, value, size, flags)
            })
        }
    };
}

set_hook!(setxattr);
set_hook!(lsetxattr);

macro_rules! remove_hook {
    ($name:ident) => {
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, name: *const c_char) -> c_int {
            let f = real!($name);
            if config::active() && is_marker(name) {
                return Ret::fail(libc::ENODATA);
            }
            at_path(AT_FDCWD, path, Pre::Nothing, |_, p| f(p, name))
        }
    };
}

remove_hook!(removexattr);
remove_hook!(lremovexattr);

macro_rules! list_hook {
    ($name:ident) => {
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(
            path: *const c_char,
            list: *mut c_char,
            size: size_t,
        ) -> ssize_t {
            let f = real!($name);
            let r = at_path(AT_FDCWD, path, Pre::Nothing, |_, p| f(p, list, size));
            if config::active() && size > 0 {
                strip_marker(list, r)
            } else {
                r
            }
        }
    };
}

list_hook!(listxattr);
list_hook!(llistxattr);

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fgetxattr(
    fd: c_int,
    name: *const c_char,
    value: *mut c_void,
    size: size_t,
) -> ssize_t {
    let f = real!(fgetxattr);
    if config::active() && fdtable::is_marked(fd) && is_marker(name) {
        return Ret::fail(libc::ENODATA);
    }
    f(fd, name, value, size)
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn flistxattr(fd: c_int, list: *mut c_char, size: size_t) -> ssize_t {
    let f = real!(flistxattr);
    let r = f(fd, list, size);
    if config::active() && size > 0 && fdtable::is_marked(fd) {
        strip_marker(list, r)
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::strip_marker;

    fn strip(input: &[u8]) -> Vec<u8> {
        let mut b = input.to_vec();
        // SAFETY: `b` is a live buffer of `b.len()` bytes.
        let n = unsafe { strip_marker(b.as_mut_ptr().cast(), b.len() as isize) };
        b.truncate(n as usize);
        b
    }

    #[test]
    fn marker_is_hidden_from_lists() {
        assert_eq!(strip(b"user.a\0user.s3shim\0user.b\0"), b"user.a\0user.b\0");
        assert_eq!(strip(b"user.s3shim\0"), b"");
        assert_eq!(strip(b"user.s3shimx\0user.s3shim\0"), b"user.s3shimx\0");
        assert_eq!(strip(b"security.selinux\0"), b"security.selinux\0");
        assert_eq!(strip(b""), b"");
    }
}
