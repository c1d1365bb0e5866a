//! Errors reach programs with the errno they mean (SEMANTICS.md, "Errors a program
//! sees"): a full cache disk is ENOSPC, a read S3 refuses is EACCES, an object deleted in
//! S3 after it was listed is ENOENT — never EIO for everything. Each case is made real:
//! a small tmpfs as the cache, a server that answers 403, a DELETE between `ls` and `cat`.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs of `size` mounted at `at` for one test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert_eq!(
            euid, 0,
            "this test mounts a small tmpfs as the cache and needs root (run the suite as root, as CI does)"
        );
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("mount(8)");
        assert!(
            out.status.success(),
            "mount -t tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: an agent still closing its files must not leave the mount behind.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_full_cache_disk_is_enospc_not_eio() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "full/", "/enospcws");
    // 24 MiB of S3 bytes for a 16 MiB cache disk.
    let body: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
    s3.put("full/big.bin", &body);
    s3.put("full/small.txt", b"fits\n");
    let _fs = Tmpfs::mount(&ws.cache("c"), "16m");
    let out = ws.try_bash(
        "c",
        "cat /enospcws/small.txt; cat /enospcws/big.bin > /dev/null; echo \"cat: $?\"",
    );
    let err = stderr(&out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("fits"), "stdout: {said}\nstderr: {err}");
    assert!(
        said.contains("cat: 1"),
        "cat of 24 MiB on a 16 MiB cache must fail; stdout: {said}\nstderr: {err}"
    );
    assert!(
        err.contains("big.bin: No space left on device"),
        "expected ENOSPC from cat, got stderr:\n{err}"
    );
    assert!(!err.contains("Input/output error"), "stderr:\n{err}");
}

#[test]
fn a_read_s3_refuses_is_eacces() {
    // Our server: GET of keys under this prefix answers 403 AccessDenied, HEAD and
    // listings work (as for an SSE-KMS object without kms:Decrypt). Moto has no such
    // policy, so this test always runs on ours.
    let s3 = S3Server::start_own(&["--deny-read", "denied/secret"]);
    let ws = Workspace::new(&s3, "denied/", "/eaccesws");
    s3.put("denied/secret.txt", b"classified\n");
    s3.put("denied/open.txt", b"public\n");
    let out = ws.try_bash(
        "c",
        "ls /eaccesws; cat /eaccesws/open.txt; cat /eaccesws/secret.txt; echo \"cat: $?\"",
    );
    let err = stderr(&out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("secret.txt") && said.contains("public"),
        "listing and the readable object work; stdout: {said}\nstderr: {err}"
    );
    assert!(said.contains("cat: 1"), "stdout: {said}\nstderr: {err}");
    assert!(
        err.contains("secret.txt: Permission denied"),
        "expected EACCES from cat, got stderr:\n{err}"
    );
    assert!(!said.contains("classified"), "stdout: {said}");
}

/// Waits for `flag` (written by the script under test) to exist.
fn wait_for(flag: &Path, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !flag.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the script exited ({status}) before writing {}",
                flag.display()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no {} within 120 s",
            flag.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_object_deleted_after_listing_is_enoent() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "gone/", "/enoentws");
    s3.put("gone/vanishing.txt", b"soon gone\n");
    s3.put("gone/staying.txt", b"still here\n");
    let listed = ws.tmp.path().join("listed");
    let deleted = ws.tmp.path().join("deleted");
    // The script lists, then waits until the test has deleted the object in S3, then
    // reads it. The poller is off, so only the fetch can find out the object is gone.
    let script = format!(
        "ls /enoentws; touch {l}; while [ ! -e {d} ]; do sleep 0.02; done; \
         cat /enoentws/staying.txt; cat /enoentws/vanishing.txt; echo \"cat: $?\"",
        l = listed.display(),
        d = deleted.display()
    );
    let mut cmd = ws.command("c", &["bash", "-c", &script]);
    cmd.env("S3SHIM_POLL_INTERVAL", "0");
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    wait_for(&listed, &mut child);
    s3.delete("gone/vanishing.txt");
    std::fs::write(&deleted, b"").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("vanishing.txt") && said.contains("still here"),
        "stdout: {said}\nstderr: {err}"
    );
    assert!(said.contains("cat: 1"), "stdout: {said}\nstderr: {err}");
    assert!(
        err.contains("vanishing.txt: No such file or directory"),
        "expected ENOENT from cat, got stderr:\n{err}"
    );
}

