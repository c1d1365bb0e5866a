//! The agent: one process per cache that owns the credentials and the S3 client, fills
//! the cache on the shim's requests, and writes every change back.
//!
//! Start-up is reported to the `run` that spawned it as one line on stdout: `READY\t<info>`,
//! `BUSY` (another agent holds the cache) or `ERROR\t<sentence>`. After that its output
//! goes to `CACHE/.s3shim/agent.log`. It exits when the last `run` session closes (or on
//! SIGTERM/SIGINT), after draining every pending upload.

pub mod error;
pub mod evict;
pub(crate) mod fsops;
pub(crate) mod hydrate;
pub(crate) mod ignore;
pub(crate) mod index;
pub mod intercept;
mod lifecycle;
pub(crate) mod locks;
pub(crate) mod prefetch;
pub(crate) mod queue;
pub(crate) mod redact;
pub(crate) mod remote;
mod requests;
pub(crate) mod revalidate;
pub(crate) mod s3;
mod status;
pub(crate) mod sync;
pub(crate) mod watch;

pub use lifecycle::{Agent, Handle, StartError};
pub use requests::Requests;

use crate::config::{Remote, Settings, EMBEDDED_BUCKET};
// Start-up is an edge: its failures are sentences for `run`, not errnos.
use anyhow::{Context, Result};
use s3shim_protocol::marker::Marker;
use s3shim_protocol::wire::{self, Op};
use s3shim_protocol::{layout, names};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;
use tracing::{error, info, warn};

/// Shared state of the running agent.
pub(crate) struct Ctx {
    pub s3: s3::S3,
    pub index: index::Index,
    pub queue: Arc<queue::Queue>,
    pub tree: PathBuf,
    /// Normalised key prefix (empty or ending in `/`).
    pub prefix: String,
    /// Where downloads and uploads stage their files.
    pub staging: locks::Staging,
    /// A download and an upload of one path never run at once.
    pub locks: locks::PathLocks,
    /// `.s3shimignore`: paths that never go to S3 nor come from it.
    pub local_only: ignore::LocalOnly,
    /// Hydration's own state (hydrate.rs).
    pub hydration: hydrate::Hydration,
    /// Sibling prefetch (`S3SHIM_PREFETCH=0` turns it off).
    pub prefetch: Option<prefetch::Prefetch>,
    /// The cache's size limit and eviction state.
    pub budget: evict::Budget,
}

/// A positive count from the environment variable `name`, else `default`.
pub(crate) fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

impl Ctx {
    pub fn local(&self, rel: &str) -> PathBuf {
        if rel.is_empty() {
            self.tree.clone()
        } else {
            self.tree.join(rel)
        }
    }

    /// The key of the file (or symlink) at `rel`.
    pub fn key(&self, rel: &str) -> String {
        names::key_for(&self.prefix, rel, false)
    }
}

/// What [`lifecycle::Agent`] sets beyond the settings.
struct Options {
    /// Static credentials instead of the AWS chain (external endpoints only).
    keys: Option<s3::StaticKeys>,
    sibling_prefetch: bool,
}

type Started = (
    Arc<Ctx>,
    watch::WatchHandle,
    UnixListener,
    String,
    Option<s3shim_s3server::Server>,
);

