//! `dlopen` of a library in the tree by path: mapped, and its bytes fetched first (the
//! loader reads it with internal calls). Names without `/` are searched by the loader.

use super::{at_path, real};
use crate::hydrate::Pre;
use core::ffi::{c_char, c_int, c_void};
use libc::AT_FDCWD;

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void {
    let f = real!(dlopen);
    match crate::sys::cbytes(file) {
        Some(b) if b.contains(&b'/') => at_path(AT_FDCWD, file, Pre::Fetch, |_, p| f(p, mode)),
        _ => f(file, mode),
    }
}
