//! `s3shim status` on a running workspace, against a real S3 server on loopback.

mod common;

use common::*;

#[test]
fn status_shows_unsynced_bytes_failures_last_error_and_hydration() {
    let s3 = S3Server::start();
    s3.put("st/a.txt", &[b'a'; 1000]);
    s3.put("st/b.txt", &[b'b'; 3000]);
    let ws = Workspace::new(&s3, "st/", "/st");
    let shim = bin();
    let script = format!(
        "cat /st/a.txt > /dev/null
         ls /st > /dev/null
         printf '%05000d' 0 > $'/st/bad-\\xff'
         {0} flush > /dev/null 2>&1
         {0} status",
        shim.display()
    );
    // Without the sibling prefetch, which would download b.txt at a time of its own.
    let mut c = ws.command("c", &["bash", "-c", &script]);
    c.env("S3SHIM_PREFETCH", "0");
    let out = timed_output(c, 300);
    // The unuploadable name fails the run; the status printed before that is the subject.
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "not in S3:  1 change(s), 4.9 KiB (5000 bytes)",
        "in S3:      3.9 KiB (4000 bytes) in 2 file(s) known so far",
        "hydrated:   1000 bytes in 1 file(s) of those are in the cache",
        "downloaded: 1 object(s), 1000 bytes since the agent started",
        "failed:     1",
        "sessions:   1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    let failed = text
        .lines()
        .skip_while(|l| !l.starts_with("failed:"))
        .nth(1);
    assert!(
        failed.is_some_and(|l| l.contains("bad-") && l.contains("UTF-8")),
        "{text}"
    );
    let last = text.lines().find(|l| l.starts_with("last error: "));
    assert!(
        last.is_some_and(|l| l.contains("bad-") && l.contains("UTF-8") && l.contains("s ago")),
        "{text}"
    );
}
