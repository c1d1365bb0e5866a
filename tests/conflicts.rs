//! Two writers on one prefix never overwrite each other silently: uploads are
//! conditional on the ETag last seen, and a conflict keeps both versions.

mod common;

use common::*;

#[test]
fn two_agents_editing_the_same_file_keep_both_versions() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "two/", "/twows");
    // Two caches on one prefix: two agents, as two containers would have.
    ws.bash("a", "echo base > /twows/notes.txt");
    // B's agent stays up and does not poll S3, so it keeps believing what it saw: a
    // stale writer. (A fresh agent would re-list at start, and a polling one would see
    // A's change within seconds: neither would conflict.)
    let mut keeper = ws.stale_writer("b");
    assert_eq!(ws.bash("b", "cat /twows/notes.txt"), "base\n");
    ws.bash("a", "echo 'from A' > /twows/notes.txt");
    assert_eq!(s3.get("two/notes.txt").as_deref(), Some(&b"from A\n"[..]));
    // B still believes the object is "base": its upload must not replace A's.
    let st = ws.bash(
        "b",
        &format!(
            "echo 'from B' > /twows/notes.txt && {bin} flush && {bin} status",
            bin = bin().display()
        ),
    );
    assert_eq!(
        s3.get("two/notes.txt").as_deref(),
        Some(&b"from A\n"[..]),
        "the remote version keeps the name"
    );
    let keys = s3.keys("two/");
    let saved: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("two/notes.conflict-") && k.ends_with(".txt"))
        .collect();
    assert_eq!(saved.len(), 1, "one conflict copy in {keys:?}");
    assert_eq!(s3.get(saved[0]).as_deref(), Some(&b"from B\n"[..]));
    let name = saved[0].strip_prefix("two/").unwrap();
    assert!(st.contains("conflicts: 1"), "status lists it:\n{st}");
    assert!(st.contains(name), "status names the copy:\n{st}");
    // B's folder shows both: the remote version under the name, its own beside it.
    assert_eq!(
        ws.bash("b", &format!("cat /twows/notes.txt /twows/{name}")),
        "from A\nfrom B\n"
    );
    assert!(
        std::fs::read_to_string(ws.cache("b").join(".s3shim/agent.log"))
            .unwrap()
            .contains("CONFLICT: notes.txt"),
        "logged loudly"
    );
    // A new file created on both sides is a conflict too (If-None-Match).
    ws.bash("a", "echo 'new A' > /twows/fresh.txt");
    ws.bash("b", "echo 'new B' > /twows/fresh.txt");
    let keys = s3.keys("two/");
    assert_eq!(s3.get("two/fresh.txt").as_deref(), Some(&b"new A\n"[..]));
    assert!(
        keys.iter().any(|k| k.starts_with("two/fresh.conflict-")
            && s3.get(k).as_deref() == Some(&b"new B\n"[..])),
        "{keys:?}"
    );
    // SIGTERM: `run` stops its command too (a SIGKILL would leave `sleep` behind).
    // SAFETY: kill takes plain integers; the pid is our own child, not yet reaped.
    unsafe { libc::kill(keeper.id() as i32, libc::SIGTERM) };
    keeper.wait().unwrap();
}
