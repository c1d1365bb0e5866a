//! The CI-runner use case: `s3shim run --key-prefix ws/ -- make test` on a runner that
//! keeps its cache between jobs. Each job restores the workspace lazily, saves its results
//! to S3, and a later job on the same runner downloads only what changed in S3 since
//! (counted by the agent's GETs, printed by `run --summary`).

mod common;

use common::*;

const MAKEFILE: &[u8] =
    b"test:\n\t@mkdir -p out\n\t@cat src/*.txt > out/result.txt\n\t@echo tested\n";

/// Runs `make test` in the workspace with the given cache; returns (objects, bytes)
/// downloaded, from the summary line.
fn job(ws: &Workspace, cache: &str) -> (u64, u64) {
    let mut c = ws.command(
        cache,
        &["make", "-C", &ws.mount, "--no-print-directory", "test"],
    );
    c.env("S3SHIM_SUMMARY", "true");
    let out = timed_output(c, 300);
    assert_success(&out, "make test");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tested\n");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("s3shim: summary: downloaded "))
        .unwrap_or_else(|| panic!("no summary line in {err}"));
    // "<n> object(s), <b> bytes; 0 change(s) not in S3"
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&words[4..], ["0", "change(s)", "not", "in", "S3"], "{line}");
    (words[0].parse().unwrap(), words[2].parse().unwrap())
}

fn len(parts: &[&[u8]]) -> u64 {
    parts.iter().map(|p| p.len() as u64).sum()
}

#[test]
fn a_warm_runner_cache_downloads_only_what_changed_and_results_are_saved() {
    let s3 = S3Server::start();
    s3.put("ws/Makefile", MAKEFILE);
    s3.put("ws/src/a.txt", b"alpha\n");
    s3.put("ws/src/b.txt", b"bravo\n");
    s3.put("ws/src/c.txt", b"charlie\n");
    s3.put("ws/data/big.bin", &vec![7u8; 200_000]); // never read by the job
    let ws = Workspace::new(&s3, "ws/", "/ci");

    // Job 1, cold cache: the Makefile and the three sources, nothing else.
    let first = job(&ws, "runner");
    assert_eq!(
        first,
        (4, len(&[MAKEFILE, b"alpha\n", b"bravo\n", b"charlie\n"]))
    );
    assert_eq!(
        s3.get("ws/out/result.txt").as_deref(),
        Some(&b"alpha\nbravo\ncharlie\n"[..])
    );

    // Another writer (a push) changes one source and adds one.
    s3.put("ws/src/b.txt", b"BRAVO two\n");
    s3.put("ws/src/d.txt", b"delta\n");
    // And a change made in the cache while no agent ran (one that never reached S3)
    // must survive the revalidation and be uploaded, not replaced.
    std::fs::write(ws.cache("runner").join("tree/src/a.txt"), b"alpha local\n").unwrap();

    // Job 2, same runner: only the changed and the new file are downloaded; the rest,
    // its own result included, is trusted because its ETag matches the listing.
    let second = job(&ws, "runner");
    assert_eq!(second, (2, len(&[b"BRAVO two\n", b"delta\n"])));
    assert_eq!(
        s3.get("ws/out/result.txt").as_deref(),
        Some(&b"alpha local\nBRAVO two\ncharlie\ndelta\n"[..])
    );
    assert_eq!(
        s3.get("ws/src/a.txt").as_deref(),
        Some(&b"alpha local\n"[..])
    );

    // A source deleted in S3 is gone from the warm cache too; nothing is downloaded.
    runtime().block_on(async {
        s3.client()
            .await
            .delete_object()
            .bucket(BUCKET)
            .key("ws/src/c.txt")
            .send()
            .await
            .unwrap();
    });
    let third = job(&ws, "runner");
    assert_eq!(third, (0, 0));
    assert_eq!(
        s3.get("ws/out/result.txt").as_deref(),
        Some(&b"alpha local\nBRAVO two\ndelta\n"[..])
    );
    assert_eq!(s3.get("ws/src/c.txt"), None, "not resurrected by the cache");

    // A new runner (cold cache) downloads everything the job reads, and the small
    // result in `out/` that `make` lists: it comes in the GET that replaced its HEAD.
    let cold = job(&ws, "other-runner");
    assert_eq!(
        cold,
        (
            5,
            len(&[
                MAKEFILE,
                b"alpha local\n",
                b"BRAVO two\n",
                b"delta\n",
                b"alpha local\nBRAVO two\ndelta\n"
            ])
        )
    );
}
