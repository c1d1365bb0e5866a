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

use super::error::{other, Context, Error, Result};
use super::fsops::{marker_of, OwnedMarker};
use super::index::{same_content_and_meta, Fingerprint, Kind, Row};
use super::queue::{Batch, Conflict};
use super::s3::{Cond, PosixMeta};
use super::watch::NOT_UTF8;
use super::{fsops, Ctx};
use futures::{stream, StreamExt};
use s3shim_protocol::marker::Marker;
use s3shim_protocol::meta;
use s3shim_protocol::names;
use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, error, info, warn};

/// Probes (one HEAD each, `PROBE_GAP` apart) that must all fail before uploads pause.
const PROBES: usize = 3;
const PROBE_GAP: Duration = Duration::from_millis(200);

/// Uploads/copies/deletes in flight at once (`S3SHIM_UPLOAD_CONCURRENCY`, default 16).
fn sync_concurrency() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| super::env_count("S3SHIM_UPLOAD_CONCURRENCY", 16))
}

/// What deleting a path removed from S3.
enum Removed {
    /// A directory's whole prefix: nothing under the path is left.
    Subtree,
    /// The path's own object, or nothing (not in S3, re-created, or kept by
    /// `.s3shimignore`): what lies under it is not settled.
    Other,
}

/// Groups paths by their highest ancestor in the list: `(that path, the listed paths
/// under it)`, in path order. `a`, `a/x`, `a/x/y`, `ab` give `(a, [a/x, a/x/y])`,
/// `(ab, [])`.
fn group_under_ancestors(mut paths: Vec<String>) -> Vec<(String, Vec<String>)> {
    // Sorted by components, so a directory comes right before everything under it
    // (plain string order would put `a.b` between `a` and `a/x`).
    paths.sort_by(|a, b| a.split('/').cmp(b.split('/')));
    paths.dedup();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for p in paths {
        match groups.last_mut() {
            Some((top, below))
                if p.strip_prefix(top.as_str())
                    .is_some_and(|rest| rest.starts_with('/')) =>
            {
                below.push(p)
            }
            _ => groups.push((p, Vec::new())),
        }
    }
    groups
}

/// What reconciling one existing path found to do next.
#[derive(Default)]
struct Outcome {
    /// Paths to reconcile in the same batch: the entries of a new directory, the
    /// conflict copy of a file.
    children: Vec<String>,
    /// A server-side copy was involved: the source must outlive this batch's deletes.
    copied: bool,
}

impl Ctx {
    /// The sync worker: forever takes batches of changed paths and reconciles them.
    pub async fn sync_worker(self: Arc<Self>) {
        let (quiet, max_wait) = debounce();
        tokio::spawn(self.clone().resume_when_back());
        loop {
            let batch = self.queue.next_batch(quiet, max_wait).await;
            let large = batch.scan.is_some() || batch.paths.len() >= 1000;
            self.run_batch(batch).await;
            if large {
                // What a large batch allocated is free now: give it back to the system
                // rather than keep it as the agent's resident size.
                // SAFETY: malloc_trim only returns free heap memory to the kernel.
                unsafe { libc::malloc_trim(0) };
            }
        }
    }

