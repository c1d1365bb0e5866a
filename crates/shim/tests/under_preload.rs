//! NEEDS THE BUILT .so: real programs (bash, coreutils, python3, git, node) run with
//! `LD_PRELOAD=libs3shim.so` against a cache hydrated on demand by the real agent over
//! our S3 server (see `support/mod.rs`). Build first: `cargo build -p s3shim-shim`.
//!
//! Each test compares what programs see at `/workspace` with what S3 holds, and checks
//! which requests the agent answered and what reached S3.

mod support;

use s3shim_agent::agent::Requests;
use std::fs;
use support::{marker, Ws, MOUNT};

fn populated(name: &str) -> Ws {
    let ws = Ws::new(name);
    ws.remote_file("a.txt", b"remote-a\n", 0o644);
    ws.remote_file("sub/b.txt", b"remote-b\n", 0o644);
    ws.remote_file("sub/deep/c.txt", b"remote-c\n", 0o600);
    ws.remote_file("full/x.txt", b"x\n", 0o644);
    ws.remote_dir("empty");
    ws.remote_file(
        "bin/hello.sh",
        b"#!/bin/sh\necho hello from $0 \"$@\"\n",
        0o755,
    );
    ws
}

#[test]
fn coreutils_see_the_remote_tree_lazily() {
    let ws = populated("coreutils");
    // Nothing is hydrated before a program looks.
    assert!(fs::read_dir(&ws.tree).unwrap().next().is_none());

    let ls = ws.ok("ls /workspace");
    assert_eq!(ls, "a.txt\nbin\nempty\nfull\nsub\n");
    // Listing the root made placeholders, not downloads.
    assert!(marker(&ws.tree.join("a.txt")).unwrap().starts_with(b"F"));
    assert!(marker(&ws.tree.join("sub")).unwrap().starts_with(b"D"));
    assert_eq!(fs::metadata(ws.tree.join("a.txt")).unwrap().len(), 9);
    let listed = ws.requests();
    assert!(listed.list_dir > 0, "{listed:?}");
    assert_eq!(
        listed,
        Requests {
            list_dir: listed.list_dir,
            ..Requests::default()
        },
        "listing only"
    );
    assert_eq!(ws.s3_stats().get, 0, "nothing downloaded");

    // A placeholder read through cat returns the remote bytes.
    assert_eq!(ws.ok("cat /workspace/a.txt"), "remote-a\n");
    assert_eq!(ws.ok("cat /workspace/sub/b.txt"), "remote-b\n");
    assert_eq!(marker(&ws.tree.join("a.txt")), None, "fetched: marker gone");
    assert_eq!(fs::read(ws.tree.join("a.txt")).unwrap(), b"remote-a\n");
    let fetched = ws.requests() - listed;
    assert_eq!(fetched.fetch, 2, "{fetched:?}");
    assert_eq!(ws.s3_stats().get, 2, "one download per file read");

    // A path two levels down in unlisted directories: ENOENT -> Lookup -> retry.
    let before = ws.requests();
    assert_eq!(
        ws.ok("stat -c '%s %a' /workspace/sub/deep/c.txt"),
        "9 600\n"
    );
    assert!((ws.requests() - before).lookup > 0);
    assert!(
        marker(&ws.tree.join("sub/deep")).is_none(),
        "listed by the lookup"
    );
    assert_eq!(ws.ok("cat /workspace/sub/deep/c.txt"), "remote-c\n");

    // mkdir -p, mv, rm -r, inside the tree.
    ws.ok("mkdir -p /workspace/new/x/y && echo data > /workspace/new/x/y/f && mv /workspace/new/x /workspace/new/z");
    assert_eq!(fs::read(ws.tree.join("new/z/y/f")).unwrap(), b"data\n");
    assert_eq!(ws.ok("cat /workspace/new/z/y/f"), "data\n");
    ws.ok("rm -r /workspace/new");
    assert!(!ws.tree.join("new").exists());

    // find walks with dirfd-relative calls (gnulib fts: openat/fstatat/getdents).
    let found = ws.ok("find /workspace -type f | sort");
    assert_eq!(
        found,
        "/workspace/a.txt\n/workspace/bin/hello.sh\n/workspace/full/x.txt\n/workspace/sub/b.txt\n/workspace/sub/deep/c.txt\n"
    );
    let found = ws.ok("cd /workspace/sub && find . | sort");
    assert_eq!(found, ".\n./b.txt\n./deep\n./deep/c.txt\n");
}

