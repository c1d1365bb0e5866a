//! Shared by the tests that run real programs under the built `libs3shim.so`: a
//! workspace served by the REAL agent (`s3shim_agent::agent::Agent`, started in the test
//! process) over our S3 server (`s3shim_s3server`, in the test process too, on loopback).
//! "Remote" files are objects put into that server with an S3 client, with POSIX metadata
//! as other writers store it. Tests observe the agent through the requests it answered
//! (`Ws::requests`), the server through its request counts (`Ws::s3_stats`), and S3's
//! contents (`Ws::object`).
//!
//! The .so is the one cargo built for this test run (`target/<profile>/libs3shim.so`,
//! next to `deps/` where this test binary lives); `S3SHIM_TEST_SO` overrides it.

#![allow(dead_code)]

use s3shim_agent::agent::{Agent, Handle, Requests};
use s3shim_agent::config::{Settings, WorkspaceArgs};
use s3shim_protocol::marker::XATTR_NAME;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const MOUNT: &str = "/workspace";

/// The library under test.
pub fn shim_so() -> PathBuf {
    if let Some(p) = std::env::var_os("S3SHIM_TEST_SO") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let so = profile_dir.join("libs3shim.so");
    let built = fs::metadata(&so)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: build it first with `cargo build -p s3shim-shim`",
                so.display()
            )
        });
    // `cargo test` does not rebuild a cdylib: refuse to test a stale one.
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in [
        crate_dir.join("src"),
        crate_dir.join("src/hooks"),
        crate_dir.join("csrc"),
        crate_dir.join("../protocol/src"),
    ] {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let changed = e.metadata().and_then(|m| m.modified()).unwrap();
            assert!(
                changed <= built,
                "{} is older than {}: rebuild it with `cargo build -p s3shim-shim`",
                so.display(),
                e.path().display()
            );
        }
    }
    so
}

/// The node to test with: `S3SHIM_TEST_NODE` (scripts/test points it at node 24, which
/// code-server runs), else the machine's /usr/bin/node.
pub fn node() -> String {
    let n = std::env::var("S3SHIM_TEST_NODE").unwrap_or_else(|_| "/usr/bin/node".into());
    assert!(
        Path::new(&n).exists(),
        "{n} not found (set S3SHIM_TEST_NODE)"
    );
    n
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn xattr_name() -> &'static std::ffi::CStr {
    std::ffi::CStr::from_bytes_with_nul(XATTR_NAME).unwrap()
}

