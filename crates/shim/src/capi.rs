//! The C API declared in `include/s3shim.h`: sync state a program can ask about and
//! control without parsing `s3shim status`. Each function is a slow path (it asks the
//! agent or reads a marker), returns -1 with errno on failure, leaves errno alone on
//! success, and fails with `ENOTCONN` when the shim is inert. Nothing here panics or
//! allocates.

use crate::agent;
use crate::buf::{as_cstr, PATH_MAX};
use crate::config;
use crate::cstr::cbytes;
use crate::errno::{errno, set_errno};
use crate::hooks::in_tree;
use crate::hydrate::{self, Pre};
use crate::loc::Loc;
use crate::marker::{marker_at, Mark};
use crate::path::{join, normalize, rel_in_tree};
use crate::ret::Ret;
use core::ffi::{c_char, c_int, CStr};
use s3shim_protocol::status as key;
use s3shim_protocol::wire::Op;

/// `S3SHIM_API_VERSION` of the header this library implements.
pub const API_VERSION: c_int = 1;

/// `S3SHIM_OUTSIDE`, `S3SHIM_LOCAL`, `S3SHIM_PLACEHOLDER`, `S3SHIM_UNLISTED`.
pub const OUTSIDE: c_int = 0;
pub const LOCAL: c_int = 1;
pub const PLACEHOLDER: c_int = 2;
pub const UNLISTED: c_int = 3;

/// `S3SHIM_FETCH_TREE`.
pub const FETCH_TREE: c_int = 1;

/// `struct s3shim_status` (API version 1).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub size: u32,
    pub paused: u32,
    pub pending: u64,
    pub pending_bytes: u64,
    pub in_flight: u64,
    pub failed: u64,
    pub conflicts: u64,
}

