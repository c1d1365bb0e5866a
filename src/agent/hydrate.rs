//! Filling the cache from S3 on demand: listing a directory into placeholders, fetching
//! a placeholder's bytes, and resolving a path by listing its unlisted ancestors.
//!
//! Local always wins: an entry that already exists in the cache is never replaced by a
//! listing, and a placeholder changed locally while its bytes were downloading keeps the
//! local change (the download is discarded).

use super::error::{other, Context, Result};
use super::fsops::{self, marker_of, OwnedMarker};
use super::ignore::IGNORE_FILE;
use super::index::{Fingerprint, Kind, Row};
use super::locks::Inflight;
use super::s3::Listing;
use super::Ctx;
use crate::config::Downloads;
use futures::{stream, StreamExt};
use s3shim_protocol::marker::Marker;
use s3shim_protocol::meta;
use s3shim_protocol::names::{self, Rejected};
use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Requests for the entries of one directory (HEAD, or GET of a small file) in flight at
/// once: at a distance each is a round trip, so a directory of N entries takes about
/// N ÷ this many round trips.
const ENTRY_CONCURRENCY: usize = 64;
/// Directories listed (or files fetched) at once while making a subtree local.
const TREE_CONCURRENCY: usize = 32;
/// At most this many bytes of one directory are fetched that way; the rest are HEADed and
/// become placeholders.
const EAGER_DIR_BYTES_MAX: u64 = 8 << 20;
/// Pages (1,000 keys each) of a flat listing read when a directory is first listed: a
/// subtree this small is listed whole in one go, and its directories then need no LIST of
/// their own when a walker enters them (`S3SHIM_FLAT_LIST_PAGES`; 0: one LIST per
/// directory).
const FLAT_PAGES_DEFAULT: usize = 5;
/// How long a listing learnt that way is used (a walker enters the directories within
/// seconds; the remote-change poll keeps listed directories current after that).
const LISTING_TTL: Duration = Duration::from_secs(30);

/// The state hydration keeps between requests: its own, reached through `Ctx`'s methods
/// in this file only.
pub struct Hydration {
    /// One listing or fetch of a path at a time.
    inflight: Inflight,
    /// Directory listings learnt from a flat listing of a subtree, not used yet.
    listings: Listings,
    downloads: Downloads,
}

impl Hydration {
    pub fn new(downloads: Downloads) -> Hydration {
        Hydration {
            inflight: Inflight::default(),
            listings: Listings::default(),
            downloads,
        }
    }
}

/// Listings of directories (by their key prefix) taken from a flat listing of a subtree
/// above them, waiting for the directory to be listed. Each is used once.
#[derive(Default)]
struct Listings {
    map: parking_lot::Mutex<HashMap<String, (Instant, Listing)>>,
}

impl Listings {
    fn take(&self, source: &str) -> Option<Listing> {
        let mut m = self.map.lock();
        let (at, l) = m.remove(source)?;
        (at.elapsed() < LISTING_TTL).then_some(l)
    }

    fn put_all(&self, listings: impl IntoIterator<Item = (String, Listing)>) {
        let now = Instant::now();
        let mut m = self.map.lock();
        m.retain(|_, (at, _)| at.elapsed() < LISTING_TTL);
        for (k, l) in listings {
            m.insert(k, (now, l));
        }
    }
}

