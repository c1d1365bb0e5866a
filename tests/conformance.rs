//! Conformance: each scenario (`tests/conformance/<name>.sh`) runs once in a plain local
//! directory and once on the mount path under `s3shim run`, over the same pre-existing
//! content (put in the bucket, so the shim's side starts with a cold cache). After the
//! folder's path is replaced by one placeholder, stdout and the exit status must be
//! identical, and nothing the programs print may name the cache.
//!
//! The local directory and the mount path are siblings of the same length (`<tmp>/local`,
//! `<tmp>/mount`) so that `..` out of the folder leads to the same place in both runs,
//! and symlink targets naming the folder have the same size.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

const PREFIX: &str = "conf/";
const SEED_MTIME: i64 = 1_700_000_000;

/// The pre-existing content: (relative path, body, mode). A mode with `S_IFLNK` is a
/// symlink whose body is its target.
fn seed_entries() -> Vec<(&'static str, Vec<u8>, u32)> {
    let data: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
    vec![
        (
            "seed/readme.txt",
            b"hello seed\nneedle in the readme\n".to_vec(),
            0o100644,
        ),
        (
            "seed/notes with space.txt",
            "ünïcode notes\n".as_bytes().to_vec(),
            0o100644,
        ),
        (
            "seed/src/main.c",
            b"/* main */\nint main(void) { return 0; }\n".to_vec(),
            0o100644,
        ),
        (
            "seed/src/util.h",
            b"#define UTIL_NAME \"util\"\n".to_vec(),
            0o100644,
        ),
        (
            "seed/bin/tool.sh",
            b"#!/bin/sh\necho tool\n".to_vec(),
            0o100755,
        ),
        (
            "seed/deep/a/b/c/leaf.txt",
            b"leaf with a needle\n".to_vec(),
            0o100600,
        ),
        (
            "seed/deep/a/other.txt",
            b"no match here\n".to_vec(),
            0o100644,
        ),
        ("seed/data.bin", data, 0o100644),
        ("seed/link", b"readme.txt".to_vec(), 0o120777),
        ("seed/empty/", Vec::new(), 0o040755),
    ]
}

/// Puts the seed in the bucket with s3fs metadata (mode, mtime).
fn seed_bucket(s3: &S3Server) {
    runtime().block_on(async {
        let c = s3.client().await;
        for (rel, body, mode) in seed_entries() {
            c.put_object()
                .bucket(BUCKET)
                .key(format!("{PREFIX}{rel}"))
                .metadata("mode", mode.to_string())
                .metadata("mtime", SEED_MTIME.to_string())
                .body(body.into())
                .send()
                .await
                .unwrap();
        }
    });
}

/// The same seed in a local directory.
fn seed_native(root: &Path) {
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(SEED_MTIME as u64);
    for (rel, body, mode) in seed_entries() {
        let p = root.join(rel);
        std::fs::create_dir_all(if rel.ends_with('/') {
            &p
        } else {
            p.parent().unwrap()
        })
        .unwrap();
        match mode & 0o170000 {
            0o040000 => {}
            0o120000 => {
                std::os::unix::fs::symlink(std::str::from_utf8(&body).unwrap(), &p).unwrap()
            }
            _ => {
                std::fs::write(&p, &body).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode & 0o7777))
                    .unwrap();
                let f = std::fs::File::options().write(true).open(&p).unwrap();
                f.set_modified(mtime).unwrap();
            }
        }
    }
}

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

/// A program a scenario needs; a missing one fails the test (it must not pass unrun).
fn require(tool_cmd: &str, version_arg: &str) -> String {
    let out = Command::new(tool_cmd).arg(version_arg).output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => panic!(
            "{tool_cmd} is needed by this scenario and cannot run here (.ci/run installs it)"
        ),
    }
}

/// Compiles a helper program from `tests/conformance/<src>` into `out`.
fn compile(src: &str, out: &Path, extra: &[&str]) {
    let o = Command::new("gcc")
        .args(["-O1", "-Wall", "-o"])
        .arg(out)
        .arg(conformance_dir().join(src))
        .args(extra)
        .output()
        .expect("gcc is needed by the conformance suite");
    assert_success(&o, &format!("gcc {src} {extra:?}"));
}

fn normalise(out: &[u8], native: &str, mount: &str) -> String {
    String::from_utf8_lossy(out)
        .replace(native, "@W@")
        .replace(mount, "@W@")
}

