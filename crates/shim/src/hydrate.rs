//! Hydration: turning placeholders into real content by asking the agent, on slow paths
//! only. The fast path of an in-tree call costs at most one xattr read that answers
//! "no marker".

use crate::agent;
use crate::buf::{as_cstr, PATH_MAX};
use crate::config;
use crate::loc::{Loc, Physical};
use crate::marker::{marker_at, marker_fd, Mark};
use crate::path::{parent_end, parent_of, rel_in_tree};
use crate::sys;
use core::ffi::{c_char, c_int};
use s3shim_protocol::wire::Op;

/// What a hook checks before its real call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pre {
    Nothing,
    /// The call creates an entry: its parent must be listed first, or the new entry
    /// would shadow (or wrongly coexist with) a remote one of the same name.
    Create,
    /// The call reads the directory itself (scandir, chdir, rmdir): list it first.
    ListDir,
    /// The call needs the file's bytes (exec, truncate to a non-zero length, fopen "r"):
    /// fetch them first.
    Fetch,
    /// The call replaces the file's whole content (`O_TRUNC`, `truncate(0)`, fopen "w"):
    /// a placeholder is discarded through the agent first (never fetched), so that a
    /// fetch in progress cannot write into the new content. `create`: the call may also
    /// create the entry (the parent must be listed, as for [`Pre::Create`]).
    Replace {
        create: bool,
    },
}

/// Runs a pre-check for an in-tree location. Missing entries are not an error here: the
/// real call will report them (and the ENOENT path takes over).
pub fn pre(loc: &Loc, what: Pre) -> Result<(), c_int> {
    match what {
        Pre::Nothing => Ok(()),
        Pre::Create => ensure_parent_listed(loc),
        Pre::ListDir => {
            if mark_of(loc) == Some(Mark::Unlisted) {
                send_for(loc, Op::ListDir)
            } else {
                Ok(())
            }
        }
        Pre::Fetch => {
            if mark_of(loc) == Some(Mark::Placeholder) {
                send_for(loc, Op::Fetch)
            } else {
                Ok(())
            }
        }
        Pre::Replace { create } => {
            if create {
                ensure_parent_listed(loc)?;
            }
            if mark_of(loc) == Some(Mark::Placeholder) {
                send_for(loc, Op::Discard)
            } else {
                Ok(())
            }
        }
    }
}

fn mark_of(loc: &Loc) -> Option<Mark> {
    let mut buf = [0u8; PATH_MAX];
    let p = loc.xattr_path(&mut buf)?;
    marker_at(p).ok()
}

/// Sends `op` for the location's own path.
fn send_for(loc: &Loc, op: Op) -> Result<(), c_int> {
    let mut abs = [0u8; PATH_MAX];
    let n = loc.real_abs(&mut abs).ok_or(libc::EIO)?;
    send_abs(op, abs.get(..n).unwrap_or(&[]))
}

/// Fetches the placeholder at a normalised real path under the tree.
pub fn fetch_abs(abs: &[u8]) -> Result<(), c_int> {
    send_abs(Op::Fetch, abs)
}

/// Makes the subtree at a normalised real path under the tree local, bytes included.
pub fn fetch_tree_abs(abs: &[u8]) -> Result<(), c_int> {
    send_abs(Op::FetchTree, abs)
}

/// Lists the directory at a normalised real path under the tree.
pub fn list_abs(abs: &[u8]) -> Result<(), c_int> {
    send_abs(Op::ListDir, abs)
}

/// Sends `op` for a normalised real path under the tree.
fn send_abs(op: Op, abs: &[u8]) -> Result<(), c_int> {
    let cfg = config::get();
    let rel = rel_in_tree(&cfg.prefixes(), abs).ok_or(libc::EIO)?;
    agent::request(op, rel)
}