fn flat_pages() -> usize {
    std::env::var("S3SHIM_FLAT_LIST_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FLAT_PAGES_DEFAULT)
}

/// The delimiter listings of every directory a flat listing of `source` covers whole:
/// all of it when `complete`, else each directory whose keys all sort before the last key
/// read. Keyed by the directory's prefix (`source` included).
pub(super) fn split_flat(
    source: &str,
    objects: Vec<super::s3::RemoteObject>,
    complete: bool,
) -> HashMap<String, Listing> {
    let last = objects.last().map(|o| o.key.clone()).unwrap_or_default();
    let mut dirs: HashMap<String, (Listing, HashSet<String>)> = HashMap::new();
    dirs.entry(source.to_string()).or_default();
    for o in objects {
        let Some(rest) = o.key.strip_prefix(source) else {
            continue;
        };
        // Every directory on the way is a prefix of its parent's listing.
        let mut parent = source.len();
        for (i, _) in rest.match_indices('/') {
            let dir = &o.key[..source.len() + i + 1];
            let (_, seen) = dirs.entry(o.key[..parent].to_string()).or_default();
            if seen.insert(dir.to_string()) {
                let l = &mut dirs.get_mut(&o.key[..parent]).unwrap().0;
                l.prefixes.push(dir.to_string());
            }
            dirs.entry(dir.to_string()).or_default();
            parent = source.len() + i + 1;
        }
        // The object is an entry of the deepest directory (a `dir/` marker: its own).
        let (l, _) = dirs.get_mut(&o.key[..parent]).unwrap();
        l.objects.push(super::s3::ListedObject {
            key: o.key,
            etag: o.etag,
            size: o.size,
        });
    }
    dirs.into_iter()
        .filter(|(d, _)| complete || (last.as_str() > d.as_str() && !last.starts_with(d.as_str())))
        .map(|(d, (l, _))| (d, l))
        .collect()
}

impl Ctx {
    /// Makes a directory's entries local; a no-op for a listed directory.
    pub async fn list_dir(self: &Arc<Self>, rel: &str) -> Result<()> {
        self.list_dir_with(rel, false).await
    }

    /// `fresh`: ask S3 now rather than use a listing learnt from a flat listing of a
    /// subtree above (up to `LISTING_TTL` old). A lookup after ENOENT asks for this:
    /// a name another writer added since must be found.
    async fn list_dir_with(self: &Arc<Self>, rel: &str, fresh: bool) -> Result<()> {
        let me = self.clone();
        let r = rel.to_string();
        // One listing of a directory at a time (a fresh request joins one in flight).
        self.hydration
            .inflight
            .run(format!("L{rel}"), move || async move {
                me.list_dir_now(&r, fresh).await
            })
            .await
    }

    /// Whether every directory above `rel` in the cache is a real directory. A symlink
    /// on the way (made from an S3 object, pointing anywhere) would make the agent write
    /// where it points.
    fn under_real_dirs(&self, rel: &str) -> bool {
        let mut dir = self.tree.clone();
        let comps: Vec<&str> = rel.split('/').collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            dir.push(c);
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() => {}
                _ => return false,
            }
        }
        true
    }

    async fn list_dir_now(self: &Arc<Self>, rel: &str, fresh: bool) -> Result<()> {
        if !self.under_real_dirs(rel) {
            warn!("not listing {rel:?}: a directory above it is a symlink");
            return Ok(());
        }
        let dir = self.local(rel);
        let source = match marker_of(&dir) {
            Ok(Some(OwnedMarker::Unlisted(src))) => src,
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(e).with_context(|| format!("reading the marker of {}", dir.display()))
            }
        };
        // Taken either way: a learnt listing is used at most once.
        let listing = match self.hydration.listings.take(&source) {
            Some(l) if !fresh => l,
            _ => self.list_for_walk(&source).await?,
        };
        let (dirs, files) = local_names(&source, &listing, rel);
        let files: Vec<(String, String, u64)> =
            files.into_iter().map(|(n, o)| (n, o.key, o.size)).collect();
        if rel.is_empty() {
            let pairs: Vec<(String, String)> = files
                .iter()
                .map(|(n, k, _)| (n.clone(), k.clone()))
                .collect();
            self.take_ignore_file_first(&dir, &pairs).await?;
        }
        let mut kept_dirs = Vec::new();
        for n in dirs {
            if !self.local_only(&names::join_rel(rel, &n), true).await {
                kept_dirs.push(n);
            }
        }
        let dirs = kept_dirs;
        let mut kept_files = Vec::new();
        for (n, k, size) in files {
            if !self.local_only(&names::join_rel(rel, &n), false).await {
                kept_files.push((n, k, size));
            }
        }
        let files = kept_files;

        // Each entry's POSIX metadata: a small file's GET brings it with the bytes, a
        // larger file's HEAD without them. Directory markers may be absent (a prefix with
        // objects but no `dir/` object), which means default metadata.
        let mut eager_budget = EAGER_DIR_BYTES_MAX;
        let jobs: Vec<(String, String, Job)> = dirs
            .iter()
            .map(|n| (n.clone(), format!("{source}{n}/"), Job::Dir))
            .chain(files.iter().map(|(n, k, size)| {
                // Fetched whole in the one GET that would otherwise have been a HEAD for
                // its metadata (the GET carries the same headers): a program that lists
                // a directory reads its small files next.
                let eager = self.hydration.downloads.eager_max > 0
                    && *size <= self.hydration.downloads.eager_max
                    && *size <= eager_budget;
                if eager {
                    eager_budget -= size;
                }
                (
                    n.clone(),
                    k.clone(),
                    if eager { Job::SmallFile } else { Job::File },
                )
            }))
            .collect();
        let heads: Vec<_> = stream::iter(jobs)
            .map(|(name, key, job)| async move {
                let h = match job {
                    Job::SmallFile => self
                        .s3
                        .get_small(&key)
                        .await
                        .map(|o| o.map(|(h, b)| (h, Some(b)))),
                    _ => self.s3.head(&key).await.map(|o| o.map(|h| (h, None))),
                };
                (name, key, job, h)
            })
            .buffer_unordered(ENTRY_CONCURRENCY)
            .collect()
            .await;

        let mut rows = Vec::new();
        // Files whose bytes came with the listing: clean copies, counted by the budget.
        let mut complete = Vec::new();
        for (name, key, job, head) in heads {
            let child_rel = names::join_rel(rel, &name);
            let path = dir.join(&name);
            let head = head?;
            let made = if job == Job::Dir {
                self.make_dir(&path, &key, head.as_ref().map(|(h, _)| h))
            } else {
                let Some((head, bytes)) = head else {
                    debug!("{key:?} vanished while listing");
                    continue;
                };
                match bytes {
                    Some(b) => {
                        complete.push(child_rel.clone());
                        self.make_complete(&path, &key, &head, b).await
                    }
                    None => self.make_entry(&path, &key, &head).await,
                }
            };
            match made {
                Ok(Some(row)) => rows.push((child_rel, row)),
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    debug!("{child_rel:?} exists locally; keeping the local entry")
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        self.index.put_many(&rows)?;
        for c in complete {
            if let Ok(m) = std::fs::symlink_metadata(self.local(&c)) {
                self.budget.note_clean(&c, m.blocks() * 512);
            }
        }
        fsops::remove_marker(&dir).with_context(|| format!("marking {} listed", dir.display()))?;
        info!("listed {rel:?}: {} entries from {source:?}", rows.len());
        Ok(())
    }

    /// The listing of the directory at `source` for a first visit: read as a flat listing
    /// of the whole subtree when it is small ([`flat_pages`] pages at most), whose other
    /// directories' listings are kept for when they are entered; else (or when that does
    /// not cover this directory) one delimiter listing.
    async fn list_for_walk(&self, source: &str) -> Result<Listing> {
        let pages = flat_pages();
        if pages == 0 {
            return self.s3.list_dir(source).await;
        }
        let mut flat = self.s3.list_flat(source);
        let mut objects = Vec::new();
        for _ in 0..pages {
            match flat.next_page().await? {
                Some(page) => objects.extend(page),
                None => break,
            }
            if flat.is_done() {
                break;
            }
        }
        let complete = flat.is_done();
        let mut listings = split_flat(source, objects, complete);
        let own = listings.remove(source);
        self.hydration.listings.put_all(listings);
        match own {
            Some(l) => Ok(l),
            None => self.s3.list_dir(source).await,
        }
    }

    /// Creates a complete file (or a symlink) from a small object fetched whole.
    pub(super) async fn make_complete(
        &self,
        path: &Path,
        key: &str,
        head: &super::s3::ObjectHead,
        bytes: Vec<u8>,
    ) -> io::Result<Option<Row>> {
        if meta::kind_of(key, head.mode) != meta::Kind::File {
            // A symlink (its target is the body) or a stray directory object: as listed.
            return self.make_entry(path, key, head).await;
        }
        if bytes.len() as u64 != head.size {
            return Err(io::Error::other(format!(
                "downloading {key}: got {} bytes, expected {}",
                bytes.len(),
                head.size
            )));
        }
        let mode = head.mode.unwrap_or(meta::DEFAULT_FILE_MODE);
        let f = fsops::make_published(&self.staging.path(), path, |p| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(p)?;
            f.write_all(&bytes)?;
            f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
            fsops::fset_mtime(&f, head.mtime.0, head.mtime.1)?;
            Ok(f)
        })?;
        // After the rename, which changed the ctime the index fingerprints.
        Ok(Some(Row::new(
            Kind::File,
            head.etag.clone(),
            Fingerprint::of(&f.metadata()?),
        )))
    }

    /// Brings the root's `.s3shimignore` in, bytes and all, before anything else of the
    /// root is made: its rules decide which entries are local-only.
    async fn take_ignore_file_first(
        self: &Arc<Self>,
        dir: &Path,
        files: &[(String, String)],
    ) -> Result<()> {
        let Some((name, key)) = files.iter().find(|(n, _)| n == IGNORE_FILE) else {
            return Ok(());
        };
        let Some(head) = self.s3.head(key).await? else {
            return Ok(());
        };
        match self.make_entry(&dir.join(name), key, &head).await {
            Ok(Some(row)) => self.index.put(name, &row)?,
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {name}")),
        }
        self.fetch(name).await
    }

    /// Creates an unlisted directory for the prefix `key` (ending in `/`), published whole
    /// (see [`fsops::make_published`]).
    pub(super) fn make_dir(
        &self,
        path: &Path,
        key: &str,
        head: Option<&super::s3::ObjectHead>,
    ) -> io::Result<Option<Row>> {
        fsops::make_published(&self.staging.path(), path, |p| {
            std::fs::create_dir(p)?;
            let mode = head.and_then(|h| h.mode).unwrap_or(meta::DEFAULT_DIR_MODE);
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode & 0o7777))?;
            fsops::write_marker(p, &Marker::Unlisted { source_prefix: key })?;
            match head {
                Some(h) => fsops::set_mtime(p, h.mtime.0, h.mtime.1),
                None => Ok(()),
            }
        })?;
        let md = std::fs::symlink_metadata(path)?;
        Ok(Some(Row::new(
            Kind::Dir,
            head.map(|h| h.etag.clone()).unwrap_or_default(),
            Fingerprint::of(&md),
        )))
    }

    /// Creates a placeholder (or an empty file, or a symlink) for one object.
    pub(super) async fn make_entry(
        &self,
        path: &Path,
        key: &str,
        head: &super::s3::ObjectHead,
    ) -> io::Result<Option<Row>> {
        let mode = head.mode.unwrap_or(meta::DEFAULT_FILE_MODE);
        match meta::kind_of(key, head.mode) {
            meta::Kind::Dir => {
                warn!("{key:?} says it is a directory but has no trailing `/`; skipped");
                Ok(None)
            }
            meta::Kind::Symlink => {
                let target = self
                    .s3
                    .get_bytes(key)
                    .await
                    .map_err(|e| io::Error::other(format!("{e:#}")))?;
                if target.is_empty() || target.contains(&0) {
                    warn!("symlink object {key:?} has no usable target; skipped");
                    return Ok(None);
                }
                let target = std::ffi::OsStr::from_bytes(&target);
                fsops::make_published(&self.staging.path(), path, |p| {
                    std::os::unix::fs::symlink(target, p)?;
                    fsops::set_mtime(p, head.mtime.0, head.mtime.1)
                })?;
                let md = std::fs::symlink_metadata(path)?;
                Ok(Some(Row::new(
                    Kind::Symlink,
                    head.etag.clone(),
                    Fingerprint::of(&md),
                )))
            }
            meta::Kind::File => {
                // Empty objects are complete as created: nothing to fetch later.
                let marker = Marker::Placeholder {
                    etag: &head.etag,
                    source_key: key,
                };
                let marker = (head.size > 0).then_some(&marker);
                let md = fsops::create_placeholder(
                    &self.staging.path(),
                    path,
                    head.size,
                    mode,
                    head.mtime,
                    marker,
                )?;
                Ok(Some(Row::new(
                    Kind::File,
                    head.etag.clone(),
                    Fingerprint::of(&md),
                )))
            }
        }
    }

    /// Lists every unlisted directory on the way to `rel`, so that whether `rel` exists
    /// in the cache is the truth.
    pub async fn lookup(self: &Arc<Self>, rel: &str) -> Result<()> {
        let comps: Vec<&str> = if rel.is_empty() {
            Vec::new()
        } else {
            rel.split('/').collect()
        };
        for depth in 0..comps.len() {
            let ancestor = comps[..depth].join("/");
            match std::fs::symlink_metadata(self.local(&ancestor)) {
                Ok(m) if m.is_dir() => self.list_dir_with(&ancestor, true).await?,
                // Missing, a file, or a symlink (resolved by the kernel, not by us).
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// Lists a whole subtree (entries only).
    pub async fn list_tree(self: &Arc<Self>, rel: &str) -> Result<()> {
        let mut level = vec![rel.to_string()];
        while !level.is_empty() {
            let results: Vec<Result<Vec<String>>> = stream::iter(level)
                .map(|d| async move {
                    self.list_dir(&d).await?;
                    subdirs(&self.local(&d), &d)
                })
                .buffer_unordered(TREE_CONCURRENCY)
                .collect()
                .await;
            level = Vec::new();
            for r in results {
                level.extend(r?);
            }
        }
        Ok(())
    }

    /// Makes a whole subtree local, bytes included.
    pub async fn fetch_tree(self: &Arc<Self>, rel: &str) -> Result<()> {
        // Static binaries read it without the shim: it must stay whole.
        self.budget.pin(rel);
        self.list_tree(rel).await?;
        let mut files = Vec::new();
        let mut dirs = vec![rel.to_string()];
        while let Some(d) = dirs.pop() {
            let rd = match std::fs::read_dir(self.local(&d)) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            for e in rd {
                let e = e?;
                let Some(name) = e.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let child = names::join_rel(&d, &name);
                let ft = e.file_type()?;
                if ft.is_dir() {
                    dirs.push(child);
                } else if ft.is_file() {
                    files.push(child);
                }
            }
        }
        let results: Vec<Result<()>> = stream::iter(files)
            .map(|f| async move { self.fetch(&f).await })
            .buffer_unordered(TREE_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Makes a placeholder's bytes local; a no-op for a complete file.
    pub async fn fetch(self: &Arc<Self>, rel: &str) -> Result<()> {
        let me = self.clone();
        let r = rel.to_string();
        self.hydration
            .inflight
            .run(format!("F{rel}"), move || async move {
                // Held across download and fill: `Discard` and uploads of this path wait.
                let _guard = me.locks.lock(&r).await;
                me.fetch_now(&r).await
            })
            .await
    }

    async fn fetch_now(&self, rel: &str) -> Result<()> {
        if !self.under_real_dirs(rel) {
            warn!("not fetching {rel:?}: a directory above it is a symlink");
            return Ok(());
        }
        let path = self.local(rel);
        let (etag, source) = match marker_of(&path) {
            Ok(Some(OwnedMarker::Placeholder(e, s))) => (e, s),
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let before = std::fs::symlink_metadata(&path)?;
        let _room = self.make_room(rel, before.len()).await?;
        let tmp = self.staging.path();
        let result = self.download(&path, &tmp, &source, &etag, &before).await;
        let installed = match result {
            Ok((head, mode, mtime)) => self.fill(&path, &tmp, &before, &head, mode, mtime),
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&tmp);
        match installed? {
            Some(row) => {
                debug!("fetched {rel:?} ({} bytes)", row.fp.size);
                self.index.put(rel, &row)?;
                let bytes =
                    std::fs::symlink_metadata(&path).map_or(row.fp.size, |m| m.blocks() * 512);
                self.budget.note_clean(rel, bytes);
            }
            None => info!("{rel:?} changed locally while downloading; keeping the local version"),
        }
        Ok(())
    }

    /// Copies a finished download into the placeholder's own inode (programs such as `cp`
    /// and `mv` check that the file they opened is the one they stat'ed), then restores
    /// the mtime and drops the marker. `None` when the placeholder changed meanwhile: the
    /// local change wins and the download is discarded. Writers that replace content ask
    /// for `Discard`, which waits for this path's lock, so none can start mid-copy.
    fn fill(
        &self,
        path: &Path,
        tmp: &Path,
        before: &std::fs::Metadata,
        head: &super::s3::ObjectHead,
        mode: u32,
        mtime: (i64, u32),
    ) -> Result<Option<Row>> {
        let mut dst = match std::fs::OpenOptions::new().write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let still_placeholder = Fingerprint::of(&dst.metadata()?) == Fingerprint::of(before)
            && matches!(marker_of(path), Ok(Some(OwnedMarker::Placeholder(..))));
        if !still_placeholder {
            return Ok(None);
        }
        let mut src = std::fs::File::open(tmp)?;
        // std::io::copy between files uses copy_file_range: no bytes through user space.
        let copied = io::copy(&mut src, &mut dst)?;
        dst.set_len(copied)?;
        if copied != head.size {
            return Err(other!(
                "{}: copied {copied} of {} bytes",
                path.display(),
                head.size
            ));
        }
        if mode & 0o7777 != before.mode() & 0o7777 {
            dst.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
        }
        fsops::fset_mtime(&dst, mtime.0, mtime.1)?;
        fsops::fremove_marker(&dst)?;
        Ok(Some(Row::new(
            Kind::File,
            head.etag.clone(),
            Fingerprint::of(&dst.metadata()?),
        )))
    }

    /// Drops a placeholder's marker without downloading (its content is being replaced),
    /// after any fetch of the same path.
    pub async fn discard(self: &Arc<Self>, rel: &str) -> Result<()> {
        let _guard = self.locks.lock(rel).await;
        let path = self.local(rel);
        if let Ok(Some(OwnedMarker::Placeholder(..))) = marker_of(&path) {
            fsops::remove_marker(&path)?;
        }
        Ok(())
    }

    /// Downloads `source` into `tmp`; returns what the GET said and the mode and mtime
    /// the file gets: the placeholder's (the object's, or what the user set locally since),
    /// or the object's own when it changed in S3 since it was listed.
    async fn download(
        &self,
        path: &Path,
        tmp: &Path,
        source: &str,
        etag: &str,
        placeholder: &std::fs::Metadata,
    ) -> Result<(super::s3::ObjectHead, u32, (i64, u32))> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let head = self
            .s3
            .download(source, &f, placeholder.len(), self.hydration.downloads)
            .await?;
        let (mode, mtime) = if head.etag == etag {
            (
                placeholder.mode(),
                (placeholder.mtime(), placeholder.mtime_nsec() as u32),
            )
        } else {
            info!(
                "{} changed in S3 since it was listed; taking the new version",
                path.display()
            );
            (head.mode.unwrap_or(placeholder.mode()), head.mtime)
        };
        Ok((head, mode, mtime))
    }
}

// Here, not in `ignore`: deciding needs the rules file's bytes, which hydration fetches.
impl Ctx {
    /// Whether `rel` is local-only (`.s3shimignore`). The rules file is fetched first
    /// when only its placeholder is here (its bytes decide what else is uploaded).
    pub async fn local_only(self: &Arc<Self>, rel: &str, is_dir: bool) -> bool {
        if matches!(
            marker_of(&self.local(IGNORE_FILE)),
            Ok(Some(OwnedMarker::Placeholder(..)))
        ) {
            if let Err(e) = self.fetch(IGNORE_FILE).await {
                warn!("cannot fetch {IGNORE_FILE}: {e:#}; its rules do not apply yet");
            }
        }
        self.local_only.matches(rel, is_dir)
    }
}

/// What one entry of a listing needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// A sub-directory: HEAD of its `dir/` marker.
    Dir,
    /// A file fetched whole (GET).
    SmallFile,
    /// A file HEADed (a placeholder).
    File,
}

/// The local names a listing of `source` gives: sub-directories, and files with their
/// objects. Keys that cannot be local names are skipped with a log line; with both `x`
/// and `x/`, the directory wins.
pub(super) fn local_names(
    source: &str,
    listing: &super::s3::Listing,
    rel: &str,
) -> (Vec<String>, Vec<(String, super::s3::ListedObject)>) {
    let mut dirs = Vec::new();
    for cp in &listing.prefixes {
        match names::child_dir_name(source, cp) {
            Ok(n) => dirs.push(n.to_string()),
            Err(why) => warn!("skipping prefix {cp:?} while listing {rel:?}: {why}"),
        }
    }
    let dir_names: HashSet<&str> = dirs.iter().map(String::as_str).collect();
    let mut files = Vec::new();
    for o in &listing.objects {
        match names::child_name(source, &o.key) {
            Ok(n) if dir_names.contains(n) => warn!(
                "both {:?} and {:?} exist; showing the directory, skipping the object",
                o.key,
                format!("{}/", o.key)
            ),
            Ok(n) => files.push((n.to_string(), o.clone())),
            Err(Rejected::SelfMarker) => {}
            Err(why) => warn!("skipping key {:?} while listing {rel:?}: {why}", o.key),
        }
    }
    (dirs, files)
}

/// Names of the sub-directories of `dir` (UTF-8 names only; others cannot be in S3).
fn subdirs(dir: &Path, rel: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for e in rd {
        let e = e?;
        if e.file_type()?.is_dir() {
            if let Some(n) = e.file_name().to_str() {
                out.push(names::join_rel(rel, n));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{is_placeholder, kit, put, DEFAULT_DOWNLOADS};
    use super::*;
    use s3shim_protocol::meta;

    fn obj(key: &str) -> super::super::s3::RemoteObject {
        super::super::s3::RemoteObject {
            key: key.into(),
            etag: "e".into(),
            size: 1,
        }
    }

    fn names(l: &Listing) -> (Vec<&str>, Vec<&str>) {
        (
            l.prefixes.iter().map(String::as_str).collect(),
            l.objects.iter().map(|o| o.key.as_str()).collect(),
        )
    }

    #[test]
    fn a_flat_listing_splits_into_the_listings_of_every_directory() {
        let keys = ["p/a/", "p/a/b/c/f", "p/a/g", "p/a/h/", "p/top"];
        let all = split_flat("p/", keys.iter().map(|k| obj(k)).collect(), true);
        let mut dirs: Vec<&str> = all.keys().map(String::as_str).collect();
        dirs.sort();
        assert_eq!(dirs, ["p/", "p/a/", "p/a/b/", "p/a/b/c/", "p/a/h/"]);
        assert_eq!(names(&all["p/"]), (vec!["p/a/"], vec!["p/top"]));
        // `a/` is its own marker (skipped as a name later); `h/` an empty directory.
        assert_eq!(
            names(&all["p/a/"]),
            (vec!["p/a/b/", "p/a/h/"], vec!["p/a/", "p/a/g"])
        );
        assert_eq!(names(&all["p/a/b/"]), (vec!["p/a/b/c/"], vec![]));
        assert_eq!(names(&all["p/a/b/c/"]), (vec![], vec!["p/a/b/c/f"]));
        assert_eq!(names(&all["p/a/h/"]), (vec![], vec!["p/a/h/"]));

        // Cut after `p/a/g`: only directories whose keys all came before it are whole.
        let part = split_flat("p/", keys[..3].iter().map(|k| obj(k)).collect(), false);
        let mut dirs: Vec<&str> = part.keys().map(String::as_str).collect();
        dirs.sort();
        assert_eq!(dirs, ["p/a/b/", "p/a/b/c/"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_walk_of_a_cold_subtree_lists_it_once_and_gets_small_files_with_it() {
        let k = kit("p/", DEFAULT_DOWNLOADS).await;
        let ctx = &k.ctx;
        let mut files = Vec::new();
        for d in ["src", "src/a", "src/a/deep", "src/b", "docs"] {
            for i in 0..3 {
                files.push(format!("{d}/f{i}.txt"));
            }
        }
        for f in &files {
            put(ctx, &format!("p/{f}"), f.as_bytes()).await;
        }
        let big = vec![7u8; (DEFAULT_DOWNLOADS.eager_max + 1) as usize];
        put(ctx, "p/src/big.bin", &big).await;
        let before = k.server.stats();
        // What a walker does: each directory as it enters it.
        for d in ["", "src", "src/a", "src/a/deep", "src/b", "docs"] {
            ctx.list_dir(d).await.unwrap();
        }
        let cost = k.server.stats() - before;
        assert_eq!(cost.list, 1, "one flat listing for the whole walk");
        assert_eq!(cost.get, files.len() as u64, "one GET per small file");
        // A HEAD for the large file and for each directory's (absent) marker.
        assert_eq!(cost.head, 1 + 5);
        for f in &files {
            assert!(!is_placeholder(ctx, f), "{f} came whole with its listing");
            assert_eq!(std::fs::read(ctx.local(f)).unwrap(), f.as_bytes());
            let md = std::fs::metadata(ctx.local(f)).unwrap();
            assert_eq!(md.mode() & 0o7777, meta::DEFAULT_FILE_MODE & 0o7777);
            assert_eq!(
                md.mtime(),
                1_700_000_000,
                "mtime from the object's metadata"
            );
        }
        assert!(
            is_placeholder(ctx, "src/big.bin"),
            "large: fetched when read"
        );
        // Reading them costs nothing more.
        let before = k.server.stats();
        for f in &files {
            ctx.fetch(f).await.unwrap();
        }
        assert_eq!((k.server.stats() - before).get, 0);
        k.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_is_listed_or_fetched_through_a_symlink() {
        let k = kit("p/", DEFAULT_DOWNLOADS).await;
        let ctx = &k.ctx;
        put(ctx, "p/f", b"remote bytes").await;
        // Outside the cache: an unlisted directory and a placeholder, as another cache
        // would hold them, reachable through a symlink in this cache.
        let outside = k._dir.path().join("outside");
        std::fs::create_dir_all(outside.join("sub")).unwrap();
        fsops::write_marker(
            &outside.join("sub"),
            &Marker::Unlisted {
                source_prefix: "p/",
            },
        )
        .unwrap();
        std::fs::write(outside.join("x"), [0u8; 12]).unwrap();
        fsops::write_marker(
            &outside.join("x"),
            &Marker::Placeholder {
                etag: "e",
                source_key: "p/f",
            },
        )
        .unwrap();
        ctx.list_dir("").await.unwrap();
        std::os::unix::fs::symlink(&outside, ctx.local("link")).unwrap();
        ctx.list_dir("link/sub").await.unwrap();
        ctx.fetch("link/x").await.unwrap();
        assert_eq!(std::fs::read_dir(outside.join("sub")).unwrap().count(), 0);
        assert!(fsops::read_marker(&outside.join("sub")).unwrap().is_some());
        assert_eq!(std::fs::read(outside.join("x")).unwrap(), [0u8; 12]);
        // The same requests inside the cache do work.
        ctx.fetch("f").await.unwrap();
        assert_eq!(std::fs::read(ctx.local("f")).unwrap(), b"remote bytes");
        k.server.shutdown().await;
    }
}
