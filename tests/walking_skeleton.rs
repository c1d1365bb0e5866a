//! End to end: `s3shim run` gives a process tree an S3-backed folder. Every test runs
//! real programs against a real S3-compatible server on loopback, and compares with the
//! same steps on a plain local directory where there is something to compare.

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Waits (bounded) for a process under test to signal progress by creating `flag`.
fn wait_for_file(flag: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !flag.exists() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn build_tree(w: &str) -> String {
    format!(
        "bash {} {w} {}",
        scenario("build_tree.sh").display(),
        tool("node")
    )
}

fn snapshot(w: &str, mtime: bool) -> String {
    format!(
        "python3 {} {w}{}",
        scenario("snapshot.py").display(),
        if mtime { " --mtime" } else { "" }
    )
}

/// Types, modes, sizes and mtimes only: nothing is read, so nothing is fetched.
fn metadata_snapshot(w: &str) -> String {
    format!(
        "python3 {} {w} --mtime --no-content",
        scenario("snapshot.py").display()
    )
}

/// Lines of a snapshot turned into the keys S3 should hold under `prefix`.
fn expected_keys(snapshot: &str, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = snapshot
        .lines()
        .map(|l| {
            let mut it = l.split('\t');
            let (rel, kind) = (it.next().unwrap(), it.next().unwrap());
            if kind == "dir" {
                format!("{prefix}{rel}/")
            } else {
                format!("{prefix}{rel}")
            }
        })
        .collect();
    keys.sort();
    keys
}

#[test]
fn tree_built_under_the_shim_matches_native_and_survives_a_fresh_cache() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "team/ws/", "/workspace");
    let native = ws.tmp.path().join("native");
    std::fs::create_dir(&native).unwrap();
    let native = native.to_str().unwrap();

    let native_out = native_bash(ws.tmp.path(), &build_tree(native));
    let shim_out = ws.bash("first", &build_tree("/workspace"));
    assert_eq!(shim_out, native_out, "program output differs from native");

    let native_snap = native_bash(ws.tmp.path(), &snapshot(native, false));
    let shim_snap = ws.bash("first", &snapshot("/workspace", false));
    assert_eq!(
        shim_snap, native_snap,
        "tree under the shim differs from native"
    );
    assert!(
        native_snap.contains("empty\tdir"),
        "scenario makes an empty dir"
    );
    assert!(native_snap.contains("big.bin\tfile\t0o644\t20971520"));

    // A fresh, empty cache sees exactly the same tree, modes and file mtimes before
    // anything is fetched, then the same bytes, and the same mtimes once fetched. (Stat
    // and fetch are apart: a stat while the agent copies a fetched file into place can
    // see the copy's time, SEMANTICS.md "Not promised".)
    let listed = ws.bash("first", &metadata_snapshot("/workspace"));
    let fresh_listed = ws.bash("fresh", &metadata_snapshot("/workspace"));
    assert_eq!(fresh_listed, listed, "a fresh cache lists a different tree");
    let fresh = ws.bash("fresh", &snapshot("/workspace", false));
    assert_eq!(fresh, shim_snap, "a fresh cache reads different bytes");
    let with_mtimes = ws.bash("first", &snapshot("/workspace", true));
    let fresh = ws.bash("fresh", &snapshot("/workspace", true));
    assert_eq!(fresh, with_mtimes, "fetched files keep the objects' mtimes");
    let status = ws.bash(
        "fresh",
        "cd /workspace && git status --porcelain && git log --format=%s",
    );
    assert_eq!(status, "second\nfirst commit\n");

    // Any S3 client sees plain keys: one object per file, `dir/` markers, s3fs metadata.
    assert_eq!(s3.keys("team/ws/"), expected_keys(&native_snap, "team/ws/"));
    assert_eq!(
        s3.get("team/ws/src/app.rs").as_deref(),
        Some(&b"fn main() {}\n"[..])
    );
    let meta = s3.metadata("team/ws/run.sh");
    assert_eq!(
        meta.get("mode").map(String::as_str),
        Some("33261"),
        "{meta:?}"
    );
    let dated = s3.metadata("team/ws/documentation/dated.txt");
    assert_eq!(
        dated.get("mtime").map(String::as_str),
        Some("1746515289.123456789"),
        "{dated:?}"
    );
    assert_eq!(
        s3.get("team/ws/link-to-main").as_deref(),
        Some(&b"src/main.rs"[..]),
        "symlinks are stored as s3fs stores them: the target as the body"
    );
    assert!(
        s3.keys("team/ws/docs/").is_empty() && s3.keys("team/ws/junk/").is_empty(),
        "renamed-away and deleted paths are gone from S3"
    );
}

