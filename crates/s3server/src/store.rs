//! On-disk storage: a SQLite index with one row per (bucket, key) plus immutable blob files.
//!
//! Layout under the data directory:
//! - `index.sqlite3` (WAL): buckets, objects, multipart uploads and their parts.
//! - `blobs/<id>`: object bodies. A blob is never modified once renamed into place; every
//!   write makes a new one, so a reader holding an open fd always sees a whole version.
//! - `uploads/<upload_id>/<part>-<id>`: multipart parts.
//! - `tmp/`: bodies being received; renamed into `blobs/` or `uploads/` when complete.
//!
//! Keys are stored as BLOBs so that SQLite compares them with memcmp, which is S3's
//! listing order (UTF-8 bytes), and so that prefix ranges can be expressed as byte bounds.
//! No key ever becomes part of a file name.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use s3s::dto::ETagCondition;
use s3s::{s3_error, S3Error, S3Result};
use serde::{Deserialize, Serialize};

/// Files in `tmp/`, `blobs/` and `uploads/` that nothing references are removed at start
/// only when older than this, because another server process sharing the data directory
/// may be between writing a file and committing its index row.
const ORPHAN_AGE: Duration = Duration::from_secs(3600);

/// Connections kept for reuse; more are opened on demand under load.
const POOL_MAX: usize = 8;

pub(crate) fn internal<E: std::fmt::Display>(e: E) -> S3Error {
    S3Error::with_message(
        s3s::S3ErrorCode::InternalError,
        format!("internal error: {e}"),
    )
}

/// Standard and user metadata kept with an object (and with a pending multipart upload).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// HTTP-date text, as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default)]
    pub user: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub(crate) struct ObjectRow {
    pub key: String,
    pub size: u64,
    /// Unquoted: hex MD5, or `hex-N` for multipart objects.
    pub etag: String,
    pub last_modified_ms: i64,
    pub meta: Meta,
    /// None for empty objects, which need no file.
    pub blob: Option<String>,
    /// Part sizes for objects made by CompleteMultipartUpload.
    pub parts: Option<Vec<u64>>,
}

#[derive(Debug, Clone)]
pub(crate) struct UploadRow {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    pub initiated_ms: i64,
    pub meta: Meta,
}

#[derive(Debug, Clone)]
pub(crate) struct PartRow {
    pub part_number: i32,
    pub size: u64,
    /// Unquoted hex MD5.
    pub etag: String,
    pub last_modified_ms: i64,
    pub file: String,
}

/// Preconditions on the object currently stored under the key being written.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteCond {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
}

pub(crate) fn etag_matches(cond: &ETagCondition, etag: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == etag,
    }
}

