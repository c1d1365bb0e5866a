//! The bucket is shared with the FUSE peers: a tree written by s3fs (FUSE mount) or by
//! rclone (its S3 backend, no mount) opens correctly here, and a tree written here reads
//! correctly through them. The oracle is each tool's own view (s3fs) or the tree it
//! copied from / the same tree built on a plain directory. A test whose tool is missing
//! (or where s3fs cannot mount) fails, or with `scripts/test --allow-skips` is counted as
//! skipped (common::skip); `scripts/test` installs both tools.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// Describes a tree: type, mode, size, mtime (files) and link targets, then every
/// file's hash. `$1` is the directory. Directory mtimes are not promised (SEMANTICS).
const DESCRIBE: &str = r#"describe() { ( cd "$1" && find . -mindepth 1 \
  \( -type d -printf '%y %m %P\n' \) -o \( -type l -printf '%y %P -> %l\n' \) \
  -o \( -type f -printf '%y %m %s %T@ %P\n' \) | sort && \
  find . -type f -print0 | sort -z | xargs -0 -r sha256sum ); }"#;

/// Builds the sample tree in `$1`. `$2` = `full` adds what rclone 1.60 cannot keep: an
/// empty directory and a symlink.
const BUILD: &str = r#"build() { ( cd "$1" && mkdir -p sub/deeper && echo hello > a.txt && \
  printf '#!/bin/sh\necho hi\n' > run.sh && chmod 755 run.sh && chmod 600 a.txt && \
  seq 1 60000 > sub/deeper/nums && echo 'x y' > 'sub/with space.txt' && \
  touch -d '2024-01-02 03:04:05.123456789' a.txt run.sh sub/deeper/nums && \
  touch -d '2023-05-06 07:08:09' 'sub/with space.txt' && \
  if [ "$2" = full ]; then mkdir empty && ln -s a.txt link && ln -s sub/deeper dlink; fi ); }"#;

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        skip::cannot_run(&format!("{tool} is not installed (apt-get install {tool})"));
    }
    found
}

fn native(tmp: &Path, script: &str) -> String {
    native_bash(tmp, &format!("{DESCRIBE}\n{BUILD}\n{script}"))
}

fn under_shim(ws: &Workspace, cache: &str, script: &str) -> String {
    ws.bash(cache, &format!("{DESCRIBE}\n{BUILD}\n{script}"))
}

/// rclone with its S3 backend pointed at the test server (remote `t:`).
fn rclone(s3: &S3Server, tmp: &Path, args: &[&str]) -> String {
    let mut c = Command::new("rclone");
    c.args(args)
        .env("RCLONE_CONFIG", tmp.join("rclone.conf"))
        .env("RCLONE_CONFIG_T_TYPE", "s3")
        .env("RCLONE_CONFIG_T_PROVIDER", "Other")
        .env("RCLONE_CONFIG_T_ACCESS_KEY_ID", ACCESS_KEY)
        .env("RCLONE_CONFIG_T_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("RCLONE_CONFIG_T_ENDPOINT", &s3.endpoint)
        .env("RCLONE_CONFIG_T_REGION", "us-east-1")
        .env("RCLONE_CONFIG_T_FORCE_PATH_STYLE", "true")
        // rclone's SDK cannot use a custom CA bundle over its own transport.
        .env_remove("AWS_CA_BUNDLE");
    let out = timed_output(c, 120);
    assert_success(&out, &format!("rclone {args:?}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_tree_written_by_rclone_opens_here() {
    if !have("rclone") {
        return;
    }
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "rcl/", "/fromrclone");
    let src = ws.tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let want = native(
        ws.tmp.path(),
        &format!("build {0} && describe {0}", src.display()),
    );
    // --metadata keeps mode (octal) and mtime (float seconds) as x-amz-meta-*.
    rclone(
        &s3,
        ws.tmp.path(),
        &["copy", "--metadata", src.to_str().unwrap(), "t:itest/rcl"],
    );
    let got = under_shim(&ws, "c", "describe /fromrclone");
    assert_eq!(got, want);
}

#[test]
fn a_tree_written_here_reads_through_rclone() {
    if !have("rclone") {
        return;
    }
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "rh/", "/forrclone");
    under_shim(&ws, "c", "build /forrclone");
    let dst = ws.tmp.path().join("dst");
    // Without --metadata, rclone reads the mtime only (it would take our decimal mode
    // for octal): compare names, sizes, mtimes and bytes.
    rclone(
        &s3,
        ws.tmp.path(),
        &["copy", "t:itest/rh", dst.to_str().unwrap()],
    );
    let plain = ws.tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let no_modes = |s: String| {
        let mut lines: Vec<String> = s
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.splitn(3, ' ').collect();
                match f[0] {
                    "d" | "f" => format!("{} {}", f[0], f[2]),
                    _ => l.to_string(),
                }
            })
            .collect();
        lines.sort();
        lines.join("\n")
    };
    let want = no_modes(native(
        ws.tmp.path(),
        &format!("build {0} && describe {0}", plain.display()),
    ));
    let got = no_modes(native(
        ws.tmp.path(),
        &format!("describe {}", dst.display()),
    ));
    assert_eq!(got, want);
}

