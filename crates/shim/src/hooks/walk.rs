//! Tree walkers whose own directory reads and stats are internal to glibc (never seen
//! by the hooks) and whose results carry paths: glob, nftw/ftw, and fts's entries.
//!
//! * glob: given the hooked opendir/readdir/stat through `GLOB_ALTDIRFUNC`, so the
//!   pattern keeps its mount-path form and so do the results.
//! * nftw/ftw: the tree under an in-tree root is listed whole first (`ListTree`), the
//!   real walker gets the mapped root, and the callback sees mount paths.
//! * fts (opened by [`super::dir::fts_open`] on mapped roots): each entry handed out has
//!   its path (and a root's name) shown in mount form until the next fts call on the
//!   same stream, which puts fts's own fields back first. So is an `fts_children` list
//!   (its entries share fts's path buffer, shown once in mount form).

use super::real;
use crate::buf::PATH_MAX;
use crate::config;
use crate::cwd;
use crate::errno::{errno, set_errno};
use crate::hydrate;
use crate::loc::Loc;
use crate::path::{reverse, under, Rev};
use crate::real::Opaque;
use crate::ret::Ret;
use core::cell::Cell;
use core::ffi::{c_char, c_int, c_void};
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use libc::AT_FDCWD;

/// glibc's `GLOB_ALTDIRFUNC` (the libc crate does not export it).
const GLOB_ALTDIRFUNC: c_int = 1 << 9;

/// glibc's `glob_t` (and `glob64_t`, the same on 64-bit targets).
#[repr(C)]
struct GlobT {
    pathc: usize,
    pathv: *mut *mut c_char,
    offs: usize,
    flags: c_int,
    closedir: Option<unsafe extern "C" fn(*mut c_void)>,
    readdir: Option<unsafe extern "C" fn(*mut c_void) -> *mut c_void>,
    opendir: Option<unsafe extern "C" fn(*const c_char) -> *mut c_void>,
    lstat: Option<unsafe extern "C" fn(*const c_char, *mut c_void) -> c_int>,
    stat: Option<unsafe extern "C" fn(*const c_char, *mut c_void) -> c_int>,
}

unsafe extern "C" fn glob_closedir(d: *mut c_void) {
    super::dir::closedir(d.cast());
}

unsafe extern "C" fn glob_readdir(d: *mut c_void) -> *mut c_void {
    libc::readdir64(d.cast()).cast()
}

unsafe extern "C" fn glob_opendir(p: *const c_char) -> *mut c_void {
    super::dir::opendir(p).cast()
}

unsafe extern "C" fn glob_lstat(p: *const c_char, st: *mut c_void) -> c_int {
    super::stat::lstat64(p, st)
}

unsafe extern "C" fn glob_stat(p: *const c_char, st: *mut c_void) -> c_int {
    super::stat::stat64(p, st)
}

/// Whether a pattern can match anything in the tree.
unsafe fn pattern_touches_tree(pat: *const c_char) -> bool {
    let Some(b) = crate::cstr::cbytes(pat) else {
        return false;
    };
    if b.first() == Some(&b'/') {
        let cfg = config::get();
        let p = cfg.prefixes();
        // `/*` or `/work*` may reach the mount as well as a path under it.
        return under(b, p.mount).is_some()
            || under(b, p.tree).is_some()
            || !crate::path::is_plain(b)
            || b.iter().any(|&c| matches!(c, b'*' | b'?' | b'['));
    }
    cwd::state().0 != cwd::OUTSIDE || crate::path::has_dotdot(b)
}

unsafe fn glob_like(
    pat: *const c_char,
    flags: c_int,
    errfunc: Opaque,
    g: *mut c_void,
    f: unsafe extern "C" fn(*const c_char, c_int, Opaque, *mut c_void) -> c_int,
) -> c_int {
    if !config::active() || g.is_null() || flags & GLOB_ALTDIRFUNC != 0 {
        return f(pat, flags, errfunc, g);
    }
    if !pattern_touches_tree(pat) {
        return f(pat, flags, errfunc, g);
    }
    let gt = &mut *g.cast::<GlobT>();
    gt.closedir = Some(glob_closedir);
    gt.readdir = Some(glob_readdir);
    gt.opendir = Some(glob_opendir);
    gt.lstat = Some(glob_lstat);
    gt.stat = Some(glob_stat);
    let r = f(pat, flags | GLOB_ALTDIRFUNC, errfunc, g);
    gt.flags &= !GLOB_ALTDIRFUNC;
    r
}

