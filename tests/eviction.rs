//! A bounded cache: with `--cache-max-size`, clean fetched files go back to placeholders
//! (least recently used first) so the fetched bytes stay under the limit, and are fetched
//! again when read.

mod common;

use common::*;
use s3shim_protocol::layout;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

const LIMIT: u64 = 4 << 20;
const FILE: u64 = 256 << 10;

/// Bytes on disk of the files in `dir` whose bytes are here (no hydration marker).
fn fetched_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            total += fetched_bytes(&p);
        } else if md.is_file() && !marked(&p) {
            total += md.blocks() * 512;
        }
    }
    total
}

fn marked(p: &Path) -> bool {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let name = s3shim_protocol::marker::XATTR_NAME;
    // SAFETY: valid C strings; a zero-length query only asks for the size.
    unsafe { libc::lgetxattr(c.as_ptr(), name.as_ptr().cast(), std::ptr::null_mut(), 0) >= 0 }
}

#[test]
fn a_tree_three_times_the_limit_is_read_whole_within_it() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "ev/", "/evws");
    // A git repository of about 12 MiB (6 MiB of files, as much again in .git).
    // Git rewrites its index when the stat data differs (a new cache: new inodes).
    let listing = "cd /evws && find . -type f ! -path ./.git/index | sort | xargs sha256sum";
    let expected = ws.bash(
        "w",
        &format!(
            "cd /evws && git init -q && mkdir d && \
             for i in $(seq 1 24); do head -c {FILE} /dev/urandom > d/f$i.bin; done && \
             git add -A && git commit -qm init && {listing}"
        ),
    );
    let tree = ws.cache("r").join(layout::TREE_DIR);
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, most, tree) = (stop.clone(), most.clone(), tree.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                most.fetch_max(fetched_bytes(&tree), Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    let mut c = ws.command(
        "r",
        &[
            "bash",
            "-c",
            &format!("{listing}; git status --porcelain; echo \"git status: $?\"; {listing}"),
        ],
    );
    c.env("S3SHIM_CACHE_MAX_SIZE", "4M");
    let out = timed_output(c, 300);
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    assert_success(&out, "reading the tree with a limit");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said == format!("{expected}git status: 0\n{expected}"),
        "both reads must see every byte and git no change; got:\n{said}"
    );
    let total: u64 = expected.lines().count() as u64;
    assert!(total > 40, "{expected}");
    let most = most.load(Ordering::SeqCst);
    // A file being fetched may sit beside the limit, and git may rewrite its index.
    let allowed = LIMIT + FILE + (64 << 10);
    assert!(
        most <= allowed,
        "fetched bytes reached {most}, above the limit {LIMIT} plus one file"
    );
    assert!(most > LIMIT / 2, "the sampler saw the cache fill ({most})");
    let log = std::fs::read_to_string(ws.cache("r").join(layout::STATE_DIR).join(layout::LOG_NAME))
        .unwrap();
    assert!(log.contains("evicted "), "eviction happened:\n{log}");
}
