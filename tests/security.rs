//! What stays private: the agent's socket (its user only), the credentials (never in a
//! log, never in the environment of the programs run on the workspace, not readable from
//! `run`'s or the agent's /proc entries), and plain HTTP off loopback (refused unless
//! allowed).

mod common;

use common::*;
use s3shim_protocol::wire::{self, Op};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const NOBODY: &str = "65534";

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// A tiny client that connects to the socket given as argv[1], sends one `Status`
/// request and prints what happened: `connect: <errno name>`, `closed` (the agent hung
/// up without answering) or `reply <n bytes>`.
fn probe_script() -> String {
    let mut frame = [0u8; 16];
    let n = wire::encode_request(Op::Status, b"", &mut frame).unwrap();
    format!(
        "import socket, sys, errno
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print('connect:', errno.errorcode[e.errno]); sys.exit(0)
try:
    s.sendall(bytes.fromhex('{}'))
    data = s.recv(65536)
except (BrokenPipeError, ConnectionResetError):
    data = b''

print('reply', len(data)) if data else print('closed')",
        hex::encode(&frame[..n])
    )
}

#[test]
fn the_agent_socket_is_private_and_other_users_are_refused() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "sec/", "/sec");
    let probe = ws.tmp.path().join("probe.py");
    std::fs::write(&probe, probe_script()).unwrap();
    std::fs::set_permissions(ws.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o644)).unwrap();
    let as_nobody = format!(
        "setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups {} {} \"$S3SHIM_SOCKET\" 2>&1",
        system_python(),
        probe.display()
    );
    let script = if is_root() {
        format!(
            "stat -c '%a %u' \"$S3SHIM_SOCKET\" \"$(dirname \"$S3SHIM_SOCKET\")\"
             echo \"me: $(python3 {probe} \"$S3SHIM_SOCKET\")\"
             echo \"nobody: $({as_nobody})\"
             # Even with the directory and socket opened up by mistake, the agent checks
             # who is calling.
             chmod 0711 \"$S3SHIM_CACHE\" \"$(dirname \"$S3SHIM_SOCKET\")\"; chmod 0777 \"$S3SHIM_SOCKET\"
             echo \"nobody, opened up: $({as_nobody})\"
             chmod 0700 \"$S3SHIM_CACHE\" \"$(dirname \"$S3SHIM_SOCKET\")\"; chmod 0600 \"$S3SHIM_SOCKET\"",
            probe = probe.display()
        )
    } else {
        format!(
            "stat -c '%a %u' \"$S3SHIM_SOCKET\" \"$(dirname \"$S3SHIM_SOCKET\")\"
             echo \"me: $(python3 {} \"$S3SHIM_SOCKET\")\"",
            probe.display()
        )
    };
    let out = ws.bash("c", &script);
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(format!("600 {uid}").as_str()), "{out}");
    assert_eq!(lines.next(), Some(format!("700 {uid}").as_str()), "{out}");
    assert!(out.contains("me: reply"), "the owner is served: {out}");
    if is_root() {
        assert!(out.contains("nobody: connect: EACCES"), "{out}");
        assert!(out.contains("nobody, opened up: closed"), "{out}");
        let log = std::fs::read_to_string(ws.cache("c").join(".s3shim/agent.log")).unwrap();
        assert!(
            log.contains("refused a connection from another user"),
            "{log}"
        );
    } else {
        eprintln!(
            "NOTE: not root, so no other user to connect as: only the socket's modes were checked"
        );
    }
}

/// A python3 every user can run (root's may be a pyenv shim under /root).
fn system_python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// A directory another user (`nobody`, when the test runs as root) can own and use.
fn shared_tmp() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    d
}

