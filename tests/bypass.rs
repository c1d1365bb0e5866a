//! Programs that make their own system calls (issue 15): Go binaries (Debian's go,
//! gofmt, esbuild from npm, programs go builds) and `gcc -static` programs, started in
//! a shimmed process tree, see the folder as libc programs do — lazily (cold cache), and
//! never a placeholder's zeros. Each scenario (`tests/bypass/<name>.sh FOLDER`) runs in a
//! plain local directory and on the mount path under `s3shim run` over the same content;
//! stdout must be identical, and what the programs wrote must be in S3 byte for byte.
//!
//! The tools are not installed by the tests: a missing one fails the test and names the
//! package (Debian `golang-go`, `gcc`; npm `esbuild`).

mod common;

use common::skip::cannot_run;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PREFIX: &str = "byp/";

fn seed() -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = vec![
        ("gomod/go.mod", "module example.com/hello\n\ngo 1.19\n"),
        (
            "gomod/main.go",
            "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() {\n\twd, _ := os.Getwd()\n\tfmt.Println(\"wd\", wd)\n\tfor _, p := range os.Args[1:] {\n\t\tb, err := os.ReadFile(p)\n\t\tif err != nil {\n\t\t\tfmt.Println(\"error\", err)\n\t\t\tos.Exit(1)\n\t\t}\n\t\tfmt.Printf(\"%d %q %s\\n\", len(b), b, Shout(\"read\"))\n\t}\n}\n",
        ),
        (
            "gomod/util.go",
            "package main\n\nimport \"strings\"\n\n// Shout upper-cases s.\nfunc Shout(s string) string { return strings.ToUpper(s) + \"!\" }\n",
        ),
        (
            "gomod/util_test.go",
            "package main\n\nimport (\n\t\"os\"\n\t\"testing\"\n)\n\nfunc TestShout(t *testing.T) {\n\tif Shout(\"a\") != \"A!\" {\n\t\tt.Fatal(\"bad\")\n\t}\n\tb, err := os.ReadFile(\"data/input.txt\")\n\tif err != nil || len(b) != 2000 || b[0] != 'g' {\n\t\tt.Fatalf(\"data/input.txt: %v %d\", err, len(b))\n\t}\n}\n",
        ),
        (
            "gomod/ugly.go",
            "package main\nfunc   ugly( ) int {\nreturn    1 }\n",
        ),
        (
            "gomod/cmd/upper/main.go",
            "package main\n\nimport (\n\t\"bytes\"\n\t\"os\"\n)\n\nfunc main() {\n\tb, err := os.ReadFile(os.Args[1])\n\tif err != nil {\n\t\tpanic(err)\n\t}\n\tif err := os.WriteFile(os.Args[1], bytes.ToUpper(b), 0o644); err != nil {\n\t\tpanic(err)\n\t}\n}\n",
        ),
        ("gomod/data/rewrite.txt", "rewrite me: keep every byte\n"),
        ("cdir/a.txt", "alpha file\n"),
        ("late/keep.txt", "a directory listed only when first used\n"),
        ("cdir/sub/b.txt", "beta file in sub\n"),
        ("cdir/sub/c.txt", "gamma\n"),
        (
            "web/src/main.js",
            "import { greet } from './lib.js';\nconsole.log(greet('esbuild'));\n",
        ),
        (
            "web/src/lib.js",
            "export function greet(n) {\n  return 'hello ' + n;\n}\n",
        ),
    ]
    .into_iter()
    .map(|(k, b)| (k.to_string(), b.as_bytes().to_vec()))
    .collect();
    // 2000 bytes that are not zeros: a placeholder read as zeros would show.
    let input: Vec<u8> = (0..2000).map(|i| b"go data "[i % 8]).collect();
    v.push(("gomod/data/input.txt".into(), input));
    // Files for the stress runs: each holds its own name, repeated.
    for i in 0..40 {
        let name = format!("f{i:02}.txt");
        v.push((format!("many/{name}"), name.repeat(20).into_bytes()));
    }
    v
}