async fn start(settings: &Settings, tree: &Path, tmp: &Path, options: Options) -> Result<Started> {
    fsops::check_cache_fs(tmp).map_err(anyhow::Error::msg)?;
    // Leftover downloads of a previous agent (we hold the lock, so they are dead).
    if let Ok(rd) = std::fs::read_dir(tmp) {
        for e in rd.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let (endpoint, keys, mut info, server) = match &settings.remote {
        Remote::External { endpoint, .. } => (endpoint.clone(), options.keys, String::new(), None),
        Remote::Embedded { data_dir } => {
            let (server, keys) = start_embedded(data_dir).await?;
            let ep = server.endpoint();
            let info = format!(
                "using the embedded S3 server at {ep} (bucket '{EMBEDDED_BUCKET}', data in {})",
                data_dir.display()
            );
            (Some(ep), Some(keys), info, Some(server))
        }
    };
    let s3 = s3::S3::new(endpoint.as_deref(), settings.bucket(), keys).await;
    s3.check_bucket().await.map_err(anyhow::Error::msg)?;
    // After the check: with no credentials at all, the chain is not walked twice.
    redact::add_secrets(s3.credential_secrets().await);
    let index = index::Index::open(&settings.state_dir().join(layout::INDEX_NAME))?;
    let adopted = claim_cache(settings, tree, &index)?;
    s3.set_writer(index.writer_id()?);
    if !tree.exists() {
        std::fs::create_dir(tree).with_context(|| format!("creating {}", tree.display()))?;
        fsops::write_marker(
            tree,
            &Marker::Unlisted {
                source_prefix: &settings.key_prefix,
            },
        )?;
    }
    if let Some(sentence) = adopted {
        info!("{sentence}");
        if !info.is_empty() {
            info.push_str("; ");
        }
        info.push_str(&sentence);
    }
    let queue = Arc::new(queue::Queue::default());
    let ctx = Arc::new(Ctx {
        s3,
        index,
        queue: queue.clone(),
        tree: tree.to_path_buf(),
        prefix: settings.key_prefix.clone(),
        staging: locks::Staging::new(tmp),
        locks: locks::PathLocks::default(),
        local_only: ignore::LocalOnly::new(tree),
        hydration: hydrate::Hydration::new(settings.downloads),
        prefetch: options.sibling_prefetch.then(prefetch::Prefetch::default),
        budget: evict::Budget::new(settings.cache_max_size, evict::DEFAULT_FREE_PERCENT),
    });
    // A warm cache from an earlier agent is brought up to date before anything watches
    // or uses it.
    ctx.revalidate().await.context("revalidating the cache")?;
    // Watch first, then scan: a change between the two is seen by one or the other.
    let watch = watch::spawn(tree.to_path_buf(), queue.clone())?;
    queue.request_scan();
    tokio::spawn(ctx.clone().sync_worker());
    if let Some(every) = settings.poll_interval {
        tokio::spawn(ctx.clone().poll_remote(every));
    }
    let listener = bind_socket(&settings.socket())?;
    info!(
        "agent ready: s3://{}/{} via {}, cache {}",
        settings.bucket(),
        settings.key_prefix,
        ctx.s3.endpoint_desc,
        settings.cache.display()
    );
    Ok((ctx, watch, listener, info, server))
}

/// Makes sure the cache serves this workspace, so nothing of one workspace is ever
/// uploaded to another: a cache records the workspace it was made for, and one made for
/// another is refused, unless `--adopt-cache` takes it over, setting its tree aside (kept
/// in the cache directory, never uploaded) and forgetting its index. `Ok(Some(sentence))`
/// says where an adopted tree went.
fn claim_cache(settings: &Settings, tree: &Path, index: &index::Index) -> Result<Option<String>> {
    let desc = settings.workspace_desc();
    let recorded = match index.workspace()? {
        // A new cache (or one older than this record): it is this workspace's from now on.
        None => {
            index.set_workspace(&desc)?;
            return Ok(None);
        }
        Some(w) if w == desc => return Ok(None),
        Some(w) => w,
    };
    if !settings.adopt_cache {
        anyhow::bail!(
            "the cache {} belongs to {recorded}, not to {desc}; run with that workspace's settings to upload what it holds, or pass another --cache, or --adopt-cache to set its tree aside (never uploaded) and use it for {desc}",
            settings.cache.display()
        );
    }
    let mut sentence = None;
    if tree.exists() {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = settings.cache.join(format!("adopted-from-{secs}"));
        std::fs::rename(tree, &aside)
            .with_context(|| format!("setting {} aside as {}", tree.display(), aside.display()))?;
        sentence = Some(format!(
            "adopted the cache for {desc}: the tree it held for {recorded} is in {}, not uploaded anywhere",
            aside.display()
        ));
    }
    // Every row describes the old workspace's objects.
    index.delete_subtree("")?;
    index.set_workspace(&desc)?;
    Ok(sentence)
}

pub(crate) async fn start_embedded(
    data_dir: &Path,
) -> Result<(s3shim_s3server::Server, s3::StaticKeys)> {
    // The objects of the workspace: as private as the cache.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .with_context(|| {
        format!(
            "cannot create the embedded server's data directory {}; pass a writable --embedded-data",
            data_dir.display()
        )
    })?;
    let keys = s3::StaticKeys {
        access_key: format!("s3shim{}", hex::encode(rand::random::<[u8; 6]>())),
        secret_key: hex::encode(rand::random::<[u8; 20]>()),
    };
    redact::add_secrets([keys.secret_key.clone()]);
    let cfg = s3shim_s3server::Config::new(data_dir, &keys.access_key, &keys.secret_key)
        .with_bucket(EMBEDDED_BUCKET);
    let server = s3shim_s3server::Server::start(cfg)
        .await
        .context("starting the embedded S3 server")?;
    Ok((server, keys))
}

