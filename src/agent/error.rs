//! What the agent's operations fail with, and the one place where a failure becomes the
//! errno a program sees (SEMANTICS.md, "Errors a program sees").
//!
//! Local I/O keeps the kernel's errno (a full cache disk is ENOSPC, not EIO); S3's
//! answers are classified once, where the SDK error is at hand (`s3/classify.rs`), into the
//! variants below. The sync engine decides retries and pauses by matching the variant.

use std::io;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call on the cache's file system failed; `source` carries the kernel's errno.
    /// `context` is empty or ends in ": ".
    #[error("{context}{source}")]
    Io { context: String, source: io::Error },
    /// S3 refused the request (HTTP 403: AccessDenied, a bad key or signature, a policy).
    #[error("{0}")]
    AccessDenied(String),
    /// The object is not in S3 (404 / NoSuchKey on a read): deleted since it was listed.
    #[error("{0}")]
    NotFound(String),
    /// A precondition did not hold: the object changed in S3 while we worked on it (412,
    /// `If-Match` on a key deleted meanwhile, the HEAD check of a server without
    /// conditional writes). The sync engine keeps both versions; a read may ask again.
    #[error("{0}")]
    Conflict(String),
    /// S3 did not answer usefully after the SDK's retries: unreachable, timed out,
    /// connection reset, throttled (429/SlowDown) or a 5xx. Uploads pause and retry.
    #[error("{0}")]
    Unavailable(String),
    /// A server-side copy failed: in a rename its source must not be deleted in the same
    /// batch. Classified as the copy's own error.
    #[error("server-side copy failed: {0}")]
    CopyFailed(Box<Error>),
    /// Anything else (a misbehaving server, a bad request, an index failure...).
    #[error("{0}")]
    Other(String),
}

/// An [`Error::Other`] from a format string, like `anyhow!`.
macro_rules! other {
    ($($t:tt)*) => { $crate::agent::error::Error::Other(format!($($t)*)) };
}
pub(crate) use other;

impl Error {
    /// Worth trying again later, when the endpoint answers (the queue pauses meanwhile).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unavailable(_) => true,
            Error::CopyFailed(inner) => inner.is_transient(),
            _ => false,
        }
    }

    /// A precondition failed (see [`Error::Conflict`]).
    pub fn is_conflict(&self) -> bool {
        match self {
            Error::Conflict(_) => true,
            Error::CopyFailed(inner) => inner.is_conflict(),
            _ => false,
        }
    }

    /// The same error with `what` in front of its sentence; the class is kept.
    pub fn context(self, what: impl std::fmt::Display) -> Error {
        match self {
            Error::Io { context, source } => Error::Io {
                context: format!("{what}: {context}"),
                source,
            },
            Error::AccessDenied(m) => Error::AccessDenied(format!("{what}: {m}")),
            Error::NotFound(m) => Error::NotFound(format!("{what}: {m}")),
            Error::Conflict(m) => Error::Conflict(format!("{what}: {m}")),
            Error::Unavailable(m) => Error::Unavailable(format!("{what}: {m}")),
            Error::CopyFailed(inner) => Error::CopyFailed(Box::new(inner.context(what))),
            Error::Other(m) => Error::Other(format!("{what}: {m}")),
        }
    }
}

/// The errno a program sees for `e` (the shim returns it from the call that needed the
/// agent). The only mapping from agent errors to errno.
pub fn errno(e: &Error) -> i32 {
    match e {
        // ENOSPC, EDQUOT, EACCES, EROFS... as the kernel said; EIO if it said nothing.
        Error::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        Error::AccessDenied(_) => libc::EACCES,
        Error::NotFound(_) => libc::ENOENT,
        // The object changed in S3 during the request: asking again reads the new
        // version, so "try again" (EAGAIN) rather than a failure of the device (EIO) or
        // EBUSY, which says something holds the file (nothing does).
        Error::Conflict(_) => libc::EAGAIN,
        // The pause state is the queue's; the program only learns that I/O failed.
        Error::Unavailable(_) => libc::EIO,
        Error::CopyFailed(inner) => errno(inner),
        Error::Other(_) => libc::EIO,
    }
}

