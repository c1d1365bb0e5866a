//! The mapping core: pure functions over byte strings and caller buffers.
//!
//! MOUNT is the path programs use (`/workspace`), TREE the cache directory that holds it
//! (`$S3SHIM_CACHE/tree`). Both are absolute, normalised, without a trailing `/`, and
//! neither is inside the other (checked by `config`). Every output buffer is written
//! NUL-terminated; lengths exclude the NUL.

use crate::buf::Writer;

/// The two prefixes the mapping works with.
#[derive(Debug, Clone, Copy)]
pub struct Prefixes<'a> {
    pub mount: &'a [u8],
    pub tree: &'a [u8],
}

/// `rest` of `path` after `prefix` when `path` is `prefix` itself or below it (`rest` is
/// empty or starts with `/`).
#[inline]
pub fn under<'p>(path: &'p [u8], prefix: &[u8]) -> Option<&'p [u8]> {
    if !starts_with(path, prefix) {
        return None;
    }
    let rest = path.get(prefix.len()..)?;
    match rest.first() {
        None | Some(b'/') => Some(rest),
        _ => None,
    }
}

/// `path.starts_with(prefix)`, eight bytes at a time and inline: every path a hooked call
/// passes is compared with both prefixes, and the call to `memcmp` behind a slice compare
/// cost more than the compare (a path outside usually differs in its first word or two).
#[inline(always)]
fn starts_with(path: &[u8], prefix: &[u8]) -> bool {
    let n = prefix.len();
    if path.len() < n {
        return false;
    }
    if n < 8 {
        return path.iter().zip(prefix).all(|(a, b)| a == b);
    }
    // SAFETY: both slices hold at least `n >= 8` bytes, and every read below ends at or
    // before `n`.
    let word = |s: &[u8], at: usize| unsafe { s.as_ptr().add(at).cast::<u64>().read_unaligned() };
    let mut at = 0;
    while at + 8 < n {
        if word(path, at) != word(prefix, at) {
            return false;
        }
        at += 8;
    }
    // The last word ends at `n` (it may overlap the one before).
    word(path, n - 8) == word(prefix, n - 8)
}

/// Whether `path` has a `..` component.
///
/// Every absolute path a hooked call passes goes through this scan, so it jumps from dot
/// to dot with libc's vectorised `memchr` (most paths have one dot, before an extension)
/// instead of looking at every byte: the per-byte loop was most of the shim's cost per
/// call outside the mount.
#[inline]
pub fn has_dotdot(path: &[u8]) -> bool {
    let mut from = 0;
    while let Some(rest) = path.get(from..) {
        // SAFETY: `rest` is a valid slice of `rest.len()` bytes.
        let hit = unsafe { libc::memchr(rest.as_ptr().cast(), i32::from(b'.'), rest.len()) };
        if hit.is_null() {
            return false;
        }
        let at = from + (hit as usize - rest.as_ptr() as usize);
        let starts = at == 0 || path.get(at - 1) == Some(&b'/');
        if starts
            && path.get(at + 1) == Some(&b'.')
            && matches!(path.get(at + 2), None | Some(b'/'))
        {
            return true;
        }
        from = at + 1;
    }
    false
}

/// Lexically normalises the absolute `path` into `out`: collapses `//` and `.`, and lets
/// `..` remove the previous component (never above `/`). A trailing `/`, `/.` or `/..`
/// leaves a trailing `/` (except on `/` itself), so "must be a directory" survives.
/// Returns `None` when `path` is not absolute or the result does not fit.
pub fn normalize(path: &[u8], out: &mut [u8]) -> Option<usize> {
    normalize_known(path, is_plain(path), out)
}

