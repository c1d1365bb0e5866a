//! Sibling prefetch: once a program reads a file of a directory that was never fetched,
//! the other small placeholders of that directory are fetched in the background, a few
//! at a time, in the order the directory lists them (the order `find`, `grep -r` and
//! editors' searches read them). A read of a file the prefetch has in flight joins that
//! download; a read of any other file does not wait for the prefetch (it never takes a
//! prefetch slot). Fetching is the ordinary one: a placeholder changed locally is never
//! overwritten, and paths in `.s3shimignore` are skipped.

use super::fsops::{marker_of, OwnedMarker};
use super::Ctx;
use futures::{stream, StreamExt};
use parking_lot::Mutex;
use s3shim_protocol::names;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::Semaphore;
use tracing::debug;

/// Files larger than this are fetched only when read.
pub const FILE_MAX: u64 = 1 << 20;
/// At most this many bytes are prefetched per directory.
pub const DIR_BYTES_MAX: u64 = 32 << 20;
/// At most this many files per directory.
pub const DIR_FILES_MAX: usize = 1000;
/// Prefetch downloads in flight at once, over all directories
/// (`S3SHIM_PREFETCH_CONCURRENCY`, default 8).
pub fn concurrency() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| super::env_count("S3SHIM_PREFETCH_CONCURRENCY", 8))
}

pub struct Prefetch {
    /// Directories whose prefetch has started (each is prefetched once per agent).
    started: Mutex<HashSet<String>>,
    slots: Arc<Semaphore>,
}

impl Default for Prefetch {
    fn default() -> Self {
        Prefetch {
            started: Mutex::default(),
            slots: Arc::new(Semaphore::new(concurrency())),
        }
    }
}

impl Prefetch {
    /// On unless `S3SHIM_PREFETCH=0`.
    pub fn from_env() -> Option<Prefetch> {
        (std::env::var("S3SHIM_PREFETCH").as_deref() != Ok("0")).then(Prefetch::default)
    }
}

impl Ctx {
    /// After a read of `rel`: starts the prefetch of its directory (the first time only).
    /// The handle is for tests; the agent does not wait for it.
    pub fn prefetch_siblings(self: &Arc<Self>, rel: &str) -> Option<tokio::task::JoinHandle<()>> {
        let dir = match rel.rsplit_once('/') {
            Some((d, _)) => d.to_string(),
            None => String::new(),
        };
        let p = self.prefetch.as_ref()?;
        if !p.started.lock().insert(dir.clone()) {
            return None;
        }
        let me = self.clone();
        Some(tokio::spawn(async move { me.prefetch_dir(&dir).await }))
    }

    async fn prefetch_dir(self: Arc<Self>, dir: &str) {
        let files = self.prefetch_candidates(dir);
        if files.is_empty() {
            return;
        }
        debug!("prefetching {} files of {dir:?}", files.len());
        let me = &self;
        stream::iter(files)
            .for_each_concurrent(concurrency(), |rel| async move {
                let Some(p) = me.prefetch.as_ref() else {
                    return;
                };
                let Ok(_slot) = p.slots.acquire().await else {
                    return;
                };
                if me.local_only(&rel, false).await {
                    return;
                }
                if let Err(e) = me.fetch(&rel).await {
                    // Not the user's request: it is fetched (and reported) when read.
                    debug!("prefetch of {rel:?} failed: {e:#}");
                }
            })
            .await;
    }

    /// The placeholders of `dir` worth prefetching, in directory order.
    fn prefetch_candidates(&self, dir: &str) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.local(dir)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut bytes = 0u64;
        for e in rd.flatten() {
            if out.len() >= DIR_FILES_MAX {
                break;
            }
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(md) = e.metadata() else { continue };
            if !md.is_file() || md.len() == 0 || md.len() > FILE_MAX {
                continue;
            }
            if bytes + md.len() > DIR_BYTES_MAX {
                break;
            }
            if matches!(marker_of(&e.path()), Ok(Some(OwnedMarker::Placeholder(..)))) {
                bytes += md.len();
                out.push(names::join_rel(dir, &name));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::fsops;
    use super::super::ignore::IGNORE_FILE;
    use super::super::testkit::{is_placeholder, kit, put, LAZY_DOWNLOADS};
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reading_one_file_fetches_its_small_siblings_only() {
        // Placeholders: small files are not fetched with their listing.
        let k = kit("p/", LAZY_DOWNLOADS).await;
        let ctx = &k.ctx;
        put(ctx, "p/d/a.txt", b"alpha").await;
        put(ctx, "p/d/b.txt", b"bravo").await;
        put(ctx, "p/d/secret.key", b"local only").await;
        put(ctx, "p/d/changed.txt", b"remote version").await;
        put(ctx, "p/d/big.bin", &vec![7u8; FILE_MAX as usize + 1]).await;
        put(ctx, "p/d/sub/deeper.txt", b"not a sibling").await;
        put(ctx, "p/other/c.txt", b"another directory").await;
        ctx.list_dir("").await.unwrap();
        ctx.list_dir("d").await.unwrap();
        ctx.list_dir("d/sub").await.unwrap();
        ctx.list_dir("other").await.unwrap();
        // Rules added after the listing: the placeholder is there, but must stay one.
        std::fs::write(ctx.local(IGNORE_FILE), "*.key\n").unwrap();
        // A local change to a placeholder (as the shim makes it: content replaced, marker
        // dropped) must survive.
        std::fs::write(ctx.local("d/changed.txt"), b"local edit").unwrap();
        fsops::remove_marker(&ctx.local("d/changed.txt")).unwrap();

        ctx.fetch("d/a.txt").await.unwrap();
        let h = ctx.prefetch_siblings("d/a.txt").expect("first read in d");
        assert!(
            ctx.prefetch_siblings("d/b.txt").is_none(),
            "a directory is prefetched once"
        );
        h.await.unwrap();

        assert_eq!(std::fs::read(ctx.local("d/b.txt")).unwrap(), b"bravo");
        assert!(!is_placeholder(ctx, "d/b.txt"));
        assert!(
            is_placeholder(ctx, "d/secret.key"),
            "local-only: not fetched"
        );
        assert!(is_placeholder(ctx, "d/big.bin"), "too large to prefetch");
        assert!(is_placeholder(ctx, "d/sub/deeper.txt"), "not a sibling");
        assert!(is_placeholder(ctx, "other/c.txt"), "another directory");
        assert_eq!(
            std::fs::read(ctx.local("d/changed.txt")).unwrap(),
            b"local edit"
        );
        k.server.shutdown().await;
    }
}
