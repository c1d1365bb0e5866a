//! Physical path resolution inside the tree, for the two cases the kernel gets wrong
//! because the tree is not at the mount path: a symlink whose absolute target names the
//! mount path (the kernel looks for it outside the cache), and `..` (the lexical
//! mapping cannot see symlinks before it, and the kernel's `..` at the tree root would
//! land in the cache directory instead of the mount's parent).
//!
//! Slow paths only: one `lstat` per component (plus `readlink` per symlink). Stack
//! buffers, raw syscalls. It never asks the agent: a component missing from a directory
//! not listed yet stops the resolution with [`Stop::Unlisted`], and the caller lists that
//! directory and resolves again.

use crate::buf::{Writer, PATH_MAX};
use crate::config;
use crate::marker::{marker_at, Mark};
use crate::path::{map_abs, parent_of, under, Abs};
use core::ffi::{c_int, CStr};
use rustix::fd::BorrowedFd;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, CWD};

/// Most symlinks followed in one resolution (the kernel's limit).
const MAX_LINKS: u32 = 40;

/// Why [`physical`] stopped without a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `ELOOP` or `ENAMETOOLONG`, as the kernel would say.
    Errno(c_int),
    /// A component is missing from a directory not listed yet, whose path (absolute, under
    /// the tree) is in `out[..len]`: list it and resolve again. Only when `may_list`.
    Unlisted(usize),
}

impl From<c_int> for Stop {
    fn from(e: c_int) -> Stop {
        Stop::Errno(e)
    }
}

/// Resolves the absolute real path `input` (under the tree, unnormalised) component by
/// component as the kernel would if the tree were mounted at the mount path. The last
/// component is followed only when it is a symlink and `follow_last`. Writes the result
/// into `out` (NUL-terminated) and returns its length. [`Resolved::followed`] says
/// whether a symlink was followed on the way. Components past one that does not exist
/// are appended unresolved, so the real call reports what it would natively; with
/// `may_list`, a missing one in an unlisted directory stops with [`Stop::Unlisted`].
pub fn physical(
    input: &[u8],
    follow_last: bool,
    may_list: bool,
    out: &mut [u8],
) -> Result<Resolved, Stop> {
    let mut links = 0u32;
    let len = walk(input, follow_last, may_list, out, &mut links)?;
    Ok(Resolved {
        len,
        followed: links > 0,
    })
}

/// What [`physical`] wrote.
pub struct Resolved {
    pub len: usize,
    pub followed: bool,
}

