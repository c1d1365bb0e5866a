//! errno of the calling thread: read, set, and kept across the shim's own work.

use core::ffi::c_int;

#[inline]
pub fn errno() -> c_int {
    // SAFETY: glibc's errno location is always valid for the calling thread.
    unsafe { *libc::__errno_location() }
}

#[inline]
pub fn set_errno(e: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = e }
}

/// Runs `f` and restores errno afterwards.
#[inline]
pub fn keep_errno<T>(f: impl FnOnce() -> T) -> T {
    let saved = errno();
    let r = f();
    set_errno(saved);
    r
}
