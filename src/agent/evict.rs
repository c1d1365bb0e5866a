//! A bounded cache: before a fetch, clean fetched files go back to placeholders, least
//! recently fetched or read first, until the fetched bytes fit under the limit
//! (`--cache-max-size`) and the cache's file system keeps its free share (5 %, at most
//! 4 GiB). Recency is the agent's own fetch time and the file's atime (reads update it
//! as the file system's atime policy allows: with `relatime`, about once a day).
//!
//! The cost per fetch does not grow with the cache: the agent keeps its clean files in
//! memory, ordered by last use, with their bytes summed ([`Lru`]); fed by fetches and
//! uploads, emptied of deletions, and filled once from the index at the first fetch that
//! has to count (files of an earlier agent). Only when over the limit does a fetch look
//! at files, oldest first, and then each is checked as below before it goes; one no
//! longer clean (changed, deleted, already a placeholder) just leaves the order, one
//! read since it was recorded (newer atime) moves to its place and is looked at again.
//!
//! A file goes back to a placeholder in place: same inode, size, mode and times, its bytes
//! dropped (truncated to 0 and back, so it is sparse) and its marker restored (marker
//! first: a crash in between leaves a marked file that is fetched again, never a file of
//! zeros taken for complete). Never evicted: a file with changes not in S3 (its index row
//! does not match it), a file any process has open (a write lease is refused; while it is
//! held an `open` waits), the `.s3shimignore` file and local-only paths (no row), and
//! whatever a `FetchTree` made local (static binaries read it without the shim), and a
//! file the supervisor let a program through to a moment ago ([`SupervisedPaths`]).
//! Writes by programs are never refused for the limit: it bounds fetched copies only.

use super::error::{other, Error, Result};
use super::fsops::marker_of;
use super::ignore::IGNORE_FILE;
use super::index::{same_content_and_meta, Fingerprint, Kind, Row};
use super::{fsops, Ctx};
use parking_lot::Mutex;
use s3shim_protocol::marker::Marker;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tracing::{info, warn};

/// Share of the cache's file system kept free (percent), at most `FREE_CAP` bytes: on a
/// large disk a few GiB are room enough, and a disk already fuller than that because of
/// other files must not empty the cache at every fetch.
pub const DEFAULT_FREE_PERCENT: u64 = 5;
const FREE_CAP: u64 = 4 << 30;

/// The cache's budget and what eviction needs to know.
pub struct Budget {
    /// Bytes of fetched files the cache may hold (`u64::MAX`: only the free share counts).
    max: AtomicU64,
    /// Percent of the file system kept free.
    pub free_percent: u64,
    /// The clean files with bytes here, by last use.
    lru: Mutex<Lru>,
    /// Subtrees a `FetchTree` made local: never evicted.
    pinned: Mutex<Vec<String>>,
    /// One room-making at a time, so two fetches do not both count the same room.
    making_room: tokio::sync::Mutex<()>,
    /// Bytes of fetches under way (room made, bytes not in place yet).
    reserved: AtomicU64,
    /// Paths the supervisor just let programs that bypass libc through to.
    pub supervised: SupervisedPaths,
}

/// Paths the seccomp supervisor let a call through to in the last moments, so that
/// eviction never turns such a file back into a placeholder between the supervisor's
/// look (no marker: complete) and the kernel's `open`; the program, which has no shim to
/// check the marker on the file it opened, would read zeros.
///
/// The supervisor notes a path *before* it reads the marker, and eviction looks here
/// *after* writing the marker (under its lease, before dropping the bytes), both under
/// this lock: either eviction sees the note and backs out, or the note came after the
/// marker was written and the supervisor sees the marker (and fetches). A fixed ring, no
/// allocation per call: a program makes thousands of calls a second, and the moment to
/// cover is the microseconds from the supervisor's answer to the kernel's open.
pub struct SupervisedPaths {
    ring: Mutex<Ring>,
}

struct Ring {
    /// (hash of the path relative to the tree, when noted).
    at: Box<[(u64, Option<Instant>)]>,
    next: usize,
}

/// Notes kept; older ones are overwritten.
const SUPERVISED_RING: usize = 4096;
/// How long a note protects a file: far longer than an answer takes to become an open.
const SUPERVISED_RECENT: Duration = Duration::from_secs(5);

fn path_hash(rel: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(rel);
    h.finish()
}

