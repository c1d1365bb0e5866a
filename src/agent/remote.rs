//! Remote changes: what other writers did in S3 appears in the directories already
//! listed here, within the poll interval, so editors watching the cache (inotify) see it.
//!
//! One flat listing of the prefix per interval is compared with the index, which says
//! which version of each path the cache holds. A path is only ever changed here when its
//! local state is exactly what the index recorded (no unsynced local change) and no
//! process has it open (a write lease is granted only then, and an open by anyone else
//! waits until the change is made): local always wins, and a file open for writing is
//! left alone until it is closed.
//!
//! A changed file becomes a placeholder again in place (same inode, new size, mode,
//! mtime, marker), then, if its bytes were here before, is fetched again in the
//! background; a reader through the shim waits for that fetch as for any placeholder.

use super::hydrate::{marker_of, OwnedMarker};
use super::index::{Fingerprint, Kind, Row};
use super::s3::{same_etag, RemoteObject};
use super::{fsops, Ctx};
use anyhow::{Context, Result};
use s3shim_protocol::marker::Marker;
use s3shim_protocol::names;
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::ffi::OsStrExt;
#[cfg(test)]
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// The bucket prefix as a tree of relative paths.
#[derive(Debug, Default)]
pub struct RemoteTree {
    pub files: HashMap<String, RemoteObject>,
    /// Directories: `dir/` markers and every prefix that holds a key.
    pub dirs: HashSet<String>,
}

impl RemoteTree {
    /// Builds the tree from a flat listing under `prefix`. Keys that cannot be local
    /// names (`..`, empty components, overlong names...) are skipped, logged once per
    /// key in `warned`; their valid leading directories still count.
    pub fn build(prefix: &str, objects: Vec<RemoteObject>, warned: &mut HashSet<String>) -> Self {
        let mut t = RemoteTree::default();
        for o in objects {
            let Some(rest) = o.key.strip_prefix(prefix) else {
                continue;
            };
            let (path, is_dir) = match rest.strip_suffix('/') {
                Some(p) => (p, true),
                None => (rest, false),
            };
            if path.is_empty() {
                continue; // the prefix's own marker
            }
            let comps: Vec<&str> = path.split('/').collect();
            let mut rel = String::new();
            let mut valid = true;
            for (i, c) in comps.iter().enumerate() {
                if let Err(why) = names::child_name("", c) {
                    if warned.insert(o.key.clone()) {
                        warn!("skipping key {:?} in S3: {why}", o.key);
                    }
                    valid = false;
                    break;
                }
                rel = names::join_rel(&rel, c);
                if i + 1 < comps.len() {
                    t.dirs.insert(rel.clone());
                }
            }
            if !valid {
                continue;
            }
            if is_dir {
                t.dirs.insert(rel);
            } else {
                t.files.insert(rel, o);
            }
        }
        // Both `x` and `x/`: the directory is shown, as in a listing.
        let shadowed: Vec<String> = t
            .files
            .keys()
            .filter(|f| t.dirs.contains(*f))
            .cloned()
            .collect();
        for f in shadowed {
            t.files.remove(&f);
        }
        t
    }

    fn has(&self, rel: &str) -> bool {
        self.files.contains_key(rel) || self.dirs.contains(rel)
    }
}

fn parent_of(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(p, _)| p)
}

/// Takes a write lease on `f`: granted only when no other open file description of the
/// file exists, and while held an `open` by any other process waits for its release.
/// `false` when someone has it open (or the filesystem has no leases).
fn lease(f: &std::fs::File) -> bool {
    // SAFETY: fcntl on an open fd.
    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) == 0 }
}

/// Opens the file at `path` (never through a symlink) and takes a write lease on it;
/// `None` when someone else has it open.
fn open_leased(path: &Path) -> io::Result<Option<std::fs::File>> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    Ok(lease(&f).then_some(f))
}

fn unlease(f: &std::fs::File) {
    // SAFETY: fcntl on an open fd.
    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
}