#[test]
fn opening_the_workspace_does_not_download_it() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "", "/lazy");
    ws.bash(
        "writer",
        "cd /lazy && mkdir -p a/b/c && echo deep > a/b/c/f && head -c 5000000 /dev/zero > big && echo small > s",
    );
    let out = ws.bash("reader", "ls /lazy && cat /lazy/s");
    assert_eq!(out, "a\nbig\ns\nsmall\n");
    let tree = ws.cache("reader").join("tree");
    let big = std::fs::metadata(tree.join("big")).unwrap();
    assert_eq!(big.len(), 5_000_000, "listed entries carry their size");
    assert_eq!(big.blocks(), 0, "an unread file is not downloaded");
    assert!(tree.join("a").is_dir());
    assert!(
        !tree.join("a/b").exists(),
        "a directory never entered is not listed"
    );
    // Reaching into it by path lists what is on the way, and only that.
    let out = ws.bash("reader", "cat /lazy/a/b/c/f");
    assert_eq!(out, "deep\n");
    assert!(tree.join("a/b/c/f").is_file());
    assert_eq!(std::fs::metadata(tree.join("big")).unwrap().blocks(), 0);
}

#[test]
fn children_that_strip_ld_preload_stay_covered() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "p/", "/strip");
    ws.bash("c", "echo visible > /strip/f");
    let out = ws.bash(
        "c",
        "env -u LD_PRELOAD bash -c 'cat /strip/f; ls /strip' && \
         env -i /bin/sh -c 'cat /strip/f' && \
         env -u LD_PRELOAD python3 -c \"import subprocess; print(subprocess.run(['cat','/strip/f'], env={}, capture_output=True, text=True).stdout.strip())\"",
    );
    assert_eq!(out, "visible\nf\nvisible\nvisible\n");
}

#[test]
fn second_run_on_the_same_cache_joins_the_first_and_sees_its_changes() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "", "/shared");
    let flag = ws.tmp.path().join("first-wrote");
    // The first run writes a file, then waits (bounded) for the second run's file.
    let first = ws
        .command(
            "one",
            &[
                "bash",
                "-c",
                &format!(
                    "echo from-first > /shared/a && touch {} && \
                     for i in $(seq 1 600); do [ -e /shared/b ] && break; sleep 0.05; done; cat /shared/b",
                    flag.display()
                ),
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&flag, "the first run to write");
    let out = ws.bash("one", "cat /shared/a && echo from-second > /shared/b");
    assert_eq!(out, "from-first\n");
    let first = first.wait_with_output().unwrap();
    assert_success(&first, "first run");
    assert_eq!(String::from_utf8_lossy(&first.stdout), "from-second\n");
    let log = std::fs::read_to_string(ws.cache("one").join(".s3shim/agent.log")).unwrap();
    assert_eq!(
        log.matches("agent ready").count(),
        1,
        "the second run joined the running agent instead of starting one:\n{log}"
    );
    assert_eq!(s3.get("b").as_deref(), Some(&b"from-second\n"[..]));
}

#[test]
fn flush_inside_the_tree_returns_once_the_change_is_in_s3() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "f/", "/flushme");
    let flag = ws.tmp.path().join("flushed");
    let release = ws.tmp.path().join("release");
    let run = ws
        .command(
            "c",
            &[
                "bash",
                "-c",
                &format!(
                    "echo durable > /flushme/d && {} flush && touch {} && \
                     for i in $(seq 1 600); do [ -e {} ] && break; sleep 0.05; done",
                    bin().display(),
                    flag.display(),
                    release.display()
                ),
            ],
        )
        .spawn()
        .unwrap();
    wait_for_file(&flag, "flush to return");
    // The command is still running: only the explicit flush can have uploaded it.
    assert_eq!(s3.get("f/d").as_deref(), Some(&b"durable\n"[..]));
    std::fs::write(&release, "").unwrap();
    let out = run.wait_with_output().unwrap();
    assert!(out.status.success());
}