/// `Create`: one xattr read on the parent; `Lookup` when it is unlisted.
fn ensure_parent_listed(loc: &Loc) -> Result<(), c_int> {
    let mut buf = [0u8; PATH_MAX];
    let Some(p) = loc.xattr_path(&mut buf) else {
        return Ok(());
    };
    let mut parent = [0u8; PATH_MAX];
    let mut w = crate::buf::Writer::new(&mut parent);
    if w.put(parent_of(p.to_bytes())).is_none() {
        return Ok(());
    }
    let Some(pc) = w.cstr() else {
        return Ok(());
    };
    if marker_at(pc) == Ok(Mark::Unlisted) {
        send_for(loc, Op::Lookup)
    } else {
        Ok(())
    }
}

/// What a caller does after its in-tree call failed with ENOENT (the lookup rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterMiss {
    /// The agent listed what was unlisted: run the pre-check and the call once more,
    /// and take that result.
    LookedUp,
    /// A directory on the way may have been listed just after the call: call once more
    /// and apply the rule again to a new ENOENT.
    CallAgain,
    /// The path's own parent directory is listed, perhaps just after the call: call once
    /// more, and a new ENOENT is the truth (a listed directory holds every entry it will
    /// get from S3; its marker goes last).
    CallAgainOnce,
    /// The ENOENT is the truth.
    Enoent,
    /// The agent failed: return this errno.
    Failed(c_int),
}

/// The lookup rule for a call on the in-tree locations `locs` (two for rename and
/// link) that failed with ENOENT. `called_again` is the caller's, false for its first
/// call and kept between rounds: a listed directory is worth one more call, not two.
pub fn after_miss<'a>(
    locs: impl IntoIterator<Item = &'a Loc>,
    called_again: &mut bool,
) -> AfterMiss {
    let mut listed = false;
    let mut all_parents = true;
    for loc in locs {
        match lookup_missing(loc) {
            Missing::Retry => return AfterMiss::LookedUp,
            Missing::Listed { parent } => {
                listed = true;
                all_parents &= parent;
            }
            Missing::Failed(e) => return AfterMiss::Failed(e),
            Missing::Authoritative => {}
        }
    }
    if listed && !*called_again {
        *called_again = true;
        if all_parents {
            AfterMiss::CallAgainOnce
        } else {
            AfterMiss::CallAgain
        }
    } else {
        AfterMiss::Enoent
    }
}

/// What the lookup rule found for one location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// The agent listed what was unlisted: try the call once more.
    Retry,
    /// The deepest existing ancestor is listed now, but its listing may have finished
    /// between the failed call and this check (entries appear while a directory is being
    /// listed; its marker goes last): call once more. If that fails with ENOENT too and
    /// the listed directory was the path's own parent (`parent`), that is the truth;
    /// otherwise the lookup rule runs again (the listing may have brought a directory
    /// further down, unlisted).
    Listed { parent: bool },
    /// The ENOENT is the truth: the path is outside the tree or an ancestor is not a
    /// directory.
    Authoritative,
    /// The agent failed: return this errno.
    Failed(c_int),
}