fn walk(
    input: &[u8],
    follow_last: bool,
    may_list: bool,
    out: &mut [u8],
    links: &mut u32,
) -> Result<usize, Stop> {
    let cfg = config::get();
    let p = cfg.prefixes();
    let Some(first_rest) = under(input, p.tree) else {
        return Err(Stop::Errno(libc::EINVAL));
    };
    // `rest[pos..]` is what is left to resolve; `cur` the resolved, symlink-free part.
    let mut rest = [0u8; PATH_MAX];
    let mut rest_len = copy(&mut rest, &[first_rest])?;
    let mut pos = 0usize;
    let mut cur = [0u8; PATH_MAX];
    let mut cur_len = copy(&mut cur, &[p.tree])?;
    let trailing_slash = input.last() == Some(&b'/');
    while let Some(tail) = rest.get(pos..rest_len) {
        let tail = trim_slashes(tail);
        if tail.is_empty() {
            break;
        }
        let comp_len = tail.iter().position(|&b| b == b'/').unwrap_or(tail.len());
        let skipped = rest_len - pos - tail.len();
        let comp_start = pos + skipped;
        pos = comp_start + comp_len;
        let comp = rest.get(comp_start..pos).unwrap_or(&[]);
        let remaining = rest.get(pos..rest_len).unwrap_or(&[]);
        let is_last = trim_slashes(remaining).is_empty();
        match comp {
            // A last `.` or `..` stays for the kernel (after a symlink-free prefix it means
            // the same): `rename("d/..", x)` must fail as it does natively.
            b"." if is_last => {
                return Ok(copy(out, &[cur.get(..cur_len).unwrap_or(&[]), b"/."])?);
            }
            b"." => continue,
            b".." => {
                if cur_len == p.tree.len() {
                    // `..` at the mount root: the mount's parent, then the kernel's turn.
                    let parent = parent_of(p.mount);
                    return Ok(copy(out, &[parent, b"/", remaining])?);
                }
                if is_last {
                    return Ok(copy(out, &[cur.get(..cur_len).unwrap_or(&[]), b"/.."])?);
                }
                let c = cur.get(..cur_len).unwrap_or(&[]);
                cur_len = c.iter().rposition(|&b| b == b'/').unwrap_or(0).max(1);
                continue;
            }
            _ => {}
        }
        let mut cand = [0u8; PATH_MAX];
        let mut w = Writer::new(&mut cand);
        w.put(cur.get(..cur_len).unwrap_or(&[]))
            .and_then(|_| w.put(b"/"))
            .and_then(|_| w.put(comp))
            .ok_or(libc::ENAMETOOLONG)?;
        let cand_len = w.len;
        let cand_c = w.cstr().ok_or(libc::ENAMETOOLONG)?;
        let st = match rustix::fs::statat(CWD, cand_c, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) if e == rustix::io::Errno::NOENT && may_list && unlisted(&cur, cur_len) => {
                // The directory may not be listed yet: the caller lists it and asks again.
                let dir = cur.get(..cur_len).unwrap_or(&[]);
                return Err(Stop::Unlisted(copy(out, &[dir])?));
            }
            Err(_) => {
                let c = cand.get(..cand_len).unwrap_or(&[]);
                return Ok(copy(out, &[c, remaining])?);
            }
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        if !is_last && ft != FileType::Directory && ft != FileType::Symlink {
            // `file/..`, `file/x`: the kernel must see the non-directory to say ENOTDIR
            // (popping it lexically would make `file/../file` name the file).
            let c = cand.get(..cand_len).unwrap_or(&[]);
            return Ok(copy(out, &[c, remaining])?);
        }
        if ft != FileType::Symlink || (is_last && !follow_last) {
            cur_len = copy(&mut cur, &[cand.get(..cand_len).unwrap_or(&[])])?;
            if is_last {
                break;
            }
            continue;
        }
        *links += 1;
        if *links > MAX_LINKS {
            return Err(Stop::Errno(libc::ELOOP));
        }
        let mut target = [0u8; PATH_MAX];
        let cand_c = crate::buf::as_cstr(&cand, cand_len).ok_or(libc::ENAMETOOLONG)?;
        let n = rustix::fs::readlinkat_raw(CWD, cand_c, &mut target[..PATH_MAX - 1])
            .map_err(|e| Stop::Errno(e.raw_os_error()))?;
        let target = target.get(..n).unwrap_or(&[]);
        let mut next = [0u8; PATH_MAX];
        let next_len = if target.first() == Some(&b'/') {
            let mut mapped = [0u8; PATH_MAX];
            match map_abs(&p, target, &mut mapped) {
                Abs::Mapped(m) => {
                    cur_len = p.tree.len();
                    let r = under(mapped.get(..m).unwrap_or(&[]), p.tree).unwrap_or(&[]);
                    copy(&mut next, &[r, b"/", remaining])?
                }
                Abs::Tree => {
                    cur_len = p.tree.len();
                    copy(
                        &mut next,
                        &[under(target, p.tree).unwrap_or(&[]), b"/", remaining],
                    )?
                }
                Abs::TooLong => return Err(Stop::Errno(libc::ENAMETOOLONG)),
                // Outside the tree: the kernel resolves the rest.
                Abs::Outside | Abs::Escaped(_) => {
                    return Ok(copy(out, &[target, b"/", remaining])?);
                }
            }
        } else {
            copy(&mut next, &[target, b"/", remaining])?
        };
        rest = next;
        rest_len = next_len;
        pos = 0;
    }
    let c = cur.get(..cur_len).unwrap_or(&[]);
    Ok(if trailing_slash && cur_len > 1 {
        copy(out, &[c, b"/"])?
    } else {
        copy(out, &[c])?
    })
}

/// Whether the directory `dir[..len]` carries the unlisted marker.
fn unlisted(dir: &[u8; PATH_MAX], len: usize) -> bool {
    let mut buf = [0u8; PATH_MAX];
    let Ok(n) = copy(&mut buf, &[dir.get(..len).unwrap_or(&[])]) else {
        return false;
    };
    crate::buf::as_cstr(&buf, n).is_some_and(|c| marker_at(c) == Ok(Mark::Unlisted))
}

/// Whether a symlink lies on the way to the absolute real path `real`: one
/// `openat2(O_PATH, RESOLVE_NO_SYMLINKS)`, which stops with `ELOOP` at the first symlink,
/// and otherwise fails or succeeds as a symlink-free lookup would. Screens a miss before
/// [`physical`] (which costs a syscall per component).
pub fn symlink_on_the_way(real: &CStr) -> bool {
    symlink_on_the_way_at(CWD, real)
}

/// [`symlink_on_the_way`] for a path relative to `dir` (components above `dir` are not
/// looked at: `dir` is already resolved).
pub fn symlink_on_the_way_at(dir: BorrowedFd<'_>, path: &CStr) -> bool {
    // No O_NOFOLLOW: a symlink as the last component must count too.
    let how = OFlags::PATH | OFlags::CLOEXEC;
    match rustix::fs::openat2(dir, path, how, Mode::empty(), ResolveFlags::NO_SYMLINKS) {
        Ok(_) => false,
        Err(e) => e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOSYS,
    }
}

fn trim_slashes(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b'/').unwrap_or(s.len());
    s.get(start..).unwrap_or(&[])
}

/// Concatenates `parts` into `out` (NUL-terminated).
fn copy(out: &mut [u8], parts: &[&[u8]]) -> Result<usize, c_int> {
    let mut w = Writer::new(out);
    for part in parts {
        w.put(part).ok_or(libc::ENAMETOOLONG)?;
    }
    Ok(w.len)
}