#[cfg_attr(not(test), no_mangle)]
pub extern "C" fn s3shim_api_version() -> c_int {
    API_VERSION
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn s3shim_flush(path: *const c_char) -> c_int {
    let saved = errno();
    let r = if path.is_null() {
        ready().and_then(|()| agent::request(Op::Flush, b""))
    } else {
        flush_path(path)
    };
    done(r, saved)
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn s3shim_path_state(path: *const c_char) -> c_int {
    let saved = errno();
    let loc = match located(path) {
        Ok(loc) => loc,
        Err(e) => return Ret::fail(e),
    };
    if !loc.in_tree {
        return OUTSIDE;
    }
    // Through the hooks' in-tree path: an entry not in the cache yet is looked up (the
    // *missing-entry* rule), as a stat would.
    let r = in_tree(&loc, Pre::Nothing, &mut |_, p| {
        // SAFETY: `p` is the mapped path, a C string the location owns.
        match marker_at(unsafe { CStr::from_ptr(p) }) {
            Ok(Mark::None) => LOCAL,
            Ok(Mark::Placeholder) => PLACEHOLDER,
            Ok(Mark::Unlisted) => UNLISTED,
            Err(e) => Ret::fail(e),
        }
    });
    if r >= 0 {
        set_errno(saved);
    }
    r
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn s3shim_fetch(path: *const c_char, flags: c_int) -> c_int {
    let saved = errno();
    if flags & !FETCH_TREE != 0 {
        return Ret::fail(libc::EINVAL);
    }
    let loc = match located(path) {
        Ok(loc) => loc,
        Err(e) => return Ret::fail(e),
    };
    if !loc.in_tree {
        return Ret::fail(libc::EINVAL);
    }
    // The `Fetch` pre-check downloads a placeholder; the call lists a directory, or
    // fetches a whole subtree. A missing entry is looked up first, as for any call.
    let r = in_tree(&loc, Pre::Fetch, &mut |_, p| {
        // SAFETY: `p` is the mapped path, a C string the location owns.
        let p = unsafe { CStr::from_ptr(p) };
        let mut abs = [0u8; PATH_MAX];
        let made_local = match (marker_at(p), abs_of(p.to_bytes(), &mut abs)) {
            (Err(e), _) => Err(e),
            (Ok(_), None) => Err(libc::ENAMETOOLONG),
            (Ok(_), Some(n)) if flags & FETCH_TREE != 0 => {
                hydrate::fetch_tree_abs(abs.get(..n).unwrap_or(&[]))
            }
            (Ok(Mark::Unlisted), Some(n)) => hydrate::list_abs(abs.get(..n).unwrap_or(&[])),
            (Ok(Mark::Placeholder), Some(n)) => hydrate::fetch_abs(abs.get(..n).unwrap_or(&[])),
            (Ok(Mark::None), Some(_)) => Ok(()),
        };
        made_local.map_or_else(Ret::fail, |()| 0)
    });
    if r >= 0 {
        set_errno(saved);
    }
    r
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn s3shim_status(out: *mut Status) -> c_int {
    let saved = errno();
    if let Err(e) = ready() {
        return Ret::fail(e);
    }
    // SAFETY: the caller passes NULL or a `struct s3shim_status` (its `size` says how
    // large); only its first field is read before the size is checked.
    let Some(size) = (unsafe { out.cast::<u32>().as_ref() }).copied() else {
        return Ret::fail(libc::EINVAL);
    };
    if (size as usize) < core::mem::size_of::<Status>() {
        return Ret::fail(libc::EINVAL);
    }
    let mut reader = StatusReader::default();
    if let Err(e) = agent::request_reading(Op::Status, b"", |b| reader.feed(b)) {
        return Ret::fail(e);
    }
    reader.finish();
    let st = Status {
        size: core::mem::size_of::<Status>() as u32,
        ..reader.status
    };
    // SAFETY: checked above: non-NULL and at least this large.
    unsafe { out.write_unaligned(st) };
    set_errno(saved);
    0
}

/// `ENOTCONN` when the shim is inert in this process.
fn ready() -> Result<(), c_int> {
    if config::active() && config::get().socket().is_some() {
        Ok(())
    } else {
        Err(libc::ENOTCONN)
    }
}

/// `path` resolved as the hooks resolve it.
unsafe fn located(path: *const c_char) -> Result<Loc, c_int> {
    ready()?;
    // SAFETY: `cbytes` checks the pointer before reading.
    if unsafe { cbytes(path) }.is_none_or(|b| b.is_empty()) {
        return Err(if path.is_null() {
            libc::EINVAL
        } else {
            libc::ENOENT
        });
    }
    let mut loc = Loc::new();
    // SAFETY: a readable C string (checked above), alive for the call.
    unsafe { hydrate::resolve(&mut loc, libc::AT_FDCWD, path) }?;
    Ok(loc)
}

unsafe fn flush_path(path: *const c_char) -> Result<(), c_int> {
    // SAFETY: the caller's contract.
    let loc = unsafe { located(path) }?;
    if !loc.in_tree {
        return Err(libc::EINVAL);
    }
    let mut abs = [0u8; PATH_MAX];
    let n = loc.real_abs(&mut abs).ok_or(libc::ENAMETOOLONG)?;
    let cfg = config::get();
    let rel = rel_in_tree(&cfg.prefixes(), abs.get(..n).unwrap_or(&[])).ok_or(libc::EINVAL)?;
    let is_dir = as_cstr(&abs, n)
        .and_then(|c| rustix::fs::stat(c).ok())
        .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
    // What fsync on it waits for: a directory's entries are every change below it.
    if is_dir || rel.is_empty() {
        agent::request(Op::Flush, b"")
    } else {
        agent::request(Op::Sync, rel)
    }
}

/// The normalised absolute form of the mapped path `p` (absolute, or relative to the
/// cwd) into `out`.
fn abs_of(p: &[u8], out: &mut [u8]) -> Option<usize> {
    if p.starts_with(b"/") {
        return normalize(p, out);
    }
    let mut cwd = [0u8; PATH_MAX];
    let n = crate::sys::getcwd(&mut cwd).ok()?;
    let mut joined = [0u8; PATH_MAX];
    let j = join(cwd.get(..n)?, p, &mut joined)?;
    normalize(joined.get(..j)?, out)
}

fn done(r: Result<(), c_int>, saved: c_int) -> c_int {
    match r {
        Ok(()) => {
            set_errno(saved);
            0
        }
        Err(e) => Ret::fail(e),
    }
}

/// Reads the agent's status reply (`key\tvalue…` lines, see `s3shim_protocol::status`)
/// as it arrives, keeping only the numbers [`Status`] holds. A line longer than the
/// buffer is cut: the keys and numbers come first.
struct StatusReader {
    line: [u8; 128],
    len: usize,
    status: Status,
}

impl Default for StatusReader {
    fn default() -> Self {
        StatusReader {
            line: [0; 128],
            len: 0,
            status: Status::default(),
        }
    }
}

impl StatusReader {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.end_line();
            } else if let Some(slot) = self.line.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
    }

    /// A last line without its newline counts too.
    fn finish(&mut self) {
        if self.len > 0 {
            self.end_line();
        }
    }

    fn end_line(&mut self) {
        let line = self.line.get(..self.len).unwrap_or(&[]);
        let mut fields = line.split(|&b| b == b'\t');
        let k = fields.next().unwrap_or(&[]);
        let mut num = || fields.next().and_then(decimal).unwrap_or(0);
        let st = &mut self.status;
        if k == key::PENDING.as_bytes() {
            st.pending = num();
            st.pending_bytes = num();
        } else if k == key::IN_FLIGHT.as_bytes() {
            st.in_flight = num();
        } else if k == key::FAILED.as_bytes() {
            st.failed += 1;
        } else if k == key::CONFLICT.as_bytes() {
            st.conflicts += 1;
        } else if k == key::UPLOADS.as_bytes() {
            st.paused = u32::from(fields.next() == Some(key::PAUSED.as_bytes()));
        }
        self.len = 0;
    }
}

fn decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |v, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d < 10)?;
        v.checked_mul(10)?.checked_add(u64::from(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reply_read_in_any_chunks() {
        let reply = "workspace\ts3://b/p\thttp://x\n\
                     pending\t3\t4096\n\
                     in_flight\t1\n\
                     failed\ta.txt\tAccessDenied\n\
                     failed\tb.txt\tAccessDenied\n\
                     uploads\tpaused\t1700000000\tconnection refused\n\
                     conflict\tx.txt\tx.conflict-1.txt\t1700000000\n\
                     hydrated\t10\t1";
        for chunk in [1, 7, 4096] {
            let mut r = StatusReader::default();
            for part in reply.as_bytes().chunks(chunk) {
                r.feed(part);
            }
            r.finish();
            assert_eq!(
                r.status,
                Status {
                    size: 0,
                    paused: 1,
                    pending: 3,
                    pending_bytes: 4096,
                    in_flight: 1,
                    failed: 2,
                    conflicts: 1,
                },
                "chunks of {chunk}"
            );
        }
        let mut r = StatusReader::default();
        r.feed(b"uploads\trunning\npending\t0\t0\n");
        assert_eq!(r.status.paused, 0);
    }

    #[test]
    fn long_lines_are_cut_not_misread() {
        let mut r = StatusReader::default();
        let long = format!("conflict\t{}\tx\t1\npending\t2\t9\n", "d/".repeat(500));
        r.feed(long.as_bytes());
        assert_eq!(
            (r.status.conflicts, r.status.pending, r.status.pending_bytes),
            (1, 2, 9)
        );
    }

    #[test]
    fn decimals() {
        assert_eq!(decimal(b"0"), Some(0));
        assert_eq!(decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(decimal(b"18446744073709551616"), None);
        assert_eq!(decimal(b"1x"), None);
        assert_eq!(decimal(b""), None);
    }
}