/// [`normalize`] for a caller that already knows whether `path` [`is_plain`] (the hooks'
/// first pass over a path found out; looking again byte by byte was a fifth of the
/// shim's cost per call in the tree).
pub fn normalize_known(path: &[u8], plain: bool, out: &mut [u8]) -> Option<usize> {
    if path.first() != Some(&b'/') {
        return None;
    }
    let mut w = Writer::new(out);
    if plain {
        // Most paths programs pass are normal already: a copy instead of the rebuild
        // component by component, which was a third of the shim's cost per call in the
        // tree.
        w.put(path)?;
        return Some(w.len);
    }
    w.put(b"/")?;
    let mut last: &[u8] = &[];
    for comp in path.split(|&b| b == b'/') {
        last = comp;
        match comp {
            b"" | b"." => {}
            b".." => {
                let cur = w.buf.get(..w.len)?;
                let cut = cur.iter().rposition(|&b| b == b'/').unwrap_or(0);
                w.len = cut.max(1);
                *w.buf.get_mut(w.len)? = 0;
            }
            name => {
                if w.len > 1 {
                    w.put(b"/")?;
                }
                w.put(name)?;
            }
        }
    }
    let dir_suffix = matches!(last, b"" | b"." | b"..");
    if dir_suffix && w.len > 1 {
        w.put(b"/")?;
    }
    Some(w.len)
}

/// Whether `path` needs no lexical normalisation: no empty component (`//`), no `.` or
/// `..` component. A single trailing `/` is kept by [`normalize`] too. A relative path
/// counts as if a `/` came before it, so a leading `./` or `../` makes it not plain.
pub fn is_plain(path: &[u8]) -> bool {
    // What the current component holds so far; a `/` ends it.
    #[derive(Clone, Copy, PartialEq)]
    enum Comp {
        Empty,
        Dot,
        DotDot,
        Name,
    }
    // The leading `/` of an absolute path ends no component.
    let mut comp = if path.first() == Some(&b'/') {
        Comp::Name
    } else {
        Comp::Empty
    };
    for &b in path {
        comp = match (b, comp) {
            (b'/', Comp::Name) => Comp::Empty,
            (b'/', _) => return false,
            (b'.', Comp::Empty) => Comp::Dot,
            (b'.', Comp::Dot) => Comp::DotDot,
            _ => Comp::Name,
        };
    }
    // A trailing `/` (Empty) is kept as it is; a trailing `.` or `..` is not.
    !matches!(comp, Comp::Dot | Comp::DotDot)
}

/// Where an absolute path lands.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Abs {
    /// Outside the mount and the tree: pass the original path on.
    Outside,
    /// A path in the tree as it is (e.g. `$S3SHIM_CACHE/tree/x`): pass the original.
    Tree,
    /// Under the mount: the real path is `out[..len]`.
    Mapped(usize),
    /// Named the mount but climbed out of it (`/workspace/../etc`): pass `out[..len]`.
    Escaped(usize),
    /// The mapped path does not fit `PATH_MAX`.
    TooLong,
}

/// Maps an absolute path. Costs a prefix compare and a scan for paths outside.
pub fn map_abs(p: &Prefixes<'_>, path: &[u8], out: &mut [u8]) -> Abs {
    map_abs_plain(p, path, is_plain(path), out)
}