    /// While uploads are paused, probes the endpoint with growing, jittered intervals
    /// (1 s to 30 s) and resumes the failed uploads once it answers.
    async fn resume_when_back(self: Arc<Self>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let jitter = rand::random::<f64>() * 0.5 + 0.75;
            tokio::time::sleep(backoff.mul_f64(jitter)).await;
            if self.queue.paused().is_none() {
                backoff = Duration::from_secs(1);
                continue;
            }
            match self.s3.probe().await {
                Ok(()) => {
                    self.queue.set_paused(None);
                    let n = self.queue.retry_transient();
                    info!("S3 answers again: uploads resume ({n} paths to retry)");
                    backoff = Duration::from_secs(1);
                }
                Err(why) => {
                    self.queue.set_paused(Some(why));
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Decides what transient failures mean: the endpoint answers (a fault that the
    /// SDK's retries did not outlast): try again; it does not: pause uploads, report the
    /// paths as not uploaded yet, and let [`Ctx::resume_when_back`] retry them.
    async fn settle_transient(&self, failed: Vec<(String, String)>) {
        if failed.is_empty() {
            return;
        }
        // Down means several probes in a row failed: under partial faults (a fifth of
        // requests failing) one lost probe paused every upload and made `run` report
        // its changes as not in S3 (seen in `a_fifth_of_requests_failing_…`).
        let mut down = None;
        for attempt in 0..PROBES {
            match self.s3.probe().await {
                Ok(()) => {
                    down = None;
                    break;
                }
                Err(why) => down = Some(why),
            }
            if attempt + 1 < PROBES {
                tokio::time::sleep(PROBE_GAP).await;
            }
        }
        match down {
            None => {
                for (rel, problem) in failed {
                    self.queue.requeue(&rel, problem);
                }
            }
            Some(why) => self.pause(failed, why),
        }
    }

    /// Pauses uploads (S3 does not answer: `why`); `failed` are reported as not
    /// uploaded and retried by [`Ctx::resume_when_back`].
    fn pause(&self, failed: Vec<(String, String)>, why: String) {
        if self.queue.paused().is_none() {
            error!("S3 is unreachable ({why}); uploads are paused until it answers, changes stay in the cache");
        }
        self.queue.set_paused(Some(why));
        for (rel, problem) in failed {
            self.queue.finish_transient(
                &rel,
                format!("{problem} (uploads are paused; retried when S3 answers)"),
            );
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
                    self.queue.scan_done();
                }
                Err(e) => {
                    // What changed while no agent ran is known only from a scan: never
                    // give up on one (deletes made meanwhile would stay in S3 for good).
                    // A flush waits for it meanwhile: the scan stays in progress.
                    warn!("reconcile scan failed: {e:#}; scanning again in {SCAN_RETRY:?}");
                    let queue = self.queue.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(SCAN_RETRY).await;
                        queue.retry_scan(seq);
                    });
                }
            }
        }
        if let Some((_, why)) = self.queue.paused() {
            // Paused: one probe instead of a doomed request per path.
            if let Err(now) = self.s3.probe().await {
                self.pause(
                    work.into_iter().map(|(p, _)| (p, why.clone())).collect(),
                    now,
                );
                return;
            }
            self.queue.set_paused(None);
            let n = self.queue.retry_transient();
            info!("S3 answers again: uploads resume ({n} paths to retry)");
        }
        let (mut present, mut missing) = (Vec::new(), Vec::new());
        let mut transient_before: Vec<(String, String)> = Vec::new();
        let exists = |rel: &str| std::fs::symlink_metadata(self.local(rel)).is_ok();
        let mut newest = work.iter().map(|(_, seq)| *seq).max().unwrap_or(0);
        for (rel, seq) in work {
            if exists(&rel) {
                present.push((rel, seq));
            } else {
                missing.push(rel);
            }
        }
        if !missing.is_empty() {
            // A delete may be the old half of a rename whose new half is still in its
            // debounce: handle that first, or the delete could lose the only copy.
            for (rel, seq) in self.queue.take_all_pending() {
                newest = newest.max(seq);
                if exists(&rel) {
                    present.push((rel, seq));
                } else {
                    missing.push(rel);
                }
            }
            // The new half can be in no queue yet: a scan that read the directory while
            // the rename happened can see neither name, and the rename's inotify event
            // may not be read yet. So look at the tree as it is now (the rename is done:
            // the old name is gone) and handle every moved or changed entry first.
            match self.scan_tree() {
                Ok(found) => {
                    // A set, not a search of `present` per path: both can be large.
                    let queued: HashSet<String> = present.iter().map(|(p, _)| p.clone()).collect();
                    for rel in found {
                        if exists(&rel) && !queued.contains(&rel) {
                            self.queue.add_in_flight(&rel, newest);
                            present.push((rel, newest));
                        }
                    }
                }
                Err(e) => {
                    warn!("scan before deleting failed: {e:#}; deletes wait");
                    for rel in missing.drain(..) {
                        transient_before.push((rel, format!("{e:#}")));
                    }
                }
            }
        }
        let mut transient: Vec<(String, String)> = transient_before;
        // Phase one, to a fixpoint: new directories add their contents.
        let mut copy_failed = false;
        // Some copy failed for a reason other than the endpoint's health: its source
        // must stay until a later flush or scan.
        let mut copy_failed_for_good = false;
        while !present.is_empty() {
            let mut results = stream::iter(present)
                .map(|(rel, seq)| async move {
                    let r = self.upsert(&rel).await;
                    (rel, seq, r)
                })
                .buffer_unordered(sync_concurrency());
            let mut next = Vec::new();
            // Each path is finished as soon as its own upload is: an fsync waiting on one
            // file of a large batch does not wait for the rest.
            while let Some((rel, seq, r)) = results.next().await {
                match r {
                    Ok(o) => {
                        for c in o.children {
                            self.queue.add_in_flight(&c, seq);
                            next.push((c, seq));
                        }
                        self.queue.finish(&rel, Ok(()));
                    }
                    Err(e) => {
                        // A failed copy may be the only way to keep a moved placeholder's
                        // bytes; a failed plain upload is not.
                        if matches!(e, Error::CopyFailed(_)) {
                            copy_failed = true;
                            copy_failed_for_good |= !e.is_transient();
                        }
                        warn!("sync of {rel:?} failed: {e:#}");
                        if e.is_transient() {
                            transient.push((rel, format!("{e:#}")));
                        } else {
                            self.queue.finish(&rel, Err(format!("{e:#}")));
                        }
                    }
                }
            }
            present = next;
        }

        // Phase two.
        transient.extend(
            self.delete_missing(missing, copy_failed, copy_failed_for_good)
                .await,
        );
        self.settle_transient(transient).await;
    }

