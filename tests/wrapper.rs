//! `scripts/code-server-s3` as installed by `scripts/install-image.sh` (the Dockerfile's
//! install step): it runs code-server under the shim on the mount path with the
//! caller's arguments, keeps the secret away from it, forwards SIGTERM, and exits only
//! once what code-server wrote while stopping is in S3. A stand-in script plays
//! code-server here; the browser test runs the real one through the same wrapper. The
//! wrapper also installs the sync extension's .vsix into code-server once per version.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FAKE_CODE_SERVER: &str = r#"#!/bin/bash
if [[ $1 == --install-extension ]]; then
    # As code-server does: <extensions-dir>/<publisher>.<name>-<version>.
    printf '%s\n' "$*" >> "$INSTALL_LOG"
    mkdir -p "$4/codeserver-s3.$(basename "$2" .vsix)"
    exit 0
fi
ws="${@: -1}"
printf '%s\n' "$*" > "$ws/args.txt"
env | grep -c '^AWS_SECRET_ACCESS_KEY=' > "$ws/secret-count.txt"
trap 'echo "saved while stopping" > "$ws/stopped.txt"; exit 0' TERM
touch "$READY_FILE"
while :; do sleep 0.05; done
"#;

fn install(prefix: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = timed_output(
        {
            let mut c = Command::new(repo.join("scripts/install-image.sh"));
            c.arg("--from")
                .arg(bin().parent().unwrap())
                .arg("--prefix")
                .arg(prefix);
            c
        },
        60,
    );
    assert_success(&out, "install-image.sh");
}

#[test]
fn the_installed_wrapper_runs_code_server_on_the_mount_and_drains_on_sigterm() {
    let s3 = S3Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("usr");
    install(&prefix);
    assert!(prefix.join("lib/s3shim/libs3shim.so").is_file());

    let fake = tmp.path().join("code-server");
    std::fs::write(&fake, FAKE_CODE_SERVER).unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let vsix = std::fs::read_dir(prefix.join("share/s3shim"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "vsix"))
        .expect("install-image.sh installs the extension's .vsix");
    let install_log = tmp.path().join("installs.txt");
    let ext_dir = tmp.path().join("xdg-data/code-server/extensions");
    // Twice: the second start finds that version installed.
    for round in 0..2 {
        run_wrapper(&s3, tmp.path(), &prefix, &fake, &install_log);
        assert_eq!(
            std::fs::read_to_string(&install_log).unwrap(),
            format!(
                "--install-extension {} --extensions-dir {}\n",
                vsix.display(),
                ext_dir.display()
            ),
            "round {round}"
        );
    }
}

fn run_wrapper(s3: &S3Server, tmp: &Path, prefix: &Path, fake: &Path, install_log: &Path) {
    let ready = tmp.join("ready");
    let _ = std::fs::remove_file(&ready);

    let mut c = Command::new(prefix.join("bin/code-server-s3"));
    c.args(["--bind-addr", "127.0.0.1:1", "--auth", "none"]);
    env_for_tests(&mut c, tmp);
    // The installed layout must work by itself: no S3SHIM_LIB pointing into target/.
    c.env_remove("S3SHIM_LIB")
        .env("S3SHIM_BUCKET", BUCKET)
        .env("S3SHIM_KEY_PREFIX", "wrap/")
        .env("S3SHIM_MOUNT", "/wrapped")
        .env("S3SHIM_CACHE", tmp.join("cache"))
        .env("AWS_ENDPOINT_URL", &s3.endpoint)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("CODE_SERVER", fake)
        .env("INSTALL_LOG", install_log)
        .env("READY_FILE", &ready)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the wrapper exited early"
        );
        assert!(
            Instant::now() < deadline,
            "code-server stand-in never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().unwrap().is_some() {
                break child.wait_with_output().unwrap();
            }
            assert!(Instant::now() < deadline, "the wrapper did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert_success(&out, "code-server-s3");
    let get = |k: &str| String::from_utf8(s3.get(k).unwrap_or_default()).unwrap();
    assert_eq!(
        get("wrap/args.txt"),
        "--bind-addr 127.0.0.1:1 --auth none /wrapped\n"
    );
    assert_eq!(get("wrap/stopped.txt"), "saved while stopping\n");
    assert_eq!(get("wrap/secret-count.txt"), "0\n");
}
