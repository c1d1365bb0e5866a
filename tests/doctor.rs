//! `s3shim doctor` against a real S3 server on loopback: a good configuration passes every
//! check; each broken one yields exactly one FAIL line naming the problem and the fix, and
//! a non-zero exit.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};

struct Doctor {
    tmp: tempfile::TempDir,
}

impl Doctor {
    fn new() -> Doctor {
        Doctor {
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, bucket: &str, endpoint: &str, secret: &str, cache: &Path) -> Command {
        let mut c = Command::new(bin());
        c.arg("doctor")
            .args([
                "--bucket",
                bucket,
                "--endpoint",
                endpoint,
                "--key-prefix",
                "ws/",
            ])
            .arg("--cache")
            .arg(cache);
        env_for_tests(&mut c, self.tmp.path());
        c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c
    }

    fn cache(&self) -> std::path::PathBuf {
        use std::os::unix::fs::DirBuilderExt;
        let c = self.tmp.path().join("cache");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&c)
            .unwrap();
        c
    }

    fn run(&self, bucket: &str, endpoint: &str, secret: &str) -> Output {
        timed_output(self.command(bucket, endpoint, secret, &self.cache()), 120)
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The lines starting with `tag` (`ok`, `FAIL`, `skip`).
fn lines_tagged<'o>(out: &'o str, tag: &str) -> Vec<&'o str> {
    out.lines()
        .filter(|l| l.split_whitespace().next() == Some(tag))
        .collect()
}

/// Exactly one failing check, named `check`, whose sentence contains every one of `says`;
/// exit status 1.
fn assert_one_failure(o: &Output, check: &str, says: &[&str]) {
    let out = stdout(o);
    let fails = lines_tagged(&out, "FAIL");
    assert_eq!(fails.len(), 1, "expected one FAIL line:\n{out}");
    let fields: Vec<&str> = fails[0].split_whitespace().collect();
    assert_eq!(fields[1], check, "{out}");
    for s in says {
        assert!(fails[0].contains(s), "FAIL line lacks {s:?}:\n{out}");
    }
    assert_eq!(o.status.code(), Some(1), "{out}");
}

#[test]
fn a_good_configuration_passes_every_check() {
    let s3 = S3Server::start();
    let d = Doctor::new();
    let o = d.run(BUCKET, &s3.endpoint, SECRET_KEY);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    let passed: Vec<&str> = lines_tagged(&out, "ok")
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    assert_eq!(
        passed,
        [
            "credentials",
            "endpoint",
            "bucket",
            "writable",
            "conditional",
            "cache",
            "private",
            "io_uring",
            "glibc",
            "intercept",
            "mount"
        ],
        "{out}"
    );
    assert!(out.contains("from the environment"), "{out}");
    assert!(out.contains("refused (412)"), "{out}");
    // The probe is gone again.
    assert_eq!(s3.keys("ws/"), Vec::<String>::new());
}

#[test]
fn a_server_without_conditional_writes_is_a_warning_not_a_failure() {
    let s3 = S3Server::start_own(&["--no-conditional-writes"]);
    let d = Doctor::new();
    let o = d.run(BUCKET, &s3.endpoint, SECRET_KEY);
    let out = stdout(&o);
    assert!(o.status.success(), "the agent works there:\n{out}");
    let warned = lines_tagged(&out, "warn");
    assert_eq!(warned.len(), 1, "{out}");
    assert_eq!(warned[0].split_whitespace().nth(1), Some("conditional"));
    assert!(
        warned[0].contains("501") && warned[0].contains("HEAD"),
        "says what it means and what the agent does:\n{out}"
    );
    assert!(lines_tagged(&out, "FAIL").is_empty(), "{out}");
}

#[test]
fn a_wrong_secret_is_diagnosed() {
    let s3 = S3Server::start();
    if !s3.enforces_auth {
        return; // moto accepts any credentials
    }
    let d = Doctor::new();
    let o = d.run(BUCKET, &s3.endpoint, "not-the-secret");
    assert_one_failure(
        &o,
        "bucket",
        &["refused access", "HTTP 403", "AWS_SECRET_ACCESS_KEY"],
    );
    assert!(
        !stdout(&o).contains("not-the-secret"),
        "the secret must never be printed"
    );
}

#[test]
fn a_missing_bucket_is_diagnosed() {
    let s3 = S3Server::start();
    let d = Doctor::new();
    let o = d.run("no-such-bucket", &s3.endpoint, SECRET_KEY);
    assert_one_failure(
        &o,
        "bucket",
        &["bucket 'no-such-bucket' does not exist", "aws s3 mb"],
    );
}

#[test]
fn an_endpoint_that_is_down_is_diagnosed() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = Doctor::new();
    let o = d.run(BUCKET, &format!("http://127.0.0.1:{port}"), SECRET_KEY);
    assert_one_failure(
        &o,
        "endpoint",
        &[
            &format!("cannot connect to 127.0.0.1:{port}"),
            "Connection refused",
            "AWS_ENDPOINT_URL",
        ],
    );
    assert_eq!(lines_tagged(&stdout(&o), "skip").len(), 3);
}

#[test]
fn a_read_only_cache_directory_is_diagnosed() {
    let s3 = S3Server::start();
    let d = Doctor::new();
    let cache = d.cache();
    // SAFETY: getuid has no preconditions.
    let root = unsafe { libc::getuid() } == 0;
    let mut c = d.command(BUCKET, &s3.endpoint, SECRET_KEY, &cache);
    if root {
        // Permission bits do not stop root: make the directory a read-only mount, in a
        // private mount namespace so nothing outside the test sees it.
        let inner = c;
        c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind -o ro "$0" "$0" && exec "$@""#)
            .arg(&cache)
            .arg(inner.get_program())
            .args(inner.get_args());
        env_like(&mut c, &inner);
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o500)).unwrap();
    }
    let o = timed_output(c, 120);
    assert_one_failure(
        &o,
        "cache",
        &[
            &format!("cannot write to the cache directory {}", cache.display()),
            "pass a writable --cache",
        ],
    );
}

#[test]
fn a_cache_other_users_can_enter_is_diagnosed() {
    use std::os::unix::fs::PermissionsExt;
    let s3 = S3Server::start();
    let d = Doctor::new();
    let cache = d.cache();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = timed_output(d.command(BUCKET, &s3.endpoint, SECRET_KEY, &cache), 120);
    assert_one_failure(
        &o,
        "private",
        &[
            &format!("{} is mode 0755", cache.display()),
            "other users can read the workspace",
            "chmod 700",
        ],
    );
    // Doctor only looks; `run` is what tightens it.
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755);
}
