//! Local filesystem operations on the cache that std does not offer: the hydration
//! marker (an extended attribute), placeholders published whole with
//! `renameat2(RENAME_NOREPLACE)`, and nanosecond times.

use s3shim_protocol::marker::{Marker, XATTR_NAME};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

fn cpath(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn xattr_name() -> *const libc::c_char {
    XATTR_NAME.as_ptr().cast()
}

fn parse_marker(raw: Option<Vec<u8>>) -> Option<OwnedMarker> {
    let raw = raw?;
    Some(match Marker::parse(&raw)? {
        Marker::Unlisted { source_prefix } => OwnedMarker::Unlisted(source_prefix.to_string()),
        Marker::Placeholder { etag, source_key } => {
            OwnedMarker::Placeholder(etag.to_string(), source_key.to_string())
        }
    })
}

/// A marker value owned, so it can be held across awaits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedMarker {
    Unlisted(String),
    /// (etag, source key)
    Placeholder(String, String),
}

/// The marker of `path`, parsed (`None`: complete, or not a marker we know).
pub fn marker_of(path: &Path) -> io::Result<Option<OwnedMarker>> {
    Ok(parse_marker(read_marker(path)?))
}

/// The raw marker value of `path` (not following a final symlink), `None` if unmarked.
pub fn read_marker(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let c = cpath(path)?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let n =
        unsafe { libc::lgetxattr(c.as_ptr(), xattr_name(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) => Ok(None),
            // Symlinks cannot carry user xattrs; they are never marked.
            Some(libc::EPERM) | Some(libc::ENOTSUP) => Ok(None),
            _ => Err(e),
        };
    }
    buf.truncate(n as usize);
    Ok(Some(buf))
}

pub fn write_marker(path: &Path, m: &Marker<'_>) -> io::Result<()> {
    let c = cpath(path)?;
    let mut buf = vec![0u8; 8192];
    let n = m
        .encode(&mut buf)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::E2BIG))?;
    // SAFETY: valid strings, buffer of n bytes.
    check(unsafe { libc::lsetxattr(c.as_ptr(), xattr_name(), buf.as_ptr().cast(), n, 0) })
}

pub fn fwrite_marker(f: &File, m: &Marker<'_>) -> io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let n = m
        .encode(&mut buf)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::E2BIG))?;
    // SAFETY: open fd, buffer of n bytes.
    check(unsafe { libc::fsetxattr(f.as_raw_fd(), xattr_name(), buf.as_ptr().cast(), n, 0) })
}

/// Removes the marker; an unmarked path is not an error.
pub fn remove_marker(path: &Path) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: valid strings.
    match check(unsafe { libc::lremovexattr(c.as_ptr(), xattr_name()) }) {
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
        r => r,
    }
}

/// Removes the marker of an open file; an unmarked file is not an error.
pub fn fremove_marker(f: &File) -> io::Result<()> {
    // SAFETY: open fd, valid name.
    match check(unsafe { libc::fremovexattr(f.as_raw_fd(), xattr_name()) }) {
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
        r => r,
    }
}

/// Sets atime and mtime (nanoseconds), not following a final symlink.
pub fn set_mtime(path: &Path, secs: i64, nanos: u32) -> io::Result<()> {
    let c = cpath(path)?;
    let t = libc::timespec {
        tv_sec: secs,
        tv_nsec: nanos as _,
    };
    let ts = [t, t];
    // SAFETY: valid string and two timespecs.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

pub fn fset_mtime(f: &File, secs: i64, nanos: u32) -> io::Result<()> {
    let t = libc::timespec {
        tv_sec: secs,
        tv_nsec: nanos as _,
    };
    let ts = [t, t];
    // SAFETY: open fd and two timespecs.
    check(unsafe { libc::futimens(f.as_raw_fd(), ts.as_ptr()) })
}

/// Sets atime and mtime (seconds, nanoseconds) of an open file.
pub fn fset_times(f: &File, atime: (i64, u32), mtime: (i64, u32)) -> io::Result<()> {
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1 as _,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1 as _,
        },
    ];
    // SAFETY: open fd and two timespecs.
    check(unsafe { libc::futimens(f.as_raw_fd(), ts.as_ptr()) })
}

/// Moves an entry finished in the staging directory to `path` in the tree, failing with
/// `AlreadyExists` if anything is there (local wins).
fn publish(staged: &Path, path: &Path) -> io::Result<()> {
    rename_noreplace(staged, path)
}

/// `rename(from, to)` that fails with `AlreadyExists` instead of replacing `to`.
pub fn rename_noreplace(staged: &Path, path: &Path) -> io::Result<()> {
    let (from, to) = (cpath(staged)?, cpath(path)?);
    // SAFETY: two NUL-terminated paths.
    check(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    })
}