/// Runs `tests/conformance/<name>.sh FOLDER CONFORMANCE_DIR` natively and under the
/// shim, and compares. `env` is passed to both runs.
fn conform(name: &str, env: &[(&str, String)]) -> String {
    let s3 = S3Server::start();
    seed_bucket(&s3);
    let tmp = tempfile::tempdir().unwrap();
    let native = tmp.path().join("local");
    std::fs::create_dir(&native).unwrap();
    seed_native(&native);
    let mount = tmp.path().join("mount");
    let (native_s, mount_s) = (native.to_str().unwrap(), mount.to_str().unwrap());
    let ws = Workspace::new(&s3, PREFIX, mount_s);
    let script = conformance_dir().join(format!("{name}.sh"));
    let dir = conformance_dir();

    let mut c = Command::new("bash");
    c.arg(&script)
        .arg(&native)
        .arg(&dir)
        .current_dir(tmp.path());
    env_for_tests(&mut c, ws.tmp.path());
    c.envs(env.iter().map(|(k, v)| (k, v)));
    let n = timed_output(c, 300);

    let script_s = script.to_str().unwrap();
    let mut c = ws.command("c", &["bash", script_s, mount_s, dir.to_str().unwrap()]);
    c.current_dir(tmp.path());
    c.envs(env.iter().map(|(k, v)| (k, v)));
    let s = timed_output(c, 300);

    let cache = ws.cache("c");
    let cache_s = cache.to_str().unwrap();
    for (what, bytes) in [("stdout", &s.stdout), ("stderr", &s.stderr)] {
        assert!(
            !String::from_utf8_lossy(bytes).contains(cache_s),
            "{name}: the cache path leaked into {what}:\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
    let (n_out, s_out) = (
        normalise(&n.stdout, native_s, mount_s),
        normalise(&s.stdout, native_s, mount_s),
    );
    let stderr = format!(
        "native stderr:\n{}\nshim stderr:\n{}",
        String::from_utf8_lossy(&n.stderr),
        String::from_utf8_lossy(&s.stderr)
    );
    assert!(
        n.status.success(),
        "{name} fails natively ({}):\n{n_out}\n{stderr}",
        n.status
    );
    if s_out != n_out {
        let diff = Command::new("diff")
            .arg(write_tmp(tmp.path(), "native.out", &n_out))
            .arg(write_tmp(tmp.path(), "shim.out", &s_out))
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        panic!("{name}: output under the shim differs from native (< native, > shim):\n{diff}\n{stderr}");
    }
    assert_eq!(
        s.status.code(),
        n.status.code(),
        "{name}: exit status\n{stderr}"
    );
    n_out
}

/// [`conform`] with a helper program compiled from `tests/conformance/<src>` into
/// `$HELPERS/<bin>`.
fn conform_with_helper(name: &str, src: &str, bin: &str, gcc_extra: &[&str]) -> String {
    let helpers = tempfile::tempdir().unwrap();
    compile(src, &helpers.path().join(bin), gcc_extra);
    conform(
        name,
        &[("HELPERS", helpers.path().to_str().unwrap().to_string())],
    )
}

fn write_tmp(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Asserts a scenario's output holds each of `lines` (so a scenario that silently did
/// nothing on both sides cannot pass).
fn holds(out: &str, lines: &[&str]) {
    for l in lines {
        assert!(
            out.lines().any(|x| x == *l),
            "expected line {l:?} in:\n{out}"
        );
    }
}

#[test]
fn coreutils() {
    let out = conform("coreutils", &[]);
    holds(
        &out,
        &[
            "same-bytes",
            "copy/moved.txt regular file 600 32 1577934245 1577934245",
        ],
    );
}

#[test]
fn tar_create_and_extract() {
    require("tar", "--version");
    let out = conform("tar", &[]);
    holds(&out, &["identical", "round-trip"]);
}

#[test]
fn rsync_archive() {
    require("rsync", "--version");
    let out = conform("rsync", &[]);
    holds(&out, &["identical", "changed", "0"]);
}

#[test]
fn git_workflow() {
    require("git", "--version");
    let out = conform("git", &[]);
    holds(&out, &["fsck-ok", "feature line", "new"]);
}

#[test]
fn python_file_apis() {
    require("python3", "--version");
    let out = conform("python", &[]);
    holds(&out, &["same True", "rmtree False"]);
}

#[test]
fn node_file_apis() {
    let node = tool("node");
    let v = require(&node, "--version");
    assert!(
        v.starts_with("v24."),
        "node 24 is needed (S3SHIM_TEST_NODE), found {v}"
    );
    let out = conform("node", &[("NODE", node)]);
    holds(
        &out,
        &[
            "copyFile true",
            "watch rename new.txt true",
            "watch change new.txt true",
        ],
    );
}

#[test]
fn make_and_gcc_build_a_c_project() {
    require("make", "--version");
    require("gcc", "--version");
    let out = conform("make_gcc", &[]);
    holds(&out, &["util seed-data 32", "make: 'app' is up to date."]);
}

/// A static binary cannot be interposed: exec'd with its cwd or an argument in the
/// folder, the shim makes that subtree local first.
#[test]
fn static_binary_reads_a_cold_tree() {
    let out = conform_with_helper(
        "static_binary",
        "static_grep.c",
        "static-grep",
        &["-static"],
    );
    holds(
        &out,
        &[
            "./readme.txt:32",
            "./deep/a/b/c/leaf.txt:19",
            "2 files match",
            "1 files match",
        ],
    );
}

#[test]
fn result_paths_are_mapped_back() {
    let out = conform_with_helper("mapping_back", "paths.c", "paths", &[]);
    holds(
        &out,
        &[
            "bind 0",
            "connect-rel 0",
            "connect-abs 0",
            "getsockname @W@/sock",
            "dladdr @W@/seed/../seed-libm.so",
            "dladdr1 @W@/seed/../seed-libm.so",
            "tempnam @W@/seed/../tmpd pf 8",
            "tempnam @W@/tmpd2 pf 8",
            "tempnam /tmp pf 8",
            "tmpnam /tmp",
            "fts_children0 @W@/seed @W@/seed src src",
            "fts_children1 @W@/seed/ @W@/seed/ = readme.txt",
            "fts_after1 @W@/seed/deep 6",
        ],
    );
}

/// A NULL or unmapped path makes the call fail with the kernel's EFAULT (or glibc's own
/// crash) as natively: the shim never faults reading it.
#[test]
fn bad_path_pointers_fail_as_natively() {
    let out = conform_with_helper("bad_paths", "bad_paths.c", "bad_paths", &[]);
    holds(
        &out,
        &[
            "open unmapped -1 EFAULT",
            "stat NULL -1 EFAULT",
            "rename-to NULL -1 EFAULT",
            "link-from unmapped -1 EFAULT",
            "truncate unmapped -1 EFAULT",
            "chdir unmapped -1 EFAULT",
            "connect unmapped -1 EFAULT",
            "execve unmapped -1 EFAULT",
            "fopen unmapped NULL EFAULT",
            "opendir unmapped signal SEGV",
            "realpath unmapped signal SEGV",
        ],
    );
}

#[test]
fn dotdot_and_symlinks_have_posix_meaning() {
    let out = conform("posix_paths", &[]);
    holds(
        &out,
        &[
            "leaf with a needle",
            "parent holds the folder",
            "rmdir: failed to remove 'dangling': Not a directory",
        ],
    );
}

/// `s3shim prefetch PATH` makes a cold subtree local (bytes in the cache itself, seen
/// without the shim) and leaves the rest alone.
#[test]
fn prefetch_makes_a_cold_subtree_local() {
    let s3 = S3Server::start();
    seed_bucket(&s3);
    let ws = Workspace::new(&s3, PREFIX, "/workspace");
    let script = format!(
        "{} prefetch /workspace/seed/deep && cd /workspace/seed && {} prefetch src/main.c",
        bin().display(),
        bin().display()
    );
    // Small files not fetched with their directory's listing: what is local is what
    // the prefetch made so.
    let mut c = ws.command("c", &["bash", "-c", &script]);
    c.env("S3SHIM_EAGER_GET_MAX", "0");
    let out = timed_output(c, 300);
    assert_success(&out, &script);
    let out = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out,
        "2 files (33 bytes) under /workspace/seed/deep are local\n\
         1 files (40 bytes) under /workspace/seed/src/main.c are local\n"
    );
    let tree = ws.cache("c").join("tree/seed");
    let bytes = |p: &str| std::fs::read(tree.join(p)).unwrap();
    assert_eq!(bytes("deep/a/b/c/leaf.txt"), b"leaf with a needle\n");
    assert_eq!(bytes("deep/a/other.txt"), b"no match here\n");
    assert_eq!(bytes("src/main.c"), seed_entries()[2].1);
    let readme = bytes("readme.txt");
    assert!(
        readme.iter().all(|&b| b == 0),
        "a file outside the prefetched paths stays a placeholder"
    );
}

/// `file/../file`, `file/.` and `file/` are ENOTDIR as on a local disk (issue 15).
#[test]
fn dotdot_after_a_file_is_not_a_directory() {
    let out = conform("notdir", &[]);
    holds(
        &out,
        &[
            "failed: cat: @W@/seed/readme.txt/../readme.txt: Not a directory",
            "failed: cat: readme.txt/../readme.txt: Not a directory",
            "failed: cat: src/util.h/../util.h: Not a directory",
            "ok: hello seed",
        ],
    );
}
