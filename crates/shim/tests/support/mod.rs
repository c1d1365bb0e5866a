//! Shared by the tests that run real programs under the built `libs3shim.so`: a
//! workspace (cache tree + a "remote" directory standing in for S3) and a FAKE AGENT, a
//! Unix socket server thread in the test process that speaks the wire protocol and
//! hydrates the cache from the remote directory exactly as `marker.rs` describes.
//!
//! The .so is the one cargo built for this test run (`target/<profile>/libs3shim.so`,
//! next to `deps/` where this test binary lives); `S3SHIM_TEST_SO` overrides it.

#![allow(dead_code)]

use s3shim_protocol::marker::{Marker, XATTR_NAME};
use s3shim_protocol::wire::{self, Op};
use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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

fn remove_marker(p: &Path) {
    let c = cpath(p);
    // SAFETY: `c` and the name are NUL-terminated C strings.
    unsafe { libc::lremovexattr(c.as_ptr(), xattr_name().as_ptr()) };
}

fn rel_join(base: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

/// The fake agent's state.
struct Agent {
    tree: PathBuf,
    remote: PathBuf,
    tmp: PathBuf,
    log: Mutex<Vec<(Op, String)>>,
    /// Serialises hydration (the real agent does its own locking).
    work: Mutex<()>,
    tmp_seq: AtomicUsize,
    fetch_by_rename: AtomicBool,
    /// What Sync and Flush answer (0: "in S3").
    sync_errno: std::sync::atomic::AtomicI32,
}

impl Agent {
    fn staging_path(&self) -> PathBuf {
        self.tmp.join(format!(
            "st{}",
            self.tmp_seq.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Lists `rel` if it is unlisted: one placeholder per remote entry that is not in the
    /// cache yet, then the `D` marker goes.
    fn list_dir(&self, rel: &str) -> i32 {
        let local = rel_join(&self.tree, rel);
        let Some(m) = marker(&local) else {
            return 0;
        };
        if !matches!(Marker::parse(&m), Some(Marker::Unlisted { .. })) {
            return 0;
        }
        let remote = rel_join(&self.remote, rel);
        if let Ok(entries) = fs::read_dir(&remote) {
            for e in entries.flatten() {
                let name = e.file_name();
                let child_rel = if rel.is_empty() {
                    name.to_string_lossy().into_owned()
                } else {
                    format!("{rel}/{}", name.to_string_lossy())
                };
                let dst = local.join(&name);
                if fs::symlink_metadata(&dst).is_ok() {
                    continue;
                }
                let md = fs::symlink_metadata(e.path()).unwrap();
                // Made whole in staging and renamed in, as the real agent does: a
                // directory seen before its marker would look listed and empty.
                let staged = self.staging_path();
                if md.file_type().is_symlink() {
                    let target = fs::read_link(e.path()).unwrap();
                    std::os::unix::fs::symlink(target, &staged).unwrap();
                } else if md.is_dir() {
                    fs::create_dir(&staged).unwrap();
                    fs::set_permissions(&staged, md.permissions()).unwrap();
                    set_marker(&staged, format!("D{child_rel}/").as_bytes());
                } else {
                    let f = fs::File::create(&staged).unwrap();
                    f.set_len(md.len()).unwrap();
                    f.set_modified(md.modified().unwrap()).unwrap();
                    drop(f);
                    fs::set_permissions(&staged, md.permissions()).unwrap();
                    let mut v = format!("F\"{}\"", md.len()).into_bytes();
                    v.push(0);
                    v.extend_from_slice(child_rel.as_bytes());
                    set_marker(&staged, &v);
                }
                fs::rename(&staged, &dst).unwrap();
            }
        }
        remove_marker(&local);
        0
    }

    /// Lists every unlisted ancestor of `rel`, from the root down.
    fn lookup(&self, rel: &str) -> i32 {
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        for depth in 0..comps.len() {
            let anc = comps[..depth].join("/");
            if fs::symlink_metadata(rel_join(&self.tree, &anc)).is_err() {
                break;
            }
            self.list_dir(&anc);
        }
        0
    }

    fn list_tree(&self, rel: &str) -> i32 {
        self.list_dir(rel);
        let local = rel_join(&self.tree, rel);
        if let Ok(entries) = fs::read_dir(&local) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    let child = if rel.is_empty() {
                        e.file_name().to_string_lossy().into_owned()
                    } else {
                        format!("{rel}/{}", e.file_name().to_string_lossy())
                    };
                    self.list_tree(&child);
                }
            }
        }
        0
    }

    /// Downloads the bytes into the placeholder itself (same inode, as programs that
    /// compare `st_ino` before and after open need), or, with `fetch_by_rename`, into a
    /// new file renamed over it (a new inode: the shim must reopen).
    fn fetch(&self, rel: &str) -> i32 {
        let local = rel_join(&self.tree, rel);
        let Some(m) = marker(&local) else {
            return 0;
        };
        let Some(Marker::Placeholder { source_key, .. }) = Marker::parse(&m) else {
            return 0;
        };
        let src = self.remote.join(source_key);
        let Ok(bytes) = fs::read(&src) else {
            return libc::EIO;
        };
        let md = fs::metadata(&src).unwrap();
        if self.fetch_by_rename.load(Ordering::Relaxed) {
            let tmp = self.staging_path();
            let mut f = fs::File::create(&tmp).unwrap();
            f.write_all(&bytes).unwrap();
            f.set_modified(md.modified().unwrap()).unwrap();
            drop(f);
            fs::set_permissions(&tmp, md.permissions()).unwrap();
            fs::rename(&tmp, &local).unwrap();
        } else {
            let mut f = fs::OpenOptions::new().write(true).open(&local).unwrap();
            f.write_all(&bytes).unwrap();
            f.set_len(bytes.len() as u64).unwrap();
            f.set_modified(md.modified().unwrap()).unwrap();
            drop(f);
            remove_marker(&local);
        }
        0
    }

    fn handle(&self, mut s: UnixStream) {
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).is_err() {
            return;
        }
        let mut body = vec![0u8; wire::body_len(len)];
        if s.read_exact(&mut body).is_err() {
            return;
        }
        let errno = match wire::decode_request(&body) {
            Some((op, path)) => {
                let rel = String::from_utf8_lossy(path).into_owned();
                self.log.lock().unwrap().push((op, rel.clone()));
                let _g = self.work.lock().unwrap();
                match op {
                    Op::ListDir => self.list_dir(&rel),
                    Op::Lookup => self.lookup(&rel),
                    Op::ListTree => self.list_tree(&rel),
                    Op::Fetch => self.fetch(&rel),
                    Op::Discard => {
                        let local = self.tree.join(&rel);
                        if marker(&local).is_some_and(|m| m.starts_with(b"F")) {
                            remove_marker(&local);
                        }
                        0
                    }
                    Op::Sync | Op::Flush => self.sync_errno.load(Ordering::Relaxed),
                    _ => libc::ENOSYS,
                }
            }
            None => libc::EINVAL,
        };
        let _ = s.write_all(&wire::response_header(errno, 0));
    }
}