    /// Phase two: deletes what S3 holds for paths gone locally (none when a copy of
    /// phase one failed). Returns the paths whose delete must be retried, with why.
    async fn delete_missing(
        self: &Arc<Self>,
        missing: Vec<String>,
        copy_failed: bool,
        copy_failed_for_good: bool,
    ) -> Vec<(String, String)> {
        let mut transient = Vec::new();
        if self.queue.deletes_held() {
            for rel in missing {
                info!("{rel:?} is gone locally after the last session closed; not deleted from S3 (the next agent on this cache decides)");
                self.queue.finish(&rel, Ok(()));
            }
            return transient;
        }
        // A path under another missing one goes with it (removing a directory deletes its
        // whole prefix: after `rm -rf` one listing and a request per 1,000 keys, not a
        // DELETE per file); separate groups run concurrently.
        let mut round = group_under_ancestors(missing);
        while !round.is_empty() {
            let mut next_round = Vec::new();
            let mut results = stream::iter(round)
                .map(|(top, below)| async move {
                    let r = if copy_failed {
                        Err(other!(
                            "not deleted from S3 yet: a copy it may depend on failed"
                        ))
                    } else {
                        self.remove_remote(&top).await
                    };
                    (top, below, r)
                })
                .buffer_unordered(sync_concurrency());
            while let Some((top, below, r)) = results.next().await {
                let r = match r {
                    // The prefix is gone with everything under it.
                    Ok(Removed::Subtree) => Ok(()),
                    Ok(Removed::Other) => {
                        // Not a directory deleted as a whole (re-created since, or never
                        // in S3 as one): what was under it is handled on its own.
                        next_round.extend(group_under_ancestors(below));
                        self.queue.finish(&top, Ok(()));
                        continue;
                    }
                    Err(e) => Err(e),
                };
                for rel in std::iter::once(top).chain(below) {
                    if let Err(e) = &r {
                        warn!("delete of {rel:?} failed: {e:#}");
                        let waits_for_retry = if copy_failed {
                            !copy_failed_for_good
                        } else {
                            e.is_transient()
                        };
                        if waits_for_retry {
                            transient.push((rel, format!("{e:#}")));
                            continue;
                        }
                    }
                    self.queue
                        .finish(&rel, r.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")));
                }
            }
            round = next_round;
        }
        transient
    }

    /// An fsync waits on this one file: reconcile it now, in the waiting request's task,
    /// instead of in the worker's next batch behind every other pending change (after a
    /// `git add`, thousands). Only a regular file that is pending (not yet taken by the
    /// worker): anything else, or a transient failure, is left to the worker, which
    /// owns retries, pausing and the delete ordering of renames.
    pub async fn sync_now(self: &Arc<Self>, rel: &str) {
        if !std::fs::symlink_metadata(self.local(rel)).is_ok_and(|m| m.is_file()) {
            return;
        }
        let Some(seq) = self.queue.take_pending(rel) else {
            return;
        };
        match self.upsert(rel).await {
            Ok(o) => {
                // A conflict copy saved beside it: the worker uploads it at once.
                for c in o.children {
                    self.queue.mark_due(c, seq);
                }
                self.queue.finish(rel, Ok(()));
            }
            Err(e) if e.is_transient() => self.queue.requeue(rel, format!("{e:#}")),
            Err(e) => {
                warn!("sync of {rel:?} failed: {e:#}");
                self.queue.finish(rel, Err(format!("{e:#}")));
            }
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
        let _guard = self.locks.lock(rel).await;
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
        if row.is_none() && (ft.is_dir() || ft.is_file() || ft.is_symlink()) {
            // Journal before any request (see `Row::intent`): an agent killed after the
            // upload but before recording it must not leave an object behind for a
            // path that is gone by its next start.
            let kind = if ft.is_dir() {
                Kind::Dir
            } else if ft.is_symlink() {
                Kind::Symlink
            } else {
                Kind::File
            };
            self.index.put(rel, &Row::intent(kind))?;
        }
        // An intent left by an agent that died: nothing is known to be in S3.
        let row = row.filter(|r| !r.is_intent());
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
                    .map_err(|e| Error::CopyFailed(Box::new(e)))?;
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
                // Conditional on what we last saw, so another writer's version is never
                // overwritten silently.
                let cond = match &row {
                    Some(r) if r.kind != Kind::Dir && !r.etag.is_empty() => {
                        Cond::IfMatch(r.etag.clone())
                    }
                    _ => Cond::IfNoneMatch,
                };
                let etag = match self
                    .s3
                    .put_file(&own, &path, self.posix_meta(&md), Some(cond))
                    .await
                {
                    Ok(etag) => etag,
                    Err(e) if e.is_conflict() => match self.own_object(&own, &path).await? {
                        Some(cond) => {
                            self.s3
                                .put_file(&own, &path, self.posix_meta(&md), Some(cond))
                                .await?
                        }
                        None => return self.keep_both(rel, &path, fp).await,
                    },
                    Err(e) => return Err(e),
                };
                // Recorded whatever happened meanwhile: the object exists now, so a file
                // renamed or deleted during the upload must have its object deleted (an
                // unrecorded one was left behind, and shown again by the remote check).
                self.index.put(rel, &Row::new(Kind::File, etag, fp))?;
                // Clean now: its bytes count against the cache's limit and may be evicted.
                self.budget.note_clean(rel, md.blocks() * 512);
                match std::fs::symlink_metadata(&path) {
                    Ok(after) if Fingerprint::of(&after) == fp => {}
                    // Written to, moved or deleted while uploading: reconcile again.
                    _ => self.queue.mark(rel.to_string()),
                }
                Ok(Outcome::default())
            }
        }
    }