macro_rules! glob_hook {
    ($name:ident) => {
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(
            pat: *const c_char,
            flags: c_int,
            errfunc: Opaque,
            g: *mut c_void,
        ) -> c_int {
            let f = real!($name);
            glob_like(pat, flags, errfunc, g, f)
        }
    };
}

glob_hook!(glob);
glob_hook!(glob64);

/// glibc's `struct FTW`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Ftw {
    base: c_int,
    level: c_int,
}

type NftwFn = unsafe extern "C" fn(*const c_char, *const c_void, c_int, *mut Ftw) -> c_int;
type FtwFn = unsafe extern "C" fn(*const c_char, *const c_void, c_int) -> c_int;

/// The caller's callback (nftw or ftw) for the walk running on this thread.
#[derive(Clone, Copy)]
enum Callback {
    Nftw(NftwFn),
    Ftw(FtwFn),
}

/// The walk running on this thread: the caller's callback, and the root as the caller
/// wrote it and as the real walker got it (results start with the latter).
#[derive(Clone, Copy)]
struct Walk {
    cb: Callback,
    given: *const c_char,
    mapped: *const c_char,
}

/// The walk running on each thread, as a pointer to the `Walk` on `walk_like`'s stack
/// (the callbacks get no user pointer). A pthread key, not a Rust thread-local: the
/// release library has no standard library (see lib.rs). Created on the first wrapped
/// walk; 0 until then.
static WALK_KEY: AtomicU32 = AtomicU32::new(NO_KEY);
const NO_KEY: u32 = u32::MAX;

/// The key, created on first use (two threads racing both create one; the loser's is
/// deleted). `None` when no key can be had.
fn walk_key() -> Option<libc::pthread_key_t> {
    let k = WALK_KEY.load(Ordering::Acquire);
    if k != NO_KEY {
        return Some(k);
    }
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: `key` is a valid out pointer; no destructor.
    if unsafe { libc::pthread_key_create(&mut key, None) } != 0 || key == NO_KEY {
        return None;
    }
    match WALK_KEY.compare_exchange(NO_KEY, key, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Some(key),
        Err(won) => {
            // SAFETY: our own key, never used.
            unsafe { libc::pthread_key_delete(key) };
            Some(won)
        }
    }
}

/// The walk running on this thread, if any.
fn current_walk() -> Option<Walk> {
    let key = WALK_KEY.load(Ordering::Acquire);
    if key == NO_KEY {
        return None;
    }
    // SAFETY: a key we created; the value is NULL or a `Walk` alive for the walk.
    let p = unsafe { libc::pthread_getspecific(key) }.cast::<Walk>();
    // SAFETY: set by `walk_like` to its own `Walk`, cleared before that returns.
    (!p.is_null()).then(|| unsafe { *p })
}

/// `path` with the mapped root replaced by the root the caller gave (so a relative root
/// gives relative results, as natively), else in mount form; `None` when unchanged.
fn as_given(w: &Walk, path: &[u8], out: &mut [u8]) -> Option<usize> {
    // SAFETY: both roots outlive the walk (the caller's string and the walk's Loc).
    let (given, mapped) = unsafe {
        (
            crate::cstr::cbytes(w.given)?,
            crate::cstr::cbytes(w.mapped)?,
        )
    };
    if let Some(rest) = path.strip_prefix(mapped) {
        let mut wr = crate::buf::Writer::new(out);
        wr.put(given)?;
        wr.put(rest)?;
        return Some(wr.len);
    }
    virtual_of(path, out)
}

/// A real path under the tree in mount form into `out`, else `None`.
fn virtual_of(real: &[u8], out: &mut [u8]) -> Option<usize> {
    match reverse(&config::get().prefixes(), real, out) {
        Rev::Mapped(n) => Some(n),
        _ => None,
    }
}