impl WriteCond {
    pub fn check(&self, current: Option<&str>) -> S3Result<()> {
        if let Some(cond) = &self.if_none_match {
            if let Some(etag) = current {
                if etag_matches(cond, etag) {
                    return Err(s3_error!(
                        PreconditionFailed,
                        "At least one of the pre-conditions you specified did not hold"
                    ));
                }
            }
        }
        if let Some(cond) = &self.if_match {
            match current {
                // S3 answers a conditional overwrite of a missing key with 404.
                None => return Err(s3_error!(NoSuchKey, "The specified key does not exist.")),
                Some(etag) if !etag_matches(cond, etag) => {
                    return Err(s3_error!(
                        PreconditionFailed,
                        "At least one of the pre-conditions you specified did not hold"
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

pub(crate) fn now_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // S3 keeps whole seconds; doing the same keeps listings, HEAD and conditionals consistent.
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 1000) * 1000
}

pub(crate) struct Store {
    root: PathBuf,
    db_path: PathBuf,
    pub fsync: bool,
    pool: Mutex<Vec<Connection>>,
    seq: AtomicU64,
}

fn open_conn(path: &Path, fsync: bool) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // Several server processes may share one data directory: wait for locks instead of failing.
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
    Ok(conn)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS buckets(
    name TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects(
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    last_modified_ms INTEGER NOT NULL,
    content_type TEXT,
    meta TEXT NOT NULL,
    blob TEXT,
    parts TEXT,
    PRIMARY KEY(bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads(
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key BLOB NOT NULL,
    initiated_ms INTEGER NOT NULL,
    meta TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads(bucket, key, upload_id);
CREATE TABLE IF NOT EXISTS parts(
    upload_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    last_modified_ms INTEGER NOT NULL,
    file TEXT NOT NULL,
    PRIMARY KEY(upload_id, part_number)
) WITHOUT ROWID;
";

impl Store {
    pub fn open(root: &Path, fsync: bool) -> anyhow::Result<Store> {
        // Private: the objects are the user's files.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)?;
        for sub in ["blobs", "uploads", "tmp"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        let db_path = root.join("index.sqlite3");
        let mut conn = open_conn(&db_path, fsync)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        tx.commit()?;
        Ok(Store {
            root: root.to_path_buf(),
            db_path,
            fsync,
            pool: Mutex::new(vec![conn]),
            seq: AtomicU64::new(0),
        })
    }

    /// Runs `f` with a pooled connection on the blocking pool: SQLite calls block, and
    /// `busy_timeout` may wait for another process's write lock.
    pub async fn db<T, F>(self: &Arc<Self>, f: F) -> S3Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> S3Result<T> + Send + 'static,
    {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut conn = this.take_conn()?;
            let result = f(&mut conn);
            this.put_conn(conn);
            result
        })
        .await
        .map_err(internal)?
    }

    fn take_conn(&self) -> S3Result<Connection> {
        let pooled = self.pool.lock().map_err(internal)?.pop();
        match pooled {
            Some(c) => Ok(c),
            None => open_conn(&self.db_path, self.fsync).map_err(internal),
        }
    }

    fn put_conn(&self, conn: Connection) {
        if let Ok(mut pool) = self.pool.lock() {
            if pool.len() < POOL_MAX {
                pool.push(conn);
            }
        }
    }

    /// Unique across threads and across processes sharing the directory (pid + time + counter).
    pub fn new_id(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        format!(
            "{:x}{:08x}-{:x}-{:x}",
            t.as_secs(),
            t.subsec_nanos(),
            std::process::id(),
            n
        )
    }

    pub fn tmp_path(&self, id: &str) -> PathBuf {
        self.root.join("tmp").join(id)
    }

    pub fn blob_path(&self, blob: &str) -> PathBuf {
        self.root.join("blobs").join(blob)
    }

    pub fn upload_dir(&self, upload_id: &str) -> PathBuf {
        self.root.join("uploads").join(upload_id)
    }

    pub fn part_path(&self, upload_id: &str, file: &str) -> PathBuf {
        self.upload_dir(upload_id).join(file)
    }

    /// Best-effort removal of a blob that no index row refers to any more.
    pub fn remove_blob(&self, blob: Option<&str>) {
        if let Some(b) = blob {
            if let Err(e) = std::fs::remove_file(self.blob_path(b)) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(blob = b, error = %e, "could not remove replaced blob");
                }
            }
        }
    }

    pub fn remove_upload_dir(&self, upload_id: &str) {
        let dir = self.upload_dir(upload_id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(upload_id, error = %e, "could not remove upload directory");
            }
        }
    }

    /// Removes leftovers of crashed writers: old temp files, unreferenced blobs and the part
    /// directories of uploads that no longer exist.
    pub fn gc(&self) -> anyhow::Result<()> {
        let conn = self.take_conn().map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let mut blobs = HashSet::new();
        {
            let mut stmt = conn.prepare("SELECT blob FROM objects WHERE blob IS NOT NULL")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            for b in rows {
                blobs.insert(b?);
            }
        }
        let mut uploads = HashSet::new();
        {
            let mut stmt = conn.prepare("SELECT upload_id FROM uploads")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            for u in rows {
                uploads.insert(u?);
            }
        }
        self.put_conn(conn);
        // ctime, not mtime: a hard link made by CopyObject keeps the source's old mtime
        // but gets a fresh ctime.
        let old = |p: &Path| {
            use std::os::unix::fs::MetadataExt as _;
            let Ok(m) = std::fs::symlink_metadata(p) else {
                return false;
            };
            let ctime = UNIX_EPOCH + Duration::from_secs(u64::try_from(m.ctime()).unwrap_or(0));
            ctime.elapsed().is_ok_and(|age| age > ORPHAN_AGE)
        };
        for (sub, keep) in [
            ("tmp", None),
            ("blobs", Some(&blobs)),
            ("uploads", Some(&uploads)),
        ] {
            for entry in std::fs::read_dir(self.root.join(sub))? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                if keep.is_some_and(|k| k.contains(&name)) || !old(&path) {
                    continue;
                }
                let result = if entry.file_type()?.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                if let Err(e) = result {
                    tracing::warn!(path = %path.display(), error = %e, "gc: could not remove");
                }
            }
        }
        Ok(())
    }
}

fn meta_to_json(meta: &Meta) -> S3Result<String> {
    serde_json::to_string(meta).map_err(internal)
}

fn meta_from_json(s: &str) -> rusqlite::Result<Meta> {
    serde_json::from_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn key_from_blob(b: Vec<u8>) -> rusqlite::Result<String> {
    String::from_utf8(b).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}

fn sql(e: rusqlite::Error) -> S3Error {
    internal(e)
}

fn no_such_bucket() -> S3Error {
    s3_error!(NoSuchBucket, "The specified bucket does not exist")
}

pub(crate) fn no_such_key() -> S3Error {
    s3_error!(NoSuchKey, "The specified key does not exist.")
}

fn no_such_upload() -> S3Error {
    s3_error!(
        NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
    )
}

// ---- buckets ----

pub(crate) fn bucket_exists(conn: &Connection, bucket: &str) -> S3Result<bool> {
    conn.query_row(
        "SELECT 1 FROM buckets WHERE name = ?1",
        [bucket],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
    .map_err(sql)
}

pub(crate) fn require_bucket(conn: &Connection, bucket: &str) -> S3Result<()> {
    if bucket_exists(conn, bucket)? {
        Ok(())
    } else {
        Err(no_such_bucket())
    }
}

/// Returns false when the bucket already existed.
pub(crate) fn create_bucket(conn: &Connection, bucket: &str) -> S3Result<bool> {
    let n = conn
        .execute(
            "INSERT OR IGNORE INTO buckets(name, created_ms) VALUES (?1, ?2)",
            params![bucket, now_ms()],
        )
        .map_err(sql)?;
    Ok(n == 1)
}

pub(crate) fn list_buckets(conn: &Connection) -> S3Result<Vec<(String, i64)>> {
    let mut stmt = conn
        .prepare("SELECT name, created_ms FROM buckets ORDER BY name")
        .map_err(sql)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql)
}

/// Deletes an empty bucket; returns the ids of the pending uploads it dropped.
pub(crate) fn delete_bucket(conn: &mut Connection, bucket: &str) -> S3Result<Vec<String>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    require_bucket(&tx, bucket)?;
    let has_objects = tx
        .query_row(
            "SELECT 1 FROM objects WHERE bucket = ?1 LIMIT 1",
            [bucket],
            |_| Ok(()),
        )
        .optional()
        .map_err(sql)?
        .is_some();
    if has_objects {
        return Err(s3_error!(
            BucketNotEmpty,
            "The bucket you tried to delete is not empty"
        ));
    }
    let uploads: Vec<String> = {
        let mut stmt = tx
            .prepare("SELECT upload_id FROM uploads WHERE bucket = ?1")
            .map_err(sql)?;
        let rows = stmt.query_map([bucket], |r| r.get(0)).map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)?
    };
    for u in &uploads {
        tx.execute("DELETE FROM parts WHERE upload_id = ?1", [u])
            .map_err(sql)?;
    }
    tx.execute("DELETE FROM uploads WHERE bucket = ?1", [bucket])
        .map_err(sql)?;
    tx.execute("DELETE FROM buckets WHERE name = ?1", [bucket])
        .map_err(sql)?;
    tx.commit().map_err(sql)?;
    Ok(uploads)
}

// ---- objects ----

const OBJECT_COLS: &str = "key, size, etag, last_modified_ms, content_type, meta, blob, parts";

fn object_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectRow> {
    let key = key_from_blob(r.get(0)?)?;
    let size: i64 = r.get(1)?;
    let content_type: Option<String> = r.get(4)?;
    let mut meta = meta_from_json(&r.get::<_, String>(5)?)?;
    meta.content_type = content_type;
    let parts: Option<String> = r.get(7)?;
    let parts = match parts {
        Some(p) => Some(serde_json::from_str(&p).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, Box::new(e))
        })?),
        None => None,
    };
    Ok(ObjectRow {
        key,
        size: u64::try_from(size).unwrap_or(0),
        etag: r.get(2)?,
        last_modified_ms: r.get(3)?,
        meta,
        blob: r.get(6)?,
        parts,
    })
}

