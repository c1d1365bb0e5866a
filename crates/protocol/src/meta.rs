//! POSIX metadata on objects, in the convention s3fs-fuse reads and writes (and rclone
//! reads for mtime): user metadata `mode` (decimal `st_mode` including the file-type
//! bits), `mtime` (seconds, optionally `.nanoseconds`), `uid`, `gid`. Directories are
//! `name/` objects; symlinks are objects whose body is the target, with `S_IFLNK` mode.

/// User-metadata names as the S3 SDK sees them (without the `x-amz-meta-` prefix).
pub const MODE: &str = "mode";
pub const MTIME: &str = "mtime";
pub const UID: &str = "uid";
pub const GID: &str = "gid";

pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFLNK: u32 = 0o120000;

/// Default modes for objects that carry no `mode` (written by tools that store none).
pub const DEFAULT_FILE_MODE: u32 = S_IFREG | 0o644;
pub const DEFAULT_DIR_MODE: u32 = S_IFDIR | 0o755;

/// What kind of entry an object describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// Kind from a `mode` value; keys ending in `/` are directories whatever their mode.
pub fn kind_of(key: &str, mode: Option<u32>) -> Kind {
    if key.ends_with('/') {
        return Kind::Dir;
    }
    match mode.map(|m| m & S_IFMT) {
        Some(S_IFLNK) => Kind::Symlink,
        Some(S_IFDIR) => Kind::Dir,
        _ => Kind::File,
    }
}

/// Formats an mtime: whole seconds, plus `.` and nine digits when there are nanoseconds.
pub fn format_mtime(secs: i64, nanos: u32) -> String {
    if nanos == 0 {
        secs.to_string()
    } else {
        format!("{secs}.{nanos:09}")
    }
}

/// Parses an mtime written by us, s3fs (`secs`) or rclone (`secs.fraction`).
pub fn parse_mtime(s: &str) -> Option<(i64, u32)> {
    let s = s.trim();
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    let secs: i64 = whole.parse().ok()?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        // More precision than nanoseconds: keep the first nine digits.
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    let mut nanos: u32 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += u32::from(b - b'0') * 10u32.pow(8 - i as u32);
    }
    Some((secs, nanos))
}

/// Whether `mode` is a plausible `st_mode`: permission bits plus a real file type, or
/// permission bits alone (s3fs writes directory modes without the type).
fn plausible_mode(mode: u32) -> bool {
    let kind = mode & S_IFMT;
    mode <= 0o177777
        && matches!(
            kind,
            0 | S_IFREG | S_IFDIR | S_IFLNK | 0o010000 | 0o020000 | 0o060000 | 0o140000
        )
}

/// Parses a `mode` value: decimal as s3fs writes it (`33188`); octal as rclone's
/// `--metadata` writes it (`100644`), recognised because no decimal `st_mode` reads
/// that way; or with a leading `0o`.
pub fn parse_mode(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Some(oct) = s.strip_prefix("0o") {
        return u32::from_str_radix(oct, 8).ok();
    }
    let dec: Option<u32> = s.parse().ok();
    if let Some(d) = dec.filter(|d| plausible_mode(*d)) {
        return Some(d);
    }
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|o| plausible_mode(*o) && *o & S_IFMT != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtime_round_trip_and_peers() {
        assert_eq!(format_mtime(1700000000, 0), "1700000000");
        assert_eq!(format_mtime(1700000000, 5), "1700000000.000000005");
        assert_eq!(parse_mtime("1700000000"), Some((1700000000, 0)));
        assert_eq!(parse_mtime("1700000000.000000005"), Some((1700000000, 5)));
        assert_eq!(parse_mtime("1700000000.5"), Some((1700000000, 500_000_000)));
        assert_eq!(
            parse_mtime("1700000000.1234567891"),
            Some((1700000000, 123_456_789))
        );
        assert_eq!(parse_mtime("abc"), None);
        assert_eq!(parse_mtime("1.2x"), None);
    }

    #[test]
    fn modes_and_kinds() {
        assert_eq!(parse_mode("33188"), Some(S_IFREG | 0o644));
        assert_eq!(parse_mode("0o100755"), Some(S_IFREG | 0o755));
        // s3fs: decimal, directories without the type bits.
        assert_eq!(parse_mode("33261"), Some(S_IFREG | 0o755));
        assert_eq!(parse_mode("41471"), Some(S_IFLNK | 0o777));
        assert_eq!(parse_mode("493"), Some(0o755));
        assert_eq!(parse_mode("420"), Some(0o644));
        // rclone --metadata: octal with the type bits.
        assert_eq!(parse_mode("100644"), Some(S_IFREG | 0o644));
        assert_eq!(parse_mode("100755"), Some(S_IFREG | 0o755));
        assert_eq!(parse_mode("120777"), Some(S_IFLNK | 0o777));
        assert_eq!(parse_mode("40755"), Some(S_IFDIR | 0o755));
        assert_eq!(parse_mode("999999"), None);
        assert_eq!(kind_of("a/", None), Kind::Dir);
        assert_eq!(kind_of("a", Some(S_IFLNK | 0o777)), Kind::Symlink);
        assert_eq!(kind_of("a", Some(S_IFREG | 0o644)), Kind::File);
        assert_eq!(kind_of("a", None), Kind::File);
    }
}