unsafe extern "C" fn nftw_trampoline(
    path: *const c_char,
    st: *const c_void,
    flag: c_int,
    ftw: *mut Ftw,
) -> c_int {
    let Some(walk) = current_walk() else {
        return 0;
    };
    let cb = walk.cb;
    let real_bytes = crate::cstr::cbytes(path).unwrap_or(&[]);
    let mut virt = [0u8; PATH_MAX];
    let (p, shift) = match as_given(&walk, real_bytes, &mut virt) {
        Some(n) => (virt.as_ptr().cast(), n as c_int - real_bytes.len() as c_int),
        None => (path, 0),
    };
    match cb {
        Callback::Nftw(f) => {
            let mut info = if ftw.is_null() {
                Ftw { base: 0, level: 0 }
            } else {
                *ftw
            };
            info.base += shift;
            f(p, st, flag, &mut info)
        }
        Callback::Ftw(f) => f(p, st, flag),
    }
}

unsafe extern "C" fn ftw_trampoline(path: *const c_char, st: *const c_void, flag: c_int) -> c_int {
    nftw_trampoline(path, st, flag, core::ptr::null_mut())
}

/// Lists an in-tree root whole and runs `walk` on the mapped root; the callback is
/// wrapped only when the root was a mount path (so results would carry the cache path).
unsafe fn walk_like(
    root: *const c_char,
    cb: Callback,
    walk: impl FnOnce(*const c_char, Opaque) -> c_int,
    tramp: Opaque,
    user: Opaque,
) -> c_int {
    if !config::active() {
        return walk(root, user);
    }
    let mut loc = Loc::new();
    if let Err(e) = hydrate::resolve(&mut loc, AT_FDCWD, root) {
        return Ret::fail(e);
    }
    if !loc.in_tree {
        return walk(loc.ptr(), user);
    }
    let saved = errno();
    if let Err(e) = hydrate::list_tree(&loc) {
        return Ret::fail(e);
    }
    set_errno(saved);
    if loc.ptr() == root {
        return walk(root, user);
    }
    let w = Walk {
        cb,
        given: root,
        mapped: loc.ptr(),
    };
    let Some(key) = walk_key() else {
        return Ret::fail(libc::ENOMEM);
    };
    // A walk started from a callback of another nests: keep the outer one.
    // SAFETY: our key, created by `walk_key`.
    let prev = unsafe { libc::pthread_getspecific(key) };
    // SAFETY: our key; `w` outlives the walk, and the outer value is put back after it.
    if unsafe { libc::pthread_setspecific(key, (&raw const w).cast()) } != 0 {
        return Ret::fail(libc::ENOMEM);
    }
    let r = walk(loc.ptr(), tramp);
    // SAFETY: as above.
    unsafe { libc::pthread_setspecific(key, prev) };
    r
}

macro_rules! nftw_hook {
    ($name:ident) => {
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(
            dir: *const c_char,
            f: Opaque,
            fds: c_int,
            flags: c_int,
        ) -> c_int {
            let real_fn = real!($name);
            let cb = Callback::Nftw(core::mem::transmute::<Opaque, NftwFn>(f));
            let tramp = nftw_trampoline as NftwFn as Opaque;
            walk_like(dir, cb, |d, g| real_fn(d, g, fds, flags), tramp, f)
        }
    };
}

macro_rules! ftw_hook {
    ($name:ident) => {
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $name(dir: *const c_char, f: Opaque, fds: c_int) -> c_int {
            let real_fn = real!($name);
            let cb = Callback::Ftw(core::mem::transmute::<Opaque, FtwFn>(f));
            let tramp = ftw_trampoline as FtwFn as Opaque;
            walk_like(dir, cb, |d, g| real_fn(d, g, fds), tramp, f)
        }
    };
}

nftw_hook!(nftw);
nftw_hook!(nftw64);
ftw_hook!(ftw);
ftw_hook!(ftw64);

/// glibc's `FTSENT` (`FTSENT64` has the same layout on 64-bit targets).
#[repr(C)]
struct FtsEnt {
    cycle: *mut c_void,
    parent: *mut c_void,
    link: *mut c_void,
    number: libc::c_long,
    pointer: *mut c_void,
    accpath: *mut c_char,
    path: *mut c_char,
    errno: c_int,
    symfd: c_int,
    pathlen: u16,
    namelen: u16,
    ino: u64,
    dev: u64,
    nlink: u64,
    level: i16,
    info: u16,
    flags: u16,
    instr: u16,
    statp: *mut c_void,
    /// `namelen + 1` bytes in fts's allocation.
    name: [c_char; 1],
}