/// [`map_abs`] for a caller that already knows whether `path` [`is_plain`]. A path that
/// is not plain is normalised before the prefixes are compared: `/a/../workspace`,
/// `//workspace` and `/./workspace` all name the mount.
pub fn map_abs_plain(p: &Prefixes<'_>, path: &[u8], plain: bool, out: &mut [u8]) -> Abs {
    let in_mount = under(path, p.mount).is_some();
    if !in_mount && plain {
        if under(path, p.tree).is_some() {
            return Abs::Tree;
        }
        return Abs::Outside;
    }
    // Normalise at an offset that leaves room to swap MOUNT for TREE in place.
    let shift = p.tree.len().saturating_sub(p.mount.len());
    let Some(slot) = out.get_mut(shift..) else {
        return Abs::TooLong;
    };
    let Some(n) = normalize_known(path, plain, slot) else {
        return Abs::TooLong;
    };
    let norm_end = shift + n;
    let Some(norm) = out.get(shift..norm_end) else {
        return Abs::TooLong;
    };
    if under(norm, p.mount).is_some() {
        // out = TREE + rest; rest = norm[mount.len()..].
        let rest_start = shift + p.mount.len();
        let rest_len = norm_end - rest_start;
        let total = p.tree.len() + rest_len;
        if total + 1 > out.len() {
            return Abs::TooLong;
        }
        if p.tree.len() < p.mount.len() {
            out.copy_within(rest_start..norm_end, p.tree.len());
        }
        if let Some(head) = out.get_mut(..p.tree.len()) {
            head.copy_from_slice(p.tree);
        }
        if let Some(nul) = out.get_mut(total) {
            *nul = 0;
        }
        return Abs::Mapped(total);
    }
    if under(norm, p.tree).is_some() {
        return Abs::Tree;
    }
    if in_mount {
        out.copy_within(shift..=norm_end, 0);
        return Abs::Escaped(n);
    }
    Abs::Outside
}

/// Reverse mapping result.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Rev {
    /// Not a tree path: leave it.
    NotTree,
    /// `out[..len]` holds MOUNT + rest.
    Mapped(usize),
    /// MOUNT + rest needs `needed` bytes (without the NUL) and `out` is smaller.
    TooLong(usize),
}

/// Maps a real path under TREE back to MOUNT (`getcwd`, `realpath`, `readlink`).
pub fn reverse(p: &Prefixes<'_>, real: &[u8], out: &mut [u8]) -> Rev {
    let Some(rest) = under(real, p.tree) else {
        return Rev::NotTree;
    };
    let needed = p.mount.len() + rest.len();
    let mut w = Writer::new(out);
    if w.put(p.mount).and_then(|_| w.put(rest)).is_none() {
        return Rev::TooLong(needed);
    }
    Rev::Mapped(needed)
}

/// `base + "/" + rel` into `out` (for resolving relative paths against a directory).
pub fn join(base: &[u8], rel: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut w = Writer::new(out);
    w.put(base)?;
    if base.last() != Some(&b'/') {
        w.put(b"/")?;
    }
    w.put(rel)?;
    Some(w.len)
}

/// The path relative to TREE of a normalised real path under it (`""` for TREE).
pub fn rel_in_tree<'r>(p: &Prefixes<'_>, real: &'r [u8]) -> Option<&'r [u8]> {
    let rest = under(real, p.tree)?;
    let rest = rest.strip_prefix(b"/").unwrap_or(rest);
    Some(rest.strip_suffix(b"/").unwrap_or(rest))
}

/// End of the parent of `path[..end]` (the index of its last `/`, at least `1`), skipping
/// trailing slashes; `None` at `/`.
pub fn parent_end(path: &[u8], end: usize) -> Option<usize> {
    let mut s = path.get(..end)?;
    while s.len() > 1 && s.last() == Some(&b'/') {
        s = s.get(..s.len() - 1)?;
    }
    if s.len() <= 1 {
        return None;
    }
    let i = s.iter().rposition(|&b| b == b'/')?;
    Some(i.max(1))
}

/// The first component of a relative path.
pub fn first_component(path: &[u8]) -> &[u8] {
    path.split(|&b| b == b'/')
        .find(|c| !c.is_empty())
        .unwrap_or(&[])
}

/// The `n`th component (from 0) of an absolute path.
pub fn nth_component(path: &[u8], n: usize) -> Option<&[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty()).nth(n)
}

/// Number of components of a normalised absolute path (`/` has 0).
pub fn depth(path: &[u8]) -> usize {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty()).count()
}

