//! A server without conditional writes (`s3shim server --no-conditional-writes` answers
//! a write carrying If-Match / If-None-Match with 501 NotImplemented, as AWS S3 did
//! before it had them): the agent falls back on a HEAD before each upload, says so once,
//! and still loses nothing and keeps both versions when another writer got there first.

mod common;

use common::tree::*;
use common::*;
use s3shim_protocol::layout;

fn agent_log(ws: &Workspace, cache: &str) -> String {
    std::fs::read_to_string(
        ws.cache(cache)
            .join(layout::STATE_DIR)
            .join(layout::LOG_NAME),
    )
    .unwrap_or_default()
}

#[test]
fn uploads_fall_back_on_a_head_check_and_a_conflict_keeps_both_versions() {
    let s3 = S3Server::start_own(&["--no-conditional-writes"]);
    let ws = Workspace::new(&s3, "ncw/", "/ncw");
    // The first upload is a multipart one (above the 16 MiB threshold): the server only
    // refuses its completion, and the whole file must still arrive.
    ws.bash("a", "head -c 20000000 /dev/urandom > /ncw/big");
    assert_bucket_equals_tree(&s3, "ncw/", &ws.cache("a").join(layout::TREE_DIR));
    // Said once by the agent that found out (each new agent finds out again).
    let log = agent_log(&ws, "a");
    assert_eq!(
        log.matches("does not support conditional writes (If-Match / If-None-Match)")
            .count(),
        1,
        "{log}"
    );
    ws.bash(
        "a",
        "cd /ncw && echo base > notes.txt && mkdir -p d/e && echo deep > d/e/f \
         && ln -s notes.txt link",
    );
    assert_bucket_equals_tree(&s3, "ncw/", &ws.cache("a").join(layout::TREE_DIR));

    // Overwrites and deletes work on it too.
    ws.bash(
        "a",
        "cd /ncw && echo changed > notes.txt && rm d/e/f && mv big big2",
    );
    assert_eq!(s3.get("ncw/notes.txt").as_deref(), Some(&b"changed\n"[..]));
    assert_bucket_equals_tree(&s3, "ncw/", &ws.cache("a").join(layout::TREE_DIR));

    // A stale writer: B's agent stays up without polling, so it keeps believing the
    // version it read while A replaces it. B's upload must find that out by the HEAD.
    let mut keeper = ws.stale_writer("b");
    assert_eq!(ws.bash("b", "cat /ncw/notes.txt"), "changed\n");
    ws.bash("a", "echo 'from A' > /ncw/notes.txt");
    assert_eq!(s3.get("ncw/notes.txt").as_deref(), Some(&b"from A\n"[..]));
    ws.bash(
        "b",
        &format!(
            "echo 'from B' > /ncw/notes.txt && {} flush",
            bin().display()
        ),
    );
    assert_eq!(
        s3.get("ncw/notes.txt").as_deref(),
        Some(&b"from A\n"[..]),
        "the remote version keeps the name"
    );
    let keys = s3.keys("ncw/");
    let saved: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("ncw/notes.conflict-") && k.ends_with(".txt"))
        .collect();
    assert_eq!(saved.len(), 1, "one conflict copy in {keys:?}");
    assert_eq!(s3.get(saved[0]).as_deref(), Some(&b"from B\n"[..]));
    assert!(
        agent_log(&ws, "b").contains("CONFLICT: notes.txt"),
        "{}",
        agent_log(&ws, "b")
    );
    // SAFETY: kill takes plain integers; the pid is our own child, not yet reaped.
    unsafe { libc::kill(keeper.id() as i32, libc::SIGTERM) };
    keeper.wait().unwrap();
}
