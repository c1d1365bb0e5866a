//! `dlopen` of a library in the tree by path: mapped, and its bytes fetched first (the
//! loader reads it with internal calls). Names without `/` are searched by the loader.
//!
//! The loader keeps the path it opened (the cache path) as the library's name, which
//! `dladdr`/`dladdr1` hand out as `dli_fname`: the name the caller gave `dlopen` is kept
//! in [`NAMES`] and shown instead.

use super::{at_path, real};
use crate::buf::{Writer, PATH_MAX};
use crate::cstr::cbytes;
use crate::hydrate::Pre;
use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicU8, Ordering};
use libc::AT_FDCWD;

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dlopen(file: *const c_char, mode: c_int) -> *mut c_void {
    let f = real!(dlopen);
    match cbytes(file) {
        Some(b) if b.contains(&b'/') => {
            let mut loaded: Option<[u8; PATH_MAX]> = None;
            let h = at_path(AT_FDCWD, file, Pre::Fetch, |_, p| {
                let h = f(p, mode);
                if !h.is_null() && !core::ptr::eq(p, file) {
                    let mut copy = [0u8; PATH_MAX];
                    if let Some(n) = cbytes(p) {
                        // The NUL after it stays from the zeroed buffer.
                        if let Some(dst) = copy.get_mut(..n.len()).filter(|_| n.len() < PATH_MAX) {
                            dst.copy_from_slice(n);
                            loaded = Some(copy);
                        }
                    }
                }
                h
            });
            if let Some(real_name) = loaded {
                remember(&real_name, b);
            }
            h
        }
        _ => f(file, mode),
    }
}

/// A loaded library's cache path and the name its caller gave: both NUL-terminated, set
/// once (state `WRITING`) and never changed once `READY`, so readers need no lock.
struct Name {
    state: AtomicU8,
    real: UnsafeCell<[u8; PATH_MAX]>,
    given: UnsafeCell<[u8; PATH_MAX]>,
}

const FREE: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;
const NAME_SLOTS: usize = 16;

// SAFETY: a slot's buffers are written only by the thread that moved it FREE -> WRITING,
// and read only once it is READY.
unsafe impl Sync for Name {}

static NAMES: [Name; NAME_SLOTS] = [const {
    Name {
        state: AtomicU8::new(FREE),
        real: UnsafeCell::new([0; PATH_MAX]),
        given: UnsafeCell::new([0; PATH_MAX]),
    }
}; NAME_SLOTS];

fn until_nul(b: &[u8]) -> &[u8] {
    b.split(|&c| c == 0).next().unwrap_or(b)
}

/// The given name of a library loaded from `real` (its cache path), if remembered.
fn given_of(real: &[u8]) -> Option<*const c_char> {
    NAMES.iter().find_map(|s| {
        if s.state.load(Ordering::Acquire) != READY {
            return None;
        }
        // SAFETY: a READY slot is never written again.
        let (r, g) = unsafe { (&*s.real.get(), &*s.given.get()) };
        (until_nul(r) == real).then_some(g.as_ptr().cast())
    })
}

/// Keeps `given` as the name of the library at `real` (NUL-terminated buffer). The first
/// name stays, as the loader keeps its first; a full table keeps the cache path.
fn remember(real: &[u8; PATH_MAX], given: &[u8]) {
    let real = until_nul(real);
    if given.len() >= PATH_MAX || given_of(real).is_some() {
        return;
    }
    for s in &NAMES {
        if s.state
            .compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: this thread owns the slot while it is WRITING.
            let (r, g) = unsafe { (&mut *s.real.get(), &mut *s.given.get()) };
            // Each with its NUL; one that does not fit leaves the slot free.
            let fits = Writer::new(r).put(real).and(Writer::new(g).put(given));
            s.state
                .store(if fits.is_some() { READY } else { FREE }, Ordering::Release);
            return;
        }
    }
}

/// Shows `dli_fname` as the name given to `dlopen` when the library was loaded from the
/// tree.
unsafe fn show_given(info: *mut libc::Dl_info) {
    if info.is_null() || !crate::config::active() {
        return;
    }
    let Some(name) = cbytes((*info).dli_fname) else {
        return;
    };
    // Only a name under the tree can be one the shim mapped.
    if crate::path::under(name, crate::config::get().prefixes().tree).is_none() {
        return;
    }
    if let Some(g) = given_of(name) {
        (*info).dli_fname = g;
    }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dladdr(addr: *const c_void, info: *mut libc::Dl_info) -> c_int {
    let r = real!(dladdr)(addr, info);
    if r != 0 {
        show_given(info);
    }
    r
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn dladdr1(
    addr: *const c_void,
    info: *mut libc::Dl_info,
    extra: *mut *mut c_void,
    flags: c_int,
) -> c_int {
    let r = real!(dladdr1)(addr, info, extra, flags);
    if r != 0 {
        show_given(info);
    }
    r
}
