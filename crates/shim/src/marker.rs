//! The marker attribute on cache entries: a directory not listed yet, a file whose bytes
//! are still in S3. One xattr read per check, through raw syscalls.

use core::ffi::{c_int, CStr};
use rustix::fd::BorrowedFd;
use rustix::io::Errno;
use s3shim_protocol::marker::{Marker, XATTR_NAME};

/// The marker attribute name as a C string.
pub const MARKER_NAME: &CStr = match CStr::from_bytes_with_nul(XATTR_NAME) {
    Ok(c) => c,
    Err(_) => panic!("XATTR_NAME must be NUL-terminated"),
};

/// What the marker attribute of an entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Complete locally (or no attribute support: nothing the shim can do).
    None,
    /// A directory not listed yet (`D`).
    Unlisted,
    /// A file whose bytes are still in S3 (`F`).
    Placeholder,
}

fn classify(value: &[u8]) -> Mark {
    match Marker::parse(value) {
        Some(Marker::Unlisted { .. }) => Mark::Unlisted,
        Some(Marker::Placeholder { .. }) => Mark::Placeholder,
        None => Mark::None,
    }
}

/// Reads a marker with `get` (a getxattr flavour): small buffer first, a large one when
/// the value does not fit. `Err` carries the errno of a missing or unreadable entry.
fn read_marker(mut get: impl FnMut(&mut [u8]) -> Result<usize, Errno>) -> Result<Mark, c_int> {
    let mut small = [0u8; 512];
    match get(&mut small) {
        Ok(n) => Ok(classify(small.get(..n).unwrap_or(&[]))),
        Err(Errno::NODATA) | Err(Errno::NOTSUP) => Ok(Mark::None),
        Err(Errno::RANGE) => {
            let mut big = [0u8; 16384];
            match get(&mut big) {
                Ok(n) => Ok(classify(big.get(..n).unwrap_or(&[]))),
                Err(Errno::NODATA) | Err(Errno::NOTSUP) => Ok(Mark::None),
                Err(e) => Err(e.raw_os_error()),
            }
        }
        Err(e) => Err(e.raw_os_error()),
    }
}

/// The marker of the entry at `path` (following symlinks, as path resolution of the
/// calls that follow does).
pub fn marker_at(path: &CStr) -> Result<Mark, c_int> {
    read_marker(|buf| rustix::fs::getxattr(path, MARKER_NAME, buf))
}

/// The marker of an open file; any error reads as "no marker".
pub fn marker_fd(fd: c_int) -> Mark {
    if fd < 0 {
        return Mark::None;
    }
    // SAFETY: the caller owns `fd` for the duration of the call.
    let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
    read_marker(|buf| rustix::fs::fgetxattr(bfd, MARKER_NAME, buf)).unwrap_or(Mark::None)
}

/// Removes the marker of an open file (its content is being replaced).
pub fn unmark_fd(fd: c_int) {
    if fd >= 0 {
        // SAFETY: as above.
        let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
        let _ = rustix::fs::fremovexattr(bfd, MARKER_NAME);
    }
}

/// Removes the marker of the entry at `path`.
pub fn unmark_at(path: &CStr) {
    let _ = rustix::fs::removexattr(path, MARKER_NAME);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::PATH_MAX;
    use crate::sys::fd_path;

    #[test]
    fn marker_classification_uses_the_protocol_parser() {
        assert_eq!(classify(b"Dws/src/"), Mark::Unlisted);
        assert_eq!(classify(b"F\"etag\"\0ws/a.txt"), Mark::Placeholder);
        assert_eq!(classify(b"Fno-separator"), Mark::None);
        assert_eq!(classify(b"X"), Mark::None);
        assert_eq!(classify(b""), Mark::None);
    }

    #[test]
    fn markers_on_real_files() {
        let dir = std::env::temp_dir().join(format!("s3shim-sys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("f");
        std::fs::write(&f, b"x").unwrap();
        let c = std::ffi::CString::new(f.to_str().unwrap()).unwrap();
        assert_eq!(marker_at(&c), Ok(Mark::None));
        // A value longer than the first buffer takes the second read.
        let mut v = b"F\"e\"\0".to_vec();
        v.extend(std::iter::repeat_n(b'k', 2000));
        rustix::fs::setxattr(
            c.as_c_str(),
            MARKER_NAME,
            &v,
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        assert_eq!(marker_at(&c), Ok(Mark::Placeholder));
        let fd = rustix::fs::open(
            c.as_c_str(),
            rustix::fs::OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        use rustix::fd::AsRawFd;
        assert_eq!(marker_fd(fd.as_raw_fd()), Mark::Placeholder);
        let mut p = [0u8; PATH_MAX];
        let n = fd_path(fd.as_raw_fd(), &mut p).unwrap();
        assert_eq!(&p[..n], c.as_bytes());
        unmark_fd(fd.as_raw_fd());
        assert_eq!(marker_at(&c), Ok(Mark::None));
        let missing = std::ffi::CString::new(dir.join("nope").to_str().unwrap()).unwrap();
        assert_eq!(marker_at(&missing), Err(libc::ENOENT));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
