//! `fsync`/`fdatasync` (and `syscall(SYS_fsync/SYS_fdatasync)`) on a file in the tree
//! return only once that file's current bytes are in S3: the agent is asked to upload
//! the path now (bypassing its debounce), the real call runs meanwhile, and the hook
//! returns once the real call did and the agent answered after the PUT.
//! A failed upload is `EIO`, as a failed disk write would be. VS Code calls
//! `fdatasync` on every save. On a directory in the tree, everything pending is flushed
//! (what makes a directory's entries durable).
//!
//! Fork-safe: stack buffers and raw syscalls only (see `agent`).

use super::real;
use crate::buf::PATH_MAX;
use crate::config;
use crate::errno::{errno, set_errno};
use crate::fdtable;
use crate::path::rel_in_tree;
use crate::ret::Ret;
use crate::sys;
use core::ffi::c_int;
use s3shim_protocol::wire::Op;

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fsync(fd: c_int) -> c_int {
    let f = real!(fsync);
    synced(fd, || f(fd))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fdatasync(fd: c_int) -> c_int {
    let f = real!(fdatasync);
    synced(fd, || f(fd))
}

/// Runs the real sync call `real` on `fd`; when the fd is in the tree, also waits for S3.
/// The agent is asked before the real call, so that the upload (which reads the page
/// cache) and the local flush to disk run at the same time: for a large file each takes
/// a good part of the whole. It returns only once both are done, and a failed real call
/// is reported as it was (the upload it started is harmless: the file would have been
/// uploaded after its debounce anyway).
pub(crate) fn synced(fd: c_int, real: impl FnOnce() -> c_int) -> c_int {
    if !config::active() || !fdtable::is_marked(fd) {
        return real();
    }
    let asked = ask_upload(fd);
    let r = real();
    if r != 0 {
        return r;
    }
    let saved = errno();
    match asked.and_then(|conn| conn.map_or(Ok(()), |c| crate::agent::answer(&c))) {
        Ok(()) => {
            set_errno(saved);
            0
        }
        Err(e) => Ret::fail(e),
    }
}

/// Asks the agent to put what `fd` names in S3 now; the connection to read its answer
/// from, or `None` when there is nothing to ask.
fn ask_upload(fd: c_int) -> Result<Option<rustix::fd::OwnedFd>, c_int> {
    let mut abs = [0u8; PATH_MAX];
    // No path (an fd table without /proc): nothing to name; the write-back still runs.
    let Some(n) = sys::fd_path(fd, &mut abs) else {
        return Ok(None);
    };
    let cfg = config::get();
    // Moved out of the tree meanwhile: no longer ours to upload.
    let Some(rel) = rel_in_tree(&cfg.prefixes(), abs.get(..n).unwrap_or(&[])) else {
        return Ok(None);
    };
    // SAFETY: the caller's fd, borrowed for the call.
    let bfd = unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) };
    let is_dir = rustix::fs::fstat(bfd)
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .unwrap_or(false);
    if is_dir {
        crate::agent::send(Op::Flush, b"").map(Some)
    } else {
        // A deleted file's link reads "name (deleted)": the agent has nothing pending
        // under that name and answers at once.
        crate::agent::send(Op::Sync, rel).map(Some)
    }
}