impl Default for SupervisedPaths {
    fn default() -> SupervisedPaths {
        SupervisedPaths {
            ring: Mutex::new(Ring {
                at: vec![(0, None); SUPERVISED_RING].into_boxed_slice(),
                next: 0,
            }),
        }
    }
}

impl SupervisedPaths {
    /// A supervised call names `rel` (bytes of the path relative to the tree).
    pub fn note(&self, rel: &[u8]) {
        let h = path_hash(rel);
        let now = Instant::now();
        let mut r = self.ring.lock();
        let i = r.next % SUPERVISED_RING;
        if let Some(slot) = r.at.get_mut(i) {
            *slot = (h, Some(now));
        }
        r.next = r.next.wrapping_add(1);
    }

    /// Whether a supervised call named `rel` in the last moments (a hash collision
    /// answers yes: the file then just stays).
    pub fn recent(&self, rel: &str) -> bool {
        let h = path_hash(rel.as_bytes());
        let now = Instant::now();
        self.ring.lock().at.iter().any(|(k, t)| {
            *k == h && t.is_some_and(|t| now.saturating_duration_since(t) < SUPERVISED_RECENT)
        })
    }
}

/// Room made for one fetch, counted until the fetch is over (then its file counts).
pub struct Reservation<'a> {
    budget: &'a Budget,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.reserved.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

impl Default for Budget {
    /// No limit and no free share: nothing is ever evicted.
    fn default() -> Budget {
        Budget {
            max: AtomicU64::new(u64::MAX),
            free_percent: 0,
            lru: Mutex::default(),
            pinned: Mutex::default(),
            making_room: tokio::sync::Mutex::default(),
            reserved: AtomicU64::new(0),
            supervised: SupervisedPaths::default(),
        }
    }
}

impl Budget {
    pub fn new(max: Option<u64>, free_percent: u64) -> Budget {
        let b = Budget {
            free_percent,
            ..Default::default()
        };
        b.set_max(max);
        b
    }

