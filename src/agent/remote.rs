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

use super::error::{Context, Result};
use super::fsops::{marker_of, OwnedMarker};
use super::index::{Fingerprint, Kind, Row};
use super::s3::{same_etag, RemoteObject};
use super::{fsops, Ctx};
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

/// The bucket prefix as a tree of relative paths, built from a flat listing a page at a
/// time. Files are handed out as soon as no later key can make them a directory, so a
/// poll holds one page of objects, not the whole bucket; what it keeps for the check of
/// what is gone is every path, packed ([`Names`]).
#[derive(Debug)]
pub struct RemoteTree {
    /// Every file listed.
    files: Names,
    /// Directories: `dir/` markers and every prefix that holds a key.
    pub dirs: HashSet<String>,
    /// Files whose key a later key may still extend into a directory (`x`, then `x/`).
    held: Vec<(String, RemoteObject)>,
    /// The last key seen.
    last_key: Option<String>,
    /// The keys came in key order so far, as S3 promises; once one does not, every
    /// file waits for the end of the listing.
    sorted: bool,
}

impl Default for RemoteTree {
    fn default() -> Self {
        RemoteTree {
            files: Names::default(),
            dirs: HashSet::new(),
            held: Vec::new(),
            last_key: None,
            sorted: true,
        }
    }
}

impl RemoteTree {
    /// Adds one page of the listing under `prefix`; returns the files (relative path,
    /// object) that are certain to be files now. Keys that cannot be local names (`..`,
    /// empty components, overlong names...) are skipped, logged once per key in
    /// `warned`; their valid leading directories still count.
    pub fn add(
        &mut self,
        prefix: &str,
        objects: Vec<RemoteObject>,
        warned: &mut HashSet<String>,
    ) -> Vec<(String, RemoteObject)> {
        for o in objects {
            if self.sorted {
                match &mut self.last_key {
                    Some(last) if o.key < *last => self.sorted = false,
                    Some(last) => o.key.clone_into(last),
                    None => self.last_key = Some(o.key.clone()),
                }
            }
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
            let mut rel = String::new();
            let mut valid = true;
            let mut comps = path.split('/').peekable();
            while let Some(c) = comps.next() {
                if let Err(why) = names::child_name("", c) {
                    if warned.insert(o.key.clone()) {
                        warn!("skipping key {:?} in S3: {why}", o.key);
                    }
                    valid = false;
                    break;
                }
                rel = names::join_rel(&rel, c);
                if comps.peek().is_some() && !self.dirs.contains(&rel) {
                    self.dirs.insert(rel.clone());
                }
            }
            if !valid {
                continue;
            }
            if is_dir {
                self.dirs.insert(rel);
            } else {
                self.files.insert(&rel);
                self.held.push((rel, o));
            }
        }
        if !self.sorted {
            return Vec::new();
        }
        let last = self.last_key.as_deref().unwrap_or_default();
        let (wait, ready) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|(_, o)| may_extend(last, &o.key));
        self.held = wait;
        self.not_shadowed(ready)
    }

    /// The listing is complete: the files still held.
    pub fn finish(&mut self) -> Vec<(String, RemoteObject)> {
        self.files.seal();
        let held = std::mem::take(&mut self.held);
        self.not_shadowed(held)
    }

    /// Both `x` and `x/`: the directory is shown, as in a listing.
    fn not_shadowed(&self, files: Vec<(String, RemoteObject)>) -> Vec<(String, RemoteObject)> {
        files
            .into_iter()
            .filter(|(rel, _)| !self.dirs.contains(rel))
            .collect()
    }

    /// Whether S3 has `rel` (after [`RemoteTree::finish`]).
    fn has(&self, rel: &str) -> bool {
        self.files.contains(rel) || self.dirs.contains(rel)
    }
}

/// Whether a key listed after `last` (in key order) could still start with `key/`:
/// every such key sorts in `[key, key + "0")`, `0` following `/`.
fn may_extend(last: &str, key: &str) -> bool {
    last.strip_prefix(key)
        .is_some_and(|rest| rest.bytes().next().is_none_or(|b| b < b'0'))
}

