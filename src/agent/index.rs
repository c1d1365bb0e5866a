//! The agent's index (SQLite): which paths are known to be in S3, and the local state
//! they were in when they were. A row for `path` says "the object for `path` exists in
//! S3 with `etag`, and it matches the local entry whose fingerprint is this". A path with
//! no row is not known to be in S3, so a missing local file without a row is never
//! deleted remotely, and a local file without a row is uploaded.

use super::error::{Context, Result};
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File = 0,
    Dir = 1,
    Symlink = 2,
}

impl Kind {
    fn from_i64(v: i64) -> Kind {
        match v {
            1 => Kind::Dir,
            2 => Kind::Symlink,
            _ => Kind::File,
        }
    }
}

/// The local state a synced entry was in: any change to content, mode or times moves
/// ctime, and users cannot set ctime, so this catches every local change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub mode: u32,
}

impl Fingerprint {
    pub fn of(m: &std::fs::Metadata) -> Fingerprint {
        use std::os::unix::fs::MetadataExt;
        Fingerprint {
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
            mode: m.mode(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub kind: Kind,
    pub etag: String,
    pub fp: Fingerprint,
}

impl Row {
    pub fn new(kind: Kind, etag: String, fp: Fingerprint) -> Row {
        Row { kind, etag, fp }
    }

    /// Recorded before the first request for a path: an object may exist for it (so a
    /// path gone by the next start is deleted in S3), but none is known. Its empty
    /// fingerprint matches no local state, so the path is reconciled again.
    pub fn intent(kind: Kind) -> Row {
        Row::new(kind, String::new(), Fingerprint::default())
    }

    pub fn is_intent(&self) -> bool {
        self.etag.is_empty() && self.fp == Fingerprint::default()
    }
}

pub struct Index {
    db: Mutex<Connection>,
}

impl Index {
    pub fn open(path: &Path) -> Result<Index> {
        let db = Connection::open(path)
            .with_context(|| format!("opening the index {}", path.display()))?;
        // WAL + NORMAL: a crash loses at most the last transactions, which the start-up
        // reconcile scan redoes from the cache and the bucket.
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS entries (
                path TEXT PRIMARY KEY,
                kind INTEGER NOT NULL,
                etag TEXT NOT NULL,
                ino INTEGER NOT NULL,
                size INTEGER NOT NULL,
                mtime_ns TEXT NOT NULL,
                ctime_ns TEXT NOT NULL,
                mode INTEGER NOT NULL
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS settings (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL
            ) WITHOUT ROWID;",
        )?;
        Ok(Index { db: Mutex::new(db) })
    }

    /// This cache's writer id (random, made once, kept with the index).
    pub fn writer_id(&self) -> Result<String> {
        let db = self.db.lock();
        db.execute(
            "INSERT OR IGNORE INTO settings (name, value) VALUES ('writer', ?1)",
            params![hex::encode(rand::random::<[u8; 8]>())],
        )?;
        Ok(db.query_row(
            "SELECT value FROM settings WHERE name = 'writer'",
            [],
            |r| r.get(0),
        )?)
    }

    /// The workspace this cache serves (`Settings::workspace_desc`), if recorded.
    pub fn workspace(&self) -> Result<Option<String>> {
        let db = self.db.lock();
        Ok(db
            .query_row(
                "SELECT value FROM settings WHERE name = 'workspace'",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_workspace(&self, desc: &str) -> Result<()> {
        self.db.lock().execute(
            "INSERT OR REPLACE INTO settings (name, value) VALUES ('workspace', ?1)",
            params![desc],
        )?;
        Ok(())
    }

    pub fn get(&self, path: &str) -> Result<Option<Row>> {
        let db = self.db.lock();
        let row = db
            .query_row(
                "SELECT kind, etag, ino, size, mtime_ns, ctime_ns, mode FROM entries WHERE path = ?1",
                params![path],
                |r| {
                    Ok(Row {
                        kind: Kind::from_i64(r.get(0)?),
                        etag: r.get(1)?,
                        fp: Fingerprint {
                            ino: r.get::<_, i64>(2)? as u64,
                            size: r.get::<_, i64>(3)? as u64,
                            mtime_ns: parse_i128(&r.get::<_, String>(4)?),
                            ctime_ns: parse_i128(&r.get::<_, String>(5)?),
                            mode: r.get::<_, i64>(6)? as u32,
                        },
                    })
                },
            )
            .optional()?;
        Ok(row)
    }

    pub fn put(&self, path: &str, row: &Row) -> Result<()> {
        self.put_many(std::slice::from_ref(&(path.to_string(), row.clone())))
    }

    pub fn put_many(&self, rows: &[(String, Row)]) -> Result<()> {
        let mut db = self.db.lock();
        let tx = db.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR REPLACE INTO entries (path, kind, etag, ino, size, mtime_ns, ctime_ns, mode)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (path, r) in rows {
                st.execute(params![
                    path,
                    r.kind as i64,
                    r.etag,
                    r.fp.ino as i64,
                    r.fp.size as i64,
                    r.fp.mtime_ns.to_string(),
                    r.fp.ctime_ns.to_string(),
                    r.fp.mode as i64,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn delete(&self, path: &str) -> Result<()> {
        self.db
            .lock()
            .execute("DELETE FROM entries WHERE path = ?1", params![path])?;
        Ok(())
    }

    /// Deletes `path` and every row below it.
    pub fn delete_subtree(&self, path: &str) -> Result<()> {
        let db = self.db.lock();
        if path.is_empty() {
            db.execute("DELETE FROM entries", [])?;
        } else {
            let (lo, hi) = subtree_bounds(path);
            db.execute(
                "DELETE FROM entries WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
                params![path, lo, hi],
            )?;
        }
        Ok(())
    }

    /// Turns the rows of `path` and everything below it into intents (see
    /// [`Row::intent`]) before their objects are deleted: an agent killed after the
    /// deletes and before their rows go must not find, on its next start, rows that say
    /// objects exist (a directory made again under that name would then never be
    /// uploaded: its row matches).
    pub fn subtree_to_intents(&self, path: &str) -> Result<()> {
        let db = self.db.lock();
        let (lo, hi) = subtree_bounds(path);
        let i = Row::intent(Kind::File).fp;
        db.execute(
            "UPDATE entries SET etag = '', ino = ?4, size = ?5, mtime_ns = ?6, ctime_ns = ?7, mode = ?8
             WHERE path = ?1 OR (path >= ?2 AND path < ?3)",
            params![
                path,
                lo,
                hi,
                i.ino as i64,
                i.size as i64,
                i.mtime_ns.to_string(),
                i.ctime_ns.to_string(),
                i.mode as i64
            ],
        )?;
        Ok(())
    }

    /// Whether `path` or anything below it has a row (was seen in S3, or may have been
    /// written there).
    pub fn knows_subtree(&self, path: &str) -> Result<bool> {
        let db = self.db.lock();
        let (lo, hi) = subtree_bounds(path);
        let n: i64 = db.query_row(
            "SELECT EXISTS(SELECT 1 FROM entries WHERE path = ?1 OR (path >= ?2 AND path < ?3))",
            params![path, lo, hi],
            |r| r.get(0),
        )?;
        Ok(n != 0)
    }

    /// Calls `f` with every indexed path, without collecting them: a scan of a large
    /// index keeps one path in memory at a time.
    pub fn each_path(&self, mut f: impl FnMut(&str)) -> Result<()> {
        let db = self.db.lock();
        let mut st = db.prepare_cached("SELECT path FROM entries")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            f(r.get_ref(0)?.as_str()?);
        }
        Ok(())
    }

    /// (path, size) of every file known to be in S3.
    pub fn files(&self) -> Result<Vec<(String, u64)>> {
        let db = self.db.lock();
        let mut st = db.prepare("SELECT path, size FROM entries WHERE kind = ?1")?;
        let rows = st.query_map(params![Kind::File as i64], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub fn count(&self) -> Result<u64> {
        let db = self.db.lock();
        Ok(db.query_row("SELECT COUNT(*) FROM entries", [], |r| r.get::<_, i64>(0))? as u64)
    }
}

/// Rows strictly below `path` sort in `[path + "/", path + "0")`: `0` follows `/`.
fn subtree_bounds(path: &str) -> (String, String) {
    (format!("{path}/"), format!("{path}0"))
}

fn parse_i128(s: &str) -> i128 {
    s.parse().unwrap_or(0)
}

/// The fields a metadata change (not only a ctime bump) would move.
pub fn same_content_and_meta(a: &Fingerprint, b: &Fingerprint) -> bool {
    a.ino == b.ino && a.size == b.size && a.mtime_ns == b.mtime_ns && a.mode == b.mode
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: Kind, etag: &str, ino: u64) -> Row {
        Row {
            kind,
            etag: etag.into(),
            fp: Fingerprint {
                ino,
                size: 3,
                mtime_ns: 1_700_000_000_123_456_789,
                ctime_ns: -5,
                mode: 0o100644,
            },
        }
    }

    #[test]
    fn rows_round_trip_and_subtrees_delete_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let ix = Index::open(&dir.path().join("i.db")).unwrap();
        for (p, k) in [
            ("a", Kind::Dir),
            ("a/x", Kind::File),
            ("a/y/z", Kind::File),
            ("a-b", Kind::File),
            ("a0", Kind::File),
            ("ab", Kind::Symlink),
        ] {
            ix.put(p, &row(k, "\"e\"", 7)).unwrap();
        }
        assert_eq!(ix.get("a/x").unwrap(), Some(row(Kind::File, "\"e\"", 7)));
        assert_eq!(ix.get("nope").unwrap(), None);
        ix.delete_subtree("a").unwrap();
        let mut left = Vec::new();
        ix.each_path(|p| left.push(p.to_string())).unwrap();
        left.sort();
        assert_eq!(left, vec!["a-b", "a0", "ab"]);
        ix.delete_subtree("").unwrap();
        assert_eq!(ix.count().unwrap(), 0);
    }

    #[test]
    fn writer_id_is_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.db");
        let first = Index::open(&p).unwrap().writer_id().unwrap();
        assert_eq!(first.len(), 16);
        assert_eq!(Index::open(&p).unwrap().writer_id().unwrap(), first);
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.db");
        Index::open(&p)
            .unwrap()
            .put("f", &row(Kind::File, "x", 1))
            .unwrap();
        assert!(Index::open(&p).unwrap().get("f").unwrap().is_some());
    }
}