fn lookup(conn: &Connection, bucket: &str, key: &str) -> S3Result<Option<ObjectRow>> {
    conn.query_row(
        &format!("SELECT {OBJECT_COLS} FROM objects WHERE bucket = ?1 AND key = ?2"),
        params![bucket, key.as_bytes()],
        object_from_row,
    )
    .optional()
    .map_err(sql)
}

/// The object, or NoSuchBucket / NoSuchKey.
pub(crate) fn get_object(conn: &Connection, bucket: &str, key: &str) -> S3Result<ObjectRow> {
    match lookup(conn, bucket, key)? {
        Some(row) => Ok(row),
        None => {
            require_bucket(conn, bucket)?;
            Err(no_such_key())
        }
    }
}

/// Writes (inserts or replaces) an object row if `cond` holds for the current one, all in
/// one write transaction so that concurrent writers (also in other processes) are
/// serialised. `extra` runs inside the same transaction. Returns the replaced blob, which
/// the caller deletes after the commit.
pub(crate) fn commit_object(
    conn: &mut Connection,
    bucket: &str,
    row: &ObjectRow,
    cond: &WriteCond,
    extra: impl FnOnce(&rusqlite::Transaction<'_>) -> S3Result<()>,
) -> S3Result<Option<String>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    require_bucket(&tx, bucket)?;
    let current = lookup(&tx, bucket, &row.key)?;
    cond.check(current.as_ref().map(|c| c.etag.as_str()))?;
    extra(&tx)?;
    let parts = match &row.parts {
        Some(p) => Some(serde_json::to_string(p).map_err(internal)?),
        None => None,
    };
    let mut meta = row.meta.clone();
    let content_type = meta.content_type.take();
    tx.execute(
        "INSERT OR REPLACE INTO objects(bucket, key, size, etag, last_modified_ms, content_type, meta, blob, parts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            bucket,
            row.key.as_bytes(),
            i64::try_from(row.size).map_err(internal)?,
            row.etag,
            row.last_modified_ms,
            content_type,
            meta_to_json(&meta)?,
            row.blob,
            parts,
        ],
    )
    .map_err(sql)?;
    tx.commit().map_err(sql)?;
    Ok(current
        .and_then(|c| c.blob)
        .filter(|b| Some(b) != row.blob.as_ref()))
}

