//! fd bookkeeping for the fd table: closes clear marks (before the close, so a racing
//! open that reuses the number is never cleared), duplicates copy them.

use super::real;
use crate::config;
use crate::fdtable;
use core::ffi::{c_int, c_uint, c_ulong};
use libc::FILE;

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    let f = real!(close);
    if config::active() {
        fdtable::clear(fd);
    }
    f(fd)
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fclose(fp: *mut FILE) -> c_int {
    let f = real!(fclose);
    if config::active() && !fp.is_null() {
        fdtable::clear(libc::fileno(fp));
    }
    f(fp)
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    let f = real!(dup);
    let r = f(fd);
    if r >= 0 && config::active() {
        fdtable::copy(fd, r);
    }
    r
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    let f = real!(dup2);
    let r = f(old, new);
    if r >= 0 && old != new && config::active() {
        fdtable::copy(old, r);
    }
    r
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    let f = real!(dup3);
    let r = f(old, new, flags);
    if r >= 0 && config::active() {
        fdtable::copy(old, r);
    }
    r
}

/// Fixed arity: the third argument (int or pointer) travels in the same register either
/// way and is forwarded untouched.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    let f = real!(fcntl);
    let r = f(fd, cmd, arg);
    after_fcntl(fd, cmd, r);
    r
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    let f = real!(fcntl64);
    let r = f(fd, cmd, arg);
    after_fcntl(fd, cmd, r);
    r
}

#[inline]
fn after_fcntl(fd: c_int, cmd: c_int, r: c_int) {
    if r >= 0 && (cmd == libc::F_DUPFD || cmd == libc::F_DUPFD_CLOEXEC) && config::active() {
        fdtable::copy(fd, r);
    }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let f = real!(close_range);
    if config::active() && (flags as c_uint) & libc::CLOSE_RANGE_CLOEXEC == 0 {
        fdtable::clear_range(u64::from(first), u64::from(last));
    }
    f(first, last, flags)
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn closefrom(low: c_int) {
    let f = real!(closefrom);
    if config::active() && low >= 0 {
        fdtable::clear_range(low as u64, u64::MAX);
    }
    f(low)
}