    /// After a failed precondition: whether the object in S3 is in fact ours (written
    /// by this cache, whose index lost the answer to the PUT when the agent was killed,
    /// or holding exactly the local bytes). Then the condition to overwrite it with.
    async fn own_object(&self, key: &str, path: &Path) -> Result<Option<Cond>> {
        let Some(head) = self.s3.head(key).await? else {
            return Ok(None);
        };
        if head.writer.is_some() && head.writer.as_deref() == self.s3.writer() {
            return Ok(Some(Cond::IfMatch(head.etag)));
        }
        Ok(self
            .s3
            .holds_same_bytes(key, path)
            .await?
            .map(Cond::IfMatch))
    }

    /// The object changed in S3 since we last saw it (another writer): the remote
    /// version keeps the name (as a placeholder, fetched when read), the local one is
    /// renamed beside it ([`conflict_name`]) and uploaded as a new object. Both are kept;
    /// the conflict is logged and listed by `s3shim status`. The caller holds `rel`'s
    /// lock.
    async fn keep_both(&self, rel: &str, path: &Path, fp: Fingerprint) -> Result<Outcome> {
        let own = self.key(rel);
        let Some(head) = self.s3.head(&own).await? else {
            // Deleted in S3 meanwhile: the local change is the only version; keep it.
            let md = std::fs::symlink_metadata(path)?;
            let etag = self
                .s3
                .put_file(&own, path, self.posix_meta(&md), Some(Cond::IfNoneMatch))
                .await?;
            self.index.put(rel, &Row::new(Kind::File, etag, fp))?;
            warn!("{rel:?} was deleted in S3 by another writer; uploaded the local version again");
            return Ok(Outcome::default());
        };
        let saved = free_conflict_name(&self.tree, rel);
        fsops::rename_noreplace(path, &self.local(&saved))
            .with_context(|| format!("saving the local version of {rel} as {saved}"))?;
        let staged = self.staging.path();
        let mode = head.mode.unwrap_or(meta::DEFAULT_FILE_MODE);
        match fsops::create_placeholder(
            &staged,
            path,
            head.size,
            mode,
            head.mtime,
            Some(&Marker::Placeholder {
                etag: &head.etag,
                source_key: &own,
            }),
        ) {
            Ok(md) => self.index.put(
                rel,
                &Row::new(Kind::File, head.etag.clone(), Fingerprint::of(&md)),
            )?,
            // A writer re-created it meanwhile: its version is uploaded in turn.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).context("placing the remote version"),
        }
        error!(
            "CONFLICT: {rel} was changed in S3 by another writer; the remote version keeps the name, the local version is saved as {saved} and uploaded"
        );
        self.queue.add_conflict(Conflict {
            path: rel.to_string(),
            saved_as: saved.clone(),
            at: std::time::SystemTime::now(),
        });
        // Uploaded in this batch, as part of the change that conflicted: a flush waiting
        // for that change waits for the copy too.
        Ok(Outcome {
            children: vec![saved],
            ..Outcome::default()
        })
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
                    .map_err(|e| Error::CopyFailed(Box::new(e)))?;
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
            let entries = match std::fs::read_dir(path) {
                Ok(rd) => rd,
                // Renamed or removed while its object went up (a 20 % fault run caught
                // this): as when it is gone before the upload, its removal's own event,
                // or the next scan, settles what S3 holds for it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(e.into()),
            };
            for e in entries {
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
            .buffer_unordered(sync_concurrency())
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Deletes what S3 holds for a path that no longer exists locally. A directory's
    /// whole prefix goes, including what was never listed: that is what removing a
    /// directory means.
    async fn remove_remote(&self, rel: &str) -> Result<Removed> {
        let _guard = self.locks.lock(rel).await;
        if std::fs::symlink_metadata(self.local(rel)).is_ok() {
            // Re-created since: the upsert of its new events handles it.
            return Ok(Removed::Other);
        }
        let row = self.index.get(rel)?;
        // A directory never uploaded itself (its PUT failed, or it went away before) may
        // still have had paths below it uploaded since: those go with it.
        let is_dir = match &row {
            Some(r) => r.kind == Kind::Dir,
            None => self.index.knows_subtree(rel)?,
        };
        if (row.is_some() || is_dir) && self.local_only.matches(rel, is_dir) {
            return Ok(Removed::Other); // .s3shimignore: never deleted in S3
        }
        match row {
            _ if is_dir => {
                let prefix = names::dir_prefix(&self.prefix, rel);
                let keys: Vec<String> = self
                    .s3
                    .list_all(&prefix)
                    .await?
                    .into_iter()
                    .map(|o| o.key)
                    .collect();
                self.index.subtree_to_intents(rel)?;
                self.s3.delete_many(&keys).await?;
                // An implicit directory has no object of its own; deleting it is harmless.
                self.s3.delete(&prefix).await?;
                #[cfg(test)]
                crash_point::after_remote_delete(rel)?;
                self.index.delete_subtree(rel)?;
                self.budget.forget_subtree(rel);
                info!("deleted {rel:?}/ from S3 ({} objects)", keys.len());
                Ok(Removed::Subtree)
            }
            Some(r) => {
                self.index.put(rel, &Row::intent(r.kind))?;
                self.s3.delete(&self.key(rel)).await?;
                #[cfg(test)]
                crash_point::after_remote_delete(rel)?;
                self.index.delete(rel)?;
                self.budget.forget_subtree(rel);
                debug!("deleted {rel:?} from S3");
                Ok(Removed::Other)
            }
            None => Ok(Removed::Other),
        }
    }

    /// Walks the cache and the index: every path whose local state differs from what the
    /// index says is in S3, and every indexed path that is gone locally.
    fn scan_tree(&self) -> Result<Vec<String>> {
        let mut scan = TreeScan::default();
        let mut stack = vec![String::new()];
        while let Some(dir) = stack.pop() {
            let rd = match std::fs::read_dir(self.local(&dir)) {
                Ok(rd) => rd,
                // Gone or replaced by a file since it was seen: as below.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e).context("scanning the cache"),
            };
            for e in rd {
                if let Some(sub) = self.scan_entry(&dir, &e?, &mut scan)? {
                    stack.push(sub);
                }
            }
        }
        let TreeScan { mut differ, seen } = scan;
        self.index.each_path(|p| {
            if !p.is_empty() && !seen.contains(p) {
                differ.push(p.to_string());
            }
        })?;
        Ok(differ)
    }

    /// One entry of a directory being scanned: noted as seen, and as differing from the
    /// index if it does. Returns its path if it is a directory to scan.
    fn scan_entry(
        &self,
        dir: &str,
        e: &std::fs::DirEntry,
        scan: &mut TreeScan,
    ) -> Result<Option<String>> {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            self.queue.unsyncable(
                e.path(),
                names::join_rel(dir, &e.file_name().to_string_lossy()),
                NOT_UTF8.to_string(),
            );
            return Ok(None);
        };
        let rel = names::join_rel(dir, &name);
        let md = match e.metadata() {
            Ok(md) => md,
            // Renamed or deleted since the directory was read (programs keep working
            // while the agent scans): gone, as if never listed. An indexed path of that
            // name is then found missing; the new name has an event, or the next scan.
            // (Failing the scan instead left every delete made while no agent ran in S3
            // for good.)
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("scanning the cache"),
        };
        let fp = Fingerprint::of(&md);
        let row = self.index.get(&rel)?;
        let moved = match marker_of(&self.local(&rel)) {
            Ok(Some(OwnedMarker::Unlisted(src))) => src != names::dir_prefix(&self.prefix, &rel),
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
            scan.differ.push(rel.clone());
        }
        scan.seen.insert(rel.clone());
        Ok(md.is_dir().then_some(rel))
    }
}

/// What a walk of the cache found so far: paths that differ from the index, and every
/// path seen.
#[derive(Default)]
struct TreeScan {
    differ: Vec<String>,
    seen: HashSet<String>,
}

/// A test's stand-in for the agent killed between deleting objects and forgetting
/// their rows.
#[cfg(test)]
mod crash_point {
    /// The path whose removal "dies" once (a path, so tests running at once do not
    /// trip each other).
    pub static AFTER_REMOTE_DELETE: parking_lot::Mutex<Option<String>> =
        parking_lot::Mutex::new(None);

