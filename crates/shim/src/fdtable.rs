//! Which fds refer to something inside the tree, so `*at(dirfd, "rel")` calls and
//! `fdopendir`/`fchdir` know they are in the tree. A lock-free bitmap for fds below
//! 65536 (higher fds are simply never marked). A stale mark costs one extra check; a
//! missing one loses hydration, so the hooks err towards marking.
//!
//! Inherited fds are looked at on the first question about a mark, not at load: most
//! programs never ask one (`true`, `cat`, `git status` use paths, not dirfds), and the walk
//! of `/proc/self/fd` was most of the system calls the shim added to starting a program.
//! Marks set and cleared by the hooks before the walk stay right: the walk only adds the
//! fds that are open, and in the tree, when it runs.

use core::ffi::c_int;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub const MAX_FD: usize = 65536;
const WORDS: usize = MAX_FD / 64;

static BITS: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];

/// Whether the inherited fds have been walked. Two threads may both walk: marking is
/// idempotent.
static SCANNED: AtomicBool = AtomicBool::new(false);

#[inline]
fn slot(fd: c_int) -> Option<(&'static AtomicU64, u64)> {
    let fd = usize::try_from(fd).ok()?;
    let word = BITS.get(fd / 64)?;
    Some((word, 1u64 << (fd % 64)))
}

/// Writes only happen in the process that owns the table (not in a vfork child, which
/// shares it with its parent); the check is made only when a bit would change.
#[inline]
fn may_write() -> bool {
    #[cfg(test)]
    return true;
    #[cfg(not(test))]
    crate::owner::owns_state()
}

#[inline]
pub fn mark(fd: c_int) {
    if let Some((w, bit)) = slot(fd) {
        if w.load(Ordering::Relaxed) & bit == 0 && may_write() {
            w.fetch_or(bit, Ordering::Relaxed);
        }
    }
}

#[inline]
pub fn clear(fd: c_int) {
    if let Some((w, bit)) = slot(fd) {
        // Skip the atomic write (and the cache line bounce) for the common unmarked fd.
        if w.load(Ordering::Relaxed) & bit != 0 && may_write() {
            w.fetch_and(!bit, Ordering::Relaxed);
        }
    }
}

#[inline]
pub fn is_marked(fd: c_int) -> bool {
    if !SCANNED.load(Ordering::Acquire) {
        return first_question(fd);
    }
    bit_is_set(fd)
}

#[inline]
fn bit_is_set(fd: c_int) -> bool {
    slot(fd).is_some_and(|(w, bit)| w.load(Ordering::Relaxed) & bit != 0)
}

#[cold]
fn first_question(fd: c_int) -> bool {
    if may_write() {
        scan_inherited();
        SCANNED.store(true, Ordering::Release);
        bit_is_set(fd)
    } else {
        // A vfork child must not fill its parent's table with its own fds: it asks about
        // this one fd and leaves the walk to the owner.
        bit_is_set(fd) || points_into_tree(fd)
    }
}

/// Whether `/proc/self/fd/<fd>` names a path in the tree.
fn points_into_tree(fd: c_int) -> bool {
    let Ok(n) = u64::try_from(fd) else {
        return false;
    };
    let mut path = [0u8; 40];
    let mut w = crate::buf::Writer::new(&mut path);
    if w.put(b"/proc/self/fd/")
        .and_then(|()| w.put_u64(n))
        .is_none()
    {
        return false;
    }
    let Some(c) = crate::buf::as_cstr(w.buf, w.len) else {
        return false;
    };
    let mut link = [0u8; crate::buf::PATH_MAX];
    match rustix::fs::readlinkat_raw(rustix::fs::CWD, c, &mut link[..]) {
        Ok(n) => in_tree(link.get(..n).unwrap_or(&[])),
        Err(_) => false,
    }
}

fn in_tree(link: &[u8]) -> bool {
    crate::path::under(link, crate::config::get().prefixes().tree).is_some()
}

#[inline]
pub fn set(fd: c_int, marked: bool) {
    if marked {
        mark(fd)
    } else {
        clear(fd)
    }
}