    pub fn set_max(&self, max: Option<u64>) {
        self.max.store(max.unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    fn max(&self) -> Option<u64> {
        Some(self.max.load(Ordering::SeqCst)).filter(|&m| m != u64::MAX)
    }

    /// `rel`'s bytes are here and in S3 (fetched, or uploaded): `bytes` on disk, used now.
    pub fn note_clean(&self, rel: &str, bytes: u64) {
        if rel == IGNORE_FILE || self.is_pinned(rel) {
            return;
        }
        self.lru.lock().insert(rel, SystemTime::now(), bytes);
    }

    /// `rel` (and everything below it) is gone.
    pub fn forget_subtree(&self, rel: &str) {
        self.lru.lock().remove_subtree(rel);
    }

    pub fn pin(&self, rel: &str) {
        self.pinned.lock().push(rel.to_string());
        self.lru.lock().remove_subtree(rel);
    }

    fn is_pinned(&self, rel: &str) -> bool {
        self.pinned.lock().iter().any(|p| {
            p.is_empty()
                || rel == p
                || rel
                    .strip_prefix(p.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        })
    }
}

/// The clean files whose bytes are here, ordered by last use, and their bytes summed.
/// A path may have been changed or deleted since it was recorded: eviction checks each
/// before it goes (see the module's comment).
#[derive(Default)]
struct Lru {
    /// path → (last use as recorded, bytes on disk).
    by_path: BTreeMap<String, (SystemTime, u64)>,
    /// (last use, path): the least recently used first.
    by_use: BTreeSet<(SystemTime, String)>,
    bytes: u64,
    /// The index's clean files were added (once, at the first fetch that counts).
    seeded: bool,
}

impl Lru {
    fn insert(&mut self, rel: &str, used: SystemTime, bytes: u64) {
        self.remove(rel);
        self.by_path.insert(rel.to_string(), (used, bytes));
        self.by_use.insert((used, rel.to_string()));
        self.bytes += bytes;
    }

    fn remove(&mut self, rel: &str) -> Option<(SystemTime, u64)> {
        let (used, bytes) = self.by_path.remove(rel)?;
        self.by_use.remove(&(used, rel.to_string()));
        self.bytes -= bytes;
        Some((used, bytes))
    }

    fn remove_subtree(&mut self, rel: &str) {
        if rel.is_empty() {
            *self = Lru {
                seeded: self.seeded,
                ..Lru::default()
            };
            return;
        }
        let below: Vec<String> = self
            .by_path
            .range(format!("{rel}/")..format!("{rel}0"))
            .map(|(p, _)| p.clone())
            .collect();
        for p in below.iter().map(String::as_str).chain([rel]) {
            self.remove(p);
        }
    }

    /// The least recently used path after `after` (exclusive), in use order.
    fn next_after(&self, after: Option<&(SystemTime, String)>) -> Option<(SystemTime, String)> {
        match after {
            None => self.by_use.first().cloned(),
            Some(a) => self
                .by_use
                .range((
                    std::ops::Bound::Excluded(a.clone()),
                    std::ops::Bound::Unbounded,
                ))
                .next()
                .cloned(),
        }
    }
}

/// A clean fetched file that could go back to a placeholder.
struct Candidate {
    rel: String,
    row: Row,
}

/// What a look at a recorded file found.
enum Look {
    /// Clean, not used since it was recorded: may go.
    Evictable(Candidate),
    /// Read since (its atime is newer): its place in the order moves.
    UsedAt(SystemTime),
    /// No longer a clean local file (changed, deleted, a placeholder, pinned).
    Stale,
}

impl Ctx {
    /// Makes room for `need` bytes about to be fetched for `rel` (whose path lock the
    /// caller holds): evicts until the fetched bytes plus `need` fit under the limit and
    /// the file system keeps its free share. `ENOSPC` when eviction cannot make room.
    pub(super) async fn make_room(&self, rel: &str, need: u64) -> Result<Reservation<'_>> {
        let budget = &self.budget;
        let _one = budget.making_room.lock().await;
        self.make_room_locked(rel, need)?;
        budget.reserved.fetch_add(need, Ordering::SeqCst);
        Ok(Reservation {
            budget,
            bytes: need,
        })
    }

    fn make_room_locked(&self, rel: &str, need: u64) -> Result<()> {
        let budget = &self.budget;
        let max = budget.max();
        if max.is_none() && budget.free_percent == 0 {
            return Ok(());
        }
        let (avail, total) = fs_space(&self.tree)?;
        let free_target = (total / 100 * budget.free_percent).min(FREE_CAP);
        // Short of the free share, a fetch frees at most what it brings: on a disk that
        // others filled below the share, the cache stays the size it is (least recently
        // used out, the new file in) instead of emptying itself at every fetch.
        let short_of_free = (free_target + need).saturating_sub(avail).min(need);
        if max.is_none() && short_of_free == 0 {
            return Ok(());
        }
        self.seed_lru()?;
        // `rel` itself is about to be fetched: whatever was recorded for it is not here.
        let fetched = {
            let lru = budget.lru.lock();
            lru.bytes - lru.by_path.get(rel).map_or(0, |e| e.1)
        } + budget.reserved.load(Ordering::SeqCst);
        let over_limit = max.map_or(0, |max| (fetched + need).saturating_sub(max));
        // The free share is a target: short of it, clean files are evicted, but a fetch
        // fails only when the file really does not fit (or the limit is exceeded).
        let really_short = need.saturating_sub(avail);
        // Still to free for the limit (counted bytes) and for the free share (disk).
        let (mut over, mut short) = (over_limit, short_of_free);
        if over == 0 && short == 0 {
            return Ok(());
        }
        // Oldest first. `cursor` passes over files that stay (busy, or `rel` itself);
        // files that leave the order or move to a later place are taken off it, so the
        // walk ends.
        let mut freed = (0u64, 0usize);
        let mut uncounted = 0u64;
        let mut cursor: Option<(SystemTime, String)> = None;
        while over > 0 || short > 0 {
            let Some(at) = budget.lru.lock().next_after(cursor.as_ref()) else {
                break;
            };
            let (used, path) = (&at.0, &at.1);
            if path == rel {
                cursor = Some(at);
                continue;
            }
            let look = self.look(path, *used);
            let mut lru = budget.lru.lock();
            // Recorded anew meanwhile (fetched or uploaded again): look again.
            if lru.by_path.get(path).map(|e| e.0) != Some(*used) {
                continue;
            }
            match look {
                Ok(Look::Stale) => {
                    // Its bytes were counted but are not a clean copy: less to free.
                    let bytes = lru.remove(path).map_or(0, |e| e.1);
                    over = over.saturating_sub(bytes);
                    uncounted += bytes;
                }
                Ok(Look::UsedAt(t)) => {
                    let bytes = lru.by_path[path].1;
                    lru.insert(path, t, bytes);
                }
                Ok(Look::Evictable(c)) => {
                    drop(lru);
                    match self.evict_one(&c) {
                        Ok(true) => {
                            let bytes = budget.lru.lock().remove(path).map_or(0, |e| e.1);
                            over = over.saturating_sub(bytes);
                            short = short.saturating_sub(bytes);
                            freed.0 += bytes;
                            freed.1 += 1;
                        }
                        Ok(false) => cursor = Some(at),
                        Err(e) => {
                            warn!("cannot evict {path:?}: {e}");
                            cursor = Some(at);
                        }
                    }
                }
                Err(e) => {
                    warn!("cannot evict {path:?}: {e}");
                    cursor = Some(at);
                }
            }
        }
        if freed.1 > 0 {
            info!(
                "evicted {} file(s), {} bytes, to fetch {rel:?} ({need} bytes)",
                freed.1, freed.0
            );
        }
        if freed.0 + uncounted < over_limit || freed.0 < really_short {
            return Err(Error::Io {
                context: format!(
                    "fetching {rel} ({need} bytes): the cache is full and nothing more can be evicted (the rest is open, changed locally, or pinned): "
                ),
                source: io::Error::from_raw_os_error(libc::ENOSPC),
            });
        }
        Ok(())
    }

    /// Once per agent: every file of the index whose bytes are here and match S3 (left
    /// by an earlier agent, or fetched before the first fetch that counted), used at its
    /// atime. The only walk over the whole index.
    fn seed_lru(&self) -> Result<()> {
        if self.budget.lru.lock().seeded {
            return Ok(());
        }
        let mut found = Vec::new();
        for (path, _) in self.index.files()? {
            if path == IGNORE_FILE || self.budget.is_pinned(&path) {
                continue;
            }
            if let Look::Evictable(_) | Look::UsedAt(_) =
                self.look(&path, SystemTime::UNIX_EPOCH)?
            {
                let md = std::fs::symlink_metadata(self.local(&path))?;
                found.push((path, atime_of(&md), md.blocks() * 512));
            }
        }
        let mut lru = self.budget.lru.lock();
        if !lru.seeded {
            for (path, used, bytes) in found {
                // What this agent recorded meanwhile is newer.
                if !lru.by_path.contains_key(&path) {
                    lru.insert(&path, used, bytes);
                }
            }
            lru.seeded = true;
        }
        Ok(())
    }

    /// Whether `path`, recorded as last used at `used`, may go back to a placeholder:
    /// its bytes are here (no marker), it matches its index row, and it is not pinned.
    fn look(&self, path: &str, used: SystemTime) -> Result<Look> {
        if self.budget.is_pinned(path) {
            return Ok(Look::Stale);
        }
        let local = self.local(path);
        let Ok(md) = std::fs::symlink_metadata(&local) else {
            return Ok(Look::Stale);
        };
        if !md.is_file() || md.len() == 0 || !matches!(marker_of(&local), Ok(None)) {
            return Ok(Look::Stale);
        }
        let Some(row) = self.index.get(path)? else {
            return Ok(Look::Stale);
        };
        if row.kind != Kind::File || row.is_intent() || row.fp != Fingerprint::of(&md) {
            return Ok(Look::Stale);
        }
        let atime = atime_of(&md);
        if atime > used {
            return Ok(Look::UsedAt(atime));
        }
        Ok(Look::Evictable(Candidate {
            rel: path.to_string(),
            row,
        }))
    }

    /// Turns one clean file back into a placeholder; `false` when it is busy (its path
    /// locked, open by a process) or no longer clean.
    fn evict_one(&self, c: &Candidate) -> Result<bool> {
        let Some(_guard) = self.locks.try_lock(&c.rel) else {
            return Ok(false);
        };
        let path = self.local(&c.rel);
        let before = std::fs::symlink_metadata(&path)?;
        if !before.is_file()
            || Fingerprint::of(&before) != c.row.fp
            || !matches!(marker_of(&path), Ok(None))
        {
            return Ok(false);
        }
        let Some(f) = open_for_eviction(&path, &before)? else {
            return Ok(false);
        };
        // SAFETY: fcntl on an open fd. Granted only when no other open file description
        // of the file exists; while held, an `open` by anyone else waits for us.
        if unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLEASE, libc::F_WRLCK) } != 0 {
            return Ok(false);
        }
        // The file's index row after the attempt, and whether it was evicted.
        let result = (|| -> Result<(Row, bool)> {
            let now = f.metadata()?;
            if !same_content_and_meta(&Fingerprint::of(&now), &c.row.fp) {
                return Err(other!("changed while being evicted"));
            }
            let key = self.key(&c.rel);
            fsops::fwrite_marker(
                &f,
                &Marker::Placeholder {
                    etag: &c.row.etag,
                    source_key: &key,
                },
            )?;
            // After the marker, before the bytes go (see `SupervisedPaths`).
            if self.budget.supervised.recent(&c.rel) {
                fsops::fremove_marker(&f)?;
                // Still the clean copy it was; only its ctime moved (the marker came
                // and went), which the index must know or it would look changed.
                return Ok((
                    Row::new(
                        Kind::File,
                        c.row.etag.clone(),
                        Fingerprint::of(&f.metadata()?),
                    ),
                    false,
                ));
            }
            f.set_len(0)?;
            f.set_len(now.len())?;
            fsops::fset_times(
                &f,
                (now.atime(), now.atime_nsec() as u32),
                (now.mtime(), now.mtime_nsec() as u32),
            )?;
            Ok((
                Row::new(
                    Kind::File,
                    c.row.etag.clone(),
                    Fingerprint::of(&f.metadata()?),
                ),
                true,
            ))
        })();
        // SAFETY: fcntl on an open fd.
        unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
        match result {
            Ok((row, evicted)) => {
                self.index.put(&c.rel, &row)?;
                if !evicted {
                    info!(
                        "not evicting {:?}: a supervised program was let through to it a moment ago",
                        c.rel
                    );
                }
                Ok(evicted)
            }
            Err(e) => {
                warn!("not evicting {:?}: {e}", c.rel);
                Ok(false)
            }
        }
    }
}