/// A full cache disk is survived: ENOSPC for the read that needs room and for the writer
/// that fills it, the agent still answering, uploads of what was written going on, and
/// once space is freed everything back to normal: a new file reaches S3, the index is
/// intact, and a fresh cache sees exactly what the full one held.
#[test]
fn a_full_cache_disk_is_survived_and_nothing_is_lost() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "survive/", "/fullws");
    let big: Vec<u8> = (0..24u32 << 20).map(|i| (i % 251) as u8).collect();
    s3.put("survive/big.bin", &big);
    s3.put("survive/small.txt", b"fits\n");
    let _fs = Tmpfs::mount(&ws.cache("c"), "16m");
    let script = "set -u
        echo before > /fullws/before.txt
        cat /fullws/big.bin > /dev/null; echo \"read big: $?\"
        dd if=/dev/zero of=/fullws/fill bs=1M count=64 status=none; echo \"fill: $?\"
        echo during > /fullws/during.txt; echo \"write while full: $?\"
        s3shim status > /dev/null; echo \"status while full: $?\"
        rm /fullws/fill
        echo after > /fullws/after.txt
        s3shim flush; echo \"flush after freeing: $?\"
        cat /fullws/small.txt /fullws/before.txt /fullws/after.txt";
    let mut cmd = ws.command("c", &["bash", "-c", script]);
    // `s3shim` inside the tree, as a user would call it.
    let path = format!(
        "{}:{}",
        bin().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("PATH", path);
    let out = timed_output(cmd, 300);
    let err = stderr(&out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run: {}\nstdout: {said}\nstderr: {err}",
        out.status
    );
    assert!(
        said.contains("read big: 1"),
        "stdout: {said}\nstderr: {err}"
    );
    assert!(
        err.contains("big.bin: No space left on device"),
        "stderr:\n{err}"
    );
    assert!(said.contains("fill: 1"), "stdout: {said}\nstderr: {err}");
    assert!(
        err.contains("dd: error writing '/fullws/fill': No space left on device"),
        "stderr:\n{err}"
    );
    assert!(
        said.contains("status while full: 0"),
        "the agent answers: {said}\n{err}"
    );
    assert!(
        said.contains("flush after freeing: 0"),
        "stdout: {said}\nstderr: {err}"
    );
    assert!(said.ends_with("fits\nbefore\nafter\n"), "stdout: {said}");
    assert!(!err.contains("Input/output error"), "stderr:\n{err}");
    // The write that met the full disk either failed with ENOSPC or went through once
    // space came back; either way S3 ends up with what the cache holds.
    let during = ws.cache("c").join("tree/during.txt");
    let mut want = vec![
        ("survive/after.txt".to_string(), b"after\n".to_vec()),
        ("survive/before.txt".to_string(), b"before\n".to_vec()),
        ("survive/big.bin".to_string(), big.clone()),
        ("survive/small.txt".to_string(), b"fits\n".to_vec()),
    ];
    if let Ok(bytes) = std::fs::read(&during) {
        want.push(("survive/during.txt".to_string(), bytes));
    }
    want.sort();
    let keys: Vec<String> = want.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        s3.keys("survive/"),
        keys,
        "S3 holds exactly the tree; stderr:\n{err}"
    );
    for (k, v) in &want {
        assert!(s3.get(k).as_ref() == Some(v), "{k} differs in S3");
    }
    // The index survived the full disk: SQLite says it is intact, and a second run on
    // the same cache finds nothing to upload or delete.
    let db = rusqlite::Connection::open(ws.cache("c").join(".s3shim/index.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(db);
    let again = ws.try_bash("c", "cat /fullws/after.txt");
    assert_success(&again, "a second run on the cache that was full");
    assert_eq!(s3.keys("survive/"), keys);
    // A fresh cache (on the ordinary disk) sees the same tree.
    let fresh = ws.bash(
        "fresh",
        "cd /fullws && find . -type f | sort | xargs sha256sum",
    );
    let mut expect = String::new();
    for (k, v) in &want {
        use sha2::Digest;
        let name = k.strip_prefix("survive/").unwrap();
        expect.push_str(&format!(
            "{}  ./{name}\n",
            hex::encode(sha2::Sha256::digest(v))
        ));
    }
    assert_eq!(fresh, expect);
}