/// A workspace: `root/cache/tree` (the cache tree), `root/remote` (what "S3" holds), the
/// agent socket, and the fake agent serving it.
pub struct Ws {
    pub root: PathBuf,
    pub cache: PathBuf,
    pub tree: PathBuf,
    pub remote: PathBuf,
    pub socket: PathBuf,
    agent: Arc<Agent>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl Ws {
    /// A fresh workspace whose tree root is unlisted (`D`), as after `s3shim run` starts.
    pub fn new(name: &str) -> Ws {
        let root = std::env::temp_dir().join(format!(
            "s3shim-it-{}-{}-{}",
            std::process::id(),
            name,
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        let cache = root.join("cache");
        let tree = cache.join("tree");
        let remote = root.join("remote");
        let tmp = cache.join(".s3shim").join("tmp");
        fs::create_dir_all(&tree).unwrap();
        fs::create_dir_all(&remote).unwrap();
        fs::create_dir_all(&tmp).unwrap();
        set_marker(&tree, b"D");
        let socket = cache.join(".s3shim").join("agent.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let agent = Arc::new(Agent {
            tree: tree.clone(),
            remote: remote.clone(),
            tmp,
            log: Mutex::new(Vec::new()),
            work: Mutex::new(()),
            tmp_seq: AtomicUsize::new(0),
            fetch_by_rename: AtomicBool::new(false),
            sync_errno: std::sync::atomic::AtomicI32::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (a, st) = (agent.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    let a = a.clone();
                    std::thread::spawn(move || a.handle(c));
                }
            }
        });
        Ws {
            root,
            cache,
            tree,
            remote,
            socket,
            agent,
            stop,
            thread: Some(thread),
        }
    }

    /// Puts a file into "S3".
    pub fn remote_file(&self, rel: &str, content: &[u8], mode: u32) {
        let p = self.remote.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn remote_dir(&self, rel: &str) {
        fs::create_dir_all(self.remote.join(rel)).unwrap();
    }

    /// Every request the agent got so far.
    pub fn requests(&self) -> Vec<(Op, String)> {
        self.agent.log.lock().unwrap().clone()
    }

    /// Makes Fetch replace the placeholder with a new inode instead of filling it.
    pub fn fetch_by_rename(&self, on: bool) {
        self.agent.fetch_by_rename.store(on, Ordering::Relaxed);
    }

    /// Makes Sync and Flush answer `errno` (0: success).
    pub fn sync_answer(&self, errno: i32) {
        self.agent.sync_errno.store(errno, Ordering::Relaxed);
    }

    pub fn clear_requests(&self) {
        self.agent.log.lock().unwrap().clear();
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
        self.stop.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.socket);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}
