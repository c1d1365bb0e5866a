//! The inbound side: changes other writers make in S3 appear in listed directories (and
//! fire inotify there), `.s3shimignore` keeps paths local in both directions, and large
//! objects are downloaded in ranged parts with no partial download ever taken as whole.

mod common;

use common::*;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn wait_for_file(flag: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !flag.exists() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn changes_in_s3_appear_in_listed_directories_and_fire_inotify() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "rc/", "/rc");
    s3.put("rc/doc.txt", b"v1\n");
    s3.put("rc/old.txt", b"old\n");
    let flag = ws.tmp.path().join("watching");
    // Watches the directory with inotify (through the shim, on the cache) and reads until
    // the other writer's changes are all visible, or 30 s pass.
    let script = format!(
        r#"
import ctypes, os, select, struct, time
libc = ctypes.CDLL(None, use_errno=True)
print(open('/rc/doc.txt').read(), end='')
fd = libc.inotify_init1(os.O_NONBLOCK)
wd = libc.inotify_add_watch(fd, b'/rc', 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200)
assert wd >= 0, ctypes.get_errno()
open('{flag}', 'w').close()
names = set()
start = time.time()
while time.time() < start + 30:
    if select.select([fd], [], [], 0.1)[0]:
        buf = os.read(fd, 65536)
        i = 0
        while i < len(buf):
            _, mask, _, n = struct.unpack_from('iIII', buf, i)
            names.add(buf[i + 16:i + 16 + n].rstrip(b'\0').decode())
            i += 16 + n
    seen = (open('/rc/doc.txt').read() == 'v2 from elsewhere\n'
            and os.path.exists('/rc/new.txt') and not os.path.exists('/rc/old.txt'))
    if seen and {{'doc.txt', 'new.txt', 'old.txt'}} <= names:
        break
print('after', round(time.time() - start, 1), 's')
print('doc:', open('/rc/doc.txt').read(), end='')
print('new:', open('/rc/new.txt').read() if os.path.exists('/rc/new.txt') else None, end='')
print('old exists:', os.path.exists('/rc/old.txt'))
print('inotify saw:', sorted(names & {{'doc.txt', 'new.txt', 'old.txt'}}))
"#,
        flag = flag.display()
    );
    let mut c = ws.command("c", &["python3", "-c", &script]);
    c.env("S3SHIM_POLL_INTERVAL", "1");
    let child = std::thread::spawn(move || timed_output(c, 300));
    wait_for_file(&flag, "the watcher");
    s3.put("rc/doc.txt", b"v2 from elsewhere\n");
    s3.put("rc/new.txt", b"new\n");
    runtime().block_on(async {
        let c = s3.client().await;
        c.delete_object()
            .bucket(BUCKET)
            .key("rc/old.txt")
            .send()
            .await
            .unwrap();
    });
    let out = child.join().unwrap();
    assert_success(&out, "watcher");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(stdout.starts_with("v1\n"), "{stdout}");
    assert!(stdout.contains("doc: v2 from elsewhere\n"), "{stdout}");
    assert!(stdout.contains("new: new\n"), "{stdout}");
    assert!(stdout.contains("old exists: False"), "{stdout}");
    assert!(
        stdout.contains("inotify saw: ['doc.txt', 'new.txt', 'old.txt']"),
        "{stdout}"
    );
    // Nothing of this went back up: the bucket holds what the other writer left.
    assert_eq!(s3.keys("rc/"), vec!["rc/doc.txt", "rc/new.txt"]);
    assert_eq!(
        s3.get("rc/doc.txt").as_deref(),
        Some(&b"v2 from elsewhere\n"[..])
    );
}