/// One fts stream whose last entry is shown in mount form: the entry, fts's own values
/// of the fields changed, and the mount-form path they point to meanwhile.
struct Shown {
    fts: AtomicPtr<c_void>,
    ent: Cell<*mut FtsEnt>,
    path: Cell<*mut c_char>,
    accpath: Cell<*mut c_char>,
    pathlen: Cell<u16>,
    buf: core::cell::UnsafeCell<[u8; PATH_MAX]>,
    /// A root's name (its whole path) as fts had it, when it was rewritten in place.
    name: core::cell::UnsafeCell<[u8; PATH_MAX]>,
    namelen: Cell<u16>,
    /// The last `fts_children` list shown in mount form (its entries' path is `buf`), the
    /// path pointer fts gave them all, and how much longer the mount form is.
    kids: Cell<*mut FtsEnt>,
    kids_path: Cell<*mut c_char>,
    kids_delta: Cell<isize>,
}

// SAFETY: a slot is used only by the thread that claimed it for its stream (fts streams
// are not shared between threads), and claimed with a compare-exchange.
unsafe impl Sync for Shown {}

const FTS_SLOTS: usize = 8;

static SHOWN: [Shown; FTS_SLOTS] = [const {
    Shown {
        fts: AtomicPtr::new(core::ptr::null_mut()),
        ent: Cell::new(core::ptr::null_mut()),
        path: Cell::new(core::ptr::null_mut()),
        accpath: Cell::new(core::ptr::null_mut()),
        pathlen: Cell::new(0),
        buf: core::cell::UnsafeCell::new([0; PATH_MAX]),
        name: core::cell::UnsafeCell::new([0; PATH_MAX]),
        namelen: Cell::new(0),
        kids: Cell::new(core::ptr::null_mut()),
        kids_path: Cell::new(core::ptr::null_mut()),
        kids_delta: Cell::new(0),
    }
}; FTS_SLOTS];

fn slot_of(fts: *mut c_void) -> Option<&'static Shown> {
    SHOWN.iter().find(|s| s.fts.load(Ordering::Acquire) == fts)
}

/// Puts fts's own fields back in the entry shown last on this stream (and in the last
/// `fts_children` list).
unsafe fn restore(fts: *mut c_void) {
    if let Some(s) = slot_of(fts) {
        let mut k = s.kids.replace(core::ptr::null_mut());
        let shown = (*s.buf.get()).as_mut_ptr().cast::<c_char>();
        while !k.is_null() {
            if (*k).path == shown {
                if (*k).accpath == shown {
                    (*k).accpath = s.kids_path.get();
                }
                (*k).path = s.kids_path.get();
                (*k).pathlen = ((*k).pathlen as isize - s.kids_delta.get()) as u16;
            }
            k = (*k).link.cast();
        }
        let e = s.ent.replace(core::ptr::null_mut());
        if !e.is_null() {
            (*e).path = s.path.get();
            (*e).accpath = s.accpath.get();
            (*e).pathlen = s.pathlen.get();
            let n = usize::from(s.namelen.replace(0));
            if n > 0 {
                let saved = &*s.name.get();
                let name = core::ptr::addr_of_mut!((*e).name).cast::<u8>();
                core::ptr::copy_nonoverlapping(saved.as_ptr(), name, n + 1);
                (*e).namelen = n as u16;
            }
        }
    }
}