/// The parent of a path as a path usable from the cwd: `/a/b` -> `/a`, `/a` -> `/`,
/// `a/b/` -> `a`, `b` -> `.`.
pub fn parent_of(path: &[u8]) -> &[u8] {
    let mut t = path;
    while t.len() > 1 && t.last() == Some(&b'/') {
        t = t.get(..t.len() - 1).unwrap_or(t);
    }
    match t.iter().rposition(|&c| c == b'/') {
        Some(0) => b"/",
        Some(i) => t.get(..i).unwrap_or(b"."),
        None => b".",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        let mut b = [0u8; 64];
        let n = normalize(s.as_bytes(), &mut b).unwrap();
        assert_eq!(b[n], 0);
        String::from_utf8(b[..n].to_vec()).unwrap()
    }

    #[test]
    fn normalisation() {
        assert_eq!(norm("/"), "/");
        assert_eq!(norm("//"), "/");
        assert_eq!(norm("/a//b/./c"), "/a/b/c");
        assert_eq!(norm("/a/b/../c"), "/a/c");
        assert_eq!(norm("/a/.."), "/");
        assert_eq!(norm("/.."), "/");
        assert_eq!(norm("/../../x"), "/x");
        assert_eq!(norm("/a/b/"), "/a/b/");
        assert_eq!(norm("/a/b/."), "/a/b/");
        assert_eq!(norm("/a/b/c/.."), "/a/b/");
        assert_eq!(norm("/a/..b/c"), "/a/..b/c");
        assert_eq!(norm("/a/.../c"), "/a/.../c");
        assert!(normalize(b"rel", &mut [0u8; 16]).is_none());
        assert!(
            normalize(b"/abcdefgh", &mut [0u8; 9]).is_none(),
            "no room for NUL"
        );
        assert!(normalize(b"/abcdefgh", &mut [0u8; 10]).is_some());
        assert_eq!(norm("/.git/x"), "/.git/x");
        assert_eq!(norm("/a/.b/..c/"), "/a/.b/..c/");
    }

    /// The copy taken for normal paths agrees with the rebuild: every result is normal,
    /// and normalising it again changes nothing.
    #[test]
    fn normal_paths_are_fixed_points() {
        let parts = ["", ".", "..", "a", ".a", "..a", "a.", "..."];
        for x in parts {
            for y in parts {
                for z in parts {
                    for tail in ["", "/"] {
                        let p = format!("/{x}/{y}/{z}{tail}");
                        let once = norm(&p);
                        assert!(is_plain(once.as_bytes()), "{p} -> {once}");
                        assert_eq!(norm(&once), once, "{p}");
                        assert_eq!(is_plain(p.as_bytes()), once == p, "{p}");
                    }
                }
            }
        }
    }

    #[test]
    fn dotdot_detection() {
        assert!(has_dotdot(b".."));
        assert!(has_dotdot(b"../x"));
        assert!(has_dotdot(b"/a/../b"));
        assert!(has_dotdot(b"/a/.."));
        assert!(!has_dotdot(b"/a/..b"));
        assert!(!has_dotdot(b"a..b/c"));
        assert!(!has_dotdot(b"/a/./b"));
        assert!(!has_dotdot(b""));
        assert!(!has_dotdot(b"..."));
        assert!(!has_dotdot(b"/a/.../b"));
        assert!(!has_dotdot(b"/a/x.."));
        assert!(has_dotdot(b"/a.b/./x.y/../z"));
        assert!(has_dotdot(b"a/b/.."));
    }

    const P: Prefixes<'static> = Prefixes {
        mount: b"/workspace",
        tree: b"/var/cache/s3/tree",
    };

    fn map(p: &Prefixes<'_>, s: &str) -> (Abs, String) {
        let mut b = [0u8; 128];
        let r = map_abs(p, s.as_bytes(), &mut b);
        let text = match r {
            Abs::Mapped(n) | Abs::Escaped(n) => {
                assert_eq!(b[n], 0);
                String::from_utf8(b[..n].to_vec()).unwrap()
            }
            _ => String::new(),
        };
        (r, text)
    }

    #[test]
    fn mapping() {
        assert_eq!(map(&P, "/workspace").1, "/var/cache/s3/tree");
        assert_eq!(map(&P, "/workspace/").1, "/var/cache/s3/tree/");
        assert_eq!(map(&P, "/workspace/a/b").1, "/var/cache/s3/tree/a/b");
        assert_eq!(map(&P, "/workspace//a/./b").1, "/var/cache/s3/tree/a/b");
        assert_eq!(map(&P, "/workspace/a/../b").1, "/var/cache/s3/tree/b");
        assert_eq!(map(&P, "/workspace/a/..").1, "/var/cache/s3/tree/");
        assert_eq!(map(&P, "/workspace/..").0, Abs::Escaped(1));
        assert_eq!(map(&P, "/workspace/..").1, "/");
        assert_eq!(map(&P, "/workspace/../etc").1, "/etc");
        assert_eq!(
            map(&P, "/workspace/a/../../workspace/c").1,
            "/var/cache/s3/tree/c"
        );
        assert_eq!(map(&P, "/workspacefoo").0, Abs::Outside);
        assert_eq!(map(&P, "/work").0, Abs::Outside);
        assert_eq!(map(&P, "/etc/passwd").0, Abs::Outside);
        assert_eq!(map(&P, "/tmp/../workspace/x").1, "/var/cache/s3/tree/x");
        assert_eq!(map(&P, "/tmp/../etc").0, Abs::Outside);
        assert_eq!(map(&P, "/var/cache/s3/tree").0, Abs::Tree);
        assert_eq!(map(&P, "/var/cache/s3/tree/a").0, Abs::Tree);
        assert_eq!(map(&P, "/var/cache/s3/tree/a/../b").0, Abs::Tree);
        assert_eq!(map(&P, "/var/cache/s3/tree/../x").0, Abs::Outside);
        assert_eq!(map(&P, "/var/cache/s3/treex").0, Abs::Outside);
        // Written without `..`, but not normal: still the mount (these used to escape).
        assert_eq!(map(&P, "//workspace/x").1, "/var/cache/s3/tree/x");
        assert_eq!(map(&P, "/./workspace/x").1, "/var/cache/s3/tree/x");
        assert_eq!(map(&P, "/./workspace").1, "/var/cache/s3/tree");
        assert_eq!(map(&P, "/var//cache/s3/tree/a").0, Abs::Tree);
        assert_eq!(map(&P, "//etc/passwd").0, Abs::Outside);
    }

    /// The word-at-a-time prefix compare, at every prefix length around a word.
    #[test]
    fn under_compares_every_byte_of_the_prefix() {
        let full = b"/abcdefghijklmnopqrstuvwxyz0123";
        for n in 1..full.len() {
            let prefix = &full[..n];
            assert_eq!(under(prefix, prefix), Some(&b""[..]), "{n}");
            let mut below = prefix.to_vec();
            below.extend_from_slice(b"/x");
            assert_eq!(under(&below, prefix), Some(&b"/x"[..]), "{n}");
            assert!(under(full, prefix).is_none(), "{n}: no slash after it");
            for i in 0..n {
                let mut other = below.clone();
                other[i] ^= 0x20;
                assert_eq!(under(&other, prefix), None, "{n}: byte {i} differs");
            }
            assert_eq!(under(&prefix[..n - 1], prefix), None, "{n}: shorter");
        }
    }

    #[test]
    fn mapping_with_a_tree_shorter_than_the_mount() {
        let p = Prefixes {
            mount: b"/home/user/projects/workspace",
            tree: b"/c/tree",
        };
        assert_eq!(
            map(&p, "/home/user/projects/workspace/x/y").1,
            "/c/tree/x/y"
        );
        assert_eq!(map(&p, "/home/user/projects/workspace").1, "/c/tree");
        assert_eq!(
            map(&p, "/home/user/projects/workspace/../w2").1,
            "/home/user/projects/w2"
        );
    }

    #[test]
    fn mapping_respects_the_buffer() {
        let mut b = [0u8; 24];
        // "/var/cache/s3/tree/abcde" is 24 bytes: no room for the NUL.
        assert_eq!(map_abs(&P, b"/workspace/abcde", &mut b), Abs::TooLong);
        assert_eq!(map_abs(&P, b"/workspace/abcd", &mut b), Abs::Mapped(23));
        assert_eq!(&b[..24], b"/var/cache/s3/tree/abcd\0");
        let mut tiny = [0u8; 4];
        assert_eq!(map_abs(&P, b"/workspace/x", &mut tiny), Abs::TooLong);
    }

    #[test]
    fn reverse_mapping() {
        let mut b = [0u8; 64];
        assert_eq!(reverse(&P, b"/var/cache/s3/tree", &mut b), Rev::Mapped(10));
        assert_eq!(&b[..11], b"/workspace\0");
        assert_eq!(
            reverse(&P, b"/var/cache/s3/tree/a/b", &mut b),
            Rev::Mapped(14)
        );
        assert_eq!(&b[..15], b"/workspace/a/b\0");
        assert_eq!(reverse(&P, b"/var/cache/s3/treex", &mut b), Rev::NotTree);
        assert_eq!(reverse(&P, b"/etc", &mut b), Rev::NotTree);
        let mut small = [0u8; 14];
        assert_eq!(
            reverse(&P, b"/var/cache/s3/tree/a/b", &mut small),
            Rev::TooLong(14)
        );
        let mut exact = [0u8; 15];
        assert_eq!(
            reverse(&P, b"/var/cache/s3/tree/a/b", &mut exact),
            Rev::Mapped(14)
        );
    }

    #[test]
    fn relative_helpers() {
        let mut b = [0u8; 64];
        let n = join(b"/workspace/a", b"../b", &mut b).unwrap();
        assert_eq!(&b[..n], b"/workspace/a/../b");
        let n = join(b"/", b"x", &mut b).unwrap();
        assert_eq!(&b[..n], b"/x");
        assert_eq!(rel_in_tree(&P, b"/var/cache/s3/tree"), Some(&b""[..]));
        assert_eq!(rel_in_tree(&P, b"/var/cache/s3/tree/"), Some(&b""[..]));
        assert_eq!(
            rel_in_tree(&P, b"/var/cache/s3/tree/a/b/"),
            Some(&b"a/b"[..])
        );
        assert_eq!(rel_in_tree(&P, b"/var/cache/s3/treea"), None);
        assert_eq!(parent_end(b"/a/b/c", 6), Some(4));
        assert_eq!(parent_end(b"/a/b/c//", 8), Some(4));
        assert_eq!(parent_end(b"/a", 2), Some(1));
        assert_eq!(parent_end(b"/", 1), None);
        assert_eq!(first_component(b"./x"), b".");
        assert_eq!(first_component(b"workspace/x"), b"workspace");
        assert_eq!(nth_component(b"/home/u/ws", 1), Some(&b"u"[..]));
        assert_eq!(nth_component(b"/home/u/ws", 3), None);
        assert_eq!(depth(b"/"), 0);
        assert_eq!(depth(b"/home/u"), 2);
    }

    #[test]
    fn parents() {
        assert_eq!(parent_of(b"/a/b"), b"/a");
        assert_eq!(parent_of(b"/a"), b"/");
        assert_eq!(parent_of(b"/a/b//"), b"/a");
        assert_eq!(parent_of(b"a/b/"), b"a");
        assert_eq!(parent_of(b"b"), b".");
        assert_eq!(parent_of(b"/proc/self/fd/7/x"), b"/proc/self/fd/7");
    }
}
