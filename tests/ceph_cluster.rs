//! A real distributed S3 engine: a three-OSD Ceph cluster with its RADOS gateway on
//! loopback (`scripts/ceph-cluster`, Debian's Ceph packages), every pool replicated three
//! times. One OSD is killed with SIGKILL in the middle of a write workload under one
//! `s3shim run`: nothing is lost, and a fresh cache reads every file back while the OSD is
//! still down. (The other end-to-end suites run on such a cluster in `scripts/test`'s
//! `ceph` part, through `S3SHIM_TEST_S3=ceph`.)

mod common;

use common::skip::cannot_run;
use common::tree::{assert_bucket_equals_tree, gone};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The cluster of one test, stopped on drop.
struct Cluster {
    dir: PathBuf,
    endpoint: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ceph-cluster")
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut c = Command::new(script());
        c.args(["start"])
            .arg(dir)
            .arg(port.to_string())
            .env("S3SHIM_CEPH_ACCESS_KEY", ACCESS_KEY)
            .env("S3SHIM_CEPH_SECRET_KEY", SECRET_KEY);
        let out = timed_output(c, 300);
        // Stops what did start should the rest fail.
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            endpoint: String::new(),
        };
        assert_success(&out, "scripts/ceph-cluster start");
        let stdout = String::from_utf8_lossy(&out.stdout);
        cluster.endpoint = stdout
            .lines()
            .find_map(|l| l.strip_prefix("endpoint "))
            .unwrap_or_else(|| panic!("no endpoint in {stdout:?}"))
            .to_string();
        cluster
    }

    fn osd_pid(&self, n: u32) -> u32 {
        let f = self.dir.join(format!("run/osd.{n}.pid"));
        std::fs::read_to_string(&f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg("stop").arg(&self.dir).status();
    }
}

fn ceph_installed() -> bool {
    [
        "ceph-mon",
        "ceph-osd",
        "radosgw",
        "radosgw-admin",
        "monmaptool",
    ]
    .iter()
    .all(|p| {
        Command::new("sh")
            .args(["-c", &format!("command -v {p}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn an_osd_killed_during_writes_loses_nothing() {
    if !ceph_installed() {
        cannot_run("Ceph (ceph-mon, ceph-osd, radosgw) is not installed; scripts/e2e/install.sh installs it");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&tmp.path().join("ceph"));
    let s3 = S3Server::at(&cluster.endpoint);
    let ws = Workspace::new(&s3, "osdkill/", "/workspace");
    let victim = cluster.osd_pid(1);

    // Writes before, at and after the kill (each file fsync'd, so part of it is in S3
    // before the OSD dies), then renames and deletes with the OSD still down; `run` waits
    // until all of it is in S3.
    let script = format!(
        r#"set -e
        cd /workspace
        mkdir -p a b
        for i in $(seq 1 60); do head -c $((4096 + i * 331)) /dev/urandom > a/f$i; sync a/f$i; done
        kill -9 {victim}
        for i in $(seq 61 120); do head -c $((4096 + i * 331)) /dev/urandom > b/f$i; done
        head -c 9000000 /dev/urandom > big.bin
        for i in $(seq 1 20); do mv a/f$i b/moved$i; done
        rm a/f2{{1,2,3,4,5}}
        echo done"#
    );
    let out = ws.bash("w", &script);
    assert!(out.contains("done"), "{out}");
    // Gone or a zombie (its reaper may be this test's process tree).
    assert!(gone(victim), "the OSD was not killed");

    // The bucket holds exactly the cache's tree, byte for byte, with one OSD down.
    // 35 + 80 files, big.bin, a/ and b/.
    let n = assert_bucket_equals_tree(&s3, "osdkill/", &ws.cache("w").join("tree"));
    assert_eq!(n, 118, "the workload did not leave the tree it should");

    // A fresh cache reads every file back through the agent, with the OSD still down.
    let sums = |dir: &str| format!("cd {dir} && find . -type f | sort | xargs sha256sum");
    let fresh = ws.bash("fresh", &sums("/workspace"));
    let native = native_bash(
        tmp.path(),
        &sums(&ws.cache("w").join("tree").to_string_lossy()),
    );
    assert_eq!(fresh, native, "a fresh cache read other bytes");
}