/// The *missing-entry* rule: find the deepest existing ancestor; only if it is unlisted,
/// ask the agent to look the path up. A negative lookup in a listed directory costs one
/// xattr read.
fn lookup_missing(loc: &Loc) -> Missing {
    if let Some(m) = lookup_missing_nearby(loc) {
        return m;
    }
    let mut abs = [0u8; PATH_MAX];
    let Some(n) = loc.real_abs(&mut abs) else {
        return Missing::Authoritative;
    };
    let cfg = config::get();
    let tree_len = cfg.tree_len;
    if rel_in_tree(&cfg.prefixes(), abs.get(..n).unwrap_or(&[])).is_none() {
        return Missing::Authoritative;
    }
    let mut end = n;
    let mut probe = [0u8; PATH_MAX];
    let mut marker = |end: usize| {
        let mut w = crate::buf::Writer::new(&mut probe);
        w.put(abs.get(..end).unwrap_or(&[]))?;
        Some(marker_at(as_cstr(w.buf, w.len)?))
    };
    // The missing ancestor just below `end` (None while `end` is the parent).
    let mut below = None;
    loop {
        let Some(pe) = parent_end(&abs, end) else {
            return Missing::Authoritative;
        };
        if pe < tree_len {
            return Missing::Authoritative;
        }
        if end < n {
            below = Some(end);
        }
        end = pe;
        let Some(found) = marker(end) else {
            return Missing::Authoritative;
        };
        match found {
            Ok(Mark::Unlisted) => {
                return match send_abs(Op::Lookup, abs.get(..n).unwrap_or(&[])) {
                    Ok(()) => Missing::Retry,
                    Err(e) => Missing::Failed(e),
                };
            }
            Err(libc::ENOENT) => continue,
            Ok(Mark::None) => {
                // A listed directory above a missing one: a second look at that one
                // settles it (the listing was complete before the look).
                return match below.map(&mut marker) {
                    None => Missing::Listed { parent: true },
                    Some(Some(Err(libc::ENOENT))) => Missing::Authoritative,
                    Some(_) => Missing::Listed { parent: false },
                };
            }
            // A file (ENOTDIR), or unreadable: nothing to look up.
            _ => return Missing::Authoritative,
        }
    }
}

/// The common misses, answered from where the caller's relative path starts: a plain
/// path relative to the cwd (in the tree) or to a marked dirfd. Markers are read through
/// paths relative to the cwd, or through `/proc/self/fd/N/…`, so neither `getcwd` nor a
/// `readlink` of the fd is needed. Walks up the path's own ancestors to the first that
/// exists:
/// * the parent, listed: [`Missing::Listed`] with `parent` (one more call settles it);
/// * a higher one, listed: the ancestor below it is looked at once more; still missing,
///   the ENOENT is the truth (the listing, complete before that second look, did not
///   bring it), with no further call;
/// * unlisted, or anything else unusual: `None`, the full rule decides.
fn lookup_missing_nearby(loc: &Loc) -> Option<Missing> {
    let rel = loc.relative_in_tree()?.to_bytes();
    if !crate::path::is_plain(rel) {
        return None;
    }
    let mut buf = [0u8; PATH_MAX];
    let mut base = 0;
    if loc.dirfd != libc::AT_FDCWD {
        let mut w = crate::buf::Writer::new(&mut buf);
        w.put(b"/proc/self/fd/")?;
        w.put_u64(u64::try_from(loc.dirfd).ok()?)?;
        base = w.len;
    }
    // The marker of the ancestor `rel[..end]` (`.` or the dirfd itself when empty).
    let mut marker = |end: usize| -> Option<Result<Mark, c_int>> {
        let mut w = crate::buf::Writer::new(buf.get_mut(base..)?);
        match (end, base) {
            (0, 0) => w.put(b".")?,
            // The dirfd itself (writing nothing still ends the string here).
            (0, _) => w.put(b"")?,
            (_, 0) => w.put(rel.get(..end)?)?,
            _ => {
                w.put(b"/")?;
                w.put(rel.get(..end)?)?;
            }
        }
        let n = base + w.len;
        Some(marker_at(as_cstr(&buf, n)?))
    };
    let trimmed = rel.get(..rel.iter().rposition(|&b| b != b'/')? + 1)?;
    let parent_of = |end: usize| trimmed.get(..end)?.iter().rposition(|&b| b == b'/');
    let parent = parent_of(trimmed.len()).unwrap_or(0);
    let mut end = parent;
    // The missing ancestor just below `end` (None while `end` is the parent).
    let mut below: Option<usize> = None;
    loop {
        match marker(end)? {
            Ok(Mark::None) => {
                let Some(child) = below else {
                    return Some(Missing::Listed { parent: true });
                };
                return match marker(child)? {
                    Err(libc::ENOENT) => Some(Missing::Authoritative),
                    _ => None,
                };
            }
            Err(libc::ENOENT) if end > 0 => {
                below = Some(end);
                end = parent_of(end).unwrap_or(0);
            }
            Ok(Mark::Unlisted) | Err(libc::ENOENT) => return None,
            // A file on the way (ENOTDIR), or unreadable: nothing to look up.
            _ => return Some(Missing::Authoritative),
        }
    }
}