    pub fn after_remote_delete(rel: &str) -> super::Result<()> {
        let mut at = AFTER_REMOTE_DELETE.lock();
        if at.as_deref() == Some(rel) {
            *at = None;
            return Err(super::other!("killed after the delete (test)"));
        }
        Ok(())
    }
}

/// How long after a failed reconcile scan the next one starts.
const SCAN_RETRY: Duration = Duration::from_secs(1);

/// The debounce: a file is uploaded once it has been quiet for `S3SHIM_DEBOUNCE_MS`
/// (default 500 ms), or `S3SHIM_DEBOUNCE_MAX_MS` (default 5 s) after its first unsynced
/// change, whichever comes first.
fn debounce() -> (Duration, Duration) {
    let ms = |name: &str, default: u64| {
        Duration::from_millis(
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default),
        )
    };
    let quiet = ms("S3SHIM_DEBOUNCE_MS", 500);
    (quiet, ms("S3SHIM_DEBOUNCE_MAX_MS", 5000).max(quiet))
}

/// Where the local version of `rel` goes when S3 holds another writer's:
/// `name.conflict-<host>-<UTC time>.ext` beside it (`ext` is what follows the last `.`
/// of the name, unless the name starts with its only `.`; no extension, no suffix).
pub fn conflict_name(rel: &str, host: &str, now: time::OffsetDateTime) -> String {
    let (dir, name) = match rel.rsplit_once('/') {
        Some((d, n)) => (Some(d), n),
        None => (None, rel),
    };
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let stamp = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let file = format!("{stem}.conflict-{host}-{stamp}{ext}");
    match dir {
        Some(d) => format!("{d}/{file}"),
        None => file,
    }
}

