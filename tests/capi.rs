//! The C API of `include/s3shim.h`, from C: `tests/capi/capi.c` is built with `cc`
//! against the header and the library, and run under `s3shim run` against a real S3
//! server on loopback, and without the shim's configuration (inert).

mod common;

use common::*;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Builds the C program; a missing compiler fails the test.
fn build(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let libdir = lib().parent().unwrap().to_path_buf();
    let out = dir.join("capi");
    let o = Command::new(tool("cc"))
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&out)
        .arg("-I")
        .arg(root.join("include"))
        .arg(root.join("tests/capi/capi.c"))
        .arg("-L")
        .arg(&libdir)
        .arg("-ls3shim")
        .arg(format!("-Wl,-rpath,{}", libdir.display()))
        .output()
        .expect("cc is needed to build tests/capi/capi.c");
    assert!(
        o.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

#[test]
fn inert_library_answers_enotconn() {
    let tmp = tempfile::tempdir().unwrap();
    let capi = build(tmp.path());
    let mut c = Command::new(&capi);
    c.arg("inert");
    env_for_tests(&mut c, tmp.path());
    let out = timed_output(c, 60);
    assert_success(&out, "capi inert");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "inert ok\n");
}

#[test]
fn flush_state_fetch_and_status_from_c() {
    let s3 = S3Server::start();
    s3.put("capi/dir/a.txt", b"alpha\n");
    s3.put("capi/dir/sub/b.txt", b"beta\n");
    s3.put("capi/dir/sub/deep/c.txt", b"gamma\n");
    let ws = Workspace::new(&s3, "capi/", "/capi");
    let capi = build(ws.tmp.path());
    let mut c = ws.command("c", &[capi.to_str().unwrap(), "run", "/capi"]);
    // No sibling prefetch: which files are local is what the program asks about.
    c.env("S3SHIM_PREFETCH", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let lines = {
        let (tx, rx) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for l in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        rx
    };
    let stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut seen = Vec::new();
    // A hang is a failure, not a stuck suite.
    let next = |seen: &mut Vec<String>| {
        let l = lines.recv_timeout(Duration::from_secs(300)).ok();
        seen.extend(l.clone());
        l
    };
    while let Some(l) = next(&mut seen) {
        if l == "flushed" {
            break;
        }
    }
    assert_eq!(seen, ["states ok", "fetch ok", "flushed"], "{seen:?}");
    // s3shim_flush returned: the object is in S3 now, with the file's bytes, before
    // the run ends (which would drain the queue anyway).
    assert_eq!(
        s3.get("capi/new.txt").as_deref(),
        Some(&b"written by C\n"[..])
    );
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    while next(&mut seen).is_some() {}
    let status = child.wait().unwrap();
    let err = stderr.join().unwrap();
    assert_eq!(
        seen,
        [
            "states ok",
            "fetch ok",
            "flushed",
            "status pending ok",
            "status clean ok"
        ],
        "stderr:\n{err}"
    );
    assert!(status.success(), "{status:?}\n{err}");
    // The fetches made the bytes local without changing anything in S3.
    assert_eq!(
        s3.get("capi/dir/sub/deep/c.txt").as_deref(),
        Some(&b"gamma\n"[..])
    );
    assert!(s3.keys("capi/").iter().all(|k| !k.contains("bad-")));
}