#[test]
fn an_inherited_dirfd_into_the_tree_is_known_to_the_child() {
    let ws = populated("inherited-fd");
    // bash opens `sub` as fd 3 and python inherits it: opening a file two levels down
    // relative to fd 3 hydrates only if python's shim knows fd 3 is in the tree (it
    // learns that from /proc/self/fd on the first question about an fd).
    let out = ws.ok("exec 3< /workspace/sub && python3 -c 'import os\n\
         fd = os.open(\"deep/c.txt\", os.O_RDONLY, dir_fd=3)\n\
         print(os.read(fd, 100).decode(), end=\"\")'");
    assert_eq!(out, "remote-c\n");
    assert!(ws.requests().lookup > 0);
    assert!(
        marker(&ws.tree.join("sub/deep")).is_none(),
        "listed by a lookup"
    );
}

#[test]
fn cwd_and_result_paths_are_virtual() {
    let ws = populated("cwd");
    assert_eq!(
        ws.ok("cd /workspace && pwd && pwd -P && /bin/pwd"),
        "/workspace\n/workspace\n/workspace\n"
    );
    assert_eq!(
        ws.ok("cd /workspace/sub/deep && pwd -P"),
        "/workspace/sub/deep\n"
    );
    // `ls ..` at the root lists the parent of /workspace, not the cache directory.
    let parent = ws.ok("cd /workspace && ls -a ..");
    let native = String::from_utf8(
        std::process::Command::new("ls")
            .arg("-a")
            .arg("/")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(parent, native);
    assert_eq!(ws.ok("cd /workspace/sub && ls ../sub"), "b.txt\ndeep\n");
    assert_eq!(ws.ok("cd /workspace/sub && cat ../a.txt"), "remote-a\n");
    // The kernel's answers mapped back.
    assert_eq!(
        ws.ok("cd /workspace/sub && readlink /proc/self/cwd"),
        "/workspace/sub\n"
    );
    assert_eq!(
        ws.ok("readlink -f /workspace/sub/../a.txt"),
        "/workspace/a.txt\n"
    );
    assert_eq!(
        ws.ok("exec 3</workspace/a.txt; readlink /proc/self/fd/3"),
        "/workspace/a.txt\n"
    );
    assert_eq!(
        ws.ok("realpath /workspace/sub/deep"),
        "/workspace/sub/deep\n"
    );
    // A cwd above the mount: a relative path that enters it is mapped too.
    assert_eq!(ws.ok("cd / && cat workspace/a.txt"), "remote-a\n");
}

#[test]
fn a_process_started_in_the_raw_mount_directory_works_in_the_folder() {
    // `cd /workspace` in a shell without the shim, then `s3shim run -- cmd`: the
    // command's real cwd is the (empty) directory at the mount path.
    let ws = populated("rawcwd");
    let mount = ws.root.join("mnt");
    fs::create_dir(&mount).unwrap();
    let run = |script: &str| {
        let o = ws
            .cmd("/bin/bash")
            .env("S3SHIM_MOUNT", &mount)
            .current_dir(&mount)
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(
        run("cat a.txt && ls"),
        "remote-a\na.txt\nbin\nempty\nfull\nsub\n"
    );
    assert_eq!(
        run("echo new > made.txt && pwd -P && /bin/pwd"),
        format!("{0}\n{0}\n", mount.display())
    );
    assert_eq!(fs::read(ws.tree.join("made.txt")).unwrap(), b"new\n");
    assert_eq!(
        fs::read_dir(&mount).unwrap().count(),
        0,
        "nothing was written into the directory under the mount path"
    );
}

#[test]
fn python_sees_the_workspace() {
    let ws = populated("python");
    let out = ws.py_ok(
        r#"
import os
walk = sorted(os.path.join(d, f) for d, _, fs in os.walk('/workspace') for f in fs)
print('\n'.join(walk))
print(open('/workspace/sub/b.txt').read(), end='')
os.chdir('/workspace/sub')
print(os.getcwd())
print(os.path.realpath('deep/../b.txt'))
print(os.path.realpath('/workspace/sub/deep'))
with open('/workspace/sub/new.txt', 'w') as f:
    f.write('written by python\n')
print(sorted(os.listdir('.')))
print(os.stat('/workspace/full/x.txt').st_size)
"#,
    );
    assert_eq!(
        out,
        "/workspace/a.txt\n/workspace/bin/hello.sh\n/workspace/full/x.txt\n/workspace/sub/b.txt\n/workspace/sub/deep/c.txt\n\
         remote-b\n/workspace/sub\n/workspace/sub/b.txt\n/workspace/sub/deep\n\
         ['b.txt', 'deep', 'new.txt']\n2\n"
    );
    assert_eq!(
        fs::read(ws.tree.join("sub/new.txt")).unwrap(),
        b"written by python\n"
    );
    assert_eq!(ws.ok("cat /workspace/sub/new.txt"), "written by python\n");
}

#[test]
fn negative_lookup_in_a_listed_directory_costs_no_round_trip() {
    let ws = populated("negative");
    ws.ok("ls /workspace >/dev/null");
    let before = ws.requests();
    let o = ws.sh("stat /workspace/nope");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such file or directory"));
    assert_eq!(
        ws.requests() - before,
        Requests::default(),
        "listed parent: ENOENT is authoritative"
    );
    // Missing in an unlisted directory: one Lookup (which lists it), then the truth.
    let before = ws.requests();
    let o = ws.sh("stat /workspace/sub/nope");
    assert!(!o.status.success());
    assert_eq!(
        ws.requests() - before,
        Requests {
            lookup: 1,
            ..Requests::default()
        }
    );
    assert!(marker(&ws.tree.join("sub")).is_none(), "sub was listed");
}

#[test]
fn rmdir_of_an_unlisted_non_empty_dir_fails_like_native() {
    let ws = populated("rmdir");
    ws.ok("ls /workspace >/dev/null");
    assert!(
        marker(&ws.tree.join("full")).is_some(),
        "full/ is still unlisted"
    );
    let before = ws.requests();
    let out = ws.py_ok(
        r#"
import errno, os
try:
    os.rmdir('/workspace/full')
    print('removed')
except OSError as e:
    print(errno.errorcode[e.errno])
os.rmdir('/workspace/empty')
print('empty removed')
"#,
    );
    assert_eq!(out, "ENOTEMPTY\nempty removed\n");
    assert!(ws.tree.join("full/x.txt").exists());
    assert!(!ws.tree.join("empty").exists());
    assert!((ws.requests() - before).list_dir > 0);
    assert!(marker(&ws.tree.join("full")).is_none(), "full/ was listed");
}

#[test]
fn rename_out_of_the_tree_is_exdev_and_mv_copies() {
    let ws = populated("exdev");
    let outside = ws.root.join("outside");
    fs::create_dir(&outside).unwrap();
    let out = ws.py_ok(&format!(
        r#"
import errno, os
try:
    os.rename('/workspace/a.txt', '{o}/a.txt')
    print('renamed')
except OSError as e:
    print(errno.errorcode[e.errno])
try:
    os.link('/workspace/a.txt', '{o}/hard')
    print('linked')
except OSError as e:
    print(errno.errorcode[e.errno])
open('{o}/in.txt', 'w').write('from outside\n')
os.rename('{o}/in.txt', '/workspace/in.txt')
print(open('/workspace/in.txt').read(), end='')
"#,
        o = outside.display()
    ));
    assert_eq!(out, "EXDEV\nEXDEV\nfrom outside\n");
    // mv falls back to copy + unlink, reading the placeholder through the shim.
    ws.ok(&format!(
        "mv /workspace/a.txt {}/moved.txt",
        outside.display()
    ));
    assert_eq!(fs::read(outside.join("moved.txt")).unwrap(), b"remote-a\n");
    assert!(!ws.tree.join("a.txt").exists());
    assert_eq!(fs::read(ws.tree.join("in.txt")).unwrap(), b"from outside\n");
}

#[test]
fn children_without_ld_preload_are_still_covered() {
    let ws = populated("env");
    assert_eq!(
        ws.ok("env -u LD_PRELOAD bash -c 'cat /workspace/a.txt'"),
        "remote-a\n"
    );
    assert_eq!(
        ws.ok("env -i /bin/sh -c 'cat /workspace/sub/b.txt'"),
        "remote-b\n"
    );
    // Other preloads are kept; settings are forced; io_uring is off.
    let env =
        ws.ok("env -i LD_PRELOAD=/lib/x86_64-linux-gnu/libc.so.6 UV_USE_IO_URING=1 /usr/bin/env");
    let so = support::shim_so();
    assert!(
        env.contains(&format!(
            "LD_PRELOAD={}:/lib/x86_64-linux-gnu/libc.so.6\n",
            so.display()
        )),
        "{env}"
    );
    assert!(env.contains("UV_USE_IO_URING=0\n"));
    assert!(!env.contains("UV_USE_IO_URING=1"));
    assert!(env.contains(&format!("S3SHIM_CACHE={}\n", ws.cache.display())));
    assert!(env.contains("S3SHIM_MOUNT=/workspace\n"));
}

#[test]
fn exec_of_placeholders_and_path_search() {
    let ws = populated("exec");
    ws.remote_file("bin/second.sh", b"#!/bin/sh\necho second\n", 0o755);
    ws.remote_file("bin/third.sh", b"#!/bin/sh\necho third\n", 0o755);
    ws.remote_file("bin/plain", b"echo plain script $0\n", 0o755);
    ws.remote_file("bin/venvpy", b"#!/workspace/bin/hello.sh -x\n", 0o755);
    // A fetched script runs with its virtual path as $0 (the shim reads the #! line and
    // execs the interpreter itself).
    assert_eq!(
        ws.ok("/workspace/bin/hello.sh a b"),
        "hello from /workspace/bin/hello.sh a b\n"
    );
    // An interpreter that itself lives under the mount (a venv's python, say).
    assert_eq!(
        ws.ok("/workspace/bin/venvpy arg"),
        "hello from /workspace/bin/hello.sh -x /workspace/bin/venvpy arg\n"
    );
    // env(1) uses execvp: the PATH search maps the in-tree candidate (and fetches it).
    assert!(marker(&ws.tree.join("bin/second.sh")).is_some());
    let before = ws.requests();
    assert_eq!(
        ws.ok("PATH=/nonexistent:/workspace/bin:/usr/bin env second.sh"),
        "second\n"
    );
    assert!((ws.requests() - before).fetch > 0);
    assert_eq!(marker(&ws.tree.join("bin/second.sh")), None, "fetched");
    // A relative PATH element while the cwd is in the tree.
    assert_eq!(
        ws.ok("cd /workspace && PATH=bin:/usr/bin env third.sh"),
        "third\n"
    );
    // execl (C varargs helper) through python's ctypes.
    let out = ws.py_ok(
        r#"
import ctypes, os, sys
sys.stdout.flush()
if os.fork() == 0:
    libc = ctypes.CDLL(None)
    libc.execl(b"/workspace/bin/hello.sh", b"hello.sh", b"via-execl", None)
    os._exit(99)
_, st = os.wait()
print(os.waitstatus_to_exitcode(st))
"#,
    );
    assert_eq!(out, "hello from /workspace/bin/hello.sh via-execl\n0\n");
    // A file without #! runs through /bin/sh (ENOEXEC rule of execvp).
    assert_eq!(
        ws.ok("PATH=/workspace/bin:/usr/bin env plain"),
        "plain script /workspace/bin/plain\n"
    );
    // posix_spawnp with an in-tree PATH element (python's os.posix_spawnp).
    let out = ws.py_ok(
        r#"
import os
os.environ['PATH'] = '/workspace/bin:/usr/bin'
pid = os.posix_spawnp('hello.sh', ['hello.sh', 'spawned'], {k: v for k, v in os.environ.items() if k != 'LD_PRELOAD'})
print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"#,
    );
    assert_eq!(out, "hello from /workspace/bin/hello.sh spawned\n0\n");
}

#[test]
fn writes_truncations_and_appends() {
    let ws = populated("writes");
    // In S3 before the root is listed: `later` is an unlisted directory below.
    ws.remote_file("later/existing.txt", b"old\n", 0o644);
    ws.ok("ls /workspace /workspace/sub >/dev/null");
    let (before, s3_before) = (ws.requests(), ws.s3_stats());
    // O_TRUNC: the content is replaced, nothing is downloaded; the agent drops the
    // placeholder (serialised with any fetch of it) before the truncating open.
    ws.ok("echo replaced > /workspace/a.txt");
    assert_eq!(
        ws.requests() - before,
        Requests {
            discard: 1,
            ..Requests::default()
        }
    );
    assert_eq!(ws.s3_stats().get, s3_before.get, "nothing downloaded");
    assert_eq!(marker(&ws.tree.join("a.txt")), None);
    assert_eq!(ws.ok("cat /workspace/a.txt"), "replaced\n");
    // Append: the existing bytes are needed first.
    let before = ws.requests();
    ws.ok("echo more >> /workspace/sub/b.txt");
    assert_eq!(
        ws.requests() - before,
        Requests {
            fetch: 1,
            ..Requests::default()
        }
    );
    assert_eq!(
        fs::read(ws.tree.join("sub/b.txt")).unwrap(),
        b"remote-b\nmore\n"
    );
    // truncate(2) to a non-zero length fetches; to zero drops the marker.
    let out = ws.py_ok(
        r#"
import os
os.truncate('/workspace/full/x.txt', 1)
print(repr(open('/workspace/full/x.txt').read()))
"#,
    );
    assert_eq!(out, "'x'\n");
    ws.ok("ls /workspace/sub/deep > /dev/null");
    let (before, s3_before) = (ws.requests(), ws.s3_stats());
    ws.py_ok("import os; os.truncate('/workspace/sub/deep/c.txt', 0)");
    assert_eq!(marker(&ws.tree.join("sub/deep/c.txt")), None);
    let truncated = ws.requests() - before;
    assert_eq!(truncated.fetch, 0, "{truncated:?}");
    assert_eq!(truncated.discard, 1, "{truncated:?}");
    assert_eq!(ws.s3_stats().get, s3_before.get, "nothing downloaded");
    // Creating a file in an unlisted directory lists it first (no shadowing).
    assert!(marker(&ws.tree.join("later")).unwrap().starts_with(b"D"));
    ws.ok("echo fresh > /workspace/later/new.txt");
    assert_eq!(ws.ok("ls /workspace/later"), "existing.txt\nnew.txt\n");
    // The marker is invisible to programs.
    let o = ws.sh("getfattr -d -m - /workspace/later/existing.txt 2>&1; /usr/bin/python3 -c \"import os; print(os.listxattr('/workspace/later/existing.txt'))\"");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("s3shim"));
}

#[test]
fn git_works_in_the_mount() {
    let ws = populated("git");
    let out = ws.ok(
        "set -e; cd /workspace && git init -q repo && cd repo && echo hi > f.txt && mkdir d && echo x > d/y \
         && git add . && git -c user.name=t -c user.email=t@e commit -qm first \
         && git status --porcelain && git log --format=%s && git rev-parse --show-toplevel",
    );
    assert_eq!(out, "first\n/workspace/repo\n");
    assert!(ws.tree.join("repo/.git/HEAD").exists());
    let out = ws.ok("cd /workspace/repo && echo change >> f.txt && git status --porcelain");
    assert_eq!(out, " M f.txt\n");
}

#[test]
fn node_sees_the_workspace_and_its_children_too() {
    let ws = populated("node");
    // `scripts/test` names the node it installed (a fresh machine has no other).
    let node = std::env::var("S3SHIM_TEST_NODE").unwrap_or_else(|_| "node".into());
    assert!(
        std::process::Command::new(&node)
            .arg("-v")
            .output()
            .is_ok_and(|o| o.status.success()),
        "{node} does not run: install node (scripts/e2e/install.sh does) or set S3SHIM_TEST_NODE"
    );
    let script = r#"
const fs = require('fs'), cp = require('child_process');
console.log(fs.statSync('/workspace/sub/b.txt').size);
console.log(fs.readdirSync('/workspace').join(','));
console.log(fs.readFileSync('/workspace/a.txt', 'utf8').trim());
fs.writeFileSync('/workspace/from-node.txt', 'node wrote\n');
fs.mkdirSync('/workspace/nd/a', {recursive: true});
console.log(fs.realpathSync.native('/workspace/sub/../sub'));
const env = Object.assign({}, process.env); delete env.LD_PRELOAD;
console.log(cp.spawnSync('cat', ['/workspace/from-node.txt'], {env}).stdout.toString().trim());
console.log(cp.spawnSync('pwd', ['-P'], {env, cwd: '/workspace/sub'}).stdout.toString().trim());
fs.rmSync('/workspace/nd', {recursive: true});
console.log(fs.existsSync('/workspace/nd'));
"#;
    let o = ws.cmd(&node).arg("-e").arg(script).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        "9\na.txt,bin,empty,full,sub\nremote-a\n/workspace/sub\nnode wrote\n/workspace/sub\nfalse\n"
    );
    assert_eq!(
        fs::read(ws.tree.join("from-node.txt")).unwrap(),
        b"node wrote\n"
    );
    assert!(!ws.tree.join("nd").exists());
}

