//! Which names and paths are acceptable, and how relative paths map to S3 keys.
//!
//! Object keys come from a bucket anyone may write to, so a key is turned into a local
//! name only through [`child_name`], which refuses anything that could leave the
//! directory being listed (`..`, `/`, empty components, NUL, overlong names).

use std::fmt;

pub use s3shim_protocol_core::names::{is_valid_rel_path, NAME_MAX};

/// Why a listed key was not turned into a local entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// The key is outside the prefix being listed (a misbehaving server).
    NotUnderPrefix,
    /// The key names the directory itself (its `dir/` marker object); not an error.
    SelfMarker,
    /// An empty component, as in `a//b`.
    EmptyName,
    /// `.` or `..`.
    DotName,
    /// A `/` inside what should be one name (a server that ignored the delimiter).
    Slash,
    /// A NUL byte, which no POSIX name can hold.
    Nul,
    /// Longer than `NAME_MAX` bytes.
    TooLong,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejected::NotUnderPrefix => "key is not under the listed prefix",
            Rejected::SelfMarker => "key is the directory's own marker",
            Rejected::EmptyName => "key has an empty path component (`//`)",
            Rejected::DotName => "key has a `.` or `..` component",
            Rejected::Slash => "key has a `/` inside one name",
            Rejected::Nul => "key contains a NUL byte",
            Rejected::TooLong => "name is longer than 255 bytes",
        })
    }
}

fn check_name(name: &str) -> Result<&str, Rejected> {
    if name.is_empty() {
        return Err(Rejected::EmptyName);
    }
    if name == "." || name == ".." {
        return Err(Rejected::DotName);
    }
    if name.contains('/') {
        return Err(Rejected::Slash);
    }
    if name.contains('\0') {
        return Err(Rejected::Nul);
    }
    if name.len() > NAME_MAX {
        return Err(Rejected::TooLong);
    }
    Ok(name)
}

/// The local name of an object listed under `prefix` (with delimiter `/`).
pub fn child_name<'k>(prefix: &str, key: &'k str) -> Result<&'k str, Rejected> {
    let name = key.strip_prefix(prefix).ok_or(Rejected::NotUnderPrefix)?;
    if name.is_empty() {
        return Err(Rejected::SelfMarker);
    }
    check_name(name)
}

/// The local name of a common prefix (`prefix + name + "/"`) listed under `prefix`.
pub fn child_dir_name<'k>(prefix: &str, common_prefix: &'k str) -> Result<&'k str, Rejected> {
    let rest = common_prefix
        .strip_prefix(prefix)
        .ok_or(Rejected::NotUnderPrefix)?;
    let name = rest.strip_suffix('/').ok_or(Rejected::Slash)?;
    check_name(name)
}

/// Normalises a user-given key prefix: no leading `/`, a trailing `/` unless empty.
/// Refuses `.`/`..`/empty components, which would make keys no other S3 tool agrees on.
pub fn normalize_key_prefix(prefix: &str) -> Result<String, String> {
    let trimmed = prefix.trim_start_matches('/').trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    for c in trimmed.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return Err(format!(
                "key prefix {prefix:?} has an empty, `.` or `..` component; use a plain prefix such as `team/ws/`"
            ));
        }
    }
    Ok(format!("{trimmed}/"))
}

/// The key of the object for `rel` under `prefix`: `prefix + rel`, plus `/` for a
/// directory's marker object. The root directory has no object of its own.
pub fn key_for(prefix: &str, rel: &str, is_dir: bool) -> String {
    let mut k = String::with_capacity(prefix.len() + rel.len() + 1);
    k.push_str(prefix);
    k.push_str(rel);
    if is_dir && !rel.is_empty() {
        k.push('/');
    }
    k
}

/// The prefix under which a directory's children are listed.
pub fn dir_prefix(prefix: &str, rel: &str) -> String {
    key_for(prefix, rel, true)
}

/// `parent/name`, or `name` at the root.
pub fn join_rel(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_keys_are_refused() {
        let p = "ws/";
        assert_eq!(child_name(p, "ws/a.txt"), Ok("a.txt"));
        assert_eq!(child_name(p, "ws/"), Err(Rejected::SelfMarker));
        assert_eq!(child_name(p, "ws/.."), Err(Rejected::DotName));
        assert_eq!(child_name(p, "ws/."), Err(Rejected::DotName));
        assert_eq!(child_name(p, "ws/a/b"), Err(Rejected::Slash));
        assert_eq!(child_name(p, "other/x"), Err(Rejected::NotUnderPrefix));
        assert_eq!(child_name(p, "ws/a\0b"), Err(Rejected::Nul));
        let long = format!("ws/{}", "x".repeat(1100));
        assert_eq!(child_name(p, &long), Err(Rejected::TooLong));
        assert_eq!(child_dir_name(p, "ws/sub/"), Ok("sub"));
        assert_eq!(child_dir_name(p, "ws//"), Err(Rejected::EmptyName));
        assert_eq!(child_dir_name(p, "ws/../"), Err(Rejected::DotName));
        assert_eq!(child_dir_name("", "/abs/"), Err(Rejected::Slash));
    }

    #[test]
    fn rel_paths() {
        assert!(is_valid_rel_path(b""));
        assert!(is_valid_rel_path("a/b c/ü".as_bytes()));
        for bad in [&b"/a"[..], b"a/", b"a//b", b"a/../b", b"./a", b"a\0b"] {
            assert!(!is_valid_rel_path(bad), "{bad:?}");
        }
        assert!(!is_valid_rel_path("x".repeat(256).as_bytes()));
    }

    #[test]
    fn prefixes_and_keys() {
        assert_eq!(normalize_key_prefix("").unwrap(), "");
        assert_eq!(normalize_key_prefix("/").unwrap(), "");
        assert_eq!(normalize_key_prefix("ws").unwrap(), "ws/");
        assert_eq!(normalize_key_prefix("/team/ws/").unwrap(), "team/ws/");
        assert!(normalize_key_prefix("a//b").is_err());
        assert!(normalize_key_prefix("a/../b").is_err());
        assert_eq!(key_for("ws/", "a/b", false), "ws/a/b");
        assert_eq!(key_for("ws/", "a/b", true), "ws/a/b/");
        assert_eq!(key_for("ws/", "", true), "ws/");
        assert_eq!(dir_prefix("", ""), "");
        assert_eq!(join_rel("", "a"), "a");
        assert_eq!(join_rel("a", "b"), "a/b");
    }
}
