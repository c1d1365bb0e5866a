//! Durability of the write-back: fsync/fdatasync wait for S3, a burst of saves uploads
//! once, SIGTERM drains, and kill -9 of the agent at any point loses nothing. Real
//! programs under `s3shim run` against a real S3 server on loopback.

mod common;

use common::proxy::Proxy;
use common::tree::*;
use common::*;
use s3shim_protocol::layout;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A debounce so long that nothing is uploaded by the background write-back during a
/// test: whatever is in S3 got there because something waited for it.
const NEVER: &str = "600000";

/// Lets a program under test go on past step `n` once `check` holds.
fn at_step(hs: &std::path::Path, n: u32, check: impl FnOnce()) {
    wait_for_file(&hs.join(format!("step-{n}")), &format!("step {n}"));
    check();
    std::fs::write(hs.join(format!("go-{n}")), "").unwrap();
}

#[test]
fn fsync_and_fdatasync_return_once_the_file_is_in_s3() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "fs/", "/fsyncws");
    let hs = ws.tmp.path().join("hs");
    std::fs::create_dir(&hs).unwrap();
    let mut cmd = ws.command(
        "c",
        &[
            "python3",
            scenario("fsync_steps.py").to_str().unwrap(),
            "/fsyncws",
            hs.to_str().unwrap(),
        ],
    );
    cmd.env("S3SHIM_DEBOUNCE_MS", NEVER)
        .env("S3SHIM_DEBOUNCE_MAX_MS", NEVER)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = cmd.spawn().unwrap();
    // The program is still running (its file open): only its own sync can have
    // uploaded the bytes.
    at_step(&hs, 1, || {
        assert_eq!(s3.get("fs/saved.txt").as_deref(), Some(&b"version 1\n"[..]))
    });
    at_step(&hs, 2, || {
        assert_eq!(
            s3.get("fs/saved.txt").as_deref(),
            Some(&b"version 2, longer\n"[..])
        )
    });
    at_step(&hs, 3, || {
        assert_eq!(
            s3.get("fs/saved.txt").as_deref(),
            Some(&b"version 3, raw syscall\n"[..])
        )
    });
    let out = run.wait_with_output().unwrap();
    assert_success(&out, "fsync_steps.py");
}

#[test]
fn a_burst_of_saves_uploads_once_with_the_final_bytes() {
    let s3 = S3Server::start();
    let proxy = Proxy::start(&s3.endpoint);
    let mut ws = Workspace::new(&s3, "burst/", "/burstws");
    ws.endpoint = proxy.endpoint.clone();
    // 50 saves of one file, 20 ms apart (1 s in all), as an editor's autosave would, with
    // the default debounce; then the end of `run` flushes.
    let out = ws.bash(
        "c",
        "for i in $(seq 1 50); do echo \"save $i\" > /burstws/doc.txt; sleep 0.02; done; echo done",
    );
    assert_eq!(out, "done\n");
    assert_eq!(s3.get("burst/doc.txt").as_deref(), Some(&b"save 50\n"[..]));
    let puts = proxy.count("PUT", &format!("/{BUCKET}/burst/doc.txt"));
    assert!(
        (1..=3).contains(&puts),
        "50 saves in a burst took {puts} PUTs; the debounce should make it 1 or 2"
    );
}

/// `s3shim run` started with `argv`, in its own process group (so a test can kill it and
/// everything it started, except the agent, which has its own session).
fn spawn_run(
    ws: &Workspace,
    cache: &str,
    argv: &[&str],
    env: &[(&str, &str)],
) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let mut c = ws.command(cache, argv);
    for (k, v) in env {
        c.env(k, v);
    }
    c.process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: sending a signal to a process this test started.
    unsafe { libc::kill(pid as i32, sig) };
}