impl From<io::Error> for Error {
    fn from(source: io::Error) -> Error {
        Error::Io {
            context: String::new(),
            source,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        // The index lives in the cache: a full disk is ENOSPC there too.
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            if f.code == rusqlite::ErrorCode::DiskFull {
                return Error::Io {
                    context: format!("index: {e}: "),
                    source: io::Error::from_raw_os_error(libc::ENOSPC),
                };
            }
        }
        Error::Other(format!("index: {e}"))
    }
}

impl From<rusqlite::types::FromSqlError> for Error {
    fn from(e: rusqlite::types::FromSqlError) -> Error {
        Error::Other(format!("index: {e}"))
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Error {
        Error::Other(format!("task failed: {e}"))
    }
}

impl Clone for Error {
    /// For results shared between the requesters of one hydration.
    fn clone(&self) -> Error {
        match self {
            Error::Io { context, source } => Error::Io {
                context: context.clone(),
                source: match source.raw_os_error() {
                    Some(n) => io::Error::from_raw_os_error(n),
                    None => io::Error::new(source.kind(), source.to_string()),
                },
            },
            Error::AccessDenied(m) => Error::AccessDenied(m.clone()),
            Error::NotFound(m) => Error::NotFound(m.clone()),
            Error::Conflict(m) => Error::Conflict(m.clone()),
            Error::Unavailable(m) => Error::Unavailable(m.clone()),
            Error::CopyFailed(inner) => Error::CopyFailed(inner.clone()),
            Error::Other(m) => Error::Other(m.clone()),
        }
    }
}

/// `.context(..)` / `.with_context(..)` on results and options, keeping the class.
pub trait Context<T> {
    fn context<C: std::fmt::Display>(self, what: C) -> Result<T>;
    fn with_context<C: std::fmt::Display, F: FnOnce() -> C>(self, what: F) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context<C: std::fmt::Display>(self, what: C) -> Result<T> {
        self.map_err(|e| e.into().context(what))
    }
    fn with_context<C: std::fmt::Display, F: FnOnce() -> C>(self, what: F) -> Result<T> {
        self.map_err(|e| e.into().context(what()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context<C: std::fmt::Display>(self, what: C) -> Result<T> {
        self.ok_or_else(|| Error::Other(what.to_string()))
    }
    fn with_context<C: std::fmt::Display, F: FnOnce() -> C>(self, what: F) -> Result<T> {
        self.ok_or_else(|| Error::Other(what().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(n: i32) -> Error {
        Error::from(io::Error::from_raw_os_error(n)).context("writing x")
    }

    #[test]
    fn local_io_keeps_the_kernels_errno() {
        for n in [libc::ENOSPC, libc::EDQUOT, libc::EACCES, libc::EROFS] {
            assert_eq!(errno(&io(n)), n);
            assert_eq!(errno(&io(n).clone()), n, "a shared result keeps it");
        }
        let no_errno = Error::from(io::Error::other("short read"));
        assert_eq!(errno(&no_errno), libc::EIO);
        // The index on a full cache disk.
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        assert_eq!(errno(&Error::from(full)), libc::ENOSPC);
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert_eq!(errno(&Error::from(busy)), libc::EIO);
    }

    #[test]
    fn s3_classes_map_to_their_errno() {
        let s = || "downloading k: ...".to_string();
        assert_eq!(errno(&Error::AccessDenied(s())), libc::EACCES);
        assert_eq!(errno(&Error::NotFound(s())), libc::ENOENT);
        assert_eq!(errno(&Error::Conflict(s())), libc::EAGAIN);
        assert_eq!(errno(&Error::Unavailable(s())), libc::EIO);
        assert_eq!(errno(&Error::Other(s())), libc::EIO);
        let copy = Error::CopyFailed(Box::new(Error::AccessDenied(s())));
        assert_eq!(errno(&copy), libc::EACCES);
    }

    #[test]
    fn context_keeps_the_class() {
        let e = Error::Unavailable("503".into()).context("listing a/");
        assert!(e.is_transient());
        assert_eq!(e.to_string(), "listing a/: 503");
        let e = Error::CopyFailed(Box::new(Error::Conflict("412".into()))).context("x");
        assert!(e.is_conflict() && !e.is_transient());
        let e = io(libc::ENOSPC).context("fetching f");
        assert_eq!(errno(&e), libc::ENOSPC);
        assert!(e.to_string().starts_with("fetching f: writing x: "), "{e}");
    }
}
