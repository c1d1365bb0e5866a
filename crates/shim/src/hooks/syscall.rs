//! glibc's `syscall()`: libuv stats with `syscall(SYS_statx)` and closes with
//! `syscall(SYS_close)`. The fast path is one flag check and a match on the number; every
//! other number is forwarded with all six arguments (glibc's own `syscall` reads six too).
//! glibc semantics are kept: -1 and errno on failure.

use super::{at_path, open::open_like, real, two_paths};
use crate::config;
use crate::fdtable;
use crate::hydrate::Pre;
use core::ffi::{c_char, c_int, c_long};

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn syscall(
    n: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
    a6: c_long,
) -> c_long {
    let f = real!(syscall);
    if !config::active() {
        return f(n, a1, a2, a3, a4, a5, a6);
    }
    let dirfd = a1 as c_int;
    let path = a2 as *const c_char;
    match n {
        libc::SYS_close => {
            fdtable::clear(a1 as c_int);
            f(n, a1, a2, a3, a4, a5, a6)
        }
        libc::SYS_fsync | libc::SYS_fdatasync => c_long::from(super::fsync::after_sync(
            a1 as c_int,
            f(n, a1, a2, a3, a4, a5, a6) as c_int,
        )),
        // statx(dirfd, path, flags, mask, buf); newfstatat(dirfd, path, buf, flags);
        // faccessat[2](dirfd, path, mode[, flags]): an empty path is never mapped.
        libc::SYS_statx | libc::SYS_newfstatat | libc::SYS_faccessat | libc::SYS_faccessat2 => {
            at_path(dirfd, path, Pre::Nothing, |d, p| {
                f(n, d as c_long, p as c_long, a3, a4, a5, a6)
            })
        }
        libc::SYS_openat => c_long::from(open_like(dirfd, path, a3 as c_int, |d, p| {
            f(n, d as c_long, p as c_long, a3, a4, a5, a6) as c_int
        })),
        libc::SYS_openat2 => {
            let how = a3 as *const libc::open_how;
            let flags = if how.is_null() {
                0
            } else {
                (*how).flags as c_int
            };
            c_long::from(open_like(dirfd, path, flags, |d, p| {
                f(n, d as c_long, p as c_long, a3, a4, a5, a6) as c_int
            }))
        }
        libc::SYS_renameat2 => {
            let exchange = (a5 as u32) & libc::RENAME_EXCHANGE != 0;
            c_long::from(two_paths(
                dirfd,
                path,
                a3 as c_int,
                a4 as *const c_char,
                exchange,
                false,
                |od, op, nd, np| {
                    f(
                        n,
                        od as c_long,
                        op as c_long,
                        nd as c_long,
                        np as c_long,
                        a5,
                        a6,
                    ) as c_int
                },
            ))
        }
        _ => f(n, a1, a2, a3, a4, a5, a6),
    }
}
