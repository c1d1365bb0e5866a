//! NEEDS THE BUILT .so: fsync/fdatasync (libc and raw `syscall`) on an fd in the tree ask
//! the agent to put the file in S3 and return its answer; outside the tree they cost
//! nothing. The real agent answers (see `support/mod.rs`); uploads are refused for real
//! by a server policy where a test needs a failed one.

mod support;

use s3shim_agent::agent::Requests;
use support::Ws;

const SYNCS: &str = r#"
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open('/workspace/f.txt', os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b'x')
os.fdatasync(fd)
os.fsync(fd)
assert libc.syscall(74, fd) == 0  # SYS_fsync on x86_64
d = os.open('/workspace', os.O_RDONLY)
os.fsync(d)
out = os.open(os.environ['OUTSIDE'], os.O_WRONLY | os.O_CREAT, 0o644)
os.fsync(out)
print('ok')
"#;

#[test]
fn fsync_in_the_tree_waits_for_the_agent_and_returns_its_answer() {
    // Writes under `denied/` are refused by the server (403): their uploads fail.
    let ws = Ws::with_policy("fsync", &["denied/"]);
    let outside = ws.root.join("outside.txt");
    let before = ws.requests();
    let out = ws
        .cmd("/usr/bin/python3")
        .args(["-c", SYNCS])
        .env("OUTSIDE", &outside)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let asked = ws.requests() - before;
    assert_eq!(
        (asked.sync, asked.flush),
        // Three for the file; a directory's sync flushes everything.
        (3, 1),
        "nothing for the file outside the tree: {asked:?}"
    );
    // The first fdatasync returned only once the byte was in S3.
    assert_eq!(ws.object("f.txt").as_deref(), Some(&b"x"[..]));

    // The upload failed: the caller gets the agent's errno, as from a failed disk write.
    ws.ok("mkdir /workspace/denied");
    let errno = ws.py_ok(
        "import os\nfd = os.open('/workspace/denied/f.txt', os.O_WRONLY | os.O_CREAT, 0o644)\nos.write(fd, b'y')\ntry:\n    os.fdatasync(fd)\n    print('no error')\nexcept OSError as e:\n    print(e.errno)",
    );
    assert_eq!(errno.trim(), libc::EIO.to_string());
    assert_eq!(ws.object("denied/f.txt"), None, "the server refused it");
}

#[test]
fn a_failing_real_fsync_keeps_its_own_error_in_the_tree() {
    // The agent is asked before the real call (so the upload overlaps the local flush);
    // when the real call fails, the caller must get the real call's error, as without
    // the shim, whatever the agent answers.
    let ws = Ws::with_policy("fsync-fails", &["denied/"]);
    ws.ok("mkdir /workspace/denied && echo data > /workspace/denied/f.txt");
    // fsync on a FIFO fails with EINVAL (the agent has nothing to upload and says so);
    // on an O_PATH fd with EBADF (the agent's upload of the file is refused: it would
    // answer EIO).
    let before = ws.requests();
    let errnos = ws.py_ok(
        "import os\n\
         os.mkfifo('/workspace/p')\n\
         for path, flags in (('/workspace/p', os.O_RDWR), ('/workspace/denied/f.txt', os.O_PATH)):\n    \
             fd = os.open(path, flags)\n    \
             try:\n        \
                 os.fsync(fd)\n        \
                 print('no error')\n    \
             except OSError as e:\n        \
                 print(e.errno)",
    );
    assert_eq!(errnos, format!("{}\n{}\n", libc::EINVAL, libc::EBADF));
    // The fds are in the tree, so the agent was asked (the program did not wait for its
    // answers: wait for them here).
    ws.wait_for_requests(|r| r.sync >= before.sync + 2);
    assert_eq!(
        ws.requests() - before,
        Requests {
            sync: 2,
            ..Requests::default()
        }
    );
    assert_eq!(ws.object("denied/f.txt"), None, "its upload did fail");
}