/// The *open* rule: after a successful in-tree open (not `O_PATH`). Returns the fd to hand
/// to the caller (possibly a new one from `reopen`) or -1 with errno set. `fd` is closed
/// with the hook's `close` (which also drops the hook's fd-table mark).
pub fn after_open(
    fd: c_int,
    flags: c_int,
    loc: &Loc,
    close: impl Fn(c_int),
    reopen: impl FnOnce() -> c_int,
) -> c_int {
    match marker_fd(fd) {
        Mark::None => fd,
        Mark::Unlisted => match send_fd(fd, loc, Op::ListDir) {
            Ok(()) => fd,
            Err(e) => {
                close(fd);
                crate::ret::Ret::fail(e)
            }
        },
        Mark::Placeholder => {
            let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
            if writes && flags & libc::O_TRUNC != 0 {
                // The content is being replaced: the bytes in S3 are not needed. (The
                // `Replace` pre-check normally discarded the marker already; this covers a
                // placeholder that appeared between the check and the open.)
                crate::marker::unmark_fd(fd);
                return fd;
            }
            let mut abs = [0u8; PATH_MAX];
            let Some(n) = fd_or_loc_path(fd, loc, &mut abs) else {
                close(fd);
                return crate::ret::Ret::fail(libc::EIO);
            };
            close(fd);
            match send_abs(Op::Fetch, abs.get(..n).unwrap_or(&[])) {
                Ok(()) => reopen(),
                Err(e) => crate::ret::Ret::fail(e),
            }
        }
    }
}

/// The real path of an open fd (`/proc/self/fd`), else the location's.
fn fd_or_loc_path(fd: c_int, loc: &Loc, out: &mut [u8]) -> Option<usize> {
    sys::fd_path(fd, out).or_else(|| loc.real_abs(out))
}

fn send_fd(fd: c_int, loc: &Loc, op: Op) -> Result<(), c_int> {
    let mut abs = [0u8; PATH_MAX];
    let n = fd_or_loc_path(fd, loc, &mut abs).ok_or(libc::EIO)?;
    send_abs(op, abs.get(..n).unwrap_or(&[]))
}

/// The *list-before-use* rule for fd-based directory calls (`fdopendir`, `fchdir`,
/// `opendir` after the open): list the directory if it is unlisted.
pub fn list_fd_if_unlisted(fd: c_int) -> Result<(), c_int> {
    if marker_fd(fd) != Mark::Unlisted {
        return Ok(());
    }
    let mut abs = [0u8; PATH_MAX];
    let n = sys::fd_path(fd, &mut abs).ok_or(libc::EIO)?;
    send_abs(Op::ListDir, abs.get(..n).unwrap_or(&[]))
}

/// The *walker* rule: list a whole subtree (for walkers whose reads the shim cannot see). A
/// root that is not in the cache yet is looked up first (its ancestors may be unlisted).
pub fn list_tree(loc: &Loc) -> Result<(), c_int> {
    let mut buf = [0u8; PATH_MAX];
    if let Some(p) = loc.xattr_path(&mut buf) {
        if marker_at(p) == Err(libc::ENOENT) {
            if let Missing::Failed(e) = lookup_missing(loc) {
                return Err(e);
            }
        }
    }
    send_for(loc, Op::ListTree)
}

