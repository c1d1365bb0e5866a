//! Reusing a warm cache: at start-up, before anything can use the tree, every directory a
//! previous agent listed is listed again (one LIST each, no GET) and compared with the
//! index. A file whose ETag in the listing is the one the index recorded is trusted as it
//! is, hydrated or not; a changed object becomes a placeholder again (fetched when next
//! read); a new object gets a placeholder; a clean file whose object is gone is removed.
//! Local changes not in S3 yet always win: such entries are left for the upload scan.

use super::error::{Context, Result};
use super::fsops::{marker_of, OwnedMarker};
use super::hydrate::local_names;
use super::index::{same_content_and_meta, Fingerprint};
use super::s3::same_etag;
use super::Ctx;
use futures::{stream, StreamExt};
use s3shim_protocol::names;
use std::collections::HashSet;
use std::io;
use std::sync::Arc;
use tracing::{info, warn};

/// Directories listed at once.
const CONCURRENCY: usize = 8;

#[derive(Default, Debug)]
pub struct Revalidated {
    pub dirs: usize,
    pub trusted: usize,
    pub changed: usize,
    pub added: usize,
    pub removed: usize,
}

impl Ctx {
    /// Brings every listed directory of the cache up to date with S3 (see the module
    /// comment). Must run before the watcher and the sync worker start: it replaces
    /// entries, which they must not see half-done.
    pub async fn revalidate(self: &Arc<Self>) -> Result<Revalidated> {
        let mut total = Revalidated::default();
        let mut level = vec![String::new()];
        while !level.is_empty() {
            let results: Vec<Result<(Revalidated, Vec<String>)>> = stream::iter(level)
                .map(|d| async move { self.revalidate_dir(&d).await })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            level = Vec::new();
            for r in results {
                let (n, subdirs) = r?;
                total.dirs += n.dirs;
                total.trusted += n.trusted;
                total.changed += n.changed;
                total.added += n.added;
                total.removed += n.removed;
                level.extend(subdirs);
            }
        }
        if total.dirs > 0 {
            info!("warm cache revalidated: {total:?}");
        }
        Ok(total)
    }

    /// One listed directory; returns its listed sub-directories to visit next.
    async fn revalidate_dir(&self, rel: &str) -> Result<(Revalidated, Vec<String>)> {
        let mut n = Revalidated::default();
        let dir = self.local(rel);
        match marker_of(&dir) {
            // Never listed (or gone): it will be listed fresh when first used.
            Ok(Some(_)) => return Ok((n, Vec::new())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((n, Vec::new())),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
            Ok(None) => {}
        }
        n.dirs = 1;
        let source = names::dir_prefix(&self.prefix, rel);
        let listing = self.s3.list_dir(&source).await?;
        let (dirs, files) = local_names(&source, &listing, rel);
        let mut remote_names: HashSet<String> = dirs.iter().cloned().collect();
        let mut next = Vec::new();

        for name in &dirs {
            let child = names::join_rel(rel, name);
            let path = dir.join(name);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => next.push(child),
                Ok(_) => {
                    warn!("{child:?} is a directory in S3 but not locally; keeping the local entry")
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Deleted locally (or moved away), not yet in S3: the scan deletes it.
                    // Any row below counts: after a crash S3 can hold a leftover under a
                    // directory whose own row is gone (a rename cut half-way).
                    if self.index.knows_subtree(&child)? {
                        continue;
                    }
                    let head = self.s3.head(&format!("{source}{name}/")).await?;
                    if let Some(row) =
                        self.make_dir(&path, &format!("{source}{name}/"), head.as_ref())?
                    {
                        self.index.put(&child, &row)?;
                        n.added += 1;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }

        for (name, obj) in files {
            remote_names.insert(name.clone());
            let child = names::join_rel(rel, &name);
            let path = dir.join(&name);
            let row = self.index.get(&child)?;
            let md = match std::fs::symlink_metadata(&path) {
                Ok(md) => Some(md),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e.into()),
            };
            let replacing = match (md, row) {
                // Deleted locally with the deletion not in S3 yet: the scan deletes it.
                (None, Some(_)) => continue,
                (None, None) => false,
                // Made locally and not uploaded yet: the scan uploads it.
                (Some(_), None) => continue,
                (Some(md), Some(row)) => {
                    if md.is_dir() || !same_content_and_meta(&row.fp, &Fingerprint::of(&md)) {
                        continue; // a local change wins
                    }
                    // Quoted or not: servers differ in listings, and the index keeps
                    // what the upload's answer said.
                    if same_etag(&row.etag, &obj.etag) {
                        n.trusted += 1;
                        continue;
                    }
                    // Changed in S3 since this cache saw it: back to a placeholder.
                    self.index.delete(&child)?;
                    std::fs::remove_file(&path)
                        .with_context(|| format!("replacing {}", path.display()))?;
                    true
                }
            };
            let Some(head) = self.s3.head(&obj.key).await? else {
                continue; // deleted meanwhile
            };
            match self.make_entry(&path, &obj.key, &head).await {
                Ok(Some(row)) => {
                    self.index.put(&child, &row)?;
                    if replacing {
                        n.changed += 1;
                    } else {
                        n.added += 1;
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }

        // Clean local files whose object is gone were deleted by another writer.
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if remote_names.contains(&name) {
                continue;
            }
            let child = names::join_rel(rel, &name);
            let md = e.metadata()?;
            if md.is_dir() {
                continue; // a directory gone remotely is kept (see SEMANTICS.md)
            }
            let Some(row) = self.index.get(&child)? else {
                continue; // local only: the scan uploads it
            };
            if same_content_and_meta(&row.fp, &Fingerprint::of(&md))
                && !matches!(marker_of(&e.path()), Ok(Some(OwnedMarker::Unlisted(_))))
            {
                self.index.delete(&child)?;
                std::fs::remove_file(e.path())?;
                n.removed += 1;
            }
        }
        Ok((n, next))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{is_placeholder, kit, put, LAZY_DOWNLOADS};

    /// A server may quote an ETag in a listing and not in a HEAD (or the other way
    /// round): the same object is still trusted, its fetched bytes kept.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_etag_quoted_otherwise_is_the_same_object() {
        let k = kit("", LAZY_DOWNLOADS).await;
        let ctx = &k.ctx;
        put(ctx, "a.txt", b"hello").await;
        ctx.list_dir("").await.unwrap();
        ctx.fetch("a.txt").await.unwrap();
        let mut row = ctx.index.get("a.txt").unwrap().unwrap();
        assert!(
            row.etag.starts_with('"'),
            "our server quotes ETags: {row:?}"
        );
        row.etag = row.etag.trim_matches('"').to_string();
        ctx.index.put("a.txt", &row).unwrap();

        let n = ctx.revalidate().await.unwrap();
        assert_eq!((n.trusted, n.changed), (1, 0), "{n:?}");
        assert!(!is_placeholder(ctx, "a.txt"), "the fetched bytes are kept");
        assert_eq!(std::fs::read(ctx.local("a.txt")).unwrap(), b"hello");
        k.server.shutdown().await;
    }
}