#[test]
fn ignored_paths_are_never_uploaded_nor_deleted_in_s3() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "ig/", "/ig");
    // Objects another tool put at paths that are local-only here.
    s3.put("ig/node_modules/remote.js", b"remote\n");
    s3.put("ig/target/remote.bin", b"remote\n");
    ws.bash(
        "c",
        "cd /ig && printf 'node_modules/\\n/target/\\n*.log\\n' > .s3shimignore && \
         mkdir -p node_modules/pkg target/debug src web/node_modules && \
         echo a > node_modules/pkg/a.js && echo b > target/debug/bin && \
         echo c > web/node_modules/c.js && echo l > build.log && \
         echo 'fn main() {}' > src/main.rs && ls -A",
    );
    let keys = s3.keys("ig/");
    assert_eq!(
        keys,
        vec![
            "ig/.s3shimignore",
            "ig/node_modules/remote.js",
            "ig/src/",
            "ig/src/main.rs",
            "ig/target/remote.bin",
            "ig/web/",
        ],
        "only the non-ignored paths were uploaded"
    );
    // Deleting the local-only trees here leaves the same-named objects in S3.
    let out = ws.bash(
        "c",
        "cd /ig && cat node_modules/pkg/a.js && rm -rf node_modules target web build.log && ls -A",
    );
    assert_eq!(out, "a\n.s3shimignore\nsrc\n");
    let keys = s3.keys("ig/");
    assert!(
        keys.contains(&"ig/node_modules/remote.js".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"ig/target/remote.bin".to_string()),
        "{keys:?}"
    );
    assert!(
        !keys.contains(&"ig/web/".to_string()),
        "web/ itself is not ignored"
    );
    // A fresh cache takes the rules from the bucket before listing: the ignored
    // objects are not brought in.
    let out = ws.bash("fresh", "cd /ig && ls -A && cat src/main.rs");
    assert_eq!(out, ".s3shimignore\nsrc\nfn main() {}\n");
}

/// The agent process serving `cache`, found by its command line.
fn agent_pid(cache: &Path) -> Option<i32> {
    let needle = format!("--cache\0{}\0", cache.display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        (cmd.contains("\0agent\0") && cmd.contains(&needle)).then_some(pid)
    })
}

fn has_marker(p: &Path) -> bool {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    // SAFETY: valid strings and buffer.
    let n = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"user.s3shim".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n >= 0
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[test]
fn large_objects_come_in_ranged_parts_and_a_killed_download_is_never_complete() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "lg/", "/lg");
    let body: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    s3.put("lg/blob", &body);
    let want = sha(&body);
    let read = |cache: &str| {
        let mut c = ws.command(cache, &["bash", "-c", "sha256sum < /lg/blob"]);
        c.env("S3SHIM_RANGED_GET_THRESHOLD", "1048576")
            .env("S3SHIM_RANGED_GET_PART", "1048576");
        c
    };
    let out = timed_output(read("whole"), 300);
    assert_success(&out, "read");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&want));
    let log = std::fs::read_to_string(ws.cache("whole").join(".s3shim/agent.log")).unwrap();
    assert!(
        log.contains("(25165824 bytes) as 24 ranged GETs"),
        "downloaded in 1 MiB parts: {log}"
    );

    // kill -9 of the agent at different points of the download and the fill: the file
    // is either still marked (fetched again later) or complete, never partial and
    // unmarked; the next run reads the right bytes.
    let mut states = Vec::new();
    for i in 0..6u64 {
        let name = format!("kill{i}");
        let cache: PathBuf = ws.cache(&name);
        let mut child = read(&name)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let pid = loop {
            if let Some(p) = agent_pid(&cache) {
                break p;
            }
            assert!(Instant::now() < deadline, "no agent for {name}");
            std::thread::sleep(Duration::from_millis(5));
        };
        // Wait until the download has begun, then a little more each time.
        let tmp = cache.join(".s3shim/tmp");
        let downloading = || {
            std::fs::read_dir(&tmp).is_ok_and(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("dl-"))
            })
        };
        while !downloading() {
            assert!(Instant::now() < deadline, "the download never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(
            [0, 30, 100, 250, 500, 1000][i as usize],
        ));
        // SAFETY: signalling the agent this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = child.wait();
        let file = cache.join("tree/blob");
        // Staged entries share the download directory: the kill may come before the
        // listing published the placeholder, which then does not exist at all.
        let state = if !file.exists() {
            "not listed"
        } else if has_marker(&file) {
            "marked"
        } else {
            let bytes = std::fs::read(&file).unwrap();
            assert_eq!(sha(&bytes), want, "an unmarked file must be complete");
            "complete"
        };
        if file.exists() {
            assert_eq!(std::fs::metadata(&file).unwrap().len(), body.len() as u64);
        }
        states.push(state);
        let out = timed_output(read(&name), 300);
        assert_success(&out, "read after the kill");
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(&want));
        assert!(!has_marker(&file));
    }
    eprintln!("state after each kill -9: {states:?}");
}