/// [`Loc::resolve`], listing each unlisted directory a `..` resolution stops at (the
/// resolution itself never asks the agent).
///
/// # Safety
/// As [`Loc::resolve`].
#[inline(always)]
pub unsafe fn resolve(loc: &mut Loc, dirfd: c_int, path: *const c_char) -> Result<(), c_int> {
    match loc.resolve(dirfd, path) {
        Ok(()) => Ok(()),
        Err(stop) => match stop.errno() {
            Some(e) => Err(e),
            // SAFETY: the caller's contract, unchanged.
            None => unsafe { resolve_listing(loc, dirfd, path) },
        },
    }
}

/// [`resolve`] for a path [`crate::loc::scan`] already read.
///
/// # Safety
/// As [`Loc::resolve_scanned`].
#[inline(always)]
pub unsafe fn resolve_scanned(
    loc: &mut Loc,
    dirfd: c_int,
    path: *const c_char,
    bytes: &[u8],
    plain: bool,
) -> Result<(), c_int> {
    match loc.resolve_scanned(dirfd, path, bytes, plain) {
        Ok(()) => Ok(()),
        Err(stop) => match stop.errno() {
            Some(e) => Err(e),
            // SAFETY: the caller's contract, unchanged (the path is read again: only
            // `dirfd` and `path` stay live across the fast path's call).
            None => unsafe { resolve_listing(loc, dirfd, path) },
        },
    }
}

/// Most directories listed for one resolution before it is made without listing (each
/// listing normally lets it go one directory deeper).
const MAX_LISTINGS: usize = 40;

/// Lists the directory `loc` names and resolves `(dirfd, path)` again, until the
/// resolution needs no listing. A directory still unlisted after its listing, or too
/// many, end the listing: the last try resolves without it, as the kernel would.
///
/// # Safety
/// As [`Loc::resolve`].
#[cold]
#[inline(never)]
unsafe fn resolve_listing(loc: &mut Loc, dirfd: c_int, path: *const c_char) -> Result<(), c_int> {
    let mut last = [0u8; PATH_MAX];
    let mut last_len = None;
    let mut listings = 0;
    loop {
        let dir = loc.bytes();
        let repeated = last_len.and_then(|n| last.get(..n)) == Some(dir);
        let may_list = !repeated && listings < MAX_LISTINGS;
        if may_list {
            list_abs(dir)?;
            listings += 1;
            last_len = crate::buf::Writer::new(&mut last)
                .put(dir)
                .map(|_| dir.len());
        }
        *loc = Loc::new();
        loc.may_list = may_list;
        // SAFETY: the caller's contract.
        match unsafe { loc.resolve(dirfd, path) } {
            Ok(()) => return Ok(()),
            Err(stop) => {
                if let Some(e) = stop.errno() {
                    return Err(e);
                }
            }
        }
    }
}

/// [`Loc::physical`], listing each unlisted directory it stops at, as [`resolve`] does.
pub fn physical(loc: &Loc, follow_last: bool) -> Option<Result<(Loc, bool), c_int>> {
    let mut last = [0u8; PATH_MAX];
    let mut last_len = None;
    for _ in 0..=MAX_LISTINGS {
        match loc.physical(follow_last, true)? {
            Err(e) => return Some(Err(e)),
            Ok((l, Physical::Resolved { followed })) => return Some(Ok((l, followed))),
            Ok((dir, Physical::Unlisted)) => {
                let d = dir.bytes();
                if last_len.and_then(|n| last.get(..n)) == Some(d) {
                    break;
                }
                if let Err(e) = list_abs(d) {
                    return Some(Err(e));
                }
                last_len = crate::buf::Writer::new(&mut last).put(d).map(|_| d.len());
            }
        }
    }
    // Listing did not help: resolve without it, as the kernel would.
    match loc.physical(follow_last, false)? {
        Ok((l, Physical::Resolved { followed })) => Some(Ok((l, followed))),
        Ok((_, Physical::Unlisted)) => None,
        Err(e) => Some(Err(e)),
    }
}