#[test]
fn credentials_stay_out_of_logs_and_out_of_reach_of_the_command() {
    let s3 = S3Server::start();
    let tmp = shared_tmp();
    let cache = tmp.path().join("cache");
    let token = "planted-session-token-5e1f9a";
    // The command looks for every credential where a same-user process could: its own
    // environment, its parent's (`run`) and the agent's /proc entries.
    let script = format!(
        "set -u
         echo hello > /creds/a.txt && mkdir /creds/d && echo x > /creds/d/b && cat /creds/a.txt
         env | grep -E '^{creds}=' || echo 'no credential variables'
         tr '\\0' '\\n' < /proc/self/environ | grep -cE '^{creds}=' || true
         {python} -c \"import os, re; print(sorted(k for k in os.environ if re.fullmatch('{creds}', k)))\"
         cat /proc/$PPID/environ > /dev/null 2>&1 && echo 'parent environ: readable' || echo 'parent environ: closed'
         for p in /proc/[0-9]*; do
           if tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^[^ ]*s3shim agent .*{cache}'; then
             cat $p/environ > /dev/null 2>&1 && echo 'agent environ: readable' || echo 'agent environ: closed'
             ( exec 3< $p/mem ) 2>/dev/null && echo 'agent mem: readable' || echo 'agent mem: closed'
           fi
         done
         # The probes work: a same-user dumpable process (a sibling of ours) is open.
         sleep 30 & sib=$!
         cat /proc/$sib/environ > /dev/null 2>&1 && echo 'sibling environ: readable'
         ( exec 3< /proc/$sib/mem ) 2>/dev/null && echo 'sibling mem: readable'
         kill $sib",
        cache = cache.display(),
        creds = "AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY|SESSION_TOKEN|SECURITY_TOKEN)",
        python = system_python(),
    );
    let mut c = if is_root() {
        // As root every /proc entry is readable: run the whole thing as another user,
        // for whom the only obstacle is what the agent and `run` do themselves.
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(bin());
        c
    } else {
        Command::new(bin())
    };
    c.arg("run")
        .args(["--bucket", BUCKET, "--endpoint", &s3.endpoint])
        .args(["--mount", "/creds", "--cache"])
        .arg(&cache)
        .args(["--", "bash", "-c", &script]);
    env_for_tests(&mut c, tmp.path());
    std::fs::set_permissions(
        tmp.path().join("home"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_SESSION_TOKEN", token)
        // Everything, the SDK's request signing and the HTTP client included.
        .env("S3SHIM_LOG", "trace");
    let out = timed_output(c, 300);
    assert_success(&out, "run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.starts_with("hello\nno credential variables\n0\n[]\n"),
        "{stdout}"
    );
    assert!(stdout.contains("parent environ: closed"), "{stdout}");
    assert!(stdout.contains("agent environ: closed"), "{stdout}");
    assert!(stdout.contains("agent mem: closed"), "{stdout}");
    assert!(stdout.contains("sibling environ: readable"), "{stdout}");
    assert!(stdout.contains("sibling mem: readable"), "{stdout}");
    assert_eq!(s3.get("a.txt").as_deref(), Some(&b"hello\n"[..]));

    let log = std::fs::read_to_string(cache.join(".s3shim/agent.log")).unwrap();
    assert!(
        log.lines().count() > 50 && log.contains("TRACE"),
        "trace logging was on: {} lines",
        log.lines().count()
    );
    for (what, text) in [
        ("agent log", &*log),
        ("stdout", &stdout),
        ("stderr", &stderr),
    ] {
        assert!(
            !text.contains(SECRET_KEY),
            "the secret key is in the {what}"
        );
        assert!(!text.contains(token), "the session token is in the {what}");
    }
    // Every other file the agent wrote (the index, state) too.
    for e in walk(&cache.join(".s3shim")) {
        let bytes = std::fs::read(&e).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(SECRET_KEY), "secret in {}", e.display());
        assert!(!text.contains(token), "token in {}", e.display());
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if p.is_file() {
            out.push(p);
        }
    }
    out
}

/// The first address of this machine that is not loopback, if any.
fn non_loopback_ip() -> Option<String> {
    let out = Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| {
            a.parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| !ip.is_loopback())
        })
        .map(str::to_string)
}