fn wait_gone(pid: u32, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    while !gone(pid) {
        assert!(
            Instant::now() < deadline,
            "{what} still runs after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes three files, announces it, then waits (as a long-lived editor would).
fn write_then_wait(mount: &str, flag: &std::path::Path) -> String {
    format!(
        "mkdir -p {mount}/d && echo one > {mount}/a.txt && echo two > {mount}/d/b.txt && \
         head -c 300000 /dev/urandom > {mount}/d/c.bin && touch {} && exec sleep 600",
        flag.display()
    )
}

#[test]
fn sigterm_to_the_agent_drains_the_queue_before_it_exits() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "term/", "/termws");
    let flag = ws.tmp.path().join("written");
    let script = write_then_wait("/termws", &flag);
    let env = [
        ("S3SHIM_DEBOUNCE_MS", NEVER),
        ("S3SHIM_DEBOUNCE_MAX_MS", NEVER),
    ];
    let mut run = spawn_run(&ws, "c", &["bash", "-c", &script], &env);
    let agent = agent_of(run.id());
    wait_for_file(&flag, "the files to be written");
    assert!(
        s3.get("term/a.txt").is_none(),
        "nothing is uploaded before the drain"
    );
    signal(agent, libc::SIGTERM);
    wait_gone(agent, Duration::from_secs(60), "the agent");
    let n = assert_bucket_equals_tree(&s3, "term/", &ws.cache("c").join(layout::TREE_DIR));
    assert_eq!(n, 4, "a.txt, d/, d/b.txt, d/c.bin");
    let log = std::fs::read_to_string(ws.cache("c").join(layout::STATE_DIR).join(layout::LOG_NAME))
        .unwrap();
    assert!(log.contains("SIGTERM: draining"), "{log}");
    assert!(
        log.contains("drained in "),
        "the drain time is reported:\n{log}"
    );
    // SAFETY: the run's process group, started by this test.
    unsafe { libc::killpg(run.id() as i32, libc::SIGKILL) };
    let _ = run.wait();
}

#[test]
fn sigterm_to_run_stops_the_command_and_drains_before_exit() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "rterm/", "/rtermws");
    let flag = ws.tmp.path().join("written");
    let script = write_then_wait("/rtermws", &flag);
    let env = [
        ("S3SHIM_DEBOUNCE_MS", NEVER),
        ("S3SHIM_DEBOUNCE_MAX_MS", NEVER),
    ];
    let run = spawn_run(&ws, "c", &["bash", "-c", &script], &env);
    wait_for_file(&flag, "the files to be written");
    signal(run.id(), libc::SIGTERM);
    let out = run.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // The command died of SIGTERM: run reports its status (128 + 15).
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.contains("drained"), "run reports the drain: {err}");
    let n = assert_bucket_equals_tree(&s3, "rterm/", &ws.cache("c").join(layout::TREE_DIR));
    assert_eq!(n, 4);
}