/// An s3fs mount of the test bucket, unmounted on drop.
struct S3fsMount {
    dir: std::path::PathBuf,
}

impl S3fsMount {
    /// `None` where s3fs cannot mount (no s3fs, no /dev/fuse, no permission), once
    /// `skip::cannot_run` has recorded the skip (or failed the test).
    fn new(s3: &S3Server, tmp: &Path) -> Option<S3fsMount> {
        if !have("s3fs") {
            return None;
        }
        let dir = tmp.join("s3fs-mnt");
        std::fs::create_dir_all(&dir).unwrap();
        let pw = tmp.join("s3fs-passwd");
        std::fs::write(&pw, format!("{ACCESS_KEY}:{SECRET_KEY}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = Command::new("s3fs")
            .arg(BUCKET)
            .arg(&dir)
            .args(["-o", &format!("url={}", s3.endpoint)])
            .args(["-o", "use_path_request_style", "-o", "endpoint=us-east-1"])
            .args(["-o", &format!("passwd_file={}", pw.display())])
            // Every stat goes to the server: what we wrote is what it shows.
            .args(["-o", "stat_cache_expire=0", "-o", "enable_noobj_cache"])
            .output()
            .unwrap();
        let mounted = Command::new("mountpoint")
            .arg("-q")
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !out.status.success() || !mounted {
            skip::cannot_run(&format!(
                "s3fs could not mount (needs /dev/fuse and permission): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
            return None;
        }
        Some(S3fsMount { dir })
    }
}

impl Drop for S3fsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn a_tree_written_by_s3fs_opens_here() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "s3fsw/", "/froms3fs");
    let want = {
        let Some(m) = S3fsMount::new(&s3, ws.tmp.path()) else {
            return;
        };
        let d = m.dir.join("s3fsw");
        std::fs::create_dir(&d).unwrap();
        // s3fs's own view of what it wrote is the oracle.
        native(
            ws.tmp.path(),
            &format!("build {0} full && sync && describe {0}", d.display()),
        )
    };
    let got = under_shim(&ws, "c", "describe /froms3fs");
    assert_eq!(got, want);
}

#[test]
fn a_tree_written_here_reads_through_s3fs() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "here/", "/fors3fs");
    under_shim(&ws, "c", "build /fors3fs full");
    let plain = ws.tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let want = native(
        ws.tmp.path(),
        &format!("build {0} full && describe {0}", plain.display()),
    );
    let Some(m) = S3fsMount::new(&s3, ws.tmp.path()) else {
        return;
    };
    let got = native(
        ws.tmp.path(),
        &format!("describe {}", m.dir.join("here").display()),
    );
    assert_eq!(got, want);
}