#[test]
fn a_run_outliving_the_agents_first_session_timeout_keeps_its_agent() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "", "/long");
    let mut c = ws.command(
        "c",
        &[
            "bash",
            "-c",
            "sleep 3 && echo late > /long/late && cat /long/late",
        ],
    );
    // The agent gives up on a `run` that never connects after this long; a run that did
    // connect must keep it however long it lasts.
    c.env("S3SHIM_FIRST_SESSION_TIMEOUT", "1");
    let out = timed_output(c, 120);
    assert_success(&out, "long run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "late\n");
    assert_eq!(s3.get("late").as_deref(), Some(&b"late\n"[..]));
    let log = std::fs::read_to_string(ws.cache("c").join(".s3shim/agent.log")).unwrap();
    assert!(!log.contains("no session within"), "{log}");
}

#[test]
fn exit_status_of_the_command_is_kept() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "", "/status");
    let out = ws.try_bash("c", "echo kept > /status/k; exit 3");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(s3.get("k").as_deref(), Some(&b"kept\n"[..]));
}

#[test]
fn a_path_that_cannot_be_uploaded_is_named_and_fails_the_run() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "", "/bad");
    let out = ws.try_bash(
        "c",
        "echo ok > /bad/good && echo x > $'/bad/not-utf8-\\xff'",
    );
    assert!(
        !out.status.success(),
        "an unuploadable path must fail the run"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not-utf8-"), "stderr names the path: {err}");
    assert!(err.contains("UTF-8"), "stderr says why: {err}");
    assert_eq!(s3.get("good").as_deref(), Some(&b"ok\n"[..]));
}

/// One line on stderr that says what is wrong, non-zero exit, within seconds.
fn assert_fails_clearly(cmd: std::process::Command, needle: &str) {
    let started = Instant::now();
    let out = timed_output(cmd, 60);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert_eq!(
        err.trim().lines().count(),
        1,
        "one sentence, not a trace: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

/// `s3shim run -- true` with explicit settings and the test credentials.
fn run_true(tmp: &Path, endpoint: &str, bucket: &str, cache: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(bin());
    c.args([
        "run",
        "--bucket",
        bucket,
        "--endpoint",
        endpoint,
        "--mount",
        "/cfg",
    ])
    .arg("--cache")
    .arg(cache)
    .args(["--", "true"]);
    env_for_tests(&mut c, tmp);
    c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    c
}

#[test]
fn bad_configuration_fails_fast_with_one_sentence() {
    let s3 = S3Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();

    let c = run_true(t, "http://127.0.0.1:1", BUCKET, &t.join("c1"));
    assert_fails_clearly(c, "cannot reach the S3 endpoint");

    let c = run_true(t, &s3.endpoint, "no-such-bucket", &t.join("c2"));
    assert_fails_clearly(c, "does not exist");

    if s3.enforces_auth {
        let mut c = run_true(t, &s3.endpoint, BUCKET, &t.join("c3"));
        c.env("AWS_SECRET_ACCESS_KEY", "wrong-secret");
        assert_fails_clearly(c, "refused access");
    }

    // A cache path under a regular file cannot be created (this also holds for root).
    let file = t.join("a-file");
    std::fs::write(&file, "").unwrap();
    let c = run_true(t, &s3.endpoint, BUCKET, &file.join("cache"));
    assert_fails_clearly(c, "writable --cache");

    let c = run_true(t, "http://10.1.2.3:9000", BUCKET, &t.join("c4"));
    assert_fails_clearly(c, "refusing plain http");
}

#[test]
fn embedded_server_is_the_zero_configuration_default() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |cache: &str, script: &str| {
        let mut c = std::process::Command::new(bin());
        c.args(["run", "--mount", "/quick"])
            .arg("--cache")
            .arg(tmp.path().join(cache))
            .args(["--", "bash", "-c", script]);
        env_for_tests(&mut c, tmp.path());
        timed_output(c, 120)
    };
    let out = run("c1", "echo hello > /quick/hello.txt");
    assert_success(&out, "first run");
    let err = String::from_utf8_lossy(&out.stderr);
    let data = tmp.path().join("xdg-data/s3shim/embedded");
    assert!(
        err.contains("embedded S3 server") && err.contains(data.to_str().unwrap()),
        "the embedded server and its data directory are announced: {err}"
    );
    let out = run("c2", "cat /quick/hello.txt");
    assert_success(&out, "second run, fresh cache");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert!(Path::new(&data).is_dir());
}

/// Writes a small tree with nested directories and files through the shim.
fn seed_tree(ws: &Workspace, mount: &str) {
    ws.bash(
        "seed",
        &format!(
            "cd {mount} && mkdir -p a/sub/deeper a/other && echo one > a/one && \
             printf 'two\\n' > a/sub/two && head -c 300000 /dev/urandom > a/sub/deeper/blob && \
             chmod 0750 a/sub/deeper/blob && echo three > a/other/three"
        ),
    );
}

#[test]
fn renaming_a_directory_never_fully_listed_keeps_every_byte() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "r/", "/ren");
    seed_tree(&ws, "/ren");
    let before = ws.bash("check", &snapshot("/ren/a", true));
    // A fresh cache sees `a` listed at the top only: its files are placeholders (small
    // files not fetched with the listing) and its sub-directories unlisted when it is
    // renamed.
    let mut lazy = ws.command(
        "lazy",
        &["bash", "-c", "ls /ren/a >/dev/null && mv /ren/a /ren/b"],
    );
    lazy.env("S3SHIM_EAGER_GET_MAX", "0");
    assert_success(&timed_output(lazy, 300), "the rename");
    let tree = ws.cache("lazy").join("tree");
    assert_eq!(std::fs::metadata(tree.join("b/one")).unwrap().blocks(), 0);
    assert!(!tree.join("b/sub/two").exists(), "b/sub was never listed");
    let after = ws.bash("fresh", &snapshot("/ren/b", true));
    assert_eq!(after, before, "renamed tree differs");
    assert!(
        s3.keys("r/a/").is_empty(),
        "old keys are gone: {:?}",
        s3.keys("r/a/")
    );
    assert_eq!(ws.bash("fresh", "ls /ren"), "b\n");
}