/// Shows `e` in mount form when its path is in the tree (slot permitting).
unsafe fn show(fts: *mut c_void, e: *mut FtsEnt) {
    if e.is_null() || !config::active() {
        return;
    }
    let Some((slot, n, grown)) = mount_form(fts, (*e).path) else {
        return;
    };
    let buf = &mut *slot.buf.get();
    // The entry's length in mount form (fts's path buffer can hold more than the entry
    // after `fts_children`).
    let Ok(len) = u16::try_from((*e).pathlen as isize + grown) else {
        return;
    };
    slot.ent.set(e);
    slot.path.set((*e).path);
    slot.accpath.set((*e).accpath);
    slot.pathlen.set((*e).pathlen);
    let vp = buf.as_mut_ptr().cast::<c_char>();
    if (*e).accpath == (*e).path {
        (*e).accpath = vp;
    }
    (*e).path = vp;
    (*e).pathlen = len;
    // A root's name is the path it was opened with; it is shown in mount form too when
    // that fits the allocation (it does when the mount path is the shorter).
    let name = core::ptr::addr_of_mut!((*e).name).cast::<u8>();
    let namelen = usize::from((*e).namelen);
    let shown_len = usize::from(len);
    if (*e).level == 0 && shown_len <= namelen && shown_len <= n {
        let saved = &mut *slot.name.get();
        if let Some(dst) = saved.get_mut(..=namelen) {
            core::ptr::copy_nonoverlapping(name, dst.as_mut_ptr(), namelen + 1);
            slot.namelen.set(namelen as u16);
            core::ptr::copy_nonoverlapping(buf.as_ptr(), name, shown_len);
            *name.add(shown_len) = 0;
            (*e).namelen = len;
        }
    }
}

/// The slot of `fts`, claimed if it has none (none when all are in use).
fn claim(fts: *mut c_void) -> Option<&'static Shown> {
    slot_of(fts).or_else(|| {
        SHOWN.iter().find(|s| {
            s.fts
                .compare_exchange(
                    core::ptr::null_mut(),
                    fts,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        })
    })
}

/// Writes the mount form of what fts's path buffer `path` holds into the slot of `fts`:
/// the slot, its length, and how much longer it is than fts's form. `None` outside the
/// tree or with every slot in use.
unsafe fn mount_form(
    fts: *mut c_void,
    path: *const c_char,
) -> Option<(&'static Shown, usize, isize)> {
    let real_bytes = crate::cstr::cbytes(path).unwrap_or(&[]);
    under(real_bytes, config::get().prefixes().tree)?;
    let slot = claim(fts)?;
    let n = virtual_of(real_bytes, &mut *slot.buf.get())?;
    Some((slot, n, n as isize - real_bytes.len() as isize))
}

/// Shows an `fts_children` list in mount form: its entries share fts's path buffer, so
/// they all get the mount form of what it holds, each length grown by the same amount.
unsafe fn show_children(fts: *mut c_void, first: *mut FtsEnt) {
    if first.is_null() || !config::active() {
        return;
    }
    let shared = (*first).path;
    let Some((slot, _, grown)) = mount_form(fts, shared) else {
        return;
    };
    let vp = (*slot.buf.get()).as_mut_ptr().cast::<c_char>();
    let mut k = first;
    while !k.is_null() {
        if (*k).path == shared {
            if let Ok(len) = u16::try_from((*k).pathlen as isize + grown) {
                if (*k).accpath == shared {
                    (*k).accpath = vp;
                }
                (*k).path = vp;
                (*k).pathlen = len;
            }
        }
        k = (*k).link.cast();
    }
    slot.kids.set(first);
    slot.kids_path.set(shared);
    slot.kids_delta.set(grown);
}

unsafe fn release(fts: *mut c_void) {
    if let Some(s) = slot_of(fts) {
        s.fts.store(core::ptr::null_mut(), Ordering::Release);
    }
}

macro_rules! fts_hooks {
    ($read:ident, $children:ident, $close:ident) => {
        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $read(fts: *mut c_void) -> *mut c_void {
            let f = real!($read);
            restore(fts);
            let e = f(fts);
            show(fts, e.cast());
            e
        }

        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $children(fts: *mut c_void, opts: c_int) -> *mut c_void {
            let f = real!($children);
            // The entry fts_read returned stays in mount form.
            let current = slot_of(fts).map_or(core::ptr::null_mut(), |s| s.ent.get());
            restore(fts);
            let kids = f(fts, opts);
            show(fts, current);
            show_children(fts, kids.cast());
            kids
        }

        #[cfg_attr(not(test), no_mangle)]
        pub unsafe extern "C" fn $close(fts: *mut c_void) -> c_int {
            let f = real!($close);
            restore(fts);
            release(fts);
            f(fts)
        }
    };
}

fts_hooks!(fts_read, fts_children, fts_close);
fts_hooks!(fts64_read, fts64_children, fts64_close);
