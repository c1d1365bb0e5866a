//! Requests at a distance: what must not go to S3 at all (a file written here is never
//! fetched back), and what a walk of a cold tree costs in requests. Counted through the
//! test proxy in front of a real S3 server on loopback.

mod common;

use common::proxy::Proxy;
use common::tree::wait_for_file;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Small multipart and ranged-GET sizes, so a 12 MiB file goes up in parts and would come
/// back as ranged GETs; a quick remote-change poll.
fn small_sizes(c: &mut Command) -> &mut Command {
    c.env("S3SHIM_MULTIPART_THRESHOLD", "5242880")
        .env("S3SHIM_MULTIPART_PART_SIZE", "5242880")
        .env("S3SHIM_RANGED_GET_THRESHOLD", "1048576")
        .env("S3SHIM_RANGED_GET_PART", "1048576")
        .env("S3SHIM_POLL_INTERVAL", "0.2")
}

fn run_ok(ws: &Workspace, script: &str) -> String {
    let mut c = ws.command("c", &["bash", "-c", script]);
    small_sizes(&mut c);
    let out = timed_output(c, 300);
    assert_success(&out, script);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_file_written_and_uploaded_is_read_back_without_a_get() {
    let s3 = S3Server::start();
    let proxy = Proxy::start(&s3.endpoint);
    let mut ws = Workspace::new(&s3, "rr/", "/rrws");
    ws.endpoint = proxy.endpoint.clone();
    let flags = ws.tmp.path().join("flags");
    std::fs::create_dir(&flags).unwrap();
    let f = flags.display();
    // One session writes 12 MiB with `dd conv=fsync` (in S3 when dd returns), then stays
    // open, holding the agent, until told to end.
    let script = format!(
        "mkdir -p /rrws/w && dd if=/dev/urandom of=/rrws/w/big.bin bs=1M count=12 conv=fsync status=none \
         && sha256sum < /rrws/w/big.bin > {f}/sum && touch {f}/written \
         && while [ ! -e {f}/done ]; do sleep 0.05; done"
    );
    let mut first = ws.command("c", &["bash", "-c", &script]);
    small_sizes(&mut first)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let first = first.spawn().unwrap();
    wait_for_file(&flags.join("written"), "the write");
    let sum = std::fs::read_to_string(flags.join("sum")).unwrap();
    let key = format!("/{BUCKET}/rr/w/big.bin");
    assert!(proxy.count("PUT", &key) >= 3, "uploaded in parts");

    // Two complete remote-change polls after the upload (each lists the prefix).
    let lists = proxy.count("GET", &format!("/{BUCKET}/"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.count("GET", &format!("/{BUCKET}/")) < lists + 2 {
        assert!(
            Instant::now() < deadline,
            "no remote-change poll within 60 s: {:?}",
            proxy.seen()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A new `run` joining the same agent reads it: all local.
    assert_eq!(run_ok(&ws, "sha256sum < /rrws/w/big.bin"), sum);
    assert_eq!(
        proxy.count("GET", &key),
        0,
        "read back from S3 after a poll"
    );

    std::fs::write(flags.join("done"), "").unwrap();
    assert_success(&first.wait_with_output().unwrap(), "the writing session");
    // A new agent on the same cache (it revalidates the warm cache first): still local.
    assert_eq!(run_ok(&ws, "sha256sum < /rrws/w/big.bin"), sum);
    assert_eq!(
        proxy.count("GET", &key),
        0,
        "read back from S3 by a new agent"
    );
}

#[test]
fn a_walk_of_a_cold_tree_lists_it_once_and_reads_each_file_in_one_request() {
    let s3 = S3Server::start();
    let proxy = Proxy::start(&s3.endpoint);
    let mut ws = Workspace::new(&s3, "walk/", "/walkws");
    ws.endpoint = proxy.endpoint.clone();
    let dirs = ["src", "src/a", "src/a/deep", "src/b", "docs", "docs/img"];
    let mut expected = String::new();
    let mut files = Vec::new();
    for d in dirs {
        for i in 0..4 {
            let rel = format!("{d}/f{i}.txt");
            s3.put(
                &format!("walk/{rel}"),
                format!("content of {rel}\n").as_bytes(),
            );
            files.push(rel);
        }
    }
    files.sort();
    for f in &files {
        expected += &format!("content of {f}\n");
    }
    // `ls -R` enters every directory (opendir), then `find` walks it again (fts) and
    // every file is read.
    let mut c = ws.command(
        "c",
        &[
            "bash",
            "-c",
            "ls -R /walkws > /dev/null && cd /walkws && find . -type f | sort | xargs cat",
        ],
    );
    c.env("S3SHIM_POLL_INTERVAL", "0");
    let out = timed_output(c, 300);
    assert_success(&out, "the walk");
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
    let seen = proxy.seen();
    assert_eq!(
        proxy.count("GET", &format!("/{BUCKET}/")),
        1,
        "one flat listing for the whole walk: {seen:?}"
    );
    for f in &files {
        let key = format!("/{BUCKET}/walk/{f}");
        assert_eq!(proxy.count("GET", &key), 1, "{f}: one GET: {seen:?}");
        assert_eq!(proxy.count("HEAD", &key), 0, "{f}: no HEAD: {seen:?}");
    }
}