#[test]
fn deleting_a_directory_never_fully_listed_deletes_all_of_it() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "d/", "/del");
    seed_tree(&ws, "/del");
    ws.bash(
        "seed",
        "mkdir -p /del/keep && echo k > /del/keep/k && cp -r /del/a /del/py",
    );
    // coreutils rm walks with glibc fts (unseen by the shim); python's rmtree with
    // dirfd-relative calls; both from a cache that never listed the sub-directories.
    ws.bash(
        "lazy",
        "rm -rf /del/a && python3 -c \"import shutil; shutil.rmtree('/del/py')\"",
    );
    assert_eq!(s3.keys("d/"), vec!["d/keep/", "d/keep/k"]);
    assert_eq!(ws.bash("fresh", "ls -A /del"), "keep\n");
}

#[test]
fn a_directory_removed_and_made_again_keeps_nothing_of_its_old_contents() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "m/", "/remade");
    seed_tree(&ws, "/remade");
    let before = s3.keys("m/a/");
    assert!(before.len() > 2, "seeded: {before:?}");
    // In one session: the old files go, the directory comes back with one new file.
    // The deletes are grouped under their highest missing ancestor; `a` itself is not
    // missing, so what was under it must still be deleted path by path.
    ws.bash(
        "lazy",
        "ls -R /remade/a >/dev/null && rm -rf /remade/a && mkdir /remade/a && echo n > /remade/a/new",
    );
    assert_eq!(s3.keys("m/a/"), vec!["m/a/", "m/a/new"]);
    assert_eq!(ws.bash("fresh", "ls -A /remade/a"), "new\n");
}

#[test]
fn hostile_keys_never_become_local_names() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "h/", "/hostile");
    let long = format!("h/{}", "n".repeat(300));
    for key in [
        "h/ok.txt",
        "h/../escape",
        "h/./dot",
        "h/a//b",
        "h//lead",
        "h/x",
        "h/x/y",
        "h/sub/../../up",
        long.as_str(),
    ] {
        s3.put(key, b"data");
    }
    let out = ws.bash(
        "c",
        "ls -A /hostile && ls -A /hostile/a /hostile/x /hostile/sub",
    );
    // `a//b`, `./dot`, `../up` leave empty directories; `x` beside `x/` shows the directory.
    assert_eq!(
        out,
        "a\nok.txt\nsub\nx\n/hostile/a:\n\n/hostile/sub:\n\n/hostile/x:\ny\n"
    );
    // Nothing was created outside the cache tree.
    let cache = ws.cache("c");
    let mut outside: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    outside.sort();
    assert_eq!(outside, vec![".s3shim", "tree"]);
    assert!(!ws.tmp.path().join("escape").exists());
}
