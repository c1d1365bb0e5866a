//! Write-back: making S3 match the cache for paths that changed.
//!
//! Reconciliation compares state, not events: for each changed path the worker looks at
//! what is in the cache now and what the index says is in S3, and does what closes the
//! gap. Events only say where to look, so a lost or duplicated event costs a scan, never
//! a wrong upload.
//!
//! A batch runs in two phases. Phase one handles paths that exist locally (uploads,
//! server-side copies for placeholders and unlisted directories that were moved, new
//! directories with everything inside them). Phase two deletes objects of paths that
//! no longer exist, and only when every copy in phase one succeeded: after a rename the
//! old keys are the only copy of a placeholder's bytes until the new key exists.

use super::hydrate::{marker_of, same_content_and_meta, OwnedMarker};
use super::index::{Fingerprint, Kind, Row};
use super::queue::Batch;
use super::s3::PosixMeta;
use super::watch::NOT_UTF8;
use super::{fsops, Ctx};
use anyhow::{anyhow, Context, Result};
use futures::{stream, StreamExt};
use s3shim_protocol::marker::Marker;
use s3shim_protocol::meta;
use s3shim_protocol::names;
use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use tracing::{debug, info, warn};

/// Uploads/copies in flight at once.
const SYNC_CONCURRENCY: usize = 16;

/// What reconciling one existing path found to do next.
#[derive(Default)]
struct Outcome {
    /// Paths inside a new directory, to reconcile in the same batch.
    children: Vec<String>,
    /// A server-side copy was involved: the source must outlive this batch's deletes.
    copied: bool,
}

impl Ctx {
    /// The sync worker: forever takes batches of changed paths and reconciles them.
    pub async fn sync_worker(self: Arc<Self>) {
        loop {
            let batch = self
                .queue
                .next_batch(
                    std::time::Duration::from_millis(200),
                    std::time::Duration::from_secs(2),
                )
                .await;
            self.run_batch(batch).await;
        }
    }

    async fn run_batch(self: &Arc<Self>, batch: Batch) {
        let mut work: Vec<(String, u64)> = batch.paths;
        if let Some(seq) = batch.scan {
            match self.scan_tree() {
                Ok(found) => {
                    info!(
                        "reconcile scan: {} paths differ from the index",
                        found.len()
                    );
                    for p in found {
                        self.queue.add_in_flight(&p, seq);
                        work.push((p, seq));
                    }
                }
                Err(e) => warn!("reconcile scan failed: {e:#}"),
            }
            self.queue.scan_done();
        }
        let (mut present, mut missing) = (Vec::new(), Vec::new());
        for (rel, seq) in work {
            if std::fs::symlink_metadata(self.local(&rel)).is_ok() {
                present.push((rel, seq));
            } else {
                missing.push(rel);
            }
        }

        // Phase one, to a fixpoint: new directories add their contents.
        let mut copy_failed = false;
        while !present.is_empty() {
            let results: Vec<(String, u64, Result<Outcome>)> = stream::iter(present)
                .map(|(rel, seq)| async move {
                    let r = self.upsert(&rel).await;
                    (rel, seq, r)
                })
                .buffer_unordered(SYNC_CONCURRENCY)
                .collect()
                .await;
            present = Vec::new();
            for (rel, seq, r) in results {
                match r {
                    Ok(o) => {
                        for c in o.children {
                            self.queue.add_in_flight(&c, seq);
                            present.push((c, seq));
                        }
                        self.queue.finish(&rel, Ok(()));
                    }
                    Err(e) => {
                        // A failed copy may be the only way to keep a moved placeholder's
                        // bytes; a failed plain upload is not.
                        copy_failed |= e.is::<CopyFailed>();
                        warn!("sync of {rel:?} failed: {e:#}");
                        self.queue.finish(&rel, Err(format!("{e:#}")));
                    }
                }
            }
        }

        // Phase two.
        for rel in missing {
            let r = if copy_failed {
                Err(anyhow!(
                    "not deleted from S3 yet: a copy it may depend on failed"
                ))
            } else {
                self.remove_remote(&rel).await
            };
            if let Err(e) = &r {
                warn!("delete of {rel:?} failed: {e:#}");
            }
            self.queue.finish(&rel, r.map_err(|e| format!("{e:#}")));
        }
    }

    fn posix_meta(&self, md: &std::fs::Metadata) -> PosixMeta {
        PosixMeta {
            mode: md.mode(),
            mtime: (md.mtime(), md.mtime_nsec() as u32),
            uid: md.uid(),
            gid: md.gid(),
        }
    }

