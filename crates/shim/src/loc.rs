//! A path argument resolved through the mapping core: what to pass to the real function
//! and whether the call is inside the tree (so hydration applies).
//!
//! * absolute: [`map_abs`] (prefix compare; normalisation only under the mount or when
//!   the path has `..`);
//! * relative to `AT_FDCWD`: in the tree when the cwd is (flag check), passed unchanged;
//!   a `..` component, or a cwd above the mount with a matching first component, is
//!   resolved lexically against the virtual cwd and mapped as absolute;
//! * relative to a dirfd: passed unchanged, in the tree when the dirfd is marked;
//! * empty (`AT_EMPTY_PATH`) or NULL: never mapped.

use crate::buf::{as_cstr, Writer, PATH_MAX};
use crate::config;
use crate::cstr::cbytes;
use crate::cwd;
use crate::fdtable;
use crate::path::{self, join, map_abs, normalize, reverse, Abs, Rev};
use crate::resolve;
use crate::sys;
use core::ffi::{c_char, c_int, CStr};
use core::mem::MaybeUninit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// NULL or empty: an fd operation or the real function's own error.
    Empty,
    /// An absolute path (mapped or not).
    Abs,
    /// Relative to the cwd, passed unchanged.
    CwdRel,
    /// Relative to a dirfd, passed unchanged.
    DirRel,
}

/// Why [`Loc::resolve`] stopped without a location: an errno the call fails with (the
/// mapped path is too long, or a loop), or [`Stop::UNLISTED`]. One `c_int`, 0 for
/// `UNLISTED` (no errno is 0), so the hooks' fast path returns and tests it as it did a
/// plain errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop(c_int);

impl Stop {
    /// Resolving `..` met a missing component in a directory not listed yet; the `Loc`
    /// now names that directory: the caller lists it and resolves again.
    pub const UNLISTED: Stop = Stop(0);

    /// The errno, or `None` for [`Stop::UNLISTED`].
    #[inline]
    pub fn errno(self) -> Option<c_int> {
        (self != Stop::UNLISTED).then_some(self.0)
    }
}

impl From<c_int> for Stop {
    /// An errno (never 0).
    #[inline]
    fn from(e: c_int) -> Stop {
        Stop(if e == 0 { libc::EIO } else { e })
    }
}

/// What [`Loc::physical`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Physical {
    /// The resolved location, and whether a symlink was followed on the way.
    Resolved { followed: bool },
    /// The location names a directory not listed yet in which a component is missing.
    Unlisted,
}

pub struct Loc {
    pub dirfd: c_int,
    pub kind: Kind,
    pub in_tree: bool,
    /// Whether resolution may stop at an unlisted directory ([`Stop::UNLISTED`]); off
    /// for the last try after listing.
    pub may_list: bool,
    orig: *const c_char,
    /// `buf[..len]` holds the path to pass on when `mapped`.
    mapped: bool,
    len: usize,
    /// How many leading bytes of `buf` are initialised.
    init: usize,
    buf: MaybeUninit<[u8; PATH_MAX]>,
}

impl Loc {
    #[inline]
    pub fn new() -> Loc {
        Loc {
            dirfd: libc::AT_FDCWD,
            kind: Kind::Empty,
            in_tree: false,
            may_list: true,
            orig: core::ptr::null(),
            mapped: false,
            len: 0,
            init: 0,
            buf: MaybeUninit::uninit(),
        }
    }

    /// The first `room` bytes of the buffer (at most `PATH_MAX`), zeroed. Callers ask for
    /// what the mapped path can need (the tree's length plus the path's, plus 2), not all
    /// 4 KiB: zeroing the whole buffer on every call in the tree was most of the shim's
    /// cost per call there. The fast path never touches the buffer.
    fn buf_mut(&mut self, room: usize) -> &mut [u8] {
        let room = room.min(PATH_MAX);
        let p = self.buf.as_mut_ptr().cast::<u8>();
        self.mapped = true;
        self.init = room;
        // SAFETY: `p` is valid for PATH_MAX bytes and `room <= PATH_MAX`; the first `room`
        // bytes are initialised before the slice is made.
        unsafe {
            core::ptr::write_bytes(p, 0, room);
            core::slice::from_raw_parts_mut(p, room)
        }
    }