/// kill -9 of the agent at random points of a write workload, then a restart on the
/// same cache: the bucket equals the cache byte for byte. `S3SHIM_CRASH_ITERATIONS`
/// sets the count (default 20).
#[test]
fn kill_9_of_the_agent_at_random_points_loses_nothing() {
    let iterations: u32 = std::env::var("S3SHIM_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "crash/", "/crashws");
    let seed: u64 = std::env::var("S3SHIM_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test seed {seed} (S3SHIM_CRASH_SEED to repeat)");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let env = [
        ("S3SHIM_DEBOUNCE_MS", "20"),
        ("S3SHIM_DEBOUNCE_MAX_MS", "100"),
    ];
    for i in 0..iterations {
        eprintln!("crash iteration {i}");
        let flag = ws.tmp.path().join(format!("started-{i}"));
        let wseed = rand::Rng::gen::<u32>(&mut rng).to_string();
        let mut run = spawn_run(
            &ws,
            "c",
            &[
                "python3",
                scenario("churn.py").to_str().unwrap(),
                "/crashws",
                flag.to_str().unwrap(),
                &wseed,
            ],
            &env,
        );
        let agent = agent_of(run.id());
        wait_for_file(&flag, "the workload to start");
        let after = rand::Rng::gen_range(&mut rng, 0..600);
        std::thread::sleep(Duration::from_millis(after));
        signal(agent, libc::SIGKILL);
        wait_gone(agent, Duration::from_secs(10), "the killed agent");
        // SAFETY: the run's process group, started by this test.
        unsafe { libc::killpg(run.id() as i32, libc::SIGKILL) };
        let _ = run.wait();
        // Restart on the same cache; `run` returns once everything is in S3.
        let out = ws.try_bash("c", "true");
        let checked = std::panic::catch_unwind(|| {
            assert_success(&out, &format!("restart after crash {i} (seed {seed})"));
            assert_bucket_equals_tree(&s3, "crash/", &ws.cache("c").join(layout::TREE_DIR));
        });
        if let Err(e) = checked {
            let log = ws.cache("c").join(layout::STATE_DIR).join(layout::LOG_NAME);
            eprintln!(
                "agent log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::panic::resume_unwind(e);
        }
    }
}

/// A directory that was never listed is renamed (its objects are copied server-side,
/// then the old ones deleted) and the agent is killed at a random point of that: the
/// restart finishes the rename. `S3SHIM_CRASH_ITERATIONS` caps the count (default 5).
#[test]
fn a_directory_rename_cut_by_kill_9_is_finished_on_restart() {
    let iterations: u32 = std::env::var("S3SHIM_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(|n: u32| n.min(5))
        .unwrap_or(5);
    let s3 = S3Server::start();
    let env = [
        ("S3SHIM_DEBOUNCE_MS", "20"),
        ("S3SHIM_DEBOUNCE_MAX_MS", "100"),
    ];
    for i in 0..iterations {
        let prefix = format!("dr{i}/");
        let ws = Workspace::new(&s3, &prefix, "/drws");
        let files: Vec<(String, Vec<u8>)> = (0..120)
            .map(|n| {
                (
                    format!("f{n:03}.txt"),
                    format!("file {n} of {i}\n").into_bytes(),
                )
            })
            .collect();
        runtime().block_on(async {
            let c = s3.client().await;
            let puts = files.iter().map(|(name, body)| {
                c.put_object()
                    .bucket(BUCKET)
                    .key(format!("{prefix}src/{name}"))
                    .body(body.clone().into())
                    .send()
            });
            for r in futures::future::join_all(puts).await {
                r.unwrap();
            }
        });
        let flag = ws.tmp.path().join("moved");
        let script = format!(
            "mv /drws/src /drws/dst && touch {} && exec sleep 600",
            flag.display()
        );
        let mut run = spawn_run(&ws, "c", &["bash", "-c", &script], &env);
        let agent = agent_of(run.id());
        wait_for_file(&flag, "the rename");
        // Kill once the copy has begun (the first new key exists), at a random point.
        let deadline = Instant::now() + Duration::from_secs(60);
        while s3.keys(&format!("{prefix}dst/")).is_empty() {
            assert!(Instant::now() < deadline, "the copy never started");
        }
        std::thread::sleep(Duration::from_millis(rand::random::<u64>() % 1200));
        signal(agent, libc::SIGKILL);
        eprintln!(
            "iteration {i}: killed with {} keys under the new name (120 files + the dir object when done), {} under the old",
            s3.keys(&format!("{prefix}dst/")).len(),
            s3.keys(&format!("{prefix}src/")).len()
        );
        wait_gone(agent, Duration::from_secs(10), "the killed agent");
        // SAFETY: the run's process group, started by this test.
        unsafe { libc::killpg(run.id() as i32, libc::SIGKILL) };
        let _ = run.wait();
        let out = ws.try_bash("c", "true");
        assert_success(&out, &format!("restart after the cut rename {i}"));
        let mut want: Vec<String> = files
            .iter()
            .map(|(n, _)| format!("{prefix}dst/{n}"))
            .collect();
        want.push(format!("{prefix}dst/"));
        want.sort();
        assert_eq!(s3.keys(&prefix), want, "iteration {i}: the rename is whole");
        for (name, body) in &files {
            assert_eq!(
                s3.get(&format!("{prefix}dst/{name}")).as_ref(),
                Some(body),
                "iteration {i}: {name}"
            );
        }
    }
}

/// Agents serving the cache at `cache` (any parent: an agent outlives its `run`).
fn agents_of_cache(cache: &std::path::Path) -> Vec<u32> {
    let needle = cache.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline.contains("\0agent\0") && cmdline.contains(&needle) && !gone(p) {
            out.push(p);
        }
    }
    out
}

/// A CI job (or the benchmark) removes the cache the moment `run` returns, while the
/// agent may still be draining before it exits: that removal is no session's doing and
/// must not become deletes in S3. (It did: each round lost a share of the bucket.)
#[test]
fn removing_the_cache_as_soon_as_run_returns_deletes_nothing_in_s3() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "rm/", "/rmws");
    ws.bash(
        "w",
        "mkdir -p /rmws/d/e && for i in $(seq 1 150); do echo $i > /rmws/d/f$i; echo $i > /rmws/d/e/g$i; done",
    );
    let keys = s3.keys("rm/");
    assert_eq!(
        keys.len(),
        302,
        "two directory markers and 300 files: {keys:?}"
    );
    let mut lingered = 0;
    for round in 0..8 {
        let c = format!("r{round}");
        let out = ws.bash(&c, "cat /rmws/d/f1 /rmws/d/e/g2 && ls /rmws/d | wc -l");
        assert_eq!(out, "1\n2\n151\n");
        let cache = ws.cache(&c);
        let agents = agents_of_cache(&cache);
        std::fs::remove_dir_all(&cache).unwrap();
        if !agents.is_empty() {
            lingered += 1;
        }
        for a in agents {
            wait_gone(a, Duration::from_secs(60), "the agent");
        }
        let now = s3.keys("rm/");
        let lost: Vec<&String> = keys.iter().filter(|k| !now.contains(k)).collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} objects deleted: {lost:?}",
            lost.len()
        );
    }
    eprintln!("the agent outlived run in {lingered} of 8 rounds");
}