    async fn upsert(self: &Arc<Self>, rel: &str) -> Result<Outcome> {
        let _guard = self.path_locks.lock(rel).await;
        let path = self.local(rel);
        let md = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            // Gone since the batch was cut: the next event or scan handles it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Outcome::default()),
            Err(e) => return Err(e.into()),
        };
        if self.local_only(rel, md.is_dir()).await {
            return Ok(Outcome::default()); // .s3shimignore: never uploaded
        }
        let row = self.index.get(rel)?;
        let fp = Fingerprint::of(&md);
        let ft = md.file_type();
        if ft.is_dir() {
            return self.upsert_dir(rel, &path, &md, row).await;
        }
        if ft.is_symlink() {
            if row
                .as_ref()
                .is_some_and(|r| r.kind == Kind::Symlink && r.fp == fp)
            {
                return Ok(Outcome::default());
            }
            let target = std::fs::read_link(&path)?;
            let m = PosixMeta {
                mode: meta::S_IFLNK | 0o777,
                ..self.posix_meta(&md)
            };
            use std::os::unix::ffi::OsStrExt;
            let etag = self
                .s3
                .put_bytes(&self.key(rel), target.as_os_str().as_bytes().to_vec(), m)
                .await?;
            self.index.put(rel, &Row::new(Kind::Symlink, etag, fp))?;
            return Ok(Outcome::default());
        }
        if !ft.is_file() {
            debug!("{rel:?} is neither a file, a directory nor a symlink; not synced");
            return Ok(Outcome::default());
        }
        if row
            .as_ref()
            .is_some_and(|r| r.kind == Kind::File && r.fp == fp)
        {
            return Ok(Outcome::default());
        }
        let own = self.key(rel);
        match marker_of(&path)? {
            Some(OwnedMarker::Placeholder(etag, source)) => {
                let indexed_same = row
                    .as_ref()
                    .is_some_and(|r| r.etag == etag && same_content_and_meta(&r.fp, &fp));
                if source == own && (indexed_same || row.is_none()) {
                    // Only ctime moved (our own xattr or a rename back), or a listing whose
                    // index row was lost: S3 already has exactly this.
                    self.index.put(rel, &Row::new(Kind::File, etag, fp))?;
                    return Ok(Outcome::default());
                }
                // Moved, or mode/mtime changed: copy server-side with the local metadata.
                let new_etag = self
                    .s3
                    .copy(&source, &own, self.posix_meta(&md))
                    .await
                    .map_err(CopyFailed::from)?;
                fsops::write_marker(
                    &path,
                    &Marker::Placeholder {
                        etag: &new_etag,
                        source_key: &own,
                    },
                )?;
                let fp = Fingerprint::of(&std::fs::symlink_metadata(&path)?);
                self.index.put(rel, &Row::new(Kind::File, new_etag, fp))?;
                Ok(Outcome {
                    copied: true,
                    ..Outcome::default()
                })
            }
            _ => {
                let etag = self.s3.put_file(&own, &path, self.posix_meta(&md)).await?;
                // Recorded whatever happened meanwhile: the object exists now, so a file
                // renamed or deleted during the upload must have its object deleted (an
                // unrecorded one was left behind, and shown again by the remote check).
                self.index.put(rel, &Row::new(Kind::File, etag, fp))?;
                match std::fs::symlink_metadata(&path) {
                    Ok(after) if Fingerprint::of(&after) == fp => {}
                    // Written to, moved or deleted while uploading: reconcile again.
                    _ => self.queue.mark(rel.to_string()),
                }
                Ok(Outcome::default())
            }
        }
    }

    async fn upsert_dir(
        self: &Arc<Self>,
        rel: &str,
        path: &Path,
        md: &std::fs::Metadata,
        row: Option<Row>,
    ) -> Result<Outcome> {
        let own = names::dir_prefix(&self.prefix, rel);
        let fp = Fingerprint::of(md);
        if let Some(OwnedMarker::Unlisted(source)) = marker_of(path)? {
            let mut out = Outcome::default();
            if source != own {
                // Moved before it was ever listed: its objects are still under the old
                // prefix only.
                self.copy_prefix(&source, &own)
                    .await
                    .map_err(CopyFailed::from)?;
                fsops::write_marker(
                    path,
                    &Marker::Unlisted {
                        source_prefix: &own,
                    },
                )?;
                out.copied = true;
            }
            if row.is_none() || out.copied {
                if !rel.is_empty() {
                    self.ensure_dir_object(&own, md).await?;
                }
                let fp = Fingerprint::of(&std::fs::symlink_metadata(path)?);
                self.index
                    .put(rel, &Row::new(Kind::Dir, String::new(), fp))?;
            }
            return Ok(out);
        }
        if row
            .as_ref()
            .is_some_and(|r| r.kind == Kind::Dir && r.fp.mode == fp.mode)
        {
            return Ok(Outcome::default());
        }
        let etag = if rel.is_empty() {
            String::new()
        } else {
            self.s3
                .put_bytes(&own, Vec::new(), self.posix_meta(md))
                .await?
        };
        self.index.put(rel, &Row::new(Kind::Dir, etag, fp))?;
        let mut out = Outcome::default();
        if row.as_ref().is_none_or(|r| r.kind != Kind::Dir) {
            // New here (created, or moved in): its contents may have no events of their own.
            for e in std::fs::read_dir(path)? {
                let e = e?;
                match e.file_name().to_str() {
                    Some(n) => out.children.push(names::join_rel(rel, n)),
                    None => self.queue.unsyncable(
                        e.path(),
                        names::join_rel(rel, &e.file_name().to_string_lossy()),
                        NOT_UTF8.to_string(),
                    ),
                }
            }
        }
        Ok(out)
    }

    /// PUTs a `dir/` object unless one exists (a moved unlisted directory, or one listed
    /// from an implicit prefix).
    async fn ensure_dir_object(&self, key: &str, md: &std::fs::Metadata) -> Result<()> {
        if self.s3.head(key).await?.is_none() {
            self.s3
                .put_bytes(key, Vec::new(), self.posix_meta(md))
                .await?;
        }
        Ok(())
    }

    /// Copies every object under `from` to the same relative key under `to`.
    async fn copy_prefix(&self, from: &str, to: &str) -> Result<()> {
        let objects = self.s3.list_all(from).await?;
        let results: Vec<Result<()>> = stream::iter(objects)
            .map(|o| async move {
                let suffix = &o.key[from.len()..];
                self.s3
                    .copy_keep_meta(&o.key, &format!("{to}{suffix}"))
                    .await
            })
            .buffer_unordered(SYNC_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Deletes what S3 holds for a path that no longer exists locally. A directory's
    /// whole prefix goes, including what was never listed: that is what removing a
    /// directory means.
    async fn remove_remote(&self, rel: &str) -> Result<()> {
        let _guard = self.path_locks.lock(rel).await;
        if std::fs::symlink_metadata(self.local(rel)).is_ok() {
            // Re-created since: the upsert of its new events handles it.
            return Ok(());
        }
        let row = self.index.get(rel)?;
        if let Some(r) = &row {
            if self.local_only.matches(rel, r.kind == Kind::Dir) {
                return Ok(()); // .s3shimignore: never deleted in S3
            }
        }
        match row {
            Some(r) if r.kind == Kind::Dir => {
                let prefix = names::dir_prefix(&self.prefix, rel);
                let keys: Vec<String> = self
                    .s3
                    .list_all(&prefix)
                    .await?
                    .into_iter()
                    .map(|o| o.key)
                    .collect();
                self.s3.delete_many(&keys).await?;
                // An implicit directory has no object of its own; deleting it is harmless.
                self.s3.delete(&prefix).await?;
                self.index.delete_subtree(rel)?;
                info!("deleted {rel:?}/ from S3 ({} objects)", keys.len());
            }
            Some(_) => {
                self.s3.delete(&self.key(rel)).await?;
                self.index.delete(rel)?;
                debug!("deleted {rel:?} from S3");
            }
            None => {}
        }
        Ok(())
    }

    /// Walks the cache and the index: every path whose local state differs from what the
    /// index says is in S3, and every indexed path that is gone locally.
    fn scan_tree(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut seen: HashMap<String, ()> = HashMap::new();
        let mut stack = vec![String::new()];
        while let Some(dir) = stack.pop() {
            let rd = match std::fs::read_dir(self.local(&dir)) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).context("scanning the cache"),
            };
            for e in rd {
                let e = e?;
                let Some(name) = e.file_name().to_str().map(str::to_string) else {
                    self.queue.unsyncable(
                        e.path(),
                        names::join_rel(&dir, &e.file_name().to_string_lossy()),
                        NOT_UTF8.to_string(),
                    );
                    continue;
                };
                let rel = names::join_rel(&dir, &name);
                let md = e.metadata()?;
                let fp = Fingerprint::of(&md);
                let row = self.index.get(&rel)?;
                let moved = match marker_of(&self.local(&rel)) {
                    Ok(Some(OwnedMarker::Unlisted(src))) => {
                        src != names::dir_prefix(&self.prefix, &rel)
                    }
                    Ok(Some(OwnedMarker::Placeholder(_, src))) => src != self.key(&rel),
                    _ => false,
                };
                let differs = moved
                    || match &row {
                        None => true,
                        Some(r) if md.is_dir() => r.kind != Kind::Dir || r.fp.mode != fp.mode,
                        Some(r) => r.fp != fp,
                    };
                if differs {
                    out.push(rel.clone());
                }
                if md.is_dir() {
                    stack.push(rel.clone());
                }
                seen.insert(rel, ());
            }
        }
        for p in self.index.all_paths()? {
            if !p.is_empty() && !seen.contains_key(&p) {
                out.push(p);
            }
        }
        Ok(out)
    }
}

/// A server-side copy failed; its source must not be deleted in the same batch.
#[derive(Debug)]
struct CopyFailed(anyhow::Error);

impl From<anyhow::Error> for CopyFailed {
    fn from(e: anyhow::Error) -> Self {
        CopyFailed(e)
    }
}

impl std::fmt::Display for CopyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "server-side copy failed: {:#}", self.0)
    }
}

impl std::error::Error for CopyFailed {}