impl Ctx {
    /// The poller: forever, every `every`, brings remote changes into listed directories.
    pub async fn poll_remote(self: Arc<Self>, every: Duration) {
        let mut warned = HashSet::new();
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.poll_once(&mut warned).await {
                warn!("checking S3 for changes by other writers: {e:#}");
            }
        }
    }

    /// Whether directory `rel` is listed here (its entries are the truth), through real
    /// directories only.
    fn is_listed(&self, rel: &str, memo: &mut HashMap<String, bool>) -> bool {
        if let Some(&v) = memo.get(rel) {
            return v;
        }
        let v = (rel.is_empty() || self.is_listed(parent_of(rel), memo))
            && std::fs::symlink_metadata(self.local(rel)).is_ok_and(|m| m.is_dir())
            && !matches!(
                marker_of(&self.local(rel)),
                Ok(Some(OwnedMarker::Unlisted(_))) | Err(_)
            );
        memo.insert(rel.to_string(), v);
        v
    }

    pub async fn poll_once(self: &Arc<Self>, warned: &mut HashSet<String>) -> Result<()> {
        let mut memo = HashMap::new();
        if !self.is_listed("", &mut memo) {
            return Ok(()); // nothing listed yet: nothing to keep current
        }
        let remote =
            RemoteTree::build(&self.prefix, self.s3.list_flat(&self.prefix).await?, warned);
        for (rel, obj) in &remote.files {
            if self.is_listed(parent_of(rel), &mut memo) {
                if let Err(e) = self.refresh_file(rel, obj).await {
                    warn!("bringing the S3 change of {rel:?} here: {e:#}");
                }
            }
        }
        for rel in &remote.dirs {
            if self.is_listed(parent_of(rel), &mut memo) {
                if let Err(e) = self.add_remote_dir(rel).await {
                    warn!("bringing the new S3 directory {rel:?} here: {e:#}");
                }
            }
        }
        // Gone from S3: deepest first, so a directory is emptied before it is looked at.
        let mut gone: Vec<String> = self
            .index
            .all_paths()?
            .into_iter()
            .filter(|p| !p.is_empty() && !remote.has(p))
            .collect();
        gone.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
        for rel in gone {
            if self.is_listed(parent_of(&rel), &mut memo) {
                if let Err(e) = self.drop_deleted(&rel).await {
                    warn!("removing {rel:?}, deleted in S3: {e:#}");
                }
            }
        }
        Ok(())
    }

    /// A file or symlink in S3 whose parent is listed here.
    async fn refresh_file(self: &Arc<Self>, rel: &str, obj: &RemoteObject) -> Result<()> {
        let path = self.local(rel);
        let row = self.index.get(rel)?;
        let exists = std::fs::symlink_metadata(&path).is_ok();
        match (exists, row) {
            (false, None) => {
                if self.local_only(rel, false).await {
                    return Ok(());
                }
                let _guard = self.path_locks.lock(rel).await;
                if std::fs::symlink_metadata(&path).is_ok() || self.index.get(rel)?.is_some() {
                    return Ok(());
                }
                // Checked after the index: a local delete removes the object before its
                // row, so a row-less path still in S3 now was not deleted here.
                let Some(head) = self.s3.head(&obj.key).await? else {
                    return Ok(());
                };
                match self.make_entry(&path, &obj.key, &head).await {
                    Ok(Some(row)) => {
                        self.index.put(rel, &row)?;
                        info!("{rel:?} appeared in S3; shown here");
                    }
                    Ok(None) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(())
            }
            // Deleted here, not yet in S3: the delete is on its way.
            (false, Some(_)) => Ok(()),
            // New here and not uploaded yet, or not ours to judge: the upload decides.
            (true, None) => Ok(()),
            (true, Some(row)) => {
                if row.kind == Kind::Dir || same_etag(&row.etag, &obj.etag) {
                    return Ok(());
                }
                if self.local_only(rel, false).await {
                    return Ok(());
                }
                self.replace_changed(rel, &obj.key, &row).await
            }
        }
    }

    /// Makes the cache's `rel` the new version in S3 if nothing local is in the way.
    async fn replace_changed(self: &Arc<Self>, rel: &str, key: &str, seen: &Row) -> Result<()> {
        let _guard = self.path_locks.lock(rel).await;
        let path = self.local(rel);
        if self.index.get(rel)?.as_ref() != Some(seen) {
            return Ok(()); // uploaded or refreshed meanwhile
        }
        let Ok(md) = std::fs::symlink_metadata(&path) else {
            return Ok(());
        };
        if Fingerprint::of(&md) != seen.fp {
            info!("{rel:?} changed in S3 and here; keeping the local version");
            return Ok(());
        }
        let Some(head) = self.s3.head(key).await? else {
            return Ok(()); // deleted meanwhile: the next poll sees it
        };
        if same_etag(&head.etag, &seen.etag) {
            debug!("{rel:?}: the listing was older than the last upload");
            return Ok(());
        }
        if seen.kind == Kind::Symlink || md.file_type().is_symlink() {
            let target = self.s3.get_bytes(key).await?;
            let staged = self.tmp_path();
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &staged)?;
            fsops::set_mtime(&staged, head.mtime.0, head.mtime.1)?;
            if Fingerprint::of(&std::fs::symlink_metadata(&path)?) != seen.fp {
                let _ = std::fs::remove_file(&staged);
                return Ok(());
            }
            std::fs::rename(&staged, &path)?;
            let fp = Fingerprint::of(&std::fs::symlink_metadata(&path)?);
            self.index
                .put(rel, &Row::new(Kind::Symlink, head.etag.clone(), fp))?;
            info!("{rel:?} changed in S3; the link here follows");
            return Ok(());
        }
        let was_complete = !matches!(marker_of(&path), Ok(Some(OwnedMarker::Placeholder(..))));
        let Some(f) = open_leased(&path)? else {
            info!("{rel:?} changed in S3 but is open here; it is refreshed once closed");
            return Ok(());
        };
        let result = (|| -> Result<Fingerprint> {
            if Fingerprint::of(&f.metadata()?) != seen.fp {
                anyhow::bail!("changed here while being checked");
            }
            f.set_len(0)?;
            f.set_len(head.size)?;
            if head.size > 0 {
                fsops::fwrite_marker(
                    &f,
                    &Marker::Placeholder {
                        etag: &head.etag,
                        source_key: key,
                    },
                )?;
            } else {
                fsops::fremove_marker(&f)?;
            }
            if let Some(mode) = head.mode {
                f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
            }
            fsops::fset_mtime(&f, head.mtime.0, head.mtime.1)?;
            Ok(Fingerprint::of(&f.metadata()?))
        })();
        unlease(&f);
        drop(f);
        let fp = match result {
            Ok(fp) => fp,
            Err(e) => {
                info!("{rel:?} changed in S3; not refreshed: {e:#}");
                return Ok(());
            }
        };
        self.index
            .put(rel, &Row::new(Kind::File, head.etag.clone(), fp))?;
        info!("{rel:?} changed in S3; refreshed here");
        if was_complete && head.size > 0 {
            let me = self.clone();
            let r = rel.to_string();
            tokio::spawn(async move {
                if let Err(e) = me.fetch(&r).await {
                    debug!("fetching {r:?} again after a change in S3: {e:#}");
                }
            });
        }
        Ok(())
    }

    /// A directory in S3 whose parent is listed here: shown (unlisted) if new.
    async fn add_remote_dir(self: &Arc<Self>, rel: &str) -> Result<()> {
        let path = self.local(rel);
        // Any indexed row at or below it means it was here and went (deleted or moved
        // away, the deletion maybe not in S3 yet): never brought back.
        if std::fs::symlink_metadata(&path).is_ok()
            || self.index.knows_subtree(rel)?
            || self.local_only(rel, true).await
        {
            return Ok(());
        }
        let _guard = self.path_locks.lock(rel).await;
        if std::fs::symlink_metadata(&path).is_ok() || self.index.knows_subtree(rel)? {
            return Ok(());
        }
        let key = names::dir_prefix(&self.prefix, rel);
        let head = self.s3.head(&key).await?;
        if head.is_none() && is_empty(&self.s3.list_dir(&key).await?) {
            return Ok(());
        }
        match self.make_dir(&path, &key, head.as_ref()) {
            Ok(Some(row)) => {
                self.index.put(rel, &row)?;
                info!("{rel:?}/ appeared in S3; shown here");
            }
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
        Ok(())
    }

    /// An indexed path that the listing no longer has: removed here if it is exactly as
    /// it was when last in S3, nobody has it open, and S3 confirms it is gone.
    async fn drop_deleted(self: &Arc<Self>, rel: &str) -> Result<()> {
        let Some(seen) = self.index.get(rel)? else {
            return Ok(());
        };
        if self.local_only(rel, seen.kind == Kind::Dir).await {
            return Ok(());
        }
        let _guard = self.path_locks.lock(rel).await;
        if self.index.get(rel)?.as_ref() != Some(&seen) {
            return Ok(());
        }
        let path = self.local(rel);
        let Ok(md) = std::fs::symlink_metadata(&path) else {
            return Ok(()); // gone here too: the sync worker forgets it
        };
        if seen.kind == Kind::Dir {
            if !md.is_dir() || !is_empty_dir(&path)? {
                return Ok(());
            }
            let prefix = names::dir_prefix(&self.prefix, rel);
            if self.s3.head(&prefix).await?.is_some()
                || !is_empty(&self.s3.list_dir(&prefix).await?)
            {
                return Ok(());
            }
            match std::fs::remove_dir(&path) {
                Ok(()) => {}
                // Something was made in it meanwhile: local wins.
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        } else {
            if Fingerprint::of(&md) != seen.fp {
                return Ok(()); // changed here: the upload puts it back
            }
            if self.s3.head(&self.key(rel)).await?.is_some() {
                return Ok(());
            }
            if md.is_file() {
                let Some(f) = open_leased(&path)? else {
                    info!("{rel:?} was deleted in S3 but is open here; removed once closed");
                    return Ok(());
                };
                let unchanged = Fingerprint::of(&f.metadata()?) == seen.fp;
                let r = if unchanged {
                    std::fs::remove_file(&path)
                } else {
                    Ok(())
                };
                unlease(&f);
                r?;
                if !unchanged {
                    return Ok(());
                }
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        self.index.delete(rel)?;
        info!("{rel:?} was deleted in S3; removed here");
        Ok(())
    }
}

fn is_empty(l: &super::s3::Listing) -> bool {
    l.objects.is_empty() && l.prefixes.is_empty()
}

fn is_empty_dir(path: &Path) -> io::Result<bool> {
    Ok(std::fs::read_dir(path)?.next().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(key: &str) -> RemoteObject {
        RemoteObject {
            key: key.into(),
            etag: "\"e\"".into(),
            size: 1,
        }
    }

    #[test]
    fn flat_listing_becomes_a_tree_without_hostile_names() {
        let mut warned = HashSet::new();
        let keys = [
            "p/",
            "p/a",
            "p/d/",
            "p/d/e/f",
            "p/x",
            "p/x/",
            "p/../up",
            "p/s//t",
            "p/ok/../z",
        ];
        let t = RemoteTree::build("p/", keys.iter().map(|k| obj(k)).collect(), &mut warned);
        let mut files: Vec<_> = t.files.keys().cloned().collect();
        files.sort();
        assert_eq!(files, ["a", "d/e/f"]);
        let mut dirs: Vec<_> = t.dirs.iter().cloned().collect();
        dirs.sort();
        assert_eq!(dirs, ["d", "d/e", "ok", "s", "x"]);
        assert_eq!(warned.len(), 3, "{warned:?}");
    }

    use super::super::testkit::{is_placeholder, kit, put, DEFAULT_DOWNLOADS};
    use std::io::Write;

    fn read(ctx: &Ctx, rel: &str) -> String {
        String::from_utf8(std::fs::read(ctx.local(rel)).unwrap()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn remote_changes_reach_listed_dirs_and_local_state_wins() {
        let k = kit("p/", DEFAULT_DOWNLOADS).await;
        let ctx = &k.ctx;
        for (key, body) in [
            ("p/a", "one\n"),
            ("p/edited-here", "base\n"),
            ("p/gone", "x\n"),
            ("p/gone-but-edited", "x\n"),
            ("p/sub/c", "c\n"),
        ] {
            put(ctx, key, body.as_bytes()).await;
        }
        ctx.list_dir("").await.unwrap();
        for f in ["a", "edited-here", "gone-but-edited"] {
            ctx.fetch(f).await.unwrap();
        }
        assert_eq!(read(ctx, "a"), "one\n");
        let ino_a = std::fs::metadata(ctx.local("a")).unwrap().ino();
        // Local changes no upload has taken yet (no sync worker runs here).
        std::fs::write(ctx.local("edited-here"), "local edit\n").unwrap();
        std::fs::write(ctx.local("gone-but-edited"), "keep me\n").unwrap();

        put(ctx, "p/a", b"two, longer\n").await;
        put(ctx, "p/edited-here", b"remote edit\n").await;
        ctx.s3.delete("p/gone").await.unwrap();
        ctx.s3.delete("p/gone-but-edited").await.unwrap();
        put(ctx, "p/new", b"new\n").await;
        put(ctx, "p/newdir/x", b"x\n").await;
        put(ctx, "p/sub/d", b"d\n").await;

        let mut warned = HashSet::new();
        ctx.poll_once(&mut warned).await.unwrap();
        ctx.fetch("a").await.unwrap();
        assert_eq!(read(ctx, "a"), "two, longer\n");
        assert_eq!(
            std::fs::metadata(ctx.local("a")).unwrap().ino(),
            ino_a,
            "refreshed in place: same inode"
        );
        assert_eq!(read(ctx, "edited-here"), "local edit\n", "local edit kept");
        assert!(!ctx.local("gone").exists(), "deleted in S3, removed here");
        assert!(ctx.index.get("gone").unwrap().is_none());
        assert_eq!(read(ctx, "gone-but-edited"), "keep me\n");
        assert!(
            is_placeholder(ctx, "new"),
            "new object shown as a placeholder"
        );
        ctx.fetch("new").await.unwrap();
        assert_eq!(read(ctx, "new"), "new\n");
        assert!(matches!(
            marker_of(&ctx.local("newdir")),
            Ok(Some(OwnedMarker::Unlisted(_)))
        ));
        assert!(
            !ctx.local("sub/d").exists(),
            "sub was never listed: it is listed, whole, when first used"
        );

        // A file open here (for writing, or at all) is not changed under its user.
        let mut open = std::fs::OpenOptions::new()
            .append(true)
            .open(ctx.local("a"))
            .unwrap();
        put(ctx, "p/a", b"three\n").await;
        ctx.poll_once(&mut warned).await.unwrap();
        assert_eq!(read(ctx, "a"), "two, longer\n");
        assert!(!is_placeholder(ctx, "a"));
        open.write_all(b"").unwrap();
        drop(open);
        ctx.poll_once(&mut warned).await.unwrap();
        ctx.fetch("a").await.unwrap();
        assert_eq!(read(ctx, "a"), "three\n", "refreshed once closed");

        // A placeholder (bytes never fetched) takes the new size and version.
        put(ctx, "p/new", b"newer and longer\n").await;
        ctx.poll_once(&mut warned).await.unwrap();
        assert_eq!(std::fs::metadata(ctx.local("new")).unwrap().len(), 17);
        ctx.fetch("new").await.unwrap();
        assert_eq!(read(ctx, "new"), "newer and longer\n");
        k.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_happens_before_the_root_is_listed() {
        let k = kit("", DEFAULT_DOWNLOADS).await;
        put(&k.ctx, "a", b"a").await;
        let before = k.server.stats();
        k.ctx.poll_once(&mut HashSet::new()).await.unwrap();
        assert_eq!((k.server.stats() - before).list, 0, "no listing request");
        assert!(!k.ctx.local("a").exists());
        k.server.shutdown().await;
    }
}
