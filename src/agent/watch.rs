//! Change detection on the cache with inotify: it sees every writer, including the ones
//! the shim cannot (static binaries, `copy_file_range`, mmap, raw syscalls).
//!
//! Events only mark paths for reconciliation (see `sync`), so the watcher's one duty is
//! not to miss a directory: every directory of the tree is watched, new ones as they
//! appear (with their contents marked, since they may predate the watch), and a queue
//! overflow asks for a whole-tree scan.

use super::error::{Context, Result};
use super::queue::Queue;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use s3shim_protocol::names;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

/// Asks the watcher to read every event the kernel has queued so far (and, with `stop`,
/// to stop watching after that).
#[derive(Clone)]
pub struct WatchHandle {
    drain: mpsc::Sender<(oneshot::Sender<()>, bool)>,
}

impl WatchHandle {
    /// Returns once every change made before the call has been marked in the queue.
    pub async fn drain(&self) {
        self.ask(false).await
    }

    /// Like `drain`, then stops watching: changes made after the call are never seen
    /// (by this agent; the next one's scan compares the tree with the index).
    pub async fn stop(&self) {
        self.ask(true).await
    }

    async fn ask(&self, stop: bool) {
        let (tx, rx) = oneshot::channel();
        if self.drain.send((tx, stop)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Watcher {
    inotify: AsyncFd<Inotify>,
    tree: PathBuf,
    queue: Arc<Queue>,
    dirs: HashMap<WatchDescriptor, String>,
    /// Directories moved away, by cookie, until their MOVED_TO (if any) arrives.
    moved_from: HashMap<u32, String>,
}

/// Why an entry with a non-UTF-8 name stays local.
pub const NOT_UTF8: &str = "the name is not valid UTF-8, and S3 keys must be; rename it";

fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::CLOSE_WRITE
        | WatchMask::ATTRIB
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ONLYDIR
        | WatchMask::DONT_FOLLOW
        | WatchMask::EXCL_UNLINK
}

/// Starts watching `tree`; returns after every existing directory is watched.
pub fn spawn(tree: PathBuf, queue: Arc<Queue>) -> Result<WatchHandle> {
    let inotify = Inotify::init().context("starting inotify")?;
    // SAFETY: the Inotify owns its fd for as long as the AsyncFd holds it.
    let inotify = unsafe { AsyncFd::register(inotify) }
        .map_err(std::io::Error::from)
        .context("registering inotify with tokio")?;
    let mut w = Watcher {
        inotify,
        tree,
        queue,
        dirs: HashMap::new(),
        moved_from: HashMap::new(),
    };
    w.watch_tree("", false)?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(w.run(rx));
    Ok(WatchHandle { drain: tx })
}

impl Watcher {
    fn local(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.tree.clone()
        } else {
            self.tree.join(rel)
        }
    }

    /// Watches `rel` and every directory below it; with `mark`, marks everything found
    /// (a new directory's contents may have been written before its watch existed).
    fn watch_tree(&mut self, rel: &str, mark: bool) -> Result<()> {
        let mut stack = vec![rel.to_string()];
        while let Some(dir) = stack.pop() {
            let path = self.local(&dir);
            match self.inotify.get_mut().watches().add(&path, mask()) {
                Ok(wd) => {
                    self.dirs.insert(wd, dir.clone());
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    // Not the disk's ENOSPC: a program must not read it as a full disk.
                    return Err(super::error::other!(
                        "out of inotify watches at {}; raise fs.inotify.max_user_watches",
                        path.display()
                    ));
                }
                // Gone or replaced meanwhile: its parent's events cover it.
                Err(e) => {
                    debug!("not watching {}: {e}", path.display());
                    continue;
                }
            }
            let Ok(rd) = std::fs::read_dir(&path) else {
                continue;
            };
            for e in rd.flatten() {
                let Some(name) = e.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let child = names::join_rel(&dir, &name);
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(child.clone());
                }
                if mark {
                    self.queue.mark(child);
                }
            }
        }
        Ok(())
    }

    async fn run(mut self, mut drain: mpsc::Receiver<(oneshot::Sender<()>, bool)>) {
        loop {
            tokio::select! {
                ready = self.inotify.readable_mut() => {
                    match ready {
                        Ok(mut guard) => {
                            guard.clear_ready();
                        }
                        Err(e) => {
                            warn!("inotify failed: {e}; falling back to full scans");
                            return;
                        }
                    }
                    self.read_all();
                }
                req = drain.recv() => {
                    let Some((reply, stop)) = req else { return };
                    self.read_all();
                    if stop {
                        debug!("watching stopped");
                        // The inotify fd closes with `self`, before the reply.
                        drop(self);
                        let _ = reply.send(());
                        return;
                    }
                    let _ = reply.send(());
                }
            }
        }
    }

    /// Reads until the kernel queue is empty.
    fn read_all(&mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let events: Vec<(WatchDescriptor, EventMask, u32, Option<std::ffi::OsString>)> =
                match self.inotify.get_mut().read_events(&mut buf) {
                    Ok(evs) => evs
                        .map(|e| (e.wd, e.mask, e.cookie, e.name.map(OsStr::to_os_string)))
                        .collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                    Err(e) => {
                        warn!("reading inotify events: {e}");
                        self.queue.request_scan();
                        return;
                    }
                };
            if events.is_empty() {
                return;
            }
            for (wd, mask, cookie, name) in events {
                self.handle(wd, mask, cookie, name.as_deref());
            }
        }
    }

    fn handle(&mut self, wd: WatchDescriptor, mask: EventMask, cookie: u32, name: Option<&OsStr>) {
        if mask.contains(EventMask::Q_OVERFLOW) {
            warn!("inotify queue overflowed; scanning the whole cache");
            self.queue.request_scan();
            return;
        }
        if mask.contains(EventMask::IGNORED) {
            self.dirs.remove(&wd);
            return;
        }
        let (Some(dir), Some(name)) = (self.dirs.get(&wd), name) else {
            return;
        };
        let Some(name_str) = name.to_str() else {
            let local = self.local(dir).join(name);
            self.queue.unsyncable(
                local,
                names::join_rel(dir, &name.to_string_lossy()),
                NOT_UTF8.to_string(),
            );
            return;
        };
        let name = name_str;
        let rel = names::join_rel(dir, name);
        if mask.contains(EventMask::ISDIR) {
            if mask.contains(EventMask::MOVED_FROM) {
                // Directories moved out of the tree never get their MOVED_TO.
                if self.moved_from.len() > 4096 {
                    self.moved_from.clear();
                }
                self.moved_from.insert(cookie, rel.clone());
            } else if mask.contains(EventMask::MOVED_TO) {
                match self.moved_from.remove(&cookie) {
                    Some(old) => self.renamed(&old, &rel),
                    None => {
                        if let Err(e) = self.watch_tree(&rel, true) {
                            warn!("{e:#}");
                            self.queue.request_scan();
                        }
                    }
                }
            } else if mask.contains(EventMask::CREATE) {
                if let Err(e) = self.watch_tree(&rel, true) {
                    warn!("{e:#}");
                    self.queue.request_scan();
                }
            }
        }
        self.queue.mark(rel);
    }

    /// A watched directory moved inside the tree: its watches (which follow the inode)
    /// now report under the new path.
    fn renamed(&mut self, old: &str, new: &str) {
        let old_slash = format!("{old}/");
        for path in self.dirs.values_mut() {
            if path == old {
                *path = new.to_string();
            } else if let Some(rest) = path.strip_prefix(&old_slash) {
                *path = format!("{new}/{rest}");
            }
        }
    }
}