/// Makes an entry at `staged` (in the cache's staging directory) with `make`, then
/// publishes it at `path` (see [`publish`]); on failure removes whatever was staged.
/// Entries are made in staging so that no reader ever sees one half made: a directory
/// without its `D` marker looks listed and empty, a file without its `F` marker looks
/// complete and empty.
pub fn make_published<T>(
    staged: &Path,
    path: &Path,
    make: impl FnOnce(&Path) -> io::Result<T>,
) -> io::Result<T> {
    let made = make(staged).and_then(|t| publish(staged, path).map(|()| t));
    if made.is_err() {
        // A file, a symlink or a directory.
        let _ = std::fs::remove_file(staged).or_else(|_| std::fs::remove_dir(staged));
    }
    made
}

/// Creates a placeholder at `path`: a sparse file of `size` bytes with `mode` and
/// `mtime`, marked with `marker`, made at `staged` and published whole
/// ([`make_published`]). Fails with `AlreadyExists` if anything is at `path`.
pub fn create_placeholder(
    staged: &Path,
    path: &Path,
    size: u64,
    mode: u32,
    mtime: (i64, u32),
    marker: Option<&Marker<'_>>,
) -> io::Result<std::fs::Metadata> {
    let f = make_published(staged, path, |p| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)?;
        f.set_len(size)?;
        if let Some(m) = marker {
            fwrite_marker(&f, m)?;
        }
        // SAFETY: open fd.
        check(unsafe { libc::fchmod(f.as_raw_fd(), (mode & 0o7777) as libc::mode_t) })?;
        fset_mtime(&f, mtime.0, mtime.1)?;
        Ok(f)
    })?;
    // After the rename, which changed the ctime the index fingerprints.
    f.metadata()
}

/// Checks that `dir` supports what the cache needs: user extended attributes (the
/// hydration marker). Returns a sentence for the user on failure.
pub fn check_cache_fs(dir: &Path) -> Result<(), String> {
    let probe = dir.join(format!("probe-{}", std::process::id()));
    let published = dir.join(format!("probe-{}-published", std::process::id()));
    let result = (|| -> io::Result<()> {
        let _ = std::fs::remove_file(&probe);
        File::create(&probe)?;
        write_marker(&probe, &Marker::Unlisted { source_prefix: "" })?;
        match read_marker(&probe)? {
            Some(v) if v == b"D" => {}
            _ => return Err(io::Error::other("extended attribute did not read back")),
        }
        // Entries are published with renameat2(RENAME_NOREPLACE).
        publish(&probe, &published)
    })();
    let _ = std::fs::remove_file(&probe);
    let _ = std::fs::remove_file(&published);
    result.map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) => format!(
            "the cache directory {} is on a filesystem without renameat2(RENAME_NOREPLACE); put --cache on ext4, xfs, btrfs or tmpfs",
            dir.display()
        ),
        Some(libc::ENOTSUP) => format!(
            "the cache directory {} is on a filesystem without user extended attributes; put --cache on ext4, xfs, btrfs or tmpfs (Linux 6.6+)",
            dir.display()
        ),
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => format!(
            "cannot write to the cache directory {} ({e}); pass a writable --cache or fix its permissions",
            dir.display()
        ),
        _ => format!("the cache directory {} is not usable ({e}); pass another --cache", dir.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn placeholder_has_size_mode_time_marker_and_no_blocks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let staged = d.path().join("staged");
        let m = Marker::Placeholder {
            etag: "\"e\"",
            source_key: "ws/f",
        };
        let md = create_placeholder(
            &staged,
            &p,
            1 << 20,
            0o100755,
            (1_700_000_000, 42),
            Some(&m),
        )
        .unwrap();
        assert!(!staged.exists(), "the staged file was moved into place");
        assert_eq!(md.ino(), std::fs::metadata(&p).unwrap().ino());
        assert_eq!(md.ctime_nsec(), std::fs::metadata(&p).unwrap().ctime_nsec());
        assert_eq!(md.size(), 1 << 20);
        assert_eq!(md.mode() & 0o7777, 0o755);
        assert_eq!((md.mtime(), md.mtime_nsec()), (1_700_000_000, 42));
        assert_eq!(md.blocks(), 0, "placeholders must not take disk space");
        let v = read_marker(&p).unwrap().unwrap();
        assert_eq!(Marker::parse(&v), Some(m));
        let again = create_placeholder(&staged, &p, 1, 0o644, (0, 0), None);
        assert_eq!(again.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert!(
            !staged.exists(),
            "a refused placeholder leaves no staged file"
        );
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1 << 20, "local wins");
        remove_marker(&p).unwrap();
        remove_marker(&p).unwrap();
        assert_eq!(read_marker(&p).unwrap(), None);
    }

    #[test]
    fn cache_fs_check_passes_here_and_names_unwritable_dirs() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(check_cache_fs(d.path()), Ok(()));
        let missing = d.path().join("missing");
        assert!(check_cache_fs(&missing).unwrap_err().contains("missing"));
    }
}