#[test]
fn agent_unreachable_is_eio_and_unconfigured_is_inert() {
    let ws = populated("noagent");
    let o = ws
        .cmd("/bin/ls")
        .arg(MOUNT)
        .env("S3SHIM_SOCKET", ws.root.join("no.sock"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Input/output error"),
        "{:?}",
        o
    );

    // Without settings (or with invalid ones) nothing is mapped.
    for (k, v) in [
        ("S3SHIM_MOUNT", "relative"),
        ("S3SHIM_MOUNT", "/"),
        ("S3SHIM_CACHE", ""),
    ] {
        let o = ws.cmd("/bin/ls").arg(MOUNT).env(k, v).output().unwrap();
        assert!(!o.status.success(), "{k}={v} must leave the shim inert");
        let o = ws
            .cmd("/bin/cat")
            .arg("/etc/hostname")
            .env(k, v)
            .output()
            .unwrap();
        assert!(o.status.success());
    }
}

#[test]
fn glibc_fts_walks_a_tree_listed_in_one_request() {
    let ws = populated("fts");
    // glibc's fts reads directories with internal calls: the shim sends ListTree for
    // the root first, then hands fts the mapped root; entries show mount paths.
    let out = ws.py_ok(
        r#"
import ctypes
libc = ctypes.CDLL(None)
class FTSENT(ctypes.Structure):
    _fields_ = [("cycle", ctypes.c_void_p), ("parent", ctypes.c_void_p), ("link", ctypes.c_void_p),
                ("number", ctypes.c_long), ("pointer", ctypes.c_void_p), ("accpath", ctypes.c_char_p),
                ("path", ctypes.c_char_p)]
libc.fts_open.restype = ctypes.c_void_p
libc.fts_read.restype = ctypes.POINTER(FTSENT)
libc.fts_read.argtypes = [ctypes.c_void_p]
libc.fts_close.argtypes = [ctypes.c_void_p]
roots = (ctypes.c_char_p * 2)(b"/workspace/sub", None)
fts = libc.fts_open(roots, 0x10 | 0x4, None)  # FTS_PHYSICAL | FTS_NOCHDIR
seen = set()
while True:
    e = libc.fts_read(fts)
    if not e:
        break
    seen.add(e.contents.path.decode())
libc.fts_close(fts)
print(sorted(seen))
"#,
    );
    assert_eq!(
        out,
        "['/workspace/sub', '/workspace/sub/b.txt', '/workspace/sub/deep', '/workspace/sub/deep/c.txt']\n",
        "{:?}",
        ws.requests()
    );
    assert!(ws.requests().list_tree > 0);
}
