//! The stat family in both glibc ABIs (2.33+ names and the `__xstat` family that binaries
//! built against older glibc import, `ver` passed through), `statx`, access checks, and
//! the other calls that only look a path up: `statfs`/`statvfs` (Node, git), `pathconf`
//! (Node's readlink), `inotify_add_watch` (VS Code's watchers) and `name_to_handle_at`.
//! Buffers are opaque: the shim never reads them.

use super::{at_path, real};
use crate::hydrate::Pre;
use core::ffi::{c_char, c_int, c_uint, c_void};
use libc::AT_FDCWD;

macro_rules! path_hook {
    ($name:ident) => {
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, buf: *mut c_void) -> c_int {
            let f = real!($name);
            at_path(AT_FDCWD, path, Pre::Nothing, |_, p| f(p, buf))
        }
    };
}

path_hook!(stat);
path_hook!(statfs);
path_hook!(statfs64);
path_hook!(statvfs);
path_hook!(statvfs64);

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn pathconf(path: *const c_char, name: c_int) -> core::ffi::c_long {
    let f = real!(pathconf);
    at_path(AT_FDCWD, path, Pre::Nothing, |_, p| f(p, name))
}

/// The watch lands on the cache directory, which is what every writer (and the agent's
/// downloads) changes, so events arrive as for a local folder.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn inotify_add_watch(fd: c_int, path: *const c_char, mask: u32) -> c_int {
    let f = real!(inotify_add_watch);
    at_path(AT_FDCWD, path, Pre::Nothing, |_, p| f(fd, p, mask))
}
/// A handle names the cache file, which is what the fd-side call opens again.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn name_to_handle_at(
    dirfd: c_int,
    path: *const c_char,
    handle: *mut c_void,
    mount_id: *mut c_int,
    flags: c_int,
) -> c_int {
    let f = real!(name_to_handle_at);
    at_path(dirfd, path, Pre::Nothing, |d, p| {
        f(d, p, handle, mount_id, flags)
    })
}
path_hook!(stat64);
path_hook!(lstat);
path_hook!(lstat64);

macro_rules! at_hook {
    ($name:ident) => {
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(
            dirfd: c_int,
            path: *const c_char,
            buf: *mut c_void,
            flags: c_int,
        ) -> c_int {
            let f = real!($name);
            at_path(dirfd, path, Pre::Nothing, |d, p| f(d, p, buf, flags))
        }
    };
}

at_hook!(fstatat);
at_hook!(fstatat64);

macro_rules! xstat_hook {
    ($name:ident) => {
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(ver: c_int, path: *const c_char, buf: *mut c_void) -> c_int {
            let f = real!($name);
            at_path(AT_FDCWD, path, Pre::Nothing, |_, p| f(ver, p, buf))
        }
    };
}

xstat_hook!(__xstat);
xstat_hook!(__xstat64);
xstat_hook!(__lxstat);
xstat_hook!(__lxstat64);

macro_rules! fxstatat_hook {
    ($name:ident) => {
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(
            ver: c_int,
            dirfd: c_int,
            path: *const c_char,
            buf: *mut c_void,
            flags: c_int,
        ) -> c_int {
            let f = real!($name);
            at_path(dirfd, path, Pre::Nothing, |d, p| f(ver, d, p, buf, flags))
        }
    };
}

fxstatat_hook!(__fxstatat);
fxstatat_hook!(__fxstatat64);

/// `statx(fd, "", AT_EMPTY_PATH)` is an fstat: empty paths are never mapped.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn statx(
    dirfd: c_int,
    path: *const c_char,
    flags: c_int,
    mask: c_uint,
    buf: *mut c_void,
) -> c_int {
    let f = real!(statx);
    at_path(dirfd, path, Pre::Nothing, |d, p| f(d, p, flags, mask, buf))
}

macro_rules! access_hook {
    ($name:ident) => {
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(path: *const c_char, mode: c_int) -> c_int {
            let f = real!($name);
            at_path(AT_FDCWD, path, Pre::Nothing, |_, p| f(p, mode))
        }
    };
}

access_hook!(access);
access_hook!(eaccess);
access_hook!(euidaccess);

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn faccessat(
    dirfd: c_int,
    path: *const c_char,
    mode: c_int,
    flags: c_int,
) -> c_int {
    let f = real!(faccessat);
    at_path(dirfd, path, Pre::Nothing, |d, p| f(d, p, mode, flags))
}
