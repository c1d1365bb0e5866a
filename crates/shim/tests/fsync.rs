//! NEEDS THE BUILT .so: fsync/fdatasync (libc and raw `syscall`) on an fd in the tree ask
//! the agent to put the file in S3 and return its answer; outside the tree they cost
//! nothing. The fake agent (see `support/mod.rs`) records the requests.

mod support;

use s3shim_protocol::wire::Op;
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
    let ws = Ws::new("fsync");
    let outside = ws.root.join("outside.txt");
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
    let syncs: Vec<(Op, String)> = ws
        .requests()
        .into_iter()
        .filter(|(op, _)| matches!(op, Op::Sync | Op::Flush))
        .collect();
    assert_eq!(
        syncs,
        vec![
            (Op::Sync, "f.txt".to_string()),
            (Op::Sync, "f.txt".to_string()),
            (Op::Sync, "f.txt".to_string()),
            // A directory's sync flushes everything.
            (Op::Flush, String::new()),
        ],
        "nothing for the file outside the tree"
    );

    // The upload failed: the caller gets the agent's errno, as from a failed disk write.
    ws.sync_answer(libc::EIO);
    let errno = ws.py_ok(
        "import os\nfd = os.open('/workspace/f.txt', os.O_WRONLY)\ntry:\n    os.fdatasync(fd)\n    print('no error')\nexcept OSError as e:\n    print(e.errno)",
    );
    assert_eq!(errno.trim(), libc::EIO.to_string());
}

#[test]
fn a_failing_real_fsync_keeps_its_own_error_in_the_tree() {
    // fsync on a FIFO fails with EINVAL. The agent is asked (before the real call, so the
    // upload overlaps the local flush) and would answer EIO; the caller must get the real
    // call's error, as without the shim.
    let ws = Ws::new("fsync-fails");
    ws.sync_answer(libc::EIO);
    let errno = ws.py_ok(
        "import os\nos.mkfifo('/workspace/p')\nfd = os.open('/workspace/p', os.O_RDWR)\ntry:\n    os.fsync(fd)\n    print('no error')\nexcept OSError as e:\n    print(e.errno)",
    );
    assert_eq!(errno.trim(), libc::EINVAL.to_string());
    assert!(
        ws.requests().contains(&(Op::Sync, "p".to_string())),
        "the fd is in the tree, so the agent was asked: {:?}",
        ws.requests()
    );
}