#[test]
fn plain_http_off_loopback_is_refused_unless_allowed() {
    let Some(ip) = non_loopback_ip() else {
        skip::cannot_run("this machine has no non-loopback IPv4 address");
        return;
    };
    // Our server, reachable on that address.
    let data = tempfile::tempdir().unwrap();
    let (mut server, listening) = own_server(data.path(), "0.0.0.0:0");
    let port = listening.rsplit(':').next().unwrap().to_string();
    let endpoint = format!("http://{ip}:{port}");
    let tmp = tempfile::tempdir().unwrap();
    let run = |cache: &str, endpoint: &str, allow: Option<&str>| {
        let mut c = Command::new(bin());
        c.args([
            "run",
            "--bucket",
            BUCKET,
            "--endpoint",
            endpoint,
            "--mount",
            "/net",
        ])
        .arg("--cache")
        .arg(tmp.path().join(cache));
        if allow == Some("flag") {
            c.arg("--allow-http");
        }
        c.args(["--", "bash", "-c", "echo over-http > /net/f && cat /net/f"]);
        env_for_tests(&mut c, tmp.path());
        if let Some(v) = allow.filter(|a| *a != "flag") {
            c.env("S3SHIM_ALLOW_HTTP", v);
        }
        c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        timed_output(c, 120)
    };

    for (cache, ep, allow) in [
        ("c1", endpoint.clone(), None),
        ("c2", endpoint.clone(), Some("0")),
        // The user-info part of a URL is not its host.
        ("c3", format!("http://127.0.0.1:1@{ip}:{port}"), None),
    ] {
        let out = run(cache, &ep, allow);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{ep} with {allow:?} must be refused");
        assert!(err.contains("refusing plain http"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    }
    for (cache, allow) in [("c4", "flag"), ("c5", "1")] {
        let out = run(cache, &endpoint, Some(allow));
        assert_success(&out, &format!("--allow-http as {allow}"));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "over-http\n");
    }
    // Loopback needs no permission.
    let out = run("c6", &format!("http://127.0.0.1:{port}"), None);
    assert_success(&out, "loopback http");
    let _ = server.kill();
    let _ = server.wait();
}

/// What `nobody` gets trying to list and read a cache: one line per attempt, `ok` or the
/// error.
fn probe_cache_as_nobody(cache: &Path) -> String {
    let script = format!(
        "c={c}
         for what in \"ls $c\" \"ls $c/tree\" \"ls $c/tree/d\" \"cat $c/tree/.env\" \"cat $c/tree/d/f\" \"stat $c/tree/.env\" \"ls $c/.s3shim\" \"cat $c/.s3shim/agent.log\"; do
           if out=$($what 2>&1 >/dev/null); then echo \"$what: ok\"; else echo \"$what: ${{out##*: }}\"; fi
         done",
        c = cache.display()
    );
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "bash",
            "-c",
            &script,
        ])
        .output()
        .expect("setpriv (util-linux)");
    assert_success(&out, "the probe as nobody");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A workspace with a secret in it, written through `run`; prints the modes the program
/// sees (its own, as it set them).
const SECRET_TREE: &str =
    "echo 'TOKEN=hunter2' > /priv/.env && mkdir /priv/d && echo x > /priv/d/f && \
     chmod 644 /priv/.env && stat -c %a /priv /priv/.env /priv/d";

#[test]
fn no_other_user_can_list_or_read_a_cache() {
    assert!(
        is_root(),
        "this test needs root: it reads the cache as another user (nobody) and writes under /var/cache"
    );
    let s3 = S3Server::start();
    // The home a cache lives in is usually open to others (0755), as is /var/cache: only
    // the cache's own mode can keep them out.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let xdg = tmp.path().join("xdg-cache");
    std::fs::create_dir(&xdg).unwrap();
    std::fs::set_permissions(&xdg, std::fs::Permissions::from_mode(0o755)).unwrap();
    let var = Path::new("/var/cache").join(format!("s3shim-test-{:08x}", rand::random::<u32>()));
    std::fs::create_dir_all(&var).unwrap();
    std::fs::set_permissions(&var, std::fs::Permissions::from_mode(0o755)).unwrap();
    let given = var.join("ws");
    // A --cache made by hand, open to everyone.
    std::fs::create_dir(&given).unwrap();
    std::fs::set_permissions(&given, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |prefix: &str, cache: Option<&Path>| {
        let mut c = Command::new(bin());
        c.args(["run", "--bucket", BUCKET, "--endpoint", &s3.endpoint])
            .args(["--key-prefix", prefix, "--mount", "/priv"]);
        if let Some(cache) = cache {
            c.arg("--cache").arg(cache);
        }
        c.args(["--", "bash", "-c", SECRET_TREE]);
        env_for_tests(&mut c, tmp.path());
        c.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
        let out = timed_output(c, 120);
        assert_success(&out, "run");
        // Programs see the modes they set, not the cache's.
        assert_eq!(String::from_utf8_lossy(&out.stdout), "755\n644\n755\n");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let said_default = run("default/", None);
    let said_given = run("given/", Some(&given));
    let default = std::fs::read_dir(xdg.join("s3shim"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(said_default, "", "a fresh cache needs no word");
    assert_eq!(
        said_given.trim(),
        format!(
            "s3shim: the cache {} was open to other users (mode 0755); made it 0700 so only you can read the workspace through it",
            given.display()
        )
    );
    for cache in [&default, &given] {
        let mode = std::fs::metadata(cache).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "{}", cache.display());
        // The files are there, readable by their owner.
        assert_eq!(
            std::fs::read_to_string(cache.join("tree/.env")).unwrap(),
            "TOKEN=hunter2\n"
        );
        let probe = probe_cache_as_nobody(cache);
        let lines: Vec<&str> = probe.lines().collect();
        assert_eq!(lines.len(), 8, "{probe}");
        for l in lines {
            assert!(
                l.ends_with(": Permission denied"),
                "{}: {probe}",
                cache.display()
            );
        }
    }
    std::fs::remove_dir_all(&var).unwrap();
}