    fn buf(&self) -> Option<&[u8]> {
        if self.mapped && self.len < self.init {
            // SAFETY: the first `init` bytes were initialised by `buf_mut`.
            Some(unsafe { core::slice::from_raw_parts(self.buf.as_ptr().cast::<u8>(), self.len) })
        } else {
            None
        }
    }

    /// The path to pass to the real function.
    #[inline]
    pub fn ptr(&self) -> *const c_char {
        if self.mapped {
            self.buf.as_ptr().cast()
        } else {
            self.orig
        }
    }

    /// The caller's path as given, when it is passed on unchanged relative to a
    /// directory in the tree (the cwd or a marked dirfd): what the miss rules can probe
    /// relative to `dirfd` without asking the kernel where that directory is.
    pub fn relative_in_tree(&self) -> Option<&CStr> {
        if self.mapped || !self.in_tree || !matches!(self.kind, Kind::CwdRel | Kind::DirRel) {
            return None;
        }
        // SAFETY: `orig` is the caller's C string (the kind says it was readable).
        Some(unsafe { CStr::from_ptr(self.orig) })
    }

    /// The bytes of the path passed on.
    pub fn bytes(&self) -> &[u8] {
        match self.buf() {
            Some(b) => b,
            // SAFETY: `orig` is the caller's C string (or NULL).
            None => unsafe { cbytes(self.orig) }.unwrap_or(&[]),
        }
    }

    /// Whether the path given was NULL or not readable (see [`cbytes`]): the real function
    /// then fails on its own.
    pub fn unreadable(&self) -> bool {
        // SAFETY: `cbytes` checks the pointer before reading.
        self.kind == Kind::Empty && unsafe { cbytes(self.orig) }.is_none()
    }

    /// Resolves `(dirfd, path)`. `Err` only when the mapped path is too long, or when a
    /// `..` needs an unlisted directory listed first ([`Stop::UNLISTED`]).
    ///
    /// # Safety
    /// `path` is NULL or a valid C string that outlives `self`.
    #[inline]
    pub unsafe fn resolve(&mut self, dirfd: c_int, path: *const c_char) -> Result<(), Stop> {
        self.dirfd = dirfd;
        self.orig = path;
        match crate::cstr::cpath(path) {
            Some((bytes, plain)) => self.resolve_slow(dirfd, bytes, plain),
            None => Ok(()),
        }
    }

    /// [`Loc::resolve`] for a path [`scan`] did not pass through.
    ///
    /// # Safety
    /// As [`Loc::resolve`]; `bytes` and `plain` are what [`scan`] found in `path`.
    pub unsafe fn resolve_scanned(
        &mut self,
        dirfd: c_int,
        path: *const c_char,
        bytes: &[u8],
        plain: bool,
    ) -> Result<(), Stop> {
        self.dirfd = dirfd;
        self.orig = path;
        self.resolve_slow(dirfd, bytes, plain)
    }

    /// [`Loc::resolve`] past its fast path.
    #[inline(never)]
    fn resolve_slow(&mut self, dirfd: c_int, bytes: &[u8], plain: bool) -> Result<(), Stop> {
        self.resolve_lexically(dirfd, bytes, plain)?;
        if self.in_tree && !plain && path::has_dotdot(bytes) {
            // `..` in the tree means what the kernel would make of it (symlinks before it
            // count, and at the root it leaves for the mount's parent).
            self.resolve_physically()?;
        }
        Ok(())
    }

    fn resolve_physically(&mut self) -> Result<(), Stop> {
        match self.physical(false, self.may_list) {
            None => Ok(()),
            Some(Err(e)) => Err(Stop::from(e)),
            Some(Ok((l, found))) => {
                *self = l;
                match found {
                    Physical::Resolved { .. } => Ok(()),
                    Physical::Unlisted => Err(Stop::UNLISTED),
                }
            }
        }
    }