fn prepare_dirs(cache: &Path, state: &Path, tmp: &Path) -> std::result::Result<(), String> {
    let fix = |p: &Path, e: std::io::Error| {
        format!(
            "cannot create {} ({e}); pass a writable --cache or fix its permissions",
            p.display()
        )
    };
    // `run` did this already (and said so); an agent started by hand must not open it.
    if let Some(sentence) = crate::config::make_private(cache).map_err(|e| format!("{e:#}"))? {
        eprintln!("{sentence}");
    }
    std::fs::create_dir_all(tmp).map_err(|e| fix(tmp, e))?;
    // The socket and the index are the user's alone.
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| fix(state, e))?;
    Ok(())
}

/// Sends the agent's log (secrets redacted) to `CACHE/.s3shim/agent.log` for the rest of
/// the process: the global tracing subscriber, so only a process that is the agent
/// (`s3shim agent`) calls this. Credentials in the environment are redacted from then on.
pub fn log_to_cache(settings: &Settings) {
    redact::add_secrets(redact::env_secrets());
    let state = settings.state_dir();
    let _ = std::fs::create_dir_all(&state);
    init_logging(&state.join(layout::LOG_NAME));
}

fn init_logging(path: &Path) {
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    else {
        return;
    };
    let file = Arc::new(file);
    let filter = tracing_subscriber::EnvFilter::try_from_env("S3SHIM_LOG").unwrap_or_else(|_| {
        // The SDK logs requests at debug level; keep its output (and anything that
        // could carry credentials) out unless asked for.
        tracing_subscriber::EnvFilter::new(
            "info,aws_smithy_runtime=warn,aws_config=warn,hyper=warn",
        )
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(move || redact::Redacting(redact::LogFile(file.clone())))
        .try_init();
}

/// `Some(file)` holding the lock, `None` if another agent holds it.
fn take_lock(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    // SAFETY: valid fd.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    Ok(Some(f))
}

fn bind_socket(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    // We hold the cache lock, so a socket file here is a dead agent's.
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

struct Server {
    ctx: Arc<Ctx>,
    watch: watch::WatchHandle,
    sessions: AtomicUsize,
    /// Set (under its lock, with `sessions`) when the last session closed and the agent
    /// stops because of it: a `run` that comes now is refused and starts the next agent.
    leaving: parking_lot::Mutex<bool>,
    /// The agent stops when its last session closes.
    by_sessions: bool,
    had_session: AtomicBool,
    last_session_closed: Notify,
    requests: Arc<requests::RequestLog>,
}

/// Serves the socket until `stop` turns true or, with `sessions` (the first session's
/// timeout), the last session closes; then drains. The exit code: 0 when everything is
/// in S3.
async fn serve(
    ctx: Arc<Ctx>,
    watch: watch::WatchHandle,
    listener: UnixListener,
    socket: &Path,
    mut stop: tokio::sync::watch::Receiver<bool>,
    sessions: Option<Duration>,
    requests: Arc<requests::RequestLog>,
) -> i32 {
    let server = Arc::new(Server {
        ctx,
        watch,
        sessions: AtomicUsize::new(0),
        leaving: parking_lot::Mutex::new(false),
        by_sessions: sessions.is_some(),
        had_session: AtomicBool::new(false),
        last_session_closed: Notify::new(),
        requests,
    });
    let by_sessions = sessions.is_some();
    let wait_first = sessions.unwrap_or(Duration::MAX);
    let first_session = tokio::time::sleep(wait_first);
    tokio::pin!(first_session);
    loop {
        tokio::select! {
            conn = listener.accept() => match conn {
                Ok((stream, _)) => {
                    let s = server.clone();
                    tokio::spawn(async move { s.connection(stream).await });
                }
                Err(e) => warn!("accept failed: {e}"),
            },
            _ = stop.wait_for(|s| *s) => { info!("asked to stop"); break; }
            _ = server.last_session_closed.notified(), if by_sessions => {
                if server.sessions.load(Ordering::SeqCst) == 0 {
                    info!("last session closed: draining");
                    break;
                }
            }
            _ = &mut first_session, if by_sessions && !server.had_session.load(Ordering::SeqCst) => {
                // The guard was read when this select began: a session may have started
                // since.
                if server.had_session.load(Ordering::SeqCst) {
                    continue;
                }
                warn!("no session within {wait_first:?}; stopping");
                break;
            }
        }
    }
    // Stop taking requests first: a new `run` must start its own agent (which waits for
    // our lock) rather than join one that is leaving.
    drop(listener);
    let _ = std::fs::remove_file(socket);
    let limit = drain_timeout();
    let started = std::time::Instant::now();
    let failed = match tokio::time::timeout(limit, drain(&server)).await {
        Ok(f) => f,
        Err(_) => {
            let (pending, in_flight, _) = server.ctx.queue.counts();
            error!(
                "draining took longer than {limit:?} (S3SHIM_DRAIN_TIMEOUT_SECS): stopping with {} changes not in S3; they stay in the cache and are uploaded when the agent next starts",
                pending + in_flight
            );
            return 1;
        }
    };
    for (p, why) in &failed {
        error!("not in S3 at exit: {p}: {why}");
    }
    info!(
        "drained in {:.1} s ({} not uploaded)",
        started.elapsed().as_secs_f64(),
        failed.len()
    );
    if failed.is_empty() {
        0
    } else {
        1
    }
}

/// Flushes until nothing is left that S3 could still take: a path that failed because S3
/// did not answer (uploads paused, e.g. one lost answer to the health probe) is retried
/// once it answers again, so the drain waits for that rather than exiting with it
/// unsent. The caller bounds the whole drain.
async fn drain(server: &Server) -> Vec<(String, String)> {
    loop {
        let failed = server.flush(None).await;
        if failed.is_empty() || !server.ctx.queue.has_transient_failures() {
            return failed;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The longest the agent drains its queue before it exits (`S3SHIM_DRAIN_TIMEOUT_SECS`,
/// default 60 s; container runtimes send SIGKILL after their own grace period).
fn drain_timeout() -> Duration {
    std::env::var("S3SHIM_DRAIN_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(60))
}

impl Server {
    async fn flush(&self, only: Option<&str>) -> Vec<(String, String)> {
        // Events already queued in the kernel are changes made before this request.
        self.watch.drain().await;
        let barrier = self.ctx.queue.barrier();
        if let Some(rel) = only {
            self.ctx.sync_now(rel).await;
        }
        self.ctx.queue.wait(barrier, only).await
    }

    async fn connection(self: Arc<Self>, mut stream: UnixStream) {
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        match stream.peer_cred() {
            Ok(c) if c.uid() == me || c.uid() == 0 => {}
            _ => {
                warn!("refused a connection from another user");
                return;
            }
        }
        loop {
            let mut hdr = [0u8; 4];
            if stream.read_exact(&mut hdr).await.is_err() {
                return;
            }
            let len = wire::body_len(hdr);
            if len > wire::REQUEST_MAX {
                return;
            }
            let mut body = vec![0u8; len];
            if stream.read_exact(&mut body).await.is_err() {
                return;
            }
            let Some((op, path)) = wire::decode_request(&body) else {
                let _ = reply(&mut stream, libc::EINVAL, b"malformed request").await;
                return;
            };
            let rel = match std::str::from_utf8(path) {
                Ok(r) if names::is_valid_rel_path(path) => r.to_string(),
                _ => {
                    if reply(&mut stream, libc::EINVAL, b"invalid path")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    continue;
                }
            };
            if op == Op::Session {
                self.requests.answered(op);
                self.session(stream).await;
                return;
            }
            // issue 15: the listener fd of a program to supervise follows the frame.
            if op == Op::Supervise {
                let errno = intercept::accept(self.ctx.clone(), &stream).await;
                self.requests.answered(op);
                if reply(&mut stream, errno, b"").await.is_err() {
                    return;
                }
                continue;
            }
            let (errno, payload) = self.handle(op, &rel).await;
            self.requests.answered(op);
            if reply(&mut stream, errno, payload.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    /// A `run` holds this connection open for its lifetime.
    async fn session(&self, mut stream: UnixStream) {
        let refused = {
            let leaving = self.leaving.lock();
            if !*leaving {
                self.sessions.fetch_add(1, Ordering::SeqCst);
            }
            *leaving
        };
        if refused {
            let _ = reply(&mut stream, libc::EAGAIN, b"the agent is stopping").await;
            return;
        }
        self.had_session.store(true, Ordering::SeqCst);
        let mut in_order = false;
        if reply(&mut stream, 0, b"").await.is_ok() {
            let mut sink = [0u8; 64];
            loop {
                match stream.read(&mut sink).await {
                    Ok(n) if n > 0 => in_order |= sink[..n].contains(&wire::SESSION_BYE),
                    _ => break,
                }
            }
        }
        let last = {
            let mut leaving = self.leaving.lock();
            let last = self.sessions.fetch_sub(1, Ordering::SeqCst) == 1;
            if last && self.by_sessions {
                *leaving = true;
            }
            last
        };
        if last && in_order && self.by_sessions {
            // Every session is over and said so: what its programs changed is read now
            // and reaches S3 before `run` returns (it waits for this connection to
            // close). What happens in the tree after that is no session's doing (a CI
            // job removing the cache as soon as `run` returned): it is not watched, and
            // nothing found gone while draining is deleted from S3.
            self.watch.stop().await;
            // The whole drain, retries included, while `run` still waits: nothing can
            // remove the cache yet, so whatever is pending is the sessions' doing. Not
            // while S3 does not answer (`run` has said what is not in S3; it need not
            // wait): then deletes still pending are left to the next agent too.
            if self.ctx.queue.paused().is_none() {
                let _ = tokio::time::timeout(drain_timeout(), drain(self)).await;
            }
            self.ctx.queue.hold_deletes();
        }
        drop(stream);
        self.last_session_closed.notify_one();
    }

    async fn handle(&self, op: Op, rel: &str) -> (i32, String) {
        let ctx = &self.ctx;
        let r = match op {
            Op::ListDir => ctx.list_dir(rel).await,
            Op::Fetch => {
                let r = ctx.fetch(rel).await;
                // After the file asked for, so that its download has the server to itself.
                ctx.prefetch_siblings(rel);
                r
            }
            Op::Lookup => ctx.lookup(rel).await,
            Op::ListTree => ctx.list_tree(rel).await,
            Op::FetchTree => ctx.fetch_tree(rel).await,
            Op::Discard => ctx.discard(rel).await,
            Op::Flush | Op::Sync => {
                let only = (op == Op::Sync).then_some(rel);
                let failed = self.flush(only).await;
                return if failed.is_empty() {
                    (0, String::new())
                } else {
                    let mut text = String::new();
                    for (p, why) in failed {
                        text.push_str(&format!("{p}\t{why}\n"));
                    }
                    text.truncate(wire::RESPONSE_BODY_MAX - 8);
                    (libc::EIO, text)
                };
            }
            Op::Status => return (0, self.status(rel).await),
            Op::Session | Op::Supervise => unreachable!("handled by the caller"),
        };
        match r {
            Ok(()) => (0, String::new()),
            Err(e) => {
                warn!("{op:?} {rel:?} failed: {e}");
                ctx.queue.note_error(format!("{op:?} {rel}: {e}"));
                (error::errno(&e), e.to_string())
            }
        }
    }
}

async fn reply(stream: &mut UnixStream, errno: i32, payload: &[u8]) -> std::io::Result<()> {
    stream
        .write_all(&wire::response_header(errno, payload.len()))
        .await?;
    stream.write_all(payload).await
}

/// An agent context over an in-process S3 server (ours, real, on loopback), without the
/// watcher and the sync worker, for tests of hydration and remote changes.
#[cfg(test)]
pub(crate) mod testkit {
    use super::fsops::{marker_of, OwnedMarker};
    use super::*;
    use crate::config::Downloads;

    /// Whether `rel` in the cache is still a placeholder (its bytes not fetched).
    pub fn is_placeholder(ctx: &Ctx, rel: &str) -> bool {
        matches!(
            marker_of(&ctx.local(rel)),
            Ok(Some(OwnedMarker::Placeholder(..)))
        )
    }

    pub struct Kit {
        pub ctx: Arc<Ctx>,
        pub server: s3shim_s3server::Server,
        pub _dir: tempfile::TempDir,
    }

    pub async fn kit(prefix: &str, downloads: Downloads) -> Kit {
        let dir = tempfile::tempdir().unwrap();
        let (server, keys) = start_embedded(&dir.path().join("s3")).await.unwrap();
        let s3 = s3::S3::new(Some(&server.endpoint()), EMBEDDED_BUCKET, Some(keys)).await;
        let tree = dir.path().join("tree");
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tree).unwrap();
        std::fs::create_dir(&tmp).unwrap();
        fsops::write_marker(
            &tree,
            &Marker::Unlisted {
                source_prefix: prefix,
            },
        )
        .unwrap();
        let ctx = Arc::new(Ctx {
            s3,
            index: index::Index::open(&dir.path().join("index.db")).unwrap(),
            queue: Arc::new(queue::Queue::default()),
            local_only: ignore::LocalOnly::new(&tree),
            tree,
            staging: locks::Staging::new(&tmp),
            prefix: prefix.to_string(),
            locks: locks::PathLocks::default(),
            hydration: hydrate::Hydration::new(downloads),
            prefetch: Some(prefetch::Prefetch::default()),
            budget: evict::Budget::default(),
        });
        Kit {
            ctx,
            server,
            _dir: dir,
        }
    }

    /// Writes an object as another writer would (no POSIX metadata).
    pub async fn put(ctx: &Ctx, key: &str, body: &[u8]) {
        ctx.s3
            .put_bytes(
                key,
                body.to_vec(),
                s3::PosixMeta {
                    mode: s3shim_protocol::meta::DEFAULT_FILE_MODE,
                    mtime: (1_700_000_000, 0),
                    uid: 0,
                    gid: 0,
                },
            )
            .await
            .unwrap();
    }

    pub const DEFAULT_DOWNLOADS: Downloads = Downloads {
        ranged_threshold: 32 << 20,
        part_size: 8 << 20,
        eager_max: 64 << 10,
    };
    /// Every listed file a placeholder until read (tests of what placeholders do).
    pub const LAZY_DOWNLOADS: Downloads = Downloads {
        eager_max: 0,
        ..DEFAULT_DOWNLOADS
    };
}