/// `to` now refers to what `from` refers to (dup family).
#[inline]
pub fn copy(from: c_int, to: c_int) {
    set(to, is_marked(from));
}

/// Clears every mark in `lo..=hi` (close_range, closefrom).
pub fn clear_range(lo: u64, hi: u64) {
    if !may_write() {
        return;
    }
    let hi = hi.min(MAX_FD as u64 - 1);
    let mut fd = lo;
    while fd <= hi {
        let i = (fd / 64) as usize;
        let first = fd % 64;
        let last = if hi / 64 == fd / 64 { hi % 64 } else { 63 };
        let width = last - first + 1;
        let mask = if width == 64 {
            u64::MAX
        } else {
            ((1u64 << width) - 1) << first
        };
        if let Some(w) = BITS.get(i) {
            w.fetch_and(!mask, Ordering::Relaxed);
        }
        fd = (i as u64 + 1) * 64;
    }
}

/// Marks the open fds that point into the tree: walks `/proc/self/fd` with raw syscalls.
fn scan_inherited() {
    use rustix::fd::AsRawFd;
    use rustix::fs::{open, readlinkat_raw, Mode, OFlags, RawDir};
    if !crate::config::active() {
        return;
    }
    let Ok(dir) = open(
        c"/proc/self/fd",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    let own = dir.as_raw_fd();
    let mut dents = [core::mem::MaybeUninit::<u8>::uninit(); 2048];
    let mut iter = RawDir::new(&dir, &mut dents);
    let mut link = [0u8; crate::buf::PATH_MAX];
    while let Some(Ok(entry)) = iter.next() {
        let name = entry.file_name();
        let Some(fd) = parse_fd(name.to_bytes()) else {
            continue;
        };
        if fd == own {
            continue;
        }
        if let Ok(n) = readlinkat_raw(&dir, name, &mut link[..]) {
            if in_tree(link.get(..n).unwrap_or(&[])) {
                mark(fd);
            }
        }
    }
}

fn parse_fd(name: &[u8]) -> Option<c_int> {
    if name.is_empty() || name.len() > 9 {
        return None;
    }
    let mut v: c_int = 0;
    for &b in name {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + c_int::from(b - b'0');
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The table is process-global: each test uses its own fd range.

    #[test]
    fn mark_clear_copy() {
        assert!(!is_marked(1000));
        mark(1000);
        assert!(is_marked(1000));
        copy(1000, 1001);
        assert!(is_marked(1001));
        copy(1002, 1001);
        assert!(!is_marked(1001));
        clear(1000);
        assert!(!is_marked(1000));
        mark(-1);
        mark(MAX_FD as c_int);
        assert!(!is_marked(-1));
        assert!(!is_marked(MAX_FD as c_int));
    }

    #[test]
    fn ranges() {
        for fd in 2000..2200 {
            mark(fd);
        }
        clear_range(2010, 2130);
        for fd in 2000..2200 {
            assert_eq!(is_marked(fd), !(2010..=2130).contains(&fd), "fd {fd}");
        }
        clear_range(2000, 2199);
        assert!((2000..2200).all(|fd| !is_marked(fd)));
        // `hi` past the table is clamped (and the last fd is reachable).
        mark(60000);
        mark(MAX_FD as c_int - 1);
        assert!(is_marked(MAX_FD as c_int - 1));
        clear_range(60000, u32::MAX as u64);
        assert!(!is_marked(60000) && !is_marked(MAX_FD as c_int - 1));
        // A whole aligned word.
        for fd in 3072..3136 {
            mark(fd);
        }
        clear_range(3072, 3135);
        assert!((3072..3136).all(|fd| !is_marked(fd)));
    }

    #[test]
    fn fd_names() {
        assert_eq!(parse_fd(b"17"), Some(17));
        assert_eq!(parse_fd(b"."), None);
        assert_eq!(parse_fd(b""), None);
        assert_eq!(parse_fd(b"1x"), None);
    }
}