/// Deletes keys (missing ones are fine, as in S3); returns the blobs to remove.
pub(crate) fn delete_objects(
    conn: &mut Connection,
    bucket: &str,
    keys: &[String],
    if_match: Option<&ETagCondition>,
) -> S3Result<Vec<String>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    require_bucket(&tx, bucket)?;
    let mut blobs = Vec::new();
    for key in keys {
        let current = lookup(&tx, bucket, key)?;
        if let Some(cond) = if_match {
            WriteCond {
                if_match: Some(cond.clone()),
                if_none_match: None,
            }
            .check(current.as_ref().map(|c| c.etag.as_str()))?;
        }
        if let Some(cur) = current {
            tx.execute(
                "DELETE FROM objects WHERE bucket = ?1 AND key = ?2",
                params![bucket, key.as_bytes()],
            )
            .map_err(sql)?;
            blobs.extend(cur.blob);
        }
    }
    tx.commit().map_err(sql)?;
    Ok(blobs)
}

/// Rows with `lower <= key` (or `<`) and `key < upper`, in key order.
pub(crate) fn scan_objects(
    conn: &Connection,
    bucket: &str,
    lower: &[u8],
    lower_inclusive: bool,
    upper: Option<&[u8]>,
    limit: usize,
) -> S3Result<Vec<ObjectRow>> {
    let op = if lower_inclusive { ">=" } else { ">" };
    let upper_clause = if upper.is_some() { "AND key < ?3" } else { "" };
    let q = format!(
        "SELECT {OBJECT_COLS} FROM objects WHERE bucket = ?1 AND key {op} ?2 {upper_clause} ORDER BY key LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&q).map_err(sql)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt
        .query_map(
            params![bucket, lower, upper.unwrap_or_default(), limit],
            object_from_row,
        )
        .map_err(sql)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql)
}

// ---- multipart ----

pub(crate) fn create_upload(conn: &mut Connection, up: &UploadRow) -> S3Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    require_bucket(&tx, &up.bucket)?;
    tx.execute(
        "INSERT INTO uploads(upload_id, bucket, key, initiated_ms, meta) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            up.upload_id,
            up.bucket,
            up.key.as_bytes(),
            up.initiated_ms,
            meta_to_json(&up.meta)?
        ],
    )
    .map_err(sql)?;
    tx.commit().map_err(sql)
}

fn upload_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UploadRow> {
    Ok(UploadRow {
        upload_id: r.get(0)?,
        bucket: r.get(1)?,
        key: key_from_blob(r.get(2)?)?,
        initiated_ms: r.get(3)?,
        meta: meta_from_json(&r.get::<_, String>(4)?)?,
    })
}