fn seed_native(root: &Path) {
    for (rel, body) in seed() {
        let p = root.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
}

fn seed_bucket(s3: &S3Server) {
    for (rel, body) in seed() {
        s3.put(&format!("{PREFIX}{rel}"), &body);
    }
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bypass")
}

/// Fails (naming the package to install) when `tool` cannot run.
fn require(tool: &str, arg: &str, package: &str) {
    let ok = Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{tool}` is needed by this test and cannot run here: install {package}"
    );
}

/// Compiles `tests/bypass/<src>` statically into `out`.
fn compile_static(src: &str, out: &Path) {
    require(
        "gcc",
        "--version",
        "the Debian package gcc (with libc6-dev)",
    );
    let o = Command::new("gcc")
        .args(["-O1", "-Wall", "-static", "-pthread", "-o"])
        .arg(out)
        .arg(dir().join(src))
        .output()
        .unwrap();
    assert_success(&o, &format!("gcc -static {src}"));
}

struct Run {
    native: String,
    s3: S3Server,
    tmp: tempfile::TempDir,
}

/// Runs `tests/bypass/<name>.sh` natively and under the shim (cold cache) and compares.
/// `shows_cache`: the program canonicalises paths (through the mount path's symlink) and
/// prints them, so the cache path stands for the folder in its output (SEMANTICS.md).
fn conform(name: &str, helpers: &Path, shows_cache: bool) -> Run {
    let s3 = S3Server::start();
    seed_bucket(&s3);
    let tmp = tempfile::tempdir().unwrap();
    let native = tmp.path().join("local");
    seed_native(&native);
    let mount = tmp.path().join("mount");
    let (native_s, mount_s) = (native.to_str().unwrap(), mount.to_str().unwrap());
    let script = dir().join(format!("{name}.sh"));
    let norm = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .replace(native_s, "@W@")
            .replace(mount_s, "@W@")
            .replace(&native_s[1..], "@W@")
    };

    let mut c = Command::new("bash");
    c.arg(&script).arg(&native).env("HELPERS", helpers);
    env_for_tests(&mut c, tmp.path());
    let n = timed_output(c, 600);
    assert!(
        n.status.success(),
        "{name} fails natively:\n{}\n{}",
        norm(&n.stdout),
        String::from_utf8_lossy(&n.stderr)
    );

    let out = {
        let ws = Workspace::new(&s3, PREFIX, mount_s);
        let mut c = ws.command("c", &["bash", script.to_str().unwrap(), mount_s]);
        c.env("HELPERS", helpers);
        let s = timed_output(c, 600);
        let stderr = String::from_utf8_lossy(&s.stderr).into_owned();
        let tree = ws.cache("c").join("tree");
        let tree_s = tree.to_str().unwrap();
        let stdout = String::from_utf8_lossy(&s.stdout).into_owned();
        assert_eq!(
            stdout.contains(&tree_s[1..]),
            shows_cache,
            "{name}: the cache path (does not) show:\n{stdout}"
        );
        let stdout = stdout.replace(tree_s, "@W@").replace(&tree_s[1..], "@W@");
        assert!(
            !stderr.contains("cannot be supervised"),
            "{name}: fell back instead of being supervised:\n{stderr}"
        );
        assert_eq!(
            norm(stdout.as_bytes()),
            norm(&n.stdout),
            "{name}: output under the shim differs from native\nshim stderr:\n{stderr}"
        );
        assert!(s.status.success(), "{name}: {}\n{stderr}", s.status);
        // What the agent said about deletes, for a failure below to show its cause.
        let log = std::fs::read_to_string(ws.cache("c").join(".s3shim/agent.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("delet") || l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n");
        (norm(&n.stdout), tree_s.to_string(), log)
    };
    let (out, tree_s, log) = out;
    let why = |key: &str| {
        format!(
            "{name}: {key} in S3 differs from the native file\nkeys in S3: {:?}\nthe agent's deletes and warnings:\n{log}",
            s3.keys(PREFIX)
        )
    };
    // The run has returned: every change is in S3. Compare with the native directory.
    let objects = common::tree::expected_objects(&native, PREFIX);
    // Directory markers: the seed has none (another writer's layout), so none are compared.
    for (key, body) in objects.iter().filter(|(k, _)| !k.ends_with('/')) {
        let got = s3.get(key);
        if shows_cache {
            // Paths the program printed into the file: the cache path for the folder.
            let got = String::from_utf8_lossy(got.as_deref().unwrap_or_default())
                .replace(&tree_s[1..], "@W@");
            assert_eq!(got, norm(body), "{}", why(key));
        } else {
            assert_eq!(got.as_deref(), Some(body.as_slice()), "{}", why(key));
        }
    }
    Run {
        native: out,
        s3,
        tmp,
    }
}

fn holds(out: &str, lines: &[&str]) {
    for l in lines {
        assert!(out.lines().any(|x| x == *l), "expected {l:?} in:\n{out}");
    }
}

#[test]
fn go_toolchain_on_a_cold_folder() {
    require("go", "version", "the Debian package golang-go");
    let helpers = tempfile::tempdir().unwrap();
    let r = conform("go", helpers.path(), false);
    holds(
        &r.native,
        &[
            "vet from outside: ok",
            "vet absolute: ok",
            "@W@/gomod/ugly.go",
            "func ugly() int {",
            "ok  \texample.com/hello",
            "wd @W@/gomod",
            "REWRITE ME: KEEP EVERY BYTE",
        ],
    );
    assert!(
        r.native
            .contains(&format!("2000 \"{}", "go data ".repeat(3))),
        "{}",
        r.native
    );
    let _ = r.tmp;
}

#[test]
fn static_program_reads_writes_and_lists() {
    let helpers = tempfile::tempdir().unwrap();
    compile_static("io.c", &helpers.path().join("bypass-io"));
    let r = conform("static", helpers.path(), false);
    holds(
        &r.native,
        &[
            "abs: 11 [alpha file",
            "sub/b.txt: 17 [beta file in sub",
            "sub/../a.txt: 11 [alpha file",
            "entry b.txt",
            "entry c.txt",
            "stat new.txt 0 17",
            "missing -1",
        ],
    );
    assert_eq!(
        r.s3.get(&format!("{PREFIX}cdir/sub/new2.txt")).unwrap(),
        b"written absolute\n"
    );
}

#[test]
fn esbuild_bundles_by_absolute_mount_paths() {
    require(
        "esbuild",
        "--version",
        "esbuild from npm (npm install -g esbuild)",
    );
    let helpers = tempfile::tempdir().unwrap();
    let r = conform("esbuild", helpers.path(), true);
    assert!(r.native.contains("return \"hello \" + n;"), "{}", r.native);
}

/// esbuild through its node API, as Vite and most JS toolchains run it: a node process
/// whose cwd is outside the folder starts one esbuild service and feeds it absolute
/// mount paths over its pipe (a context rebuilt, a second build written into the folder,
/// a missing entry point), on a cold cache. The service is a Go program started by node
/// (under the shim), so it is supervised; its output matches a local directory's.
#[test]
fn esbuild_node_api_from_outside_the_folder() {
    let node = tool("node");
    if !runs(&node, "--version") {
        cannot_run(&format!(
            "`{node}` cannot run: install Node.js (or set S3SHIM_TEST_NODE)"
        ));
        return;
    }
    let Some(pkg) = esbuild_package() else {
        cannot_run(
            "esbuild's npm package is not found from an `esbuild` on PATH: npm install esbuild",
        );
        return;
    };
    let helpers = tempfile::tempdir().unwrap();
    let node_path = which(&node).unwrap_or_else(|| PathBuf::from(&node));
    std::os::unix::fs::symlink(node_path, helpers.path().join("node")).unwrap();
    std::os::unix::fs::symlink(&pkg, helpers.path().join("esbuild")).unwrap();
    let r = conform("esbuild_api", helpers.path(), true);
    holds(
        &r.native,
        &[
            "inputs @W@/web/src/lib.js @W@/web/src/main.js",
            "console.log(greet(\"esbuild\"));",
            "module.exports = __toCommonJS(lib_exports);",
            "missing: Could not resolve \"@W@/web/src/missing.js\"",
        ],
    );
}

/// Whether `prog arg` runs and succeeds.
fn runs(prog: &str, arg: &str) -> bool {
    Command::new(prog)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `name` as PATH finds it (a path is itself).
fn which(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The directory of the esbuild npm package whose `bin/esbuild` the `esbuild` on PATH is
/// (npm links `node_modules/.bin/esbuild` to it).
fn esbuild_package() -> Option<PathBuf> {
    let bin = std::fs::canonicalize(which("esbuild")?).ok()?;
    let pkg = bin.parent()?.parent()?.to_path_buf();
    pkg.join("package.json").is_file().then_some(pkg)
}

/// A file another writer adds in S3 after a static program started is read by it (the
/// directory is listed when the program first looks, not before exec); and what a
/// supervised program sees for its cwd.
#[test]
fn static_program_reads_a_file_added_after_it_started() {
    let helpers = tempfile::tempdir().unwrap();
    let prog = helpers.path().join("wait-read");
    compile_static("wait_read.c", &prog);
    let s3 = S3Server::start();
    seed_bucket(&s3);
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("mount");
    let mount_s = mount.to_str().unwrap();
    let ws = Workspace::new(&s3, PREFIX, mount_s);
    let script = format!(
        "cd {mount_s}/cdir && exec {} {mount_s}/late/new.txt",
        prog.display()
    );
    let mut c = ws.command("c", &["bash", "-c", &script]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut l = String::new();
        assert!(out.read_line(&mut l).unwrap() > 0, "ended early: {lines:?}");
        let ready = l == "ready\n";
        lines.push(l);
        if ready {
            break;
        }
    }
    s3.put(
        &format!("{PREFIX}late/new.txt"),
        b"added later by another writer\n",
    );
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status}: {lines:?} {rest}\n{err}");
    assert!(
        rest.contains("read 30 [added later by another writer\n]"),
        "{rest}\n{err}"
    );
    // What SEMANTICS.md says a supervised program sees: the kernel's own answer for
    // getcwd and /proc/self/cwd, the cache path (no libc hook maps it back).
    let tree = ws.cache("c").join("tree/cdir");
    assert_eq!(lines[0], format!("cwd {}\n", tree.display()));
    assert!(
        rest.contains(&format!("proc-cwd {}\n", tree.display())),
        "{rest}"
    );
}

/// Many threads, a fork/exec storm and a program killed in the middle of intercepted
/// calls leave the agent and the session healthy: later supervised reads are right and
/// `run` ends with everything in S3.
#[test]
fn interception_survives_threads_storms_and_kills() {
    let helpers = tempfile::tempdir().unwrap();
    let prog = helpers.path().join("stress");
    compile_static("stress.c", &prog);
    let s3 = S3Server::start();
    seed_bucket(&s3);
    let big: Vec<u8> = (0..24u32 << 20).map(|i| (i % 253) as u8 | 1).collect();
    s3.put(&format!("{PREFIX}big/blob.bin"), &big);
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("mount");
    let m = mount.to_str().unwrap();
    let ws = Workspace::new(&s3, PREFIX, m);
    let p = prog.display();
    let files: Vec<String> = (0..40).map(|i| format!("{m}/many/f{i:02}.txt")).collect();
    let script = format!(
        "set -e
{p} threads 32 {files}
{p} storm 200 {p} {m}/many/f07.txt
{p} slow {m}/big/blob.bin & pid=$!
# Killed wherever it is: before, inside or after its trapped open and the fetch.
kill -9 $pid; wait $pid || true
{p} slow {m}/big/blob.bin
echo after > {m}/many/after.txt
{p} threads 4 {m}/many/f01.txt {m}/many/f39.txt
",
        files = files.join(" ")
    );
    let out = ws.bash("c", &script);
    holds(
        &out,
        &[
            "threads 32 files 40 bad 0",
            "storm 200 ok 200",
            &format!("read {}", big.len()),
            "threads 4 files 2 bad 0",
        ],
    );
    assert_eq!(
        s3.get(&format!("{PREFIX}many/after.txt")).unwrap(),
        b"after\n"
    );
}

/// Where interception is off (`S3SHIM_INTERCEPT=0`, as on a kernel or profile without
/// it), a static program still never reads zeros: the folder it names is made local
/// before it starts, and one line on stderr names it.
#[test]
fn fallback_makes_the_folder_local_before_exec_and_warns() {
    let helpers = tempfile::tempdir().unwrap();
    let prog = helpers.path().join("bypass-io");
    compile_static("io.c", &prog);
    let s3 = S3Server::start();
    seed_bucket(&s3);
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("mount");
    let m = mount.to_str().unwrap();
    let ws = Workspace::new(&s3, PREFIX, m);
    let mut c = ws.command("c", &["bash", "-c", &format!("{} {m}", prog.display())]);
    c.env("S3SHIM_INTERCEPT", "0");
    let out = timed_output(c, 300);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    holds(
        &stdout,
        &[
            "abs: 11 [alpha file",
            "sub/b.txt: 17 [beta file in sub",
            "entry c.txt",
        ],
    );
    let warning = format!(
        "s3shim: {} is a static program the shim cannot enter and cannot be supervised (S3SHIM_INTERCEPT=0): the folder it uses is made local before it starts",
        prog.display()
    );
    assert_eq!(
        stderr.lines().filter(|l| *l == warning).count(),
        1,
        "{stderr}"
    );
}

/// `s3shim run PROGRAM` with a static program as the command itself: it is supervised
/// too (started through a shell the shim is in).
#[test]
fn a_static_command_given_to_run_is_supervised() {
    let helpers = tempfile::tempdir().unwrap();
    let prog = helpers.path().join("bypass-io");
    compile_static("io.c", &prog);
    let s3 = S3Server::start();
    seed_bucket(&s3);
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("mount");
    let m = mount.to_str().unwrap();
    let ws = Workspace::new(&s3, PREFIX, m);
    let out = timed_output(ws.command("c", &[prog.to_str().unwrap(), m]), 300);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    holds(
        &stdout,
        &["abs: 11 [alpha file", "entry b.txt", "stat new.txt 0 17"],
    );
    assert_eq!(
        s3.get(&format!("{PREFIX}cdir/sub/new2.txt")).unwrap(),
        b"written absolute\n"
    );
}

#[test]
fn gopls_answers_definition_and_references_with_mount_paths() {
    require("gopls", "version", "the Debian package gopls");
    let helpers = tempfile::tempdir().unwrap();
    let r = conform("gopls", helpers.path(), false);
    holds(
        &r.native,
        &[
            "@W@/gomod/util.go:6:6-11: defined here as func Shout(s string) string",
            "@W@/gomod/main.go:17:39-44",
        ],
    );
}