/// [`conflict_name`] for now and this host, with `-2`, `-3`... on the stem if taken.
fn free_conflict_name(tree: &Path, rel: &str) -> String {
    let host = hostname();
    let now = time::OffsetDateTime::now_utc();
    let base = conflict_name(rel, &host, now);
    let mut n = 1;
    loop {
        let cand = if n == 1 {
            base.clone()
        } else {
            conflict_name(rel, &format!("{host}-{n}"), now)
        };
        if std::fs::symlink_metadata(tree.join(&cand)).is_err() {
            return cand;
        }
        n += 1;
    }
}

/// This machine's name, reduced to characters safe in a file name.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: a valid buffer of that length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let raw = if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let clean: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(63)
        .collect();
    if clean.is_empty() {
        "host".to_string()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::super::queue::Batch;
    use super::super::testkit::{kit, put, DEFAULT_DOWNLOADS};
    use super::{conflict_name, group_under_ancestors};

    /// Every key under `prefix` in the bucket, sorted.
    async fn sorted_keys(ctx: &super::Ctx, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = ctx
            .s3
            .list_all(prefix)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        keys.sort();
        keys
    }

    /// The old half of a rename of a never-listed directory arrives alone (its new half
    /// in no batch yet, as when the start-up scan read the parent during the rename):
    /// the old keys are the only copy of the bytes, so they are copied to the new name
    /// before they are deleted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_delete_of_a_renamed_placeholder_dir_copies_before_deleting() {
        let k = kit("p/", DEFAULT_DOWNLOADS).await;
        let ctx = &k.ctx;
        put(ctx, "p/src/a", b"a\n").await;
        put(ctx, "p/src/b", b"b\n").await;
        ctx.list_dir("").await.unwrap();
        assert!(ctx.index.get("src").unwrap().is_some());
        std::fs::rename(ctx.local("src"), ctx.local("dst")).unwrap();

        ctx.queue.add_in_flight("src", 1);
        ctx.run_batch(Batch {
            paths: vec![("src".to_string(), 1)],
            scan: None,
        })
        .await;

        let keys = sorted_keys(ctx, "p/").await;
        assert_eq!(keys, ["p/dst/", "p/dst/a", "p/dst/b"]);
        assert_eq!(ctx.s3.get_bytes("p/dst/a").await.unwrap(), b"a\n");
    }

    /// An entry deleted between the scan's read of its directory and its stat (the
    /// workload keeps running while a restarted agent scans) is skipped as gone, not a
    /// failed scan: a failed start-up scan left every delete made while no agent ran
    /// in S3 for good.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_entry_gone_between_listing_and_stat_does_not_fail_the_scan() {
        let k = kit("p/", DEFAULT_DOWNLOADS).await;
        let ctx = &k.ctx;
        put(ctx, "p/kept", b"k\n").await;
        put(ctx, "p/gone", b"g\n").await;
        ctx.list_dir("").await.unwrap();
        let entries: Vec<std::fs::DirEntry> = std::fs::read_dir(ctx.local(""))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        std::fs::remove_file(ctx.local("gone")).unwrap();

        let mut scan = super::TreeScan::default();
        for e in &entries {
            let sub = ctx
                .scan_entry("", e, &mut scan)
                .expect("a vanished entry is skipped");
            assert_eq!(sub, None);
        }
        assert!(scan.seen.contains("kept") && !scan.seen.contains("gone"));
        // The whole scan then finds the indexed path missing, and the batch deletes it.
        assert_eq!(ctx.scan_tree().unwrap(), ["gone"]);
        ctx.run_batch(Batch {
            paths: Vec::new(),
            scan: Some(1),
        })
        .await;
        assert_eq!(sorted_keys(ctx, "p/").await, ["p/kept"]);
    }

    /// The agent "dies" right after deleting a directory's objects, before it forgets
    /// their rows, and the directory comes back under its name (renamed away and back,
    /// as the kill -9 test's workload did): the next scan must upload it again. With
    /// the rows left as they were it matched them and never did.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_directory_back_after_a_delete_cut_short_is_uploaded_again() {
        let k = kit("p/", DEFAULT_DOWNLOADS).await;
        let ctx = &k.ctx;
        std::fs::create_dir(ctx.local("d")).unwrap();
        std::fs::write(ctx.local("d/a"), b"a\n").unwrap();
        for p in ["d", "d/a"] {
            ctx.queue.add_in_flight(p, 1);
        }
        ctx.run_batch(Batch {
            paths: vec![("d".into(), 1), ("d/a".into(), 1)],
            scan: None,
        })
        .await;
        assert_eq!(sorted_keys(ctx, "p/").await, ["p/d/", "p/d/a"]);

        // Out of the tree (not a rename the agent would upload), then back.
        let away = k._dir.path().join("away");
        std::fs::rename(ctx.local("d"), &away).unwrap();
        *super::crash_point::AFTER_REMOTE_DELETE.lock() = Some("d".into());
        ctx.queue.add_in_flight("d", 2);
        ctx.run_batch(Batch {
            paths: vec![("d".into(), 2)],
            scan: None,
        })
        .await;
        assert!(super::crash_point::AFTER_REMOTE_DELETE.lock().is_none());
        assert!(sorted_keys(ctx, "p/").await.is_empty());
        std::fs::rename(&away, ctx.local("d")).unwrap();

        ctx.run_batch(Batch {
            paths: Vec::new(),
            scan: Some(3),
        })
        .await;
        assert_eq!(sorted_keys(ctx, "p/").await, ["p/d/", "p/d/a"]);
        assert_eq!(ctx.s3.get_bytes("p/d/a").await.unwrap(), b"a\n");
    }

    /// A directory whose files were deleted and which exists again (made anew between
    /// the batch's look and its delete): its prefix must not go as a whole, and the
    /// files under it must still be deleted one by one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_under_a_directory_made_again_are_still_deleted() {
        let k = kit("p/", DEFAULT_DOWNLOADS).await;
        let ctx = &k.ctx;
        put(ctx, "p/d/x", b"x\n").await;
        put(ctx, "p/d/y", b"y\n").await;
        put(ctx, "p/d/keep", b"k\n").await;
        ctx.list_dir("").await.unwrap();
        ctx.list_dir("d").await.unwrap();
        std::fs::remove_file(ctx.local("d/x")).unwrap();
        std::fs::remove_file(ctx.local("d/y")).unwrap();
        for p in ["d", "d/x", "d/y"] {
            ctx.queue.add_in_flight(p, 1);
        }

        let retry = ctx
            .delete_missing(vec!["d/y".into(), "d".into(), "d/x".into()], false, false)
            .await;

        assert!(retry.is_empty(), "{retry:?}");
        let keys = sorted_keys(ctx, "p/").await;
        assert_eq!(keys, ["p/d/keep"]);
    }

    /// A directory whose own object never went up, but a directory below it did (made
    /// and uploaded just before the parent was renamed away): deleting the parent takes
    /// what was uploaded below it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_never_uploaded_directory_takes_what_went_up_below_it() {
        let k = kit("p/", DEFAULT_DOWNLOADS).await;
        let ctx = &k.ctx;
        put(ctx, "p/d/sub/", b"").await;
        put(ctx, "p/keep", b"k\n").await;
        ctx.index
            .put(
                "d/sub",
                &super::Row::new(super::Kind::Dir, String::new(), Default::default()),
            )
            .unwrap();
        assert!(ctx.index.get("d").unwrap().is_none());
        ctx.queue.add_in_flight("d", 1);

        let retry = ctx.delete_missing(vec!["d".into()], false, false).await;

        assert!(retry.is_empty(), "{retry:?}");
        assert_eq!(sorted_keys(ctx, "p/").await, ["p/keep"]);
        assert!(!ctx.index.knows_subtree("d").unwrap());
    }

    #[test]
    fn deletes_are_grouped_under_their_highest_missing_ancestor() {
        let paths = [
            "ab", "a/x/y", "a.b", "a", "a/x", "c/d", "c/d", "c/e/f", "a/x.z",
        ];
        let groups = group_under_ancestors(paths.iter().map(|s| s.to_string()).collect());
        let want: Vec<(String, Vec<String>)> = vec![
            (
                "a".into(),
                vec!["a/x".into(), "a/x/y".into(), "a/x.z".into()],
            ),
            ("a.b".into(), vec![]),
            ("ab".into(), vec![]),
            ("c/d".into(), vec![]),
            ("c/e/f".into(), vec![]),
        ];
        assert_eq!(groups, want);
    }

    #[test]
    fn conflict_names_keep_the_extension() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(
            conflict_name("src/notes.txt", "box", t),
            "src/notes.conflict-box-20231114T221320Z.txt"
        );
        assert_eq!(
            conflict_name("a.tar.gz", "box", t),
            "a.tar.conflict-box-20231114T221320Z.gz"
        );
        assert_eq!(
            conflict_name(".bashrc", "box", t),
            ".bashrc.conflict-box-20231114T221320Z"
        );
        assert_eq!(
            conflict_name("d.x/Makefile", "box", t),
            "d.x/Makefile.conflict-box-20231114T221320Z"
        );
    }
}