    /// The location resolved physically ([`crate::resolve::physical`]), or the unlisted
    /// directory that resolution stopped at (only when `may_list`); `None` when that does
    /// not apply (not under the tree or the mount).
    pub fn physical(
        &self,
        follow_last: bool,
        may_list: bool,
    ) -> Option<Result<(Loc, Physical), c_int>> {
        let mut input = [0u8; PATH_MAX];
        let n = self.unresolved_abs(&mut input)?;
        let mut out = [0u8; PATH_MAX];
        let input = input.get(..n)?;
        let (len, found) = match crate::resolve::physical(input, follow_last, may_list, &mut out) {
            Ok(r) => (
                r.len,
                Physical::Resolved {
                    followed: r.followed,
                },
            ),
            Err(resolve::Stop::Unlisted(len)) => (len, Physical::Unlisted),
            Err(resolve::Stop::Errno(e)) => return Some(Err(e)),
        };
        let real = out.get(..len).unwrap_or(&[]);
        Some(
            Loc::from_real(real)
                .map(|l| (l, found))
                .ok_or(libc::ENAMETOOLONG),
        )
    }

    fn resolve_lexically(&mut self, dirfd: c_int, bytes: &[u8], plain: bool) -> Result<(), c_int> {
        match bytes.first() {
            None => Ok(()),
            Some(b'/') => {
                self.kind = Kind::Abs;
                self.map_absolute(bytes, plain)
            }
            Some(_) if dirfd == libc::AT_FDCWD => {
                self.kind = Kind::CwdRel;
                self.resolve_cwd_rel(bytes, plain)
            }
            Some(_) => {
                self.kind = Kind::DirRel;
                self.in_tree = fdtable::is_marked(dirfd);
                if !self.in_tree && names_a_mount_component(bytes, plain) {
                    // Maybe a walk down from an ancestor of the mount (rsync opens each
                    // component with `openat(dirfd, name)`); only then the fd's path.
                    self.resolve_against_fd(bytes)?;
                }
                Ok(())
            }
        }
    }

    fn map_absolute(&mut self, bytes: &[u8], plain: bool) -> Result<(), c_int> {
        let cfg = config::get();
        let p = cfg.prefixes();
        // Without touching the buffer: a plain path under neither prefix.
        if plain && path::under(bytes, p.mount).is_none() && path::under(bytes, p.tree).is_none() {
            return Ok(());
        }
        let room = p.tree.len() + bytes.len() + 2;
        let r = path::map_abs_plain(&p, bytes, plain, self.buf_mut(room));
        self.settle(r)
    }

    fn settle(&mut self, r: Abs) -> Result<(), c_int> {
        match r {
            Abs::Outside => {
                self.mapped = false;
                Ok(())
            }
            Abs::Tree => {
                self.mapped = false;
                self.in_tree = true;
                Ok(())
            }
            Abs::Mapped(n) => {
                self.len = n;
                self.in_tree = true;
                Ok(())
            }
            Abs::Escaped(n) => {
                self.len = n;
                Ok(())
            }
            Abs::TooLong => Err(libc::ENAMETOOLONG),
        }
    }

    fn resolve_cwd_rel(&mut self, bytes: &[u8], plain: bool) -> Result<(), c_int> {
        let (state, depth) = cwd::state();
        let dotdot = !plain && path::has_dotdot(bytes);
        match state {
            cwd::INSIDE if !dotdot => {
                self.in_tree = true;
                Ok(())
            }
            cwd::ANCESTOR if !dotdot => {
                // Only `<next component of MOUNT>/...` can reach the mount, or a path
                // that becomes one once normalised (`./workspace`, `tmp//workspace`).
                let cfg = config::get();
                let next = path::nth_component(cfg.prefixes().mount, depth);
                if !plain || next.is_some_and(|n| n == path::first_component(bytes)) {
                    self.resolve_against_cwd(bytes)
                } else {
                    Ok(())
                }
            }
            _ if dotdot => self.resolve_against_cwd(bytes),
            _ => Ok(()),
        }
    }

