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
         {0} status
         echo '-- json'
         {0} status --json
         {0} status --json --sync-only",
        shim.display()
    );
    // Without the sibling prefetch, which would download b.txt at a time of its own.
    let mut c = ws.command("c", &["bash", "-c", &script]);
    c.env("S3SHIM_PREFETCH", "0");
    let out = timed_output(c, 300);
    // The unuploadable name fails the run; the status printed before that is the subject.
    assert!(!out.status.success());
    let all = String::from_utf8_lossy(&out.stdout);
    let (text, json) = all.split_once("-- json\n").expect("both reports printed");
    let mut docs = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap());
    let (doc, sync_only) = (docs.next().unwrap(), docs.next().unwrap());
    // The document says the same as the text, in fields.
    assert_eq!(doc["schema"], 1, "{doc}");
    assert_eq!(doc["state"], "failed", "{doc}");
    assert_eq!(doc["mount"], "/st", "{doc}");
    assert_eq!(doc["pending"]["changes"], 1, "{doc}");
    assert_eq!(doc["pending"]["bytes"], 5000, "{doc}");
    assert_eq!(doc["remote"]["files"], 2, "{doc}");
    assert_eq!(doc["remote"]["bytes"], 4000, "{doc}");
    assert_eq!(doc["hydrated"]["files"], 1, "{doc}");
    assert_eq!(doc["uploads"]["paused"], false, "{doc}");
    let failed = doc["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{doc}");
    assert!(
        failed[0]["path"].as_str().unwrap().contains("bad-"),
        "{doc}"
    );
    assert!(
        failed[0]["reason"].as_str().unwrap().contains("UTF-8"),
        "{doc}"
    );
    assert!(
        doc["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("bad-"),
        "{doc}"
    );
    // The sync state alone: the same answer without the walk over every known file.
    for k in ["state", "pending", "failed", "uploads", "conflicts"] {
        assert_eq!(sync_only[k], doc[k], "{k} in {sync_only}");
    }
    assert!(
        sync_only.get("remote").is_none() && sync_only.get("hydrated").is_none(),
        "{sync_only}"
    );
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

#[test]
fn status_json_lists_a_conflict_while_its_copy_is_there() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "sj/", "/sjws");
    ws.bash("a", "echo base > /sjws/n.txt");
    // B's agent stays up without polling S3: a stale writer (as in tests/conflicts.rs).
    let mut keeper = ws.stale_writer("b");
    assert_eq!(ws.bash("b", "cat /sjws/n.txt"), "base\n");
    ws.bash("a", "echo A > /sjws/n.txt");
    let bin = bin();
    let doc: serde_json::Value = serde_json::from_str(&ws.bash(
        "b",
        &format!(
            "echo B > /sjws/n.txt && {0} flush && {0} status --json --sync-only",
            bin.display()
        ),
    ))
    .unwrap();
    assert_eq!(doc["state"], "conflict", "{doc}");
    let conflicts = doc["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{doc}");
    assert_eq!(conflicts[0]["path"], "n.txt", "{doc}");
    let copy = conflicts[0]["copy"].as_str().unwrap().to_string();
    assert!(
        copy.starts_with("n.conflict-") && copy.ends_with(".txt"),
        "{doc}"
    );
    assert!(conflicts[0]["at"].as_u64().unwrap() > 0, "{doc}");
    assert_eq!(s3.get(&format!("sj/{copy}")).as_deref(), Some(&b"B\n"[..]));
    // Keeping the remote version: removing the copy resolves the conflict, here and in S3.
    let doc: serde_json::Value = serde_json::from_str(&ws.bash(
        "b",
        &format!(
            "rm /sjws/{copy} && {0} flush && {0} status --json",
            bin.display()
        ),
    ))
    .unwrap();
    assert_eq!(doc["state"], "in_s3", "{doc}");
    assert_eq!(doc["conflicts"], serde_json::json!([]), "{doc}");
    assert_eq!(s3.get(&format!("sj/{copy}")), None);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(keeper.id() as i32, libc::SIGTERM) };
    keeper.wait().unwrap();
}
