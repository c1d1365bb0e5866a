//! An S3-compatible HTTP server for loopback use: the zero-config storage of the `s3shim`
//! agent and the server the integration tests run against.
//!
//! The protocol (HTTP, SigV4, XML, routing) is the `s3s` crate; the backend here keeps a
//! flat key space in SQLite with bodies in immutable blob files, so keys such as `d/`
//! beside `d/file`, `x` beside `x/y`, `a//b` or `../x` are all ordinary, independent keys.
//! Several server processes may share one data directory.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use s3shim_s3server::{Config, Server};
//! let server = Server::start(Config::new("/tmp/s3data", "AKID", "SECRET").with_bucket("work")).await?;
//! println!("S3 endpoint: {}", server.endpoint());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

mod backend;
mod body;
mod list;
mod policy;
mod store;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::TokioIo;
use s3s::auth::{S3Auth, SecretKey};
use s3s::service::S3ServiceBuilder;
use s3s::{s3_error, S3Result};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long [`Server::shutdown`] lets in-flight requests finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Server settings.
#[derive(Clone)]
pub struct Config {
    /// Where the index and blobs live; created if missing.
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free one (see [`Server::local_addr`]).
    pub addr: SocketAddr,
    /// The one accepted access key; requests must be SigV4-signed with it.
    pub access_key: String,
    pub secret_key: String,
    /// Reported by HeadBucket / GetBucketLocation; clients should sign with it.
    pub region: String,
    /// Buckets created at start if missing.
    pub buckets: Vec<String>,
    /// fsync each blob before its index row is committed (and SQLite `synchronous=FULL`),
    /// so an acknowledged write survives power loss, not just a crash of the process.
    pub fsync: bool,
    /// Key prefixes (in every bucket) whose objects GET refuses with 403 AccessDenied
    /// while HEAD and listings work, as S3 does for an SSE-KMS object the caller may not
    /// decrypt. Empty: every signed request may read.
    pub deny_read: Vec<String>,
    /// Key prefixes (in every bucket) where PUT, copy, multipart upload and delete are
    /// refused with 403 AccessDenied, as a bucket policy denying writes there would.
    pub deny_write: Vec<String>,
    /// Whether writes honour `If-Match` / `If-None-Match`. Off: a write carrying either
    /// is refused with 501 NotImplemented, as AWS S3 answered before it had them (and
    /// some self-hosted servers still do), so clients' fallbacks can be tested.
    pub conditional_writes: bool,
}

impl Config {
    /// Loopback on a free port, region `us-east-1`, fsync on, no buckets.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        access_key: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> Config {
        Config {
            data_dir: data_dir.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            access_key: access_key.into(),
            secret_key: secret_key.into(),
            region: "us-east-1".to_owned(),
            buckets: Vec::new(),
            fsync: true,
            deny_read: Vec::new(),
            deny_write: Vec::new(),
            conditional_writes: true,
        }
    }

    pub fn with_bucket(mut self, bucket: impl Into<String>) -> Config {
        self.buckets.push(bucket.into());
        self
    }
}

// Hand-written so that the secret key never reaches a log.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("addr", &self.addr)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("region", &self.region)
            .field("buckets", &self.buckets)
            .field("fsync", &self.fsync)
            .field("deny_read", &self.deny_read)
            .field("deny_write", &self.deny_write)
            .field("conditional_writes", &self.conditional_writes)
            .finish()
    }
}

/// Requests that reached the backend (signed correctly), by kind, plus body bytes.
/// Tests use differences between two snapshots, e.g. to show nothing was re-downloaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// GetObject.
    pub get: u64,
    /// HeadObject.
    pub head: u64,
    /// PutObject.
    pub put: u64,
    /// CopyObject and UploadPartCopy.
    pub copy: u64,
    /// DeleteObject and DeleteObjects (one per request).
    pub delete: u64,
    /// ListObjects and ListObjectsV2.
    pub list: u64,
    /// Create/UploadPart/Complete/Abort multipart upload, ListParts, ListMultipartUploads.
    pub multipart: u64,
    /// Bucket-level requests (ListBuckets, Create/Head/DeleteBucket, location, versioning).
    pub bucket: u64,
    /// Body bytes sent by GetObject.
    pub get_bytes: u64,
    /// Body bytes received by PutObject and UploadPart.
    pub put_bytes: u64,
}

impl std::ops::Sub for Stats {
    type Output = Stats;

