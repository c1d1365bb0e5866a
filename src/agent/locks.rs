//! What the parts of the agent share so that they do not step on each other: one
//! hydration per key at a time ([`Inflight`]), a download and an upload of one path never
//! at once ([`PathLocks`]), and unique names for files staged before they are published
//! ([`Staging`]).

use super::error;
use futures::future::{BoxFuture, FutureExt, Shared};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

type SharedResult = Shared<BoxFuture<'static, error::Result<()>>>;

/// Runs one hydration per key at a time; concurrent requests for the same key wait for
/// the same result. The work runs as its own task, so a requester that goes away does
/// not cancel it half-way.
#[derive(Default)]
pub struct Inflight {
    map: Mutex<HashMap<String, SharedResult>>,
}

impl Inflight {
    pub async fn run<F, Fut>(&self, key: String, make: F) -> error::Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = error::Result<()>> + Send + 'static,
    {
        let fut = {
            let mut map = self.map.lock();
            match map.get(&key) {
                Some(f) => f.clone(),
                None => {
                    let task = tokio::spawn(make());
                    let f = async move {
                        match task.await {
                            Ok(r) => r,
                            Err(e) => Err(error::other!("hydration task failed: {e}")),
                        }
                    }
                    .boxed()
                    .shared();
                    map.insert(key.clone(), f.clone());
                    f
                }
            }
        };
        let r = fut.clone().await;
        let mut map = self.map.lock();
        if map.get(&key).is_some_and(|f| f.ptr_eq(&fut)) {
            map.remove(&key);
        }
        r
    }
}

/// Per-path mutual exclusion between downloads and uploads of the same path.
#[derive(Default)]
pub struct PathLocks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

pub struct PathGuard<'a> {
    locks: &'a PathLocks,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl PathLocks {
    pub async fn lock(&self, key: &str) -> PathGuard<'_> {
        let m = self.map.lock().entry(key.to_string()).or_default().clone();
        PathGuard {
            locks: self,
            key: key.to_string(),
            guard: Some(m.lock_owned().await),
        }
    }
}

impl PathLocks {
    /// The lock of `key` if nobody holds it now.
    pub fn try_lock(&self, key: &str) -> Option<PathGuard<'_>> {
        let m = self.map.lock().entry(key.to_string()).or_default().clone();
        let guard = m.try_lock_owned().ok();
        let got = guard.is_some();
        let g = PathGuard {
            locks: self,
            key: key.to_string(),
            guard,
        };
        // Dropped at once when not taken, which also cleans the map entry.
        got.then_some(g)
    }
}

impl Drop for PathGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = self.locks.map.lock();
        if map
            .get(&self.key)
            .is_some_and(|a| Arc::strong_count(a) == 1)
        {
            map.remove(&self.key);
        }
    }
}

/// Where downloads and uploads stage their files (`CACHE/.s3shim/tmp`, on the cache's
/// file system so that publishing is a rename), each under a name of its own.
pub struct Staging {
    dir: PathBuf,
    seq: AtomicU64,
}

impl Staging {
    pub fn new(dir: &Path) -> Staging {
        Staging {
            dir: dir.to_path_buf(),
            seq: AtomicU64::new(0),
        }
    }

    /// The directory (the agent's state directory is its parent).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path no other staged file has.
    pub fn path(&self) -> PathBuf {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("dl-{}-{n}", std::process::id()))
    }
}