    /// Joins a relative path to the directory `dirfd` refers to; mapped when that lands
    /// under the mount, otherwise left as it was.
    fn resolve_against_fd(&mut self, rel: &[u8]) -> Result<(), c_int> {
        let mut base = [0u8; PATH_MAX];
        let mut joined = [0u8; PATH_MAX];
        let Some(j) = sys::fd_path(self.dirfd, &mut base)
            .and_then(|n| join(base.get(..n)?, rel, &mut joined))
        else {
            return Ok(());
        };
        let p = config::get().prefixes();
        let abs = joined.get(..j).unwrap_or(&[]);
        match map_abs(&p, abs, self.buf_mut(p.tree.len() + abs.len() + 2)) {
            r @ (Abs::Mapped(_) | Abs::TooLong) => {
                self.kind = Kind::Abs;
                self.dirfd = libc::AT_FDCWD;
                self.settle(r)
            }
            // Not under the mount: the call goes on relative to the fd as it was.
            _ => {
                self.mapped = false;
                Ok(())
            }
        }
    }

    /// Joins a relative path to the virtual cwd and maps the result as absolute.
    fn resolve_against_cwd(&mut self, rel: &[u8]) -> Result<(), c_int> {
        let mut vcwd = [0u8; PATH_MAX];
        let Some(n) = virtual_cwd(&mut vcwd) else {
            // No cwd to resolve against: keep the old answer for the cwd state.
            self.in_tree = cwd::state().0 == cwd::INSIDE;
            return Ok(());
        };
        let mut joined = [0u8; PATH_MAX];
        let Some(j) = join(vcwd.get(..n).unwrap_or(&[]), rel, &mut joined) else {
            return Err(libc::ENAMETOOLONG);
        };
        let cfg = config::get();
        let p = cfg.prefixes();
        let abs = joined.get(..j).unwrap_or(&[]);
        let r = map_abs(&p, abs, self.buf_mut(p.tree.len() + abs.len() + 2));
        match r {
            // The result lies outside: pass the normalised absolute path (the
            // kernel's view of ".." from the cache dir would differ).
            Abs::Outside | Abs::Escaped(_) => {
                let Some(n) = normalize(abs, self.buf_mut(abs.len() + 2)) else {
                    return Err(libc::ENAMETOOLONG);
                };
                self.len = n;
                self.kind = Kind::Abs;
                Ok(())
            }
            Abs::Tree => {
                // The virtual cwd is never under TREE; keep the original.
                self.mapped = false;
                self.in_tree = true;
                Ok(())
            }
            other => {
                self.kind = Kind::Abs;
                self.settle(other)
            }
        }
    }

    /// The caller's path as an absolute real path under the tree, unnormalised (symlinks
    /// and `..` left for [`crate::resolve::physical`]); `None` when it is not under the
    /// tree or the mount.
    pub fn unresolved_abs(&self, out: &mut [u8]) -> Option<usize> {
        // SAFETY: `orig` is the caller's C string (or NULL).
        let orig = unsafe { cbytes(self.orig) }?;
        let mut base = [0u8; PATH_MAX];
        let mut joined = [0u8; PATH_MAX];
        let abs = match self.kind {
            Kind::Empty => return None,
            Kind::Abs if orig.first() == Some(&b'/') => orig,
            Kind::Abs | Kind::CwdRel => {
                let n = virtual_cwd(&mut base)?;
                let j = join(base.get(..n)?, orig, &mut joined)?;
                joined.get(..j)?
            }
            Kind::DirRel => {
                let n = sys::fd_path(self.dirfd, &mut base)?;
                let j = join(base.get(..n)?, orig, &mut joined)?;
                joined.get(..j)?
            }
        };
        let cfg = config::get();
        let p = cfg.prefixes();
        let mut w = Writer::new(out);
        if let Some(rest) = path::under(abs, p.mount) {
            w.put(p.tree)?;
            w.put(rest)?;
        } else {
            path::under(abs, p.tree)?;
            w.put(abs)?;
        }
        Some(w.len)
    }

    /// A location for the absolute real path `real`.
    fn from_real(real: &[u8]) -> Option<Loc> {
        let mut l = Loc::new();
        let mut w = Writer::new(l.buf_mut(real.len() + 1));
        w.put(real)?;
        l.len = w.len;
        l.kind = Kind::Abs;
        let cfg = config::get();
        l.in_tree = path::under(real, cfg.prefixes().tree).is_some();
        Some(l)
    }

