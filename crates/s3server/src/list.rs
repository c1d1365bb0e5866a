//! ListObjects / ListObjectsV2 paging over the flat key index.
//!
//! Keys are compared as UTF-8 bytes (S3's order). With a delimiter, every key whose rest
//! after the prefix contains the delimiter rolls up into one common prefix, which counts
//! as one entry against max-keys; the scan then jumps past everything under that prefix
//! instead of reading it.

use rusqlite::Connection;
use s3s::S3Result;

use crate::store::{scan_objects, ObjectRow};

pub(crate) enum Entry {
    Object(Box<ObjectRow>),
    Prefix(String),
}

pub(crate) struct Page {
    pub entries: Vec<Entry>,
    pub truncated: bool,
}

impl Page {
    /// The key or common prefix to resume after (NextMarker / continuation token).
    pub fn last(&self) -> Option<&str> {
        self.entries.last().map(|e| match e {
            Entry::Object(o) => o.key.as_str(),
            Entry::Prefix(p) => p.as_str(),
        })
    }
}

/// The smallest byte string greater than every string that starts with `p`, or None when
/// there is none (empty or all 0xFF, which UTF-8 keys never contain).
pub(crate) fn prefix_successor(p: &[u8]) -> Option<Vec<u8>> {
    let mut v = p.to_vec();
    while let Some(last) = v.pop() {
        if last < 0xFF {
            v.push(last + 1);
            return Some(v);
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The common prefix `key` rolls up into, if any.
pub(crate) fn common_prefix<'a>(key: &'a str, prefix: &str, delimiter: &str) -> Option<&'a str> {
    let rest = key.as_bytes().strip_prefix(prefix.as_bytes())?;
    let i = find(rest, delimiter.as_bytes())?;
    // prefix and delimiter are whole strings, so this cut is on a char boundary.
    key.get(..prefix.len() + i + delimiter.len())
}

/// Where a scan starts: a key bound (`inclusive` or not), or nothing left to list.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Start {
    From { key: Vec<u8>, inclusive: bool },
    End,
}

/// The start of a listing that resumes after `after` (marker, start-after or token). If
/// `after` lies inside a common prefix, that whole prefix was already returned, so skip it.
pub(crate) fn start_after(prefix: &str, delimiter: &str, after: Option<&str>) -> Start {
    let from_prefix = Start::From {
        key: prefix.as_bytes().to_vec(),
        inclusive: true,
    };
    let Some(after) = after else {
        return from_prefix;
    };
    if after.as_bytes() < prefix.as_bytes() {
        return from_prefix;
    }
    if let Some(cp) = common_prefix(after, prefix, delimiter) {
        return match prefix_successor(cp.as_bytes()) {
            Some(key) => Start::From {
                key,
                inclusive: true,
            },
            None => Start::End,
        };
    }
    Start::From {
        key: after.as_bytes().to_vec(),
        inclusive: false,
    }
}

pub(crate) fn list_page(
    conn: &Connection,
    bucket: &str,
    prefix: &str,
    delimiter: &str,
    after: Option<&str>,
    max_keys: usize,
) -> S3Result<Page> {
    let mut page = Page {
        entries: Vec::new(),
        truncated: false,
    };
    if max_keys == 0 {
        return Ok(page);
    }
    let upper = prefix_successor(prefix.as_bytes());
    let mut start = start_after(prefix, delimiter, after);
    'scan: while let Start::From { key, inclusive } = &start {
        // One row more than still fits tells whether the listing is truncated. With a
        // delimiter, read in small batches: a batch that hits a common prefix is cut short.
        let want = max_keys - page.entries.len() + 1;
        let batch = if delimiter.is_empty() {
            want
        } else {
            want.min(64)
        };
        let rows = scan_objects(conn, bucket, key, *inclusive, upper.as_deref(), batch)?;
        let exhausted = rows.len() < batch;
        let mut next = None;
        let mut jumped = false;
        for row in rows {
            if page.entries.len() == max_keys {
                page.truncated = true;
                break 'scan;
            }
            if let Some(cp) = common_prefix(&row.key, prefix, delimiter) {
                let cp = cp.to_owned();
                next = Some(match prefix_successor(cp.as_bytes()) {
                    Some(key) => Start::From {
                        key,
                        inclusive: true,
                    },
                    None => Start::End,
                });
                page.entries.push(Entry::Prefix(cp));
                // Jump past the rolled-up keys rather than reading them.
                jumped = true;
                break;
            }
            next = Some(Start::From {
                key: row.key.as_bytes().to_vec(),
                inclusive: false,
            });
            page.entries.push(Entry::Object(Box::new(row)));
        }
        match next {
            Some(n) => start = n,
            None => break,
        }
        if exhausted && !jumped {
            break;
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor() {
        assert_eq!(prefix_successor(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_successor(b""), None);
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
    }

    #[test]
    fn roll_up() {
        assert_eq!(common_prefix("d/x/y", "", "/"), Some("d/"));
        assert_eq!(common_prefix("d/x/y", "d/", "/"), Some("d/x/"));
        assert_eq!(common_prefix("d/", "d/", "/"), None);
        assert_eq!(common_prefix("d/file", "d/", "/"), None);
        assert_eq!(common_prefix("d/file", "d/", ""), None);
        assert_eq!(common_prefix("aXXb", "", "XX"), Some("aXX"));
    }

    #[test]
    fn resume_inside_common_prefix_skips_it() {
        assert_eq!(
            start_after("", "/", Some("d/")),
            Start::From {
                key: b"d0".to_vec(),
                inclusive: true
            }
        );
        assert_eq!(
            start_after("", "", Some("d/")),
            Start::From {
                key: b"d/".to_vec(),
                inclusive: false
            }
        );
        assert_eq!(
            start_after("p/", "/", Some("a")),
            Start::From {
                key: b"p/".to_vec(),
                inclusive: true
            }
        );
    }
}
