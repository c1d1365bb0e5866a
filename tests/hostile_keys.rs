//! Hostile object keys planted in the bucket never make the agent create, write or delete
//! anything outside its cache, whether it meets them listing a directory or checking S3
//! for remote changes; the valid keys beside them work.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Every path under `root` (except the cache's own tree and state) with its type, size,
/// mode and mtime: what "nothing outside the cache changed" is checked against.
fn snapshot_outside_cache(root: &Path, cache: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p == cache.join("tree") || p == cache.join(".s3shim") {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            if p == cache {
                // Its own times move when the agent makes tree/ and .s3shim/ in it.
                stack.push(p);
                continue;
            }
            out.insert(
                p.strip_prefix(root).unwrap().display().to_string(),
                format!("{:o} {} {}", m.mode(), m.size(), m.mtime_nsec() + m.mtime()),
            );
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// Every key in the bucket, sorted; URL-encoded listing, since one planted key holds a
/// character XML cannot carry.
fn all_keys(s3: &S3Server) -> Vec<String> {
    runtime().block_on(async {
        let c = s3.client().await;
        let page = c
            .list_objects_v2()
            .bucket(BUCKET)
            .encoding_type(aws_sdk_s3::types::EncodingType::Url)
            .send()
            .await
            .unwrap();
        assert!(!page.is_truncated().unwrap_or(false));
        let mut out: Vec<String> = page
            .contents()
            .iter()
            .map(|o| {
                let k = o.key().unwrap().replace('+', " ");
                percent_encoding::percent_decode_str(&k)
                    .decode_utf8()
                    .unwrap()
                    .into_owned()
            })
            .collect();
        out.sort();
        out
    })
}

#[test]
fn hostile_keys_at_the_bucket_root_touch_nothing_outside_the_cache() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "", "/hk");
    let tag = format!("s3shim-escape-{}", std::process::id());
    let long_name = "n".repeat(1100);
    let long_in_dir = format!("dir/{}", "m".repeat(300));
    let deep_escape = format!("dir/../../../../../../../../tmp/{tag}-deep");
    let keys: Vec<String> = vec![
        "ok.txt".into(),
        "dir/ok2.txt".into(),
        "dir/sub/".into(),
        format!("../{tag}"),
        format!("../../{tag}-2"),
        format!("/{tag}-abs"),
        format!("//{tag}-abs2"),
        "a//b".into(),
        ".".into(),
        "..".into(),
        "./dot".into(),
        "dir/./dot2".into(),
        deep_escape.clone(),
        long_name.clone(),
        long_in_dir.clone(),
        "x".into(),
        "x/".into(),
        // Valid UTF-8 that XML 1.0 cannot carry: only a URL-encoded listing has it.
        "ctl\u{1}name".into(),
    ];
    let mut planted = Vec::new();
    runtime().block_on(async {
        let c = s3.client().await;
        for k in &keys {
            let r = c
                .put_object()
                .bucket(BUCKET)
                .key(k)
                .body(format!("body of {k}\n").into_bytes().into())
                .send()
                .await;
            match r {
                Ok(_) => planted.push(k.clone()),
                Err(e) => eprintln!("the server refused to store key {k:?}: {e}"),
            }
        }
    });
    for must in ["ok.txt", "dir/ok2.txt", "a//b", "x", "x/"] {
        assert!(
            planted.iter().any(|k| k == must),
            "{must:?} was not planted"
        );
    }
    let stored = all_keys(&s3);
    eprintln!("keys in the bucket: {stored:?}");

    let cache = ws.cache("c");
    std::fs::create_dir_all(&cache).unwrap();
    let root = ws.tmp.path();
    std::fs::create_dir_all(root.join("sentinel/inner")).unwrap();
    std::fs::write(root.join("sentinel/inner/file"), "sentinel").unwrap();
    let log = cache.join(".s3shim/agent.log");

    // Programs that list and read the whole tree, then the remote-change check runs over
    // the same keys, then a valid sibling is deleted.
    let script = format!(
        "set -e
         ls -laR /hk > /dev/null
         find /hk -type f -exec cat {{}} + > /dev/null
         grep -r 'body of' /hk | sort
         python3 -c \"import os
for d, ds, fs in os.walk('/hk'):
    for f in fs: open(os.path.join(d, f), 'rb').read()\"
         cat /hk/ok.txt /hk/dir/ok2.txt
         ls -A /hk /hk/dir | cat -v
         echo \"x holds: [$(ls -A /hk/x)], is a directory: $(test -d /hk/x && echo yes)\"
         for i in $(seq 300); do grep -q 'in S3: ' {log} && break; sleep 0.1; done
         grep -q 'in S3: ' {log}
         rm /hk/ok.txt",
        log = log.display()
    );
    let mut c = ws.command("c", &["bash", "-c", &script]);
    c.env("S3SHIM_POLL_INTERVAL", "0.2");
    let before = snapshot_outside_cache(root, &cache);
    assert!(before.contains_key("sentinel/inner/file"));
    let out = timed_output(c, 300);
    assert_success(&out, "reading the tree");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("body of ok.txt\nbody of dir/ok2.txt\n"),
        "{stdout}"
    );
    // `x` beside `x/`: the directory is shown (empty), the object is not.
    assert!(
        stdout.contains("x holds: [], is a directory: yes"),
        "{stdout}"
    );
    if planted.iter().any(|k| k == "ctl\u{1}name") {
        assert!(
            stdout.contains("ctl^Aname"),
            "URL-encoded listing: {stdout}"
        );
    }

    let after = snapshot_outside_cache(root, &cache);
    assert_eq!(before, after, "something outside the cache changed");
    for p in [
        root.parent().unwrap().join(&tag),
        Path::new("/").join(&tag),
        Path::new("/").join(format!("{tag}-2")),
        Path::new("/").join(format!("{tag}-abs")),
        Path::new("/tmp").join(format!("{tag}-deep")),
    ] {
        assert!(!p.exists(), "{} was created", p.display());
    }
    let tree = cache.join("tree");
    let mut top: Vec<String> = std::fs::read_dir(&tree)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    eprintln!("cache root: {top:?}");
    assert!(!top.iter().any(|n| n.contains(&tag) || n.len() > 255));

    let agent_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        agent_log.contains("skipping key \"../"),
        "a clear log line names the skipped key: {agent_log}"
    );

    // Nothing hostile was deleted or rewritten: only the valid sibling went.
    let mut expected: Vec<String> = stored.into_iter().filter(|k| k != "ok.txt").collect();
    expected.sort();
    assert_eq!(all_keys(&s3), expected);
}