    fn sub(self, o: Stats) -> Stats {
        Stats {
            get: self.get - o.get,
            head: self.head - o.head,
            put: self.put - o.put,
            copy: self.copy - o.copy,
            delete: self.delete - o.delete,
            list: self.list - o.list,
            multipart: self.multipart - o.multipart,
            bucket: self.bucket - o.bucket,
            get_bytes: self.get_bytes - o.get_bytes,
            put_bytes: self.put_bytes - o.put_bytes,
        }
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    get: AtomicU64,
    head: AtomicU64,
    put: AtomicU64,
    copy: AtomicU64,
    delete: AtomicU64,
    list: AtomicU64,
    multipart: AtomicU64,
    bucket: AtomicU64,
    get_bytes: AtomicU64,
    put_bytes: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Stats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            get: l(&self.get),
            head: l(&self.head),
            put: l(&self.put),
            copy: l(&self.copy),
            delete: l(&self.delete),
            list: l(&self.list),
            multipart: l(&self.multipart),
            bucket: l(&self.bucket),
            get_bytes: l(&self.get_bytes),
            put_bytes: l(&self.put_bytes),
        }
    }
}

struct SingleKeyAuth {
    access_key: String,
    secret_key: SecretKey,
}

#[async_trait::async_trait]
impl S3Auth for SingleKeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.access_key {
            Ok(self.secret_key.clone())
        } else {
            Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            ))
        }
    }
}

/// A running server. Dropping it stops accepting connections (in the background);
/// [`Server::shutdown`] also waits for in-flight requests.
pub struct Server {
    addr: SocketAddr,
    data_dir: PathBuf,
    stats: Arc<Counters>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens (or creates) the data directory, creates the configured buckets, binds, and
    /// serves on the current tokio runtime. Returns once the socket is listening.
    pub async fn start(cfg: Config) -> anyhow::Result<Server> {
        anyhow::ensure!(
            !cfg.access_key.is_empty(),
            "the S3 server needs an access key"
        );
        anyhow::ensure!(
            !cfg.secret_key.is_empty(),
            "the S3 server needs a secret key"
        );
        for b in &cfg.buckets {
            anyhow::ensure!(s3s::path::check_bucket_name(b), "invalid bucket name {b:?}");
        }
        let data_dir = cfg.data_dir.clone();
        let fsync = cfg.fsync;
        let buckets = cfg.buckets.clone();
        let store = tokio::task::spawn_blocking(move || -> anyhow::Result<store::Store> {
            let store = store::Store::open(&data_dir, fsync)
                .with_context(|| format!("cannot open S3 data directory {}", data_dir.display()))?;
            if let Err(e) = store.gc() {
                tracing::warn!(error = %e, "cleaning up the S3 data directory failed");
            }
            Ok(store)
        })
        .await??;
        let store = Arc::new(store);
        for b in buckets {
            store
                .db(move |c| store::create_bucket(c, &b).map(drop))
                .await
                .map_err(|e| anyhow::anyhow!("cannot create bucket: {e:?}"))?;
        }

        let stats = Arc::new(Counters::default());
        let backend = backend::Backend {
            store,
            stats: Arc::clone(&stats),
            region: cfg.region.clone(),
            conditional_writes: cfg.conditional_writes,
        };
        let mut builder = S3ServiceBuilder::new(backend);
        builder.set_auth(SingleKeyAuth {
            access_key: cfg.access_key.clone(),
            secret_key: SecretKey::from(cfg.secret_key.clone()),
        });
        if !cfg.deny_read.is_empty() || !cfg.deny_write.is_empty() {
            builder.set_access(policy::Policy {
                deny_read: cfg.deny_read.clone(),
                deny_write: cfg.deny_write.clone(),
            });
        }
        let service = builder.build();

        let listener = TcpListener::bind(cfg.addr)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.addr))?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(serve(listener, service, stop_rx));
        tracing::debug!(%addr, data_dir = %cfg.data_dir.display(), "S3 server listening");
        Ok(Server {
            addr,
            data_dir: cfg.data_dir,
            stats,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for a path-style S3 client.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    pub fn stats(&self) -> Stats {
        self.stats.snapshot()
    }

    /// Stops accepting connections and waits (up to a grace period) for open ones.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(
    listener: TcpListener,
    service: s3s::service::S3Service,
    mut stop: oneshot::Receiver<()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            // A dropped sender (Server dropped) also stops the server.
            _ = &mut stop => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // E.g. out of file descriptors: back off briefly instead of spinning.
                tracing::warn!(error = %e, "S3 server accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service.clone());
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "S3 connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("S3 server shut down with requests still in flight");
    }
}
