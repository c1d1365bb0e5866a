//! glibc's `syscall()`: libuv stats with `syscall(SYS_statx)` and closes with
//! `syscall(SYS_close)`. The fast path is one flag check and a match on the number; every
//! other number is forwarded with all six arguments (glibc's own `syscall` reads six too).
//! glibc semantics are kept: -1 and errno on failure. Path syscalls with a libc hook of
//! the same meaning go through that hook (the kernel's and glibc's `struct stat` are the
//! same on the 64-bit targets), so raw callers get the same mapping as libc callers.

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
        n if makes_a_child_that_may_share_memory(n) => {
            crate::owner::children_may_share_memory();
            f(n, a1, a2, a3, a4, a5, a6)
        }
        libc::SYS_close => {
            fdtable::clear(a1 as c_int);
            f(n, a1, a2, a3, a4, a5, a6)
        }
        libc::SYS_fsync | libc::SYS_fdatasync => {
            c_long::from(super::fsync::synced(a1 as c_int, || {
                f(n, a1, a2, a3, a4, a5, a6) as c_int
            }))
        }
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
        libc::SYS_execveat => c_long::from(super::exec::execveat(
            dirfd,
            path,
            a3 as _,
            a4 as _,
            a5 as c_int,
        )),
        libc::SYS_mkdirat => c_long::from(super::meta::mkdirat(dirfd, path, a3 as _)),
        libc::SYS_unlinkat => c_long::from(super::meta::unlinkat(dirfd, path, a3 as c_int)),
        libc::SYS_renameat => c_long::from(super::meta::renameat(
            dirfd,
            path,
            a3 as c_int,
            a4 as *const c_char,
        )),
        libc::SYS_readlinkat => {
            super::cwd::readlinkat(dirfd, path, a3 as *mut c_char, a4 as usize) as c_long
        }
        libc::SYS_chdir => c_long::from(super::cwd::chdir(a1 as *const c_char)),
        libc::SYS_fchdir => c_long::from(super::cwd::fchdir(a1 as c_int)),
        libc::SYS_getcwd => {
            // The kernel's convention: the length with the NUL.
            let buf = a1 as *mut c_char;
            let r = super::cwd::getcwd(buf, a2 as usize);
            if r.is_null() {
                -1
            } else {
                libc::strlen(buf) as c_long + 1
            }
        }
        #[cfg(target_arch = "x86_64")]
        _ => legacy(n, [a1, a2, a3, a4, a5, a6], f),
        #[cfg(not(target_arch = "x86_64"))]
        _ => f(n, a1, a2, a3, a4, a5, a6),
    }
}

/// x86_64's path syscalls that predate the `*at` forms.
#[cfg(target_arch = "x86_64")]
unsafe fn legacy(n: c_long, a: [c_long; 6], f: crate::real::syscall::F) -> c_long {
    let path = a[0] as *const c_char;
    let r: c_int = match n {
        libc::SYS_open => super::open::open(path, a[1] as c_int, a[2] as _),
        libc::SYS_creat => super::open::creat(path, a[1] as _),
        libc::SYS_stat => super::stat::stat(path, a[1] as _),
        libc::SYS_lstat => super::stat::lstat(path, a[1] as _),
        libc::SYS_access => super::stat::access(path, a[1] as c_int),
        libc::SYS_mkdir => super::meta::mkdir(path, a[1] as _),
        libc::SYS_rmdir => super::meta::rmdir(path),
        libc::SYS_unlink => super::meta::unlink(path),
        libc::SYS_rename => super::meta::rename(path, a[1] as *const c_char),
        libc::SYS_readlink => {
            return super::cwd::readlink(path, a[1] as *mut c_char, a[2] as usize) as c_long
        }
        _ => return f(n, a[0], a[1], a[2], a[3], a[4], a[5]),
    };
    c_long::from(r)
}

/// `vfork`, `clone` and `clone3`: see [`crate::owner::children_may_share_memory`].
fn makes_a_child_that_may_share_memory(n: c_long) -> bool {
    #[cfg(target_arch = "x86_64")]
    if n == libc::SYS_vfork {
        return true;
    }
    n == libc::SYS_clone || n == libc::SYS_clone3
}