/// The upload, checked against the bucket and key of the request.
pub(crate) fn get_upload(
    conn: &Connection,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> S3Result<UploadRow> {
    let up = conn
        .query_row(
            "SELECT upload_id, bucket, key, initiated_ms, meta FROM uploads WHERE upload_id = ?1",
            [upload_id],
            upload_from_row,
        )
        .optional()
        .map_err(sql)?;
    match up {
        Some(up) if up.bucket == bucket && up.key == key => Ok(up),
        _ => {
            require_bucket(conn, bucket)?;
            Err(no_such_upload())
        }
    }
}

/// Records a part; returns the file of the part it replaced.
pub(crate) fn put_part(
    conn: &mut Connection,
    bucket: &str,
    key: &str,
    upload_id: &str,
    part: &PartRow,
) -> S3Result<Option<String>> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    get_upload(&tx, bucket, key, upload_id)?;
    let old: Option<String> = tx
        .query_row(
            "SELECT file FROM parts WHERE upload_id = ?1 AND part_number = ?2",
            params![upload_id, part.part_number],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    tx.execute(
        "INSERT OR REPLACE INTO parts(upload_id, part_number, size, etag, last_modified_ms, file)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            upload_id,
            part.part_number,
            i64::try_from(part.size).map_err(internal)?,
            part.etag,
            part.last_modified_ms,
            part.file
        ],
    )
    .map_err(sql)?;
    tx.commit().map_err(sql)?;
    Ok(old)
}

pub(crate) fn list_parts(
    conn: &Connection,
    upload_id: &str,
    after: i32,
    limit: usize,
) -> S3Result<Vec<PartRow>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT part_number, size, etag, last_modified_ms, file FROM parts
             WHERE upload_id = ?1 AND part_number > ?2 ORDER BY part_number LIMIT ?3",
        )
        .map_err(sql)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt
        .query_map(params![upload_id, after, limit], |r| {
            let size: i64 = r.get(1)?;
            Ok(PartRow {
                part_number: r.get(0)?,
                size: u64::try_from(size).unwrap_or(0),
                etag: r.get(2)?,
                last_modified_ms: r.get(3)?,
                file: r.get(4)?,
            })
        })
        .map_err(sql)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql)
}

/// Removes an upload's rows inside a transaction; NoSuchUpload if it is already gone (a
/// concurrent Complete or Abort won).
pub(crate) fn drop_upload(tx: &rusqlite::Transaction<'_>, upload_id: &str) -> S3Result<()> {
    let n = tx
        .execute("DELETE FROM uploads WHERE upload_id = ?1", [upload_id])
        .map_err(sql)?;
    if n == 0 {
        return Err(no_such_upload());
    }
    tx.execute("DELETE FROM parts WHERE upload_id = ?1", [upload_id])
        .map_err(sql)?;
    Ok(())
}

pub(crate) fn abort_upload(
    conn: &mut Connection,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> S3Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    get_upload(&tx, bucket, key, upload_id)?;
    drop_upload(&tx, upload_id)?;
    tx.commit().map_err(sql)
}

/// Uploads of a bucket in (key, upload_id) order, starting after the markers.
pub(crate) fn list_uploads(
    conn: &Connection,
    bucket: &str,
    prefix: &str,
    key_marker: Option<&str>,
    upload_id_marker: Option<&str>,
    limit: usize,
) -> S3Result<Vec<UploadRow>> {
    let key_marker = key_marker.unwrap_or("");
    // With an upload-id marker, the marker key's later uploads are included too.
    let (cond, id) = match upload_id_marker {
        Some(id) => ("(key > ?2 OR (key = ?2 AND upload_id > ?3))", id),
        None => ("key > ?2", ""),
    };
    let q = format!(
        "SELECT upload_id, bucket, key, initiated_ms, meta FROM uploads
         WHERE bucket = ?1 AND {cond} AND substr(key, 1, ?4) = ?5
         ORDER BY key, upload_id LIMIT ?6"
    );
    let mut stmt = conn.prepare_cached(&q).map_err(sql)?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let plen = i64::try_from(prefix.len()).map_err(internal)?;
    let rows = stmt
        .query_map(
            params![
                bucket,
                key_marker.as_bytes(),
                id,
                plen,
                prefix.as_bytes(),
                limit
            ],
            upload_from_row,
        )
        .map_err(sql)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(sql)
}
