//! The hydration marker: extended attribute `user.s3shim` on cache entries whose bytes
//! (files) or entries (directories) still live only in S3.
//!
//! An entry without the attribute is complete locally: the shim's fast path is the real
//! call plus, for opens inside the tree, one `fgetxattr` answering "no such attribute".
//! Because the marker sits on the inode, it follows the entry through local renames, and
//! a file replaced by a program (new inode) is no longer marked.
//!
//! Values:
//! * `D<source prefix>`: a directory not listed yet. `source prefix` is the S3 key prefix
//!   (ending in `/`) whose listing fills it; after a local rename it still names the old
//!   prefix, which is how the agent finds the objects to copy.
//! * `F<etag>\0<source key>`: a placeholder file: a sparse file with the object's size,
//!   mode and mtime, whose bytes must be fetched from `source key` before it is read.

/// Attribute name, NUL-terminated for direct use with the xattr syscalls.
pub const XATTR_NAME: &[u8] = b"user.s3shim\0";
/// Attribute name without the NUL.
pub const XATTR: &str = "user.s3shim";

pub const DIR_UNLISTED: u8 = b'D';
pub const FILE_PLACEHOLDER: u8 = b'F';

/// What a marker value says, borrowed from the value bytes.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Marker<'a> {
    /// A directory to be listed from `source_prefix`.
    Unlisted { source_prefix: &'a str },
    /// A file whose bytes are the object `source_key` with `etag`.
    Placeholder { etag: &'a str, source_key: &'a str },
}

impl<'a> Marker<'a> {
    /// Parses a marker value; `None` for anything malformed (treated as "no marker" by the
    /// agent, which then re-derives the state from its index).
    pub fn parse(value: &'a [u8]) -> Option<Marker<'a>> {
        let (&kind, rest) = value.split_first()?;
        let rest = core::str::from_utf8(rest).ok()?;
        match kind {
            DIR_UNLISTED => Some(Marker::Unlisted {
                source_prefix: rest,
            }),
            FILE_PLACEHOLDER => {
                let (etag, source_key) = rest.split_once('\0')?;
                Some(Marker::Placeholder { etag, source_key })
            }
            _ => None,
        }
    }

    /// Writes the value into `out`, returning the used length, or `None` if it does not fit.
    pub fn encode(&self, out: &mut [u8]) -> Option<usize> {
        let mut w = Writer { out, len: 0 };
        match *self {
            Marker::Unlisted { source_prefix } => {
                w.put(&[DIR_UNLISTED])?;
                w.put(source_prefix.as_bytes())?;
            }
            Marker::Placeholder { etag, source_key } => {
                w.put(&[FILE_PLACEHOLDER])?;
                w.put(etag.as_bytes())?;
                w.put(&[0])?;
                w.put(source_key.as_bytes())?;
            }
        }
        Some(w.len)
    }
}

struct Writer<'o> {
    out: &'o mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        self.out.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_kinds() {
        let mut buf = [0u8; 256];
        for m in [
            Marker::Unlisted {
                source_prefix: "ws/src/",
            },
            Marker::Placeholder {
                etag: "\"abc\"",
                source_key: "ws/a b/ü.txt",
            },
        ] {
            let n = m.encode(&mut buf).unwrap();
            assert_eq!(Marker::parse(&buf[..n]), Some(m));
        }
    }

    #[test]
    fn rejects_malformed_values() {
        assert_eq!(Marker::parse(b""), None);
        assert_eq!(Marker::parse(b"X123"), None);
        assert_eq!(Marker::parse(b"Fno-separator"), None);
        assert_eq!(Marker::parse(b"D\xff"), None);
    }

    #[test]
    fn encode_reports_overflow() {
        let mut small = [0u8; 4];
        let m = Marker::Unlisted {
            source_prefix: "long/prefix/",
        };
        assert_eq!(m.encode(&mut small), None);
    }
}
