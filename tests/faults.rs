//! The write-back under a hostile network: a loopback proxy between the agent and a real
//! S3 server fails a share of requests (5xx, throttling, resets, stalls, lost answers)
//! or plays an endpoint that is down; nothing written may be lost.

mod common;

use common::proxy::{Faults, Proxy};
use common::tree::*;
use common::*;
use s3shim_protocol::layout;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn a_fifth_of_requests_failing_still_uploads_everything() {
    let s3 = S3Server::start();
    let proxy = Proxy::start(&s3.endpoint);
    let mut ws = Workspace::new(&s3, "faulty/", "/faultws");
    ws.endpoint = proxy.endpoint.clone();
    proxy.set(Faults {
        share: 0.2,
        down: false,
        stall: Duration::from_secs(3),
    });
    let flag = ws.tmp.path().join("started");
    let mut cmd = ws.command(
        "c",
        &[
            "python3",
            scenario("churn.py").to_str().unwrap(),
            "/faultws",
            flag.to_str().unwrap(),
            "7",
            "400",
        ],
    );
    // A stalled request is abandoned after 1 s and tried again.
    cmd.env("S3SHIM_S3_TIMEOUT_MS", "1000")
        .env("S3SHIM_DEBOUNCE_MS", "20")
        .env("S3SHIM_DEBOUNCE_MAX_MS", "100");
    let out = timed_output(cmd, 600);
    assert_success(&out, "churn.py under 20% faults");
    assert!(
        proxy.injected() >= 10,
        "only {} faults injected in {} requests",
        proxy.injected(),
        proxy.total()
    );
    let n = assert_bucket_equals_tree(&s3, "faulty/", &ws.cache("c").join(layout::TREE_DIR));
    eprintln!(
        "{} faults injected in {} requests; {n} objects compared",
        proxy.injected(),
        proxy.total()
    );
    assert!(n > 20, "the workload left {n} entries");
}

fn status(ws: &Workspace, cache: &str) -> String {
    let mut c = std::process::Command::new(bin());
    c.arg("status")
        .args(["--bucket", BUCKET, "--endpoint", &ws.endpoint])
        .args(["--key-prefix", &ws.prefix, "--mount", &ws.mount])
        .arg("--cache")
        .arg(ws.cache(cache));
    env_for_tests(&mut c, ws.tmp.path());
    let out = timed_output(c, 60);
    assert_success(&out, "s3shim status");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_endpoint_down_pauses_uploads_and_resumes_without_loss() {
    let s3 = S3Server::start();
    let proxy = Proxy::start(&s3.endpoint);
    let mut ws = Workspace::new(&s3, "down/", "/downws");
    ws.endpoint = proxy.endpoint.clone();
    let hs = ws.tmp.path().join("hs");
    std::fs::create_dir(&hs).unwrap();
    let mut cmd = ws.command(
        "c",
        &[
            "python3",
            scenario("down_steps.py").to_str().unwrap(),
            "/downws",
            hs.to_str().unwrap(),
        ],
    );
    cmd.env("S3SHIM_S3_ATTEMPTS", "2")
        .env("S3SHIM_S3_TIMEOUT_MS", "1000")
        .env("S3SHIM_DEBOUNCE_MS", "50")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = cmd.spawn().unwrap();
    let step = |n: u32| wait_for_file(&hs.join(format!("step-{n}")), &format!("step {n}"));
    let go = |n: u32| std::fs::write(hs.join(format!("go-{n}")), "").unwrap();

    step(1);
    assert_eq!(
        s3.get("down/a.txt").as_deref(),
        Some(&b"before the outage\n"[..])
    );
    proxy.set(Faults {
        down: true,
        ..Faults::default()
    });
    go(1);
    step(2);
    let st = status(&ws, "c");
    assert!(st.contains("uploads: paused"), "status while down:\n{st}");
    assert!(s3.get("down/b.txt").is_none());
    proxy.set(Faults::default());
    go(2);
    // Resumed by the agent itself (no flush asked for): wait for the bytes.
    let deadline = Instant::now() + Duration::from_secs(90);
    while s3.get("down/d/c.txt").map(|b| b.len()) != Some(100000) || s3.get("down/b.txt").is_none()
    {
        assert!(Instant::now() < deadline, "uploads did not resume");
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = status(&ws, "c");
    assert!(st.contains("uploads: running"), "status once back:\n{st}");
    go(3);
    let out = run.wait_with_output().unwrap();
    assert_success(&out, "down_steps.py");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "a.txt: synced\nb.txt: EIO\n",
        "fdatasync is EIO while S3 cannot be reached"
    );
    assert_bucket_equals_tree(&s3, "down/", &ws.cache("c").join(layout::TREE_DIR));
}

#[test]
fn a_file_above_the_multipart_threshold_goes_up_in_parts() {
    let s3 = S3Server::start();
    let proxy = Proxy::start(&s3.endpoint);
    let mut ws = Workspace::new(&s3, "mp/", "/mpws");
    ws.endpoint = proxy.endpoint.clone();
    let mut cmd = ws.command(
        "c",
        &[
            "bash",
            "-c",
            "head -c 13631488 /dev/urandom > /mpws/big.bin && head -c 1000 /dev/urandom > /mpws/small.bin && \
             chmod 750 /mpws/big.bin && touch -d @1704164645.123456789 /mpws/big.bin /mpws/small.bin",
        ],
    );
    cmd.env("S3SHIM_MULTIPART_THRESHOLD", "6291456")
        .env("S3SHIM_MULTIPART_PART_SIZE", "5242880");
    let out = timed_output(cmd, 300);
    assert_success(&out, "writing a 13 MiB file");
    assert_bucket_equals_tree(&s3, "mp/", &ws.cache("c").join(layout::TREE_DIR));
    let path = format!("/{BUCKET}/mp/big.bin");
    // 13 MiB in 5 MiB parts: three part PUTs, and POSTs to create and complete.
    // (The touch after the write may make it go up twice.)
    let (parts, posts) = (proxy.count("PUT", &path), proxy.count("POST", &path));
    assert!(
        (parts, posts) == (3, 2) || (parts, posts) == (6, 4),
        "{parts} part uploads and {posts} create/complete POSTs"
    );
    // The last change (touch) may come in the debounce window of the first upload.
    assert!((1..=2).contains(&proxy.count("PUT", &format!("/{BUCKET}/mp/small.bin"))));
    // s3fs/rclone metadata on both kinds of upload: decimal st_mode, mtime as seconds
    // with nine fraction digits (what rclone's float parse reads), owner.
    let (uid, gid) = {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(ws.tmp.path()).unwrap();
        (md.uid().to_string(), md.gid().to_string())
    };
    for (key, mode) in [("mp/big.bin", 0o100750), ("mp/small.bin", 0o100644)] {
        let m = s3.metadata(key);
        assert_eq!(m.get("mode"), Some(&mode.to_string()), "{key}: {m:?}");
        assert_eq!(
            m.get("mtime").map(String::as_str),
            Some("1704164645.123456789")
        );
        assert_eq!(m.get("uid"), Some(&uid), "{key}");
        assert_eq!(m.get("gid"), Some(&gid), "{key}");
    }
}
