//! A test that cannot run here (its tool or the machine's feature is missing) must not
//! pass unrun: it fails, unless the run allows skips (`scripts/test --allow-skips` sets
//! `S3SHIM_TEST_SKIP_LOG`), and then it appends a line to that file so the final summary
//! counts it as skipped rather than passed.

use std::io::Write;

/// Call as `cannot_run("s3fs is not installed"); return;`: panics (the test fails with
/// the reason) or records the skip and returns.
#[track_caller]
pub fn cannot_run(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string();
    let Some(log) = std::env::var_os("S3SHIM_TEST_SKIP_LOG") else {
        panic!(
            "{test} cannot run here: {why}. scripts/test installs what the tests need; \
             `scripts/test --allow-skips` counts such a test as skipped instead"
        );
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap_or_else(|e| panic!("S3SHIM_TEST_SKIP_LOG {log:?}: {e}"));
    writeln!(f, "{test}: {why}").unwrap();
    eprintln!("SKIPPED {test}: {why}");
}