    /// A path for the xattr syscalls naming the same entry from this process.
    pub fn xattr_path<'b>(&self, out: &'b mut [u8]) -> Option<&'b CStr> {
        let mut w = Writer::new(out);
        if self.kind == Kind::DirRel {
            sys::proc_fd_path(&mut w, self.dirfd)?;
            w.put(b"/")?;
        }
        w.put(self.bytes())?;
        let len = w.len;
        as_cstr(out, len)
    }

    /// The normalised absolute real path into `out`; slow paths only (may cost a
    /// `getcwd` or a `readlink` of `/proc/self/fd/N`).
    pub fn real_abs(&self, out: &mut [u8]) -> Option<usize> {
        let bytes = self.bytes();
        let mut base = [0u8; PATH_MAX];
        let mut joined = [0u8; PATH_MAX];
        let base_len = match self.kind {
            Kind::Empty => return None,
            Kind::Abs => return normalize(bytes, out),
            Kind::CwdRel => sys::getcwd(&mut base).ok()?,
            Kind::DirRel => sys::fd_path(self.dirfd, &mut base)?,
        };
        let j = join(base.get(..base_len)?, bytes, &mut joined)?;
        let joined_src = joined.get(..j)?;
        normalize(joined_src, out)
    }
}

impl Default for Loc {
    fn default() -> Self {
        Loc::new()
    }
}

/// What a hook does with a path argument before it builds a [`Loc`].
pub enum Scan<'a> {
    /// Forward the caller's arguments untouched: NULL or unreadable, empty, or a plain
    /// path that reaches neither the mount nor the tree.
    PassThrough,
    /// Resolve it ([`Loc::resolve_scanned`]) with its bytes and whether it is plain.
    Map(&'a [u8], bool),
}

/// The hooks' fast path, small enough to inline into each of them: most paths a program
/// passes are absolute, need no normalisation and start with neither prefix, and those
/// (and relative ones while the cwd is unrelated to the mount) cost a scan and two
/// prefix compares, without the [`Loc`] and its 4 KiB buffer.
///
/// # Safety
/// `path` is NULL or a valid C string that outlives the result.
#[inline(always)]
pub unsafe fn scan<'a>(dirfd: c_int, path: *const c_char) -> Scan<'a> {
    let Some((bytes, plain)) = crate::cstr::cpath(path) else {
        return Scan::PassThrough;
    };
    let passes = plain
        && match bytes.first() {
            None => true,
            Some(b'/') => {
                let p = config::get().prefixes();
                path::under(bytes, p.mount).is_none() && path::under(bytes, p.tree).is_none()
            }
            Some(_) => dirfd == libc::AT_FDCWD && cwd::state().0 == cwd::OUTSIDE,
        };
    if passes {
        Scan::PassThrough
    } else {
        Scan::Map(bytes, plain)
    }
}

/// Whether a path relative to a directory outside the tree can reach the mount: its first
/// component is one of the mount path's, or (when it is not plain) any component is.
fn names_a_mount_component(rel: &[u8], plain: bool) -> bool {
    let cfg = config::get();
    let mount = cfg.prefixes().mount;
    let names = |c: &[u8]| mount.split(|&b| b == b'/').any(|m| !m.is_empty() && m == c);
    if plain {
        return names(path::first_component(rel));
    }
    // `./workspace` or `../x/workspace` may reach it too; `..` alone cannot.
    rel.split(|&b| b == b'/')
        .any(|c| !matches!(c, b"" | b"." | b"..") && names(c))
}

/// The process's cwd as programs see it (MOUNT/... when it is in the tree).
pub fn virtual_cwd(out: &mut [u8]) -> Option<usize> {
    let mut real = [0u8; PATH_MAX];
    let n = sys::getcwd(&mut real).ok()?;
    let real = real.get(..n)?;
    let cfg = config::get();
    match reverse(&cfg.prefixes(), real, out) {
        Rev::Mapped(m) => Some(m),
        Rev::TooLong(_) => None,
        Rev::NotTree => {
            let mut w = Writer::new(out);
            w.put(real)?;
            Some(w.len)
        }
    }
}