fn atime_of(md: &std::fs::Metadata) -> SystemTime {
    SystemTime::UNIX_EPOCH
        + std::time::Duration::new(md.atime().max(0) as u64, md.atime_nsec() as u32)
}

/// Opens `path` for writing, never through a symlink. A read-only file (git's objects
/// are 0444) is opened by making it writable for the moment; its mode is restored.
fn open_for_eviction(path: &Path, md: &std::fs::Metadata) -> Result<Option<std::fs::File>> {
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
    };
    match open() {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            let mode = md.mode() & 0o7777;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o200))?;
            let f = open();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            Ok(f.ok())
        }
        // Open elsewhere with a lease, or gone.
        Err(_) => Ok(None),
    }
}

/// (available, total) bytes of the file system holding `dir`.
fn fs_space(dir: &Path) -> Result<(u64, u64)> {
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()))
        .map_err(|_| other!("a NUL in {}", dir.display()))?;
    // SAFETY: statvfs is plain data; all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a statvfs to fill.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error().into());
    }
    let unit = st.f_frsize as u64;
    Ok((st.f_bavail as u64 * unit, st.f_blocks as u64 * unit))
}

/// Parses a size: bytes, or a number with `K`, `M`, `G` or `T` (powers of 1024; a
/// trailing `B` or `iB` is allowed).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size; pass bytes or e.g. 10G"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{kit, put, DEFAULT_DOWNLOADS};
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_clean_closed_files_are_evicted_and_no_room_is_enospc() {
        let k = kit("p/", DEFAULT_DOWNLOADS).await;
        let ctx = &k.ctx;
        for n in ["clean", "open", "dirty", "next"] {
            put(ctx, &format!("p/{n}"), &vec![b'x'; 64 << 10]).await;
        }
        ctx.list_dir("").await.unwrap();
        for n in ["clean", "open", "dirty"] {
            ctx.fetch(n).await.unwrap();
        }
        let before = std::fs::metadata(ctx.local("clean")).unwrap();
        let _open = std::fs::File::open(ctx.local("open")).unwrap();
        std::fs::write(ctx.local("dirty"), b"changed here, not in S3").unwrap();
        // Two fetched files (`dirty` is the user's now, not a fetched copy) and one more to
        // fetch, under a limit of two: one must go, and only `clean` may.
        ctx.budget.set_max(Some(2 * (64 << 10)));
        let room = ctx.make_room("next", 64 << 10).await.unwrap();
        drop(room);
        assert!(super::super::testkit::is_placeholder(ctx, "clean"));
        let after = std::fs::metadata(ctx.local("clean")).unwrap();
        assert_eq!(
            (
                after.ino(),
                after.len(),
                after.mode(),
                after.mtime(),
                after.mtime_nsec()
            ),
            (
                before.ino(),
                before.len(),
                before.mode(),
                before.mtime(),
                before.mtime_nsec()
            ),
            "same inode, size, mode and mtime"
        );
        assert_eq!(after.blocks(), 0, "its bytes are dropped");
        assert!(!super::super::testkit::is_placeholder(ctx, "open"));
        assert_eq!(
            std::fs::read(ctx.local("dirty")).unwrap(),
            b"changed here, not in S3"
        );
        // Nothing else can go: a fetch that needs room is ENOSPC.
        ctx.budget.set_max(Some(64 << 10));
        let e = ctx.make_room("next", 64 << 10).await.err().unwrap();
        assert_eq!(super::super::error::errno(&e), libc::ENOSPC, "{e}");
        // Fetched again when read.
        ctx.budget.set_max(None);
        ctx.fetch("clean").await.unwrap();
        assert_eq!(
            std::fs::read(ctx.local("clean")).unwrap(),
            vec![b'x'; 64 << 10]
        );
        k.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_a_supervised_program_was_just_let_through_to_stays() {
        use super::super::testkit::is_placeholder;
        let k = kit("p/", DEFAULT_DOWNLOADS).await;
        let ctx = &k.ctx;
        for n in ["opened", "other", "next"] {
            put(ctx, &format!("p/{n}"), &vec![b'x'; 64 << 10]).await;
        }
        ctx.list_dir("").await.unwrap();
        // `opened` is fetched first, so it is the first to go by age.
        for n in ["opened", "other"] {
            ctx.fetch(n).await.unwrap();
        }
        // The supervisor has just answered a call naming it; the kernel's open may not
        // have run yet.
        ctx.budget.supervised.note(b"opened");
        ctx.budget.set_max(Some(2 * (64 << 10)));
        drop(ctx.make_room("next", 64 << 10).await.unwrap());
        assert!(!is_placeholder(ctx, "opened"), "the noted file stays");
        assert_eq!(
            std::fs::read(ctx.local("opened")).unwrap(),
            vec![b'x'; 64 << 10]
        );
        assert!(is_placeholder(ctx, "other"), "the next oldest went instead");
        // Nothing else may go: the fetch is ENOSPC, never a file of zeros.
        ctx.budget.set_max(Some(64 << 10));
        let e = ctx.make_room("next", 64 << 10).await.err().unwrap();
        assert_eq!(super::super::error::errno(&e), libc::ENOSPC, "{e}");
        assert!(!is_placeholder(ctx, "opened"));
        k.server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_least_recently_fetched_or_read_goes_first() {
        use super::super::testkit::{is_placeholder, LAZY_DOWNLOADS};
        let k = kit("p/", LAZY_DOWNLOADS).await;
        let ctx = &k.ctx;
        for n in ["a", "b", "c", "d"] {
            put(ctx, &format!("p/{n}"), &vec![b'x'; 64 << 10]).await;
        }
        ctx.list_dir("").await.unwrap();
        for n in ["a", "b", "c"] {
            ctx.fetch(n).await.unwrap();
        }
        // `a` is read after the others were fetched: its atime moves past their fetch
        // (a fetched file keeps the object's mtime, so `relatime` updates it too).
        let fetched = std::time::SystemTime::now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(std::fs::read(ctx.local("a")).unwrap().len(), 64 << 10);
        let read_at = std::fs::metadata(ctx.local("a"))
            .unwrap()
            .accessed()
            .unwrap();
        assert!(
            read_at > fetched,
            "the cache's file system did not update the atime of a read (noatime?)"
        );
        ctx.budget.set_max(Some(3 * (64 << 10)));
        drop(ctx.make_room("d", 64 << 10).await.unwrap());
        let placeholders: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .filter(|n| is_placeholder(ctx, n))
            .collect();
        assert_eq!(placeholders, ["b"], "the least recently used one goes");
        // A file deleted here no longer counts: room without evicting anything else.
        std::fs::remove_file(ctx.local("c")).unwrap();
        ctx.budget.forget_subtree("c");
        ctx.fetch("d").await.unwrap();
        ctx.budget.set_max(Some(2 * (64 << 10)));
        drop(ctx.make_room("b", 64 << 10).await.unwrap());
        assert!(is_placeholder(ctx, "b"));
        assert!(!is_placeholder(ctx, "a") || !is_placeholder(ctx, "d"));
        k.server.shutdown().await;
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2 GB"), Ok(2 << 30));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1").is_err());
    }
}