pub fn set_marker(p: &Path, value: &[u8]) {
    let c = cpath(p);
    // SAFETY: `c` and the name are C strings; `value` is readable for its length.
    let r = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            xattr_name().as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// The marker value on a cache entry (None = complete).
pub fn marker(p: &Path) -> Option<Vec<u8>> {
    let c = cpath(p);
    let mut buf = vec![0u8; 8192];
    // SAFETY: C strings as above; `buf` is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            xattr_name().as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}

const ACCESS_KEY: &str = "shimtest";
const SECRET_KEY: &str = "shimtest-secret-0a1b2c3d";
const BUCKET: &str = "shimtest";
/// `st_mode` file-type bits, as object metadata carries them.
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;

/// The runtime of the S3 servers and the test's S3 client (each agent has its own).
fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// A workspace: `root/cache` (the agent's cache, `tree` in it) served by a real agent,
/// whose bucket is on an S3 server of its own.
pub struct Ws {
    pub root: PathBuf,
    pub cache: PathBuf,
    pub tree: PathBuf,
    pub socket: PathBuf,
    agent: Option<Handle>,
    server: Option<s3shim_s3server::Server>,
    client: aws_sdk_s3::Client,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl Ws {
    /// A fresh workspace whose tree root is unlisted (`D`), as after `s3shim run` starts.
    pub fn new(name: &str) -> Ws {
        Ws::with_policy(name, &[])
    }

    /// [`Ws::new`] on a server that refuses writes (PUT, copy, delete) of keys under
    /// `deny_write` with 403, as a bucket policy would: uploads there fail for real.
    pub fn with_policy(name: &str, deny_write: &[&str]) -> Ws {
        let root = std::env::temp_dir().join(format!(
            "s3shim-it-{}-{}-{}",
            std::process::id(),
            name,
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        let cache = root.join("cache");
        fs::create_dir_all(&root).unwrap();
        let mut cfg = s3shim_s3server::Config::new(root.join("s3"), ACCESS_KEY, SECRET_KEY)
            .with_bucket(BUCKET);
        // A test's objects need not survive power loss.
        cfg.fsync = false;
        cfg.deny_write = deny_write.iter().map(|p| p.to_string()).collect();
        let server = rt().block_on(s3shim_s3server::Server::start(cfg)).unwrap();
        let settings = Settings::resolve(&WorkspaceArgs {
            bucket: Some(BUCKET.into()),
            endpoint: Some(server.endpoint()),
            mount: MOUNT.into(),
            cache: Some(cache.clone()),
            // Only what the programs here do changes the tree.
            poll_interval: 0.0,
            ranged_get_threshold: 32 << 20,
            ranged_get_part: 8 << 20,
            ..WorkspaceArgs::default()
        })
        .unwrap();
        let tree = settings.tree();
        // Off: a read must fetch exactly the file read, so tests can count fetches.
        let agent = Agent::new(settings)
            .credentials(ACCESS_KEY, SECRET_KEY)
            .sibling_prefetch(false)
            .start()
            .unwrap_or_else(|e| panic!("the agent did not start: {e}"));
        let socket = agent.socket().to_path_buf();
        let client = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::new()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .endpoint_url(server.endpoint())
                .force_path_style(true)
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    ACCESS_KEY, SECRET_KEY, None, None, "test",
                ))
                .build(),
        );
        Ws {
            root,
            cache,
            tree,
            socket,
            agent: Some(agent),
            server: Some(server),
            client,
        }
    }

    /// Puts a file into S3 as another writer would: its mode and mtime in the object's
    /// metadata (the s3fs convention the agent reads).
    pub fn remote_file(&self, rel: &str, content: &[u8], mode: u32) {
        self.put(rel, content.to_vec(), S_IFREG | mode);
    }

    /// Puts a directory object (`rel/`) into S3.
    pub fn remote_dir(&self, rel: &str) {
        self.put(&format!("{rel}/"), Vec::new(), S_IFDIR | 0o755);
    }

    fn put(&self, key: &str, body: Vec<u8>, mode: u32) {
        let mtime = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        rt().block_on(
            self.client
                .put_object()
                .bucket(BUCKET)
                .key(key)
                .body(body.into())
                .metadata("mode", mode.to_string())
                .metadata("mtime", mtime.to_string())
                .send(),
        )
        .unwrap();
    }

    /// The bytes of the object at `key`, `None` if S3 has no such object (one GET).
    pub fn object(&self, key: &str) -> Option<Vec<u8>> {
        rt().block_on(async {
            match self
                .client
                .get_object()
                .bucket(BUCKET)
                .key(key)
                .send()
                .await
            {
                Ok(o) => Some(o.body.collect().await.unwrap().into_bytes().to_vec()),
                Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => None,
                Err(e) => panic!("GET {key}: {e:?}"),
            }
        })
    }

    /// The requests the agent answered so far, by kind.
    pub fn requests(&self) -> Requests {
        self.agent().requests()
    }

    /// Waits (at most a minute) until the agent has answered what `done` asks for: for a
    /// request the program did not wait for; panics if it never does.
    pub fn wait_for_requests(&self, done: impl Fn(&Requests) -> bool) -> Requests {
        let (r, ok) = self
            .agent()
            .wait_for_requests(Duration::from_secs(60), done);
        assert!(ok, "the agent never answered the expected requests: {r:?}");
        r
    }

    /// The requests the S3 server got so far, by kind.
    pub fn s3_stats(&self) -> s3shim_s3server::Stats {
        self.server.as_ref().unwrap().stats()
    }

    fn agent(&self) -> &Handle {
        self.agent.as_ref().unwrap()
    }

    /// A command under the shim.
    pub fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        c.env("LD_PRELOAD", shim_so())
            .env("S3SHIM_MOUNT", MOUNT)
            .env("S3SHIM_CACHE", &self.cache)
            .env("S3SHIM_SOCKET", &self.socket)
            .current_dir(&self.root);
        c
    }

    /// `bash -c script` under the shim.
    pub fn sh(&self, script: &str) -> Output {
        self.cmd("/bin/bash")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap()
    }

    /// Runs `script`, asserts success, returns stdout.
    pub fn ok(&self, script: &str) -> String {
        let o = self.sh(script);
        assert!(
            o.status.success(),
            "script failed: {script}\nstatus: {}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    pub fn py(&self, code: &str) -> Output {
        self.cmd("/usr/bin/python3")
            .arg("-c")
            .arg(code)
            .output()
            .unwrap()
    }

    pub fn py_ok(&self, code: &str) -> String {
        let o = self.py(code);
        assert!(
            o.status.success(),
            "python failed: {code}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }
}

impl Drop for Ws {
    fn drop(&mut self) {
        // The agent first: it drains what the programs changed into the server.
        if let Some(a) = self.agent.take() {
            a.shutdown();
        }
        if let Some(s) = self.server.take() {
            rt().block_on(s.shutdown());
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}