/// A set of names in one buffer: a set of 100,000 paths is two allocations instead of
/// 100,000. Names are appended; [`Names::seal`] sorts them (a listing in key order is
/// sorted already) and then [`Names::contains`] searches.
#[derive(Debug, Default)]
struct Names {
    text: String,
    /// The end of each name in `text`; a name starts where the one before ends.
    ends: Vec<usize>,
    unsorted: bool,
}

impl Names {
    fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    fn insert(&mut self, name: &str) {
        if let Some(last) = self.ends.len().checked_sub(1) {
            self.unsorted |= name < self.get(last);
        }
        self.text.push_str(name);
        self.ends.push(self.text.len());
    }

    fn seal(&mut self) {
        if !self.unsorted {
            return;
        }
        let mut all: Vec<&str> = (0..self.ends.len()).map(|i| self.get(i)).collect();
        all.sort_unstable();
        let mut sorted = Names::default();
        for n in all {
            sorted.insert(n);
        }
        *self = sorted;
    }

    fn contains(&self, name: &str) -> bool {
        debug_assert!(!self.unsorted, "searched before seal");
        let (mut lo, mut hi) = (0, self.ends.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.get(mid).cmp(name) {
                std::cmp::Ordering::Equal => return true,
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        false
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
        // Each page's files are brought here before the next page is asked for.
        let mut remote = RemoteTree::default();
        let mut listing = self.s3.list_flat(&self.prefix);
        while let Some(page) = listing.next_page().await? {
            let files = remote.add(&self.prefix, page, warned);
            self.refresh_files(files, &mut memo).await;
        }
        let files = remote.finish();
        self.refresh_files(files, &mut memo).await;
        for rel in &remote.dirs {
            if self.is_listed(parent_of(rel), &mut memo) {
                if let Err(e) = self.add_remote_dir(rel).await {
                    warn!("bringing the new S3 directory {rel:?} here: {e:#}");
                }
            }
        }
        // Gone from S3: deepest first, so a directory is emptied before it is looked at.
        let mut gone: Vec<String> = Vec::new();
        self.index.each_path(|p| {
            if !p.is_empty() && !remote.has(p) {
                gone.push(p.to_string());
            }
        })?;
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

    /// Files of the listing: those whose parent is listed here are brought up to date.
    async fn refresh_files(
        self: &Arc<Self>,
        files: Vec<(String, RemoteObject)>,
        memo: &mut HashMap<String, bool>,
    ) {
        for (rel, obj) in files {
            if self.is_listed(parent_of(&rel), memo) {
                if let Err(e) = self.refresh_file(&rel, &obj).await {
                    warn!("bringing the S3 change of {rel:?} here: {e:#}");
                }
            }
        }
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
                let _guard = self.locks.lock(rel).await;
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
        let _guard = self.locks.lock(rel).await;
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
            let staged = self.staging.path();
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
                return Err(super::error::other!("changed here while being checked"));
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
        let _guard = self.locks.lock(rel).await;
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
        let _guard = self.locks.lock(rel).await;
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

    /// The tree from `pages` of a listing under `p/`, with the files in the order they
    /// were handed out, each with the page after which it was.
    fn build(
        pages: &[&[&str]],
        warned: &mut HashSet<String>,
    ) -> (RemoteTree, Vec<(String, usize)>) {
        let mut t = RemoteTree::default();
        let mut files = Vec::new();
        for (i, page) in pages.iter().enumerate() {
            let out = t.add("p/", page.iter().map(|k| obj(k)).collect(), warned);
            files.extend(out.into_iter().map(|(rel, _)| (rel, i)));
        }
        files.extend(t.finish().into_iter().map(|(rel, _)| (rel, pages.len())));
        (t, files)
    }

    fn names(files: &[(String, usize)]) -> Vec<&str> {
        let mut n: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
        n.sort();
        n
    }

    #[test]
    fn flat_listing_becomes_a_tree_without_hostile_names() {
        let mut warned = HashSet::new();
        let keys = [
            "p/",
            "p/../up",
            "p/a",
            "p/d/",
            "p/d/e/f",
            "p/ok/../z",
            "p/s//t",
            "p/x",
            "p/x/",
        ];
        let (t, files) = build(&[&keys], &mut warned);
        assert_eq!(names(&files), ["a", "d/e/f"]);
        let mut dirs: Vec<_> = t.dirs.iter().cloned().collect();
        dirs.sort();
        assert_eq!(dirs, ["d", "d/e", "ok", "s", "x"]);
        assert_eq!(warned.len(), 3, "{warned:?}");
        for present in ["a", "d", "d/e", "d/e/f", "x", "ok", "s"] {
            assert!(t.has(present), "{present}");
        }
        for absent in ["", "b", "d/e/g", "ok/z", "up", "a/b"] {
            assert!(!t.has(absent), "{absent}");
        }
    }

    /// A page's files are handed out with it, except one a later key may turn into a
    /// directory: `x` waits while the listing is at keys that start with `x` and a
    /// character before `/` (`x!`, `x-1`, `x.txt`), and is dropped when `x/...` follows.
    #[test]
    fn files_are_handed_out_page_by_page_unless_a_later_key_may_shadow_them() {
        let mut warned = HashSet::new();
        let pages: [&[&str]; 4] = [
            &["p/a", "p/b", "p/x", "p/x!"],
            &["p/x-1", "p/x.txt"],
            &["p/x/in", "p/y", "p/z"],
            &["p/z0"],
        ];
        let (t, files) = build(&pages, &mut warned);
        let mut order: Vec<(&str, usize)> = files.iter().map(|(f, i)| (f.as_str(), *i)).collect();
        order.sort();
        assert_eq!(
            order,
            [
                ("a", 0),
                ("b", 0),
                ("x!", 1),
                ("x-1", 1),
                ("x.txt", 2),
                ("x/in", 2),
                ("y", 2),
                ("z", 3),
                ("z0", 4)
            ],
            "x is a directory (x/in): never handed out as a file"
        );
        assert!(t.has("x") && t.has("x/in") && t.has("z0"));
        assert!(warned.is_empty());
    }

    /// A server that lists out of key order: nothing is handed out before the end, and
    /// the tree is the same.
    #[test]
    fn an_unsorted_listing_waits_for_the_end() {
        let mut warned = HashSet::new();
        let pages: [&[&str]; 2] = [&["p/b", "p/x"], &["p/x/in", "p/a"]];
        let (t, files) = build(&pages, &mut warned);
        assert_eq!(files.iter().filter(|(_, i)| *i < 2).count(), 1, "{files:?}");
        assert_eq!(names(&files), ["a", "b", "x/in"]);
        for present in ["a", "b", "x", "x/in"] {
            assert!(t.has(present), "{present}");
        }
        assert!(!t.has("c"));
    }

    use super::super::testkit::{is_placeholder, kit, put, DEFAULT_DOWNLOADS, LAZY_DOWNLOADS};
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

    /// More objects than one listing page holds (1,000): the poll reads page by page,
    /// brings changes on a later page here, and still knows every path is in S3 (a
    /// path it took for gone would cost a HEAD).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_poll_over_several_listing_pages_sees_every_object() {
        use futures::StreamExt;
        let k = kit("p/", LAZY_DOWNLOADS).await;
        let ctx = &k.ctx;
        let n = 1_010;
        futures::stream::iter(0..n)
            .for_each_concurrent(16, |i| async move {
                put(ctx, &format!("p/many/f{i:04}"), b"x").await;
            })
            .await;
        ctx.list_dir("").await.unwrap();
        ctx.list_dir("many").await.unwrap();
        assert!(is_placeholder(ctx, "many/f1009"));

        let before = k.server.stats();
        ctx.poll_once(&mut HashSet::new()).await.unwrap();
        let cost = k.server.stats() - before;
        assert_eq!(cost.list, 2, "one listing, in two pages");
        assert_eq!(
            cost.head, 0,
            "nothing changed: no path was taken for gone or new"
        );

        put(ctx, "p/many/f1009", b"longer").await;
        ctx.s3.delete("p/many/f0000").await.unwrap();
        ctx.poll_once(&mut HashSet::new()).await.unwrap();
        assert_eq!(std::fs::metadata(ctx.local("many/f1009")).unwrap().len(), 6);
        assert!(!ctx.local("many/f0000").exists());
        assert!(ctx.local("many/f0001").exists());
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
