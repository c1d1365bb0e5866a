//! A cache belongs to one workspace: it records the endpoint, bucket and prefix it serves,
//! and a run with another is refused with one sentence naming both, so changes not yet in
//! S3 never go anywhere but where they were made. `--adopt-cache` takes a cache over
//! deliberately, setting its old tree aside.

mod common;

use common::tree::*;
use common::*;
use s3shim_protocol::layout;
use std::path::Path;
use std::process::{Command, Output};

const OTHER: &str = "itest-other";

fn run(
    s3: &S3Server,
    tmp: &Path,
    bucket: &str,
    prefix: &str,
    extra: &[&str],
    script: &str,
) -> Output {
    let mut c = Command::new(bin());
    c.arg("run")
        .args(["--bucket", bucket, "--endpoint", &s3.endpoint])
        .args(["--key-prefix", prefix, "--mount", "/idws"])
        .arg("--cache")
        .arg(tmp.join("cache"))
        .args(extra)
        .args(["--", "bash", "-c", script]);
    env_for_tests(&mut c, tmp);
    c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    timed_output(c, 120)
}

fn other_keys(s3: &S3Server) -> Vec<String> {
    runtime().block_on(async {
        let c = s3.client().await;
        let page = c.list_objects_v2().bucket(OTHER).send().await.unwrap();
        page.contents()
            .iter()
            .filter_map(|o| o.key().map(String::from))
            .collect()
    })
}

#[test]
fn a_cache_of_one_workspace_is_refused_for_another_and_keeps_its_changes_for_its_own() {
    let s3 = S3Server::start();
    runtime().block_on(async {
        s3.client()
            .await
            .create_bucket()
            .bucket(OTHER)
            .send()
            .await
            .unwrap();
    });
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("cache").join(layout::TREE_DIR);
    let out = run(
        &s3,
        tmp.path(),
        BUCKET,
        "a/",
        &[],
        "echo first > /idws/first.txt",
    );
    assert_success(&out, "the first run");
    // Changes not in S3 yet: made in the cache while no agent ran (as by a program the
    // shim cannot see, or before a crash); the next agent of this workspace uploads them.
    std::fs::write(tree.join("pending.txt"), "not in S3 yet\n").unwrap();
    std::fs::create_dir(tree.join("newdir")).unwrap();
    std::fs::write(tree.join("newdir/x"), "x\n").unwrap();

    let endpoint = url::Url::parse(&s3.endpoint).unwrap().to_string();
    for (bucket, prefix) in [(OTHER, "a/"), (BUCKET, "b/")] {
        let out = run(
            &s3,
            tmp.path(),
            bucket,
            prefix,
            &[],
            "echo oops > /idws/oops.txt",
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bucket}/{prefix}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
        assert!(
            err.contains(&format!(
                "belongs to s3://{BUCKET}/a/ at {endpoint}, not to s3://{bucket}/{prefix} at {endpoint}"
            )),
            "{err}"
        );
        assert!(err.contains("--adopt-cache"), "{err}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "",
            "the command never ran"
        );
    }
    assert_eq!(
        other_keys(&s3),
        Vec::<String>::new(),
        "the other bucket stays empty"
    );
    assert_eq!(
        s3.keys("b/"),
        Vec::<String>::new(),
        "the other prefix stays empty"
    );
    assert_eq!(
        s3.keys("a/"),
        ["a/first.txt"],
        "nothing new went to A either"
    );

    // Its own workspace gets the changes.
    let out = run(&s3, tmp.path(), BUCKET, "a/", &[], "cat /idws/pending.txt");
    assert_success(&out, "the run on the cache's own workspace");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "not in S3 yet\n");
    assert_eq!(assert_bucket_equals_tree(&s3, "a/", &tree), 4);

    // Adopted deliberately: the old tree (with a change A has not seen) is set aside,
    // nothing of it goes to the new workspace, which starts from its own objects.
    std::fs::write(tree.join("late.txt"), "A's, made late\n").unwrap();
    let out = run(
        &s3,
        tmp.path(),
        OTHER,
        "",
        &["--adopt-cache"],
        "ls -A /idws; echo new > /idws/new.txt",
    );
    assert_success(&out, "the adopting run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "the new workspace starts empty"
    );
    assert!(
        err.contains("adopted the cache for s3://itest-other/"),
        "{err}"
    );
    assert_eq!(other_keys(&s3), ["new.txt"]);
    let aside: Vec<_> = std::fs::read_dir(tmp.path().join("cache"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("adopted-from-"))
        .collect();
    assert_eq!(aside.len(), 1, "one tree set aside");
    assert!(
        err.contains(&aside[0].path().display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(aside[0].path().join("late.txt")).unwrap(),
        "A's, made late\n"
    );
    assert_eq!(s3.keys("a/").len(), 4, "A is left as it was");
    // From now on the cache is the new workspace's: A is refused.
    let out = run(&s3, tmp.path(), BUCKET, "a/", &[], "true");
    assert_eq!(out.status.code(), Some(2));
}
