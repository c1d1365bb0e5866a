//! Comparing a cache's tree with the bucket, byte for byte, and finding processes.

use super::S3Server;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// What a local tree says S3 must hold under `prefix`: key -> body (`dir/` markers
/// have empty bodies, symlinks their target).
pub fn expected_objects(tree: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![(tree.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let md = std::fs::symlink_metadata(e.path()).unwrap();
            if md.is_dir() {
                out.push((format!("{prefix}{r}/"), Vec::new()));
                stack.push((e.path(), r));
            } else if md.file_type().is_symlink() {
                let t = std::fs::read_link(e.path()).unwrap();
                out.push((
                    format!("{prefix}{r}"),
                    t.into_os_string().into_encoded_bytes(),
                ));
            } else {
                assert!(
                    md.blocks() > 0 || md.size() == 0 || !is_placeholder(&e.path()),
                    "{r} is a placeholder: compare only trees written locally"
                );
                out.push((format!("{prefix}{r}"), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn is_placeholder(p: &Path) -> bool {
    xattr_present(p, "user.s3shim")
}

fn xattr_present(p: &Path, name: &str) -> bool {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings; a NULL buffer asks for the size only.
    unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
}

/// Asserts the bucket holds exactly the tree under `prefix`: the same keys, the same
/// bytes. Returns how many objects were compared.
pub fn assert_bucket_equals_tree(s3: &S3Server, prefix: &str, tree: &Path) -> usize {
    let want = expected_objects(tree, prefix);
    let keys = s3.keys(prefix);
    let want_keys: std::collections::BTreeSet<&String> = want.iter().map(|(k, _)| k).collect();
    let have_keys: std::collections::BTreeSet<&String> = keys.iter().collect();
    let only_bucket: Vec<_> = have_keys.difference(&want_keys).collect();
    let only_tree: Vec<_> = want_keys.difference(&have_keys).collect();
    assert!(
        only_bucket.is_empty() && only_tree.is_empty(),
        "keys in the bucket differ from the cache's tree ({} in both): {} only in the bucket \
         {:?}; {} only in the tree {:?}",
        want_keys.len() - only_tree.len(),
        only_bucket.len(),
        only_bucket,
        only_tree.len(),
        only_tree
    );
    for (k, body) in &want {
        let got = s3.get(k).unwrap_or_else(|| panic!("{k} vanished"));
        assert!(
            got == *body,
            "{k}: the bucket holds {} bytes, the cache {} bytes, and they differ",
            got.len(),
            body.len()
        );
    }
    want.len()
}

/// Pids of `pid`'s children whose command line contains `needle`.
pub fn children_with(pid: u32, needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let ppid: Option<u32> = stat[close + 2..]
            .split(' ')
            .nth(1)
            .and_then(|v| v.parse().ok());
        if ppid != Some(pid) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            out.push(p);
        }
    }
    out
}

/// The agent that `run` (pid `run`) started, waiting for it to appear.
pub fn agent_of(run: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(&p) = children_with(run, "\0agent\0").first() {
            return p;
        }
        assert!(Instant::now() < deadline, "no agent under run {run}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` is gone (or a zombie).
pub fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rfind(')')
            .and_then(|i| s[i + 2..].chars().next())
            .is_some_and(|c| c == 'Z'),
    }
}

/// Waits (bounded) for `flag` to exist.
pub fn wait_for_file(flag: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !flag.exists() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
