//! `fsync`/`fdatasync` (and `syscall(SYS_fsync/SYS_fdatasync)`) on a file in the tree
//! return only once that file's current bytes are in S3: after the real call, the agent
//! is asked to upload the path now (bypassing its debounce) and answers after the PUT.
//! A failed upload is `EIO`, as a failed disk write would be. VS Code calls
//! `fdatasync` on every save. On a directory in the tree, everything pending is flushed
//! (what makes a directory's entries durable).
//!
//! Fork-safe: stack buffers and raw syscalls only (see `agent`).

use super::real;
use crate::config;
use crate::fdtable;
use crate::path::rel_in_tree;
use crate::ret::Ret;
use crate::sys::{self, errno, set_errno, PATH_MAX};
use core::ffi::c_int;
use s3shim_protocol::wire::Op;

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fsync(fd: c_int) -> c_int {
    let f = real!(fsync);
    after_sync(fd, f(fd))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fdatasync(fd: c_int) -> c_int {
    let f = real!(fdatasync);
    after_sync(fd, f(fd))
}

/// Given the real call's result `r` for `fd`: waits for S3 when the fd is in the tree.
pub(crate) fn after_sync(fd: c_int, r: c_int) -> c_int {
    if r != 0 || !config::active() || !fdtable::is_marked(fd) {
        return r;
    }
    let saved = errno();
    match upload_now(fd) {
        Ok(()) => {
            set_errno(saved);
            0
        }
        Err(e) => Ret::fail(e),
    }
}

fn upload_now(fd: c_int) -> Result<(), c_int> {
    let mut abs = [0u8; PATH_MAX];
    // No path (an fd table without /proc): nothing to name; the write-back still runs.
    let Some(n) = sys::fd_path(fd, &mut abs) else {
        return Ok(());
    };
    let cfg = config::get();
    // Moved out of the tree meanwhile: no longer ours to upload.
    let Some(rel) = rel_in_tree(&cfg.prefixes(), abs.get(..n).unwrap_or(&[])) else {
        return Ok(());
    };
    // SAFETY: the caller's fd, borrowed for the call.
    let bfd = unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) };
    let is_dir = rustix::fs::fstat(bfd)
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .unwrap_or(false);
    if is_dir {
        crate::agent::request(Op::Flush, b"")
    } else {
        // A deleted file's link reads "name (deleted)": the agent has nothing pending
        // under that name and answers at once.
        crate::agent::request(Op::Sync, rel)
    }
}
