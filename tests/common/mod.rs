//! Test harness: a real S3-compatible server on loopback (ours; moto's when
//! `S3SHIM_TEST_S3=moto`; a running Ceph cluster's gateway when `S3SHIM_TEST_S3=ceph`),
//! `s3shim run` invocations, and native-vs-shim comparisons.
#![allow(dead_code)]

pub mod proxy;
pub mod skip;
pub mod tree;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "testkey";
pub const SECRET_KEY: &str = "testsecret-planted-1f0e";
pub const BUCKET: &str = "itest";

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_s3shim"))
}

/// The shim library next to the binary; the workspace build puts it there.
pub fn lib() -> PathBuf {
    let p = bin().parent().unwrap().join("libs3shim.so");
    assert!(
        p.is_file(),
        "{} is missing: build the whole workspace first (cargo build --workspace, or scripts/test)",
        p.display()
    );
    p
}

pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
}

/// A program the scenarios need, from `S3SHIM_TEST_<NAME>` or PATH.
pub fn tool(name: &str) -> String {
    std::env::var(format!("S3SHIM_TEST_{}", name.to_uppercase())).unwrap_or_else(|_| name.into())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An S3 server on loopback for one test, stopped on drop.
pub struct S3Server {
    /// None for a server this test did not start (a Ceph cluster's gateway).
    child: Option<Child>,
    /// Whether this test holds the shared Ceph cluster of `S3SHIM_TEST_S3=ceph`.
    holds_shared: bool,
    pub endpoint: String,
    /// Whether the server checks signatures (moto accepts any credentials).
    pub enforces_auth: bool,
    _data: tempfile::TempDir,
}

/// `s3shim server` on `listen` with the test credentials: the child and the endpoint it
/// prints once it accepts connections.
pub fn own_server(data: &Path, listen: &str) -> (Child, String) {
    own_server_with(data, listen, &[])
}

/// [`own_server`] with more `s3shim server` arguments (e.g. `--deny-read`).
pub fn own_server_with(data: &Path, listen: &str, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(bin())
        .args(["server", "--listen", listen, "--data"])
        .arg(data)
        .args(["--bucket", BUCKET, "--access-key", ACCESS_KEY])
        .args(["--secret-key", SECRET_KEY])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ep = line
        .trim()
        .strip_prefix("endpoint ")
        .unwrap_or_else(|| panic!("unexpected server output {line:?}"))
        .to_string();
    (child, ep)
}

impl S3Server {
    pub fn start() -> S3Server {
        let data = tempfile::tempdir().unwrap();
        let moto = std::env::var("S3SHIM_TEST_S3").as_deref() == Ok("moto");
        let (child, endpoint) = match std::env::var("S3SHIM_TEST_S3").as_deref() {
            Ok("moto") => {
                let port = free_port();
                let child = Command::new(tool("moto_server"))
                    .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("moto_server (pip install 'moto[server]')");
                (child, format!("http://127.0.0.1:{port}"))
            }
            Ok("ceph") => return S3Server::shared_ceph(),
            _ => own_server(data.path(), "127.0.0.1:0"),
        };
        let s = S3Server {
            child: Some(child),
            holds_shared: false,
            endpoint,
            enforces_auth: !moto,
            _data: data,
        };
        s.wait_ready();
        s
    }

    /// Our server whatever `S3SHIM_TEST_S3` says, with more `s3shim server` arguments:
    /// for behaviour only ours can be asked for (e.g. `--deny-read`).
    pub fn start_own(extra: &[&str]) -> S3Server {
        let data = tempfile::tempdir().unwrap();
        let (child, endpoint) = own_server_with(data.path(), "127.0.0.1:0", extra);
        let s = S3Server {
            child: Some(child),
            holds_shared: false,
            endpoint,
            enforces_auth: true,
            _data: data,
        };
        s.wait_ready();
        s
    }

    /// The gateway of the Ceph cluster `scripts/test` started (`scripts/ceph-cluster`),
    /// at `S3SHIM_TEST_CEPH_ENDPOINT`. It is shared, so tests on it run one at a time
    /// (`--test-threads=1`) and each starts from an empty bucket.
    fn shared_ceph() -> S3Server {
        let endpoint = std::env::var("S3SHIM_TEST_CEPH_ENDPOINT").expect(
            "S3SHIM_TEST_S3=ceph needs S3SHIM_TEST_CEPH_ENDPOINT (scripts/ceph-cluster start prints it)",
        );
        assert!(
            !CEPH_IN_USE.swap(true, std::sync::atomic::Ordering::SeqCst),
            "tests on the shared Ceph cluster run one at a time (--test-threads=1), one server each"
        );
        let mut s = S3Server::at(&endpoint);
        s.holds_shared = true;
        s.empty_bucket();
        s
    }

    /// A server some other part started (with the test credentials) at `endpoint`; the
    /// bucket is created if missing.
    pub fn at(endpoint: &str) -> S3Server {
        let s = S3Server {
            child: None,
            holds_shared: false,
            endpoint: endpoint.into(),
            enforces_auth: true,
            _data: tempfile::tempdir().unwrap(),
        };
        s.wait_ready();
        s
    }

    /// Deletes every object and every unfinished multipart upload of the bucket.
    fn empty_bucket(&self) {
        runtime().block_on(async {
            let c = self.client().await;
            let ups = c
                .list_multipart_uploads()
                .bucket(BUCKET)
                .send()
                .await
                .unwrap();
            for u in ups.uploads() {
                c.abort_multipart_upload()
                    .bucket(BUCKET)
                    .key(u.key().unwrap_or_default())
                    .upload_id(u.upload_id().unwrap_or_default())
                    .send()
                    .await
                    .unwrap();
            }
        });
        for key in self.keys("") {
            self.delete(&key);
        }
        assert_eq!(
            self.keys(""),
            Vec::<String>::new(),
            "the Ceph bucket did not empty"
        );
    }

    pub fn delete(&self, key: &str) {
        runtime().block_on(async {
            let c = self.client().await;
            c.delete_object()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
                .unwrap();
        })
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let rt = runtime();
        loop {
            let ok = rt.block_on(async {
                let c = self.client().await;
                if c.head_bucket().bucket(BUCKET).send().await.is_ok() {
                    return true;
                }
                c.create_bucket().bucket(BUCKET).send().await.is_ok()
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "S3 server did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub async fn client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                ACCESS_KEY, SECRET_KEY, None, None, "test",
            ))
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Every key under `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        runtime().block_on(async {
            let c = self.client().await;
            let mut out = Vec::new();
            let mut token = None;
            loop {
                let page = c
                    .list_objects_v2()
                    .bucket(BUCKET)
                    .prefix(prefix)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .unwrap();
                out.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(String::from)),
                );
                token = page.next_continuation_token().map(String::from);
                if token.is_none() {
                    break;
                }
            }
            out.sort();
            out
        })
    }

    /// The object's bytes; `None` only when S3 says there is no such key. Any other
    /// failure (the server unreachable, a 5xx after the SDK's retries, a cut body) fails
    /// the test with the SDK's error: it must never read as "the object is missing".
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        runtime().block_on(async {
            let c = self.client().await;
            let o = match c.get_object().bucket(BUCKET).key(key).send().await {
                Ok(o) => o,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return None,
                Err(e) => panic!(
                    "GET {key} failed (not a missing key): {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                ),
            };
            match o.body.collect().await {
                Ok(b) => Some(b.into_bytes().to_vec()),
                Err(e) => panic!("GET {key}: the body was cut: {e}"),
            }
        })
    }

    pub fn metadata(&self, key: &str) -> std::collections::HashMap<String, String> {
        runtime().block_on(async {
            let c = self.client().await;
            let o = c
                .head_object()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
                .unwrap();
            o.metadata().cloned().unwrap_or_default()
        })
    }

    pub fn put(&self, key: &str, body: &[u8]) {
        runtime().block_on(async {
            let c = self.client().await;
            c.put_object()
                .bucket(BUCKET)
                .key(key)
                .body(body.to_vec().into())
                .send()
                .await
                .unwrap();
        })
    }
}

/// Whether a test holds the shared Ceph cluster (see [`S3Server::shared_ceph`]).
static CEPH_IN_USE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.holds_shared {
            CEPH_IN_USE.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One workspace (bucket prefix + mount path) and how to run commands on it.
pub struct Workspace<'s> {
    pub s3: &'s S3Server,
    /// The endpoint `run` is given: the server's, or a proxy's in front of it.
    pub endpoint: String,
    pub prefix: String,
    pub mount: String,
    /// Where tests keep temp files (caches, HOME, ...).
    pub tmp: tempfile::TempDir,
}

impl<'s> Workspace<'s> {
    pub fn new(s3: &'s S3Server, prefix: &str, mount: &str) -> Workspace<'s> {
        Workspace {
            s3,
            endpoint: s3.endpoint.clone(),
            prefix: prefix.into(),
            mount: mount.into(),
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    /// A cache directory for this workspace (`name` picks a fresh or a shared one).
    pub fn cache(&self, name: &str) -> PathBuf {
        self.tmp.path().join(format!("cache-{name}"))
    }

    /// `s3shim run` with this workspace's settings and the given cache.
    /// A session on `cache` that stays open (a `run` of `sleep`) with an agent that
    /// does not poll S3: a stale writer, which keeps believing what it last saw. The
    /// agent is ready when this returns; end it with SIGTERM.
    pub fn stale_writer(&self, cache: &str) -> std::process::Child {
        let mut keeper = self
            .command(cache, &["bash", "-c", "echo up; exec sleep 300"])
            .env("S3SHIM_POLL_INTERVAL", "0")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The command runs only once its agent is ready: later commands join it.
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(keeper.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line, "up\n");
        keeper
    }

    pub fn command(&self, cache: &str, argv: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("run")
            .args(["--bucket", BUCKET, "--endpoint", &self.endpoint])
            .args(["--key-prefix", &self.prefix, "--mount", &self.mount])
            .arg("--cache")
            .arg(self.cache(cache))
            .arg("--")
            .args(argv);
        env_for_tests(&mut c, self.tmp.path());
        c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        c
    }

    /// Runs a bash script under `s3shim run`, failing the test if it fails.
    pub fn bash(&self, cache: &str, script: &str) -> String {
        let out = self.try_bash(cache, script);
        assert_success(&out, script);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn try_bash(&self, cache: &str, script: &str) -> Output {
        timed_output(self.command(cache, &["bash", "-c", script]), 300)
    }
}

/// Gives `c` the environment changes `template` was set up with (set and removed
/// variables): for running a prepared command another way (under a wrapper, from
/// another binary).
pub fn env_like(c: &mut Command, template: &Command) {
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
}

/// A stable environment for programs under test: a private HOME, fixed git identity and
/// dates, no proxy or AWS settings from the developer's shell.
pub fn env_for_tests(c: &mut Command, tmp: &Path) {
    let home = tmp.join("home");
    std::fs::create_dir_all(&home).unwrap();
    for v in [
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "S3SHIM_BUCKET",
        "S3SHIM_KEY_PREFIX",
        "S3SHIM_MOUNT",
        "S3SHIM_CACHE",
        "S3SHIM_SOCKET",
        "S3SHIM_EMBEDDED_DATA",
        "LD_PRELOAD",
    ] {
        c.env_remove(v);
    }
    c.env("HOME", &home)
        .env("XDG_CACHE_HOME", tmp.join("xdg-cache"))
        .env("XDG_DATA_HOME", tmp.join("xdg-data"))
        .env("XDG_CONFIG_HOME", tmp.join("xdg-config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-02T03:04:05Z")
        .env("GIT_COMMITTER_DATE", "2026-01-02T03:04:05Z")
        .env("LC_ALL", "C.UTF-8")
        .env("TZ", "UTC")
        .env("S3SHIM_LIB", lib());
}

/// Runs a command with a time limit (a hang is a failure, not a stuck suite).
pub fn timed_output(mut c: Command, secs: u64) -> Output {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let out_reader = spawn_reader(child.stdout.take().unwrap());
    let err_reader = spawn_reader(child.stderr.take().unwrap());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let status = child.wait().unwrap();
            let err = err_reader.join().unwrap();
            panic!(
                "command {c:?} did not finish within {secs}s ({status}); stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

fn spawn_reader<R: std::io::Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a bash script natively (the oracle), with the same environment.
pub fn native_bash(tmp: &Path, script: &str) -> String {
    let mut c = Command::new("bash");
    c.args(["-c", script]);
    env_for_tests(&mut c, tmp);
    let out = timed_output(c, 300);
    assert_success(&out, script);
    String::from_utf8_lossy(&out.stdout).into_owned()
}
