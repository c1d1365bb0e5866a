//! The agent is supervised: `run` restarts it when it dies, the shim's requests wait for
//! the new one, and nothing written before or during the gap is lost.

mod common;

use common::tree::*;
use common::*;
use s3shim_protocol::layout;
use std::process::Stdio;
use std::time::{Duration, Instant};

const DIRS: usize = 60;

/// How many agents of this cache have said they are ready.
fn agents_ready(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("agent ready:")
        .count()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// SIGKILL of the agent ×20 (`S3SHIM_CRASH_ITERATIONS`) at random moments of a mixed
/// workload under one `run`: no call of the program fails, `run` exits 0, the bucket
/// equals the cache, and `s3shim status` counts the restarts.
#[test]
fn the_agent_killed_at_random_moments_is_restarted_and_no_call_fails() {
    let kills: usize = std::env::var("S3SHIM_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("S3SHIM_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("supervision test seed {seed} (S3SHIM_CRASH_SEED to repeat)");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let s3 = S3Server::start();
    runtime().block_on(async {
        let c = s3.client().await;
        // Directory markers too, so the bucket can equal the cache key for key.
        let mut puts = vec![("sup/src/".to_string(), Vec::new())];
        for d in 0..DIRS {
            puts.push((format!("sup/src/d{d:02}/"), Vec::new()));
            puts.push((format!("sup/src/d{d:02}/sub/"), Vec::new()));
            for f in 0..4 {
                let body = format!("d{d:02} f{f}\n").repeat(200 + 37 * f);
                puts.push((format!("sup/src/d{d:02}/f{f}.txt"), body.into_bytes()));
            }
            puts.push((
                format!("sup/src/d{d:02}/sub/deep.txt"),
                format!("deep {d}\n").into_bytes(),
            ));
        }
        let reqs = puts
            .into_iter()
            .map(|(k, b)| c.put_object().bucket(BUCKET).key(k).body(b.into()).send());
        for r in futures::future::join_all(reqs).await {
            r.unwrap();
        }
    });
    let ws = Workspace::new(&s3, "sup/", "/supws");
    let t = ws.tmp.path();
    let (progress, stop, status) = (t.join("progress"), t.join("stop"), t.join("status"));
    let rounds = || -> usize {
        std::fs::read_to_string(&progress)
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    };
    let log = ws.cache("c").join(layout::STATE_DIR).join(layout::LOG_NAME);
    let mut c = ws.command(
        "c",
        &[
            "python3",
            scenario("supervised_mix.py").to_str().unwrap(),
            "/supws",
            progress.to_str().unwrap(),
            stop.to_str().unwrap(),
            status.to_str().unwrap(),
            bin().to_str().unwrap(),
            &DIRS.to_string(),
        ],
    );
    c.env("S3SHIM_DEBOUNCE_MS", "20")
        .env("S3SHIM_DEBOUNCE_MAX_MS", "100")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = c.spawn().unwrap();
    let mut killed = Vec::new();
    for k in 0..kills {
        wait_until("the agent to be ready", || agents_ready(&log) == k + 1);
        // The workload gets on with this agent (a round: a listing, reads, writes,
        // renames, deletes) before it is killed at a random moment.
        let done = rounds();
        wait_until("a round of the workload", || rounds() > done);
        let agent = *children_with(run.id(), "\0agent\0")
            .iter()
            .find(|p| !killed.contains(*p) && !gone(**p))
            .expect("a live agent under run");
        std::thread::sleep(Duration::from_millis(rand::Rng::gen_range(
            &mut rng,
            0..700,
        )));
        // SAFETY: an agent this test's run started.
        unsafe { libc::kill(agent as i32, libc::SIGKILL) };
        killed.push(agent);
        eprintln!("kill {k}: agent {agent}");
    }
    wait_until("the last agent to be ready", || {
        agents_ready(&log) == kills + 1
    });
    std::fs::write(&stop, "").unwrap();
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let dump = || {
        eprintln!(
            "stdout:\n{}\nstderr:\n{stderr}\nagent log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    if !out.status.success() {
        dump();
        panic!("run failed ({}), seed {seed}", out.status);
    }
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    // Every death was seen, said on stderr and in the log, and counted.
    assert_eq!(
        stderr.matches("died: killed by SIGKILL").count(),
        kills,
        "{stderr}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged.matches("died: killed by SIGKILL").count(), kills);
    let status = std::fs::read_to_string(&status).unwrap();
    assert!(
        status.contains(&format!("restarts:   {kills} (")) && status.contains("SIGKILL"),
        "{status}"
    );
    assert!(!stderr.contains("Input/output error"), "{stderr}");
    let tree = ws.cache("c").join(layout::TREE_DIR);
    if let Err(e) = std::panic::catch_unwind(|| assert_bucket_equals_tree(&s3, "sup/", &tree)) {
        // The whole log is large (a line per upload): what each agent did at start.
        let lines: Vec<&str> = logged
            .lines()
            .filter(|l| {
                ["agent ready", "died", "scan", "not deleted", "failed"]
                    .iter()
                    .any(|w| l.contains(w))
            })
            .collect();
        eprintln!(
            "seed {seed}; the agents' starts and failures:\n{}",
            lines.join("\n")
        );
        std::panic::resume_unwind(e);
    }
}

/// The binary `run` was started from is replaced on disk (an upgrade during a long
/// session), then the agent dies: `run` restarts the agent it speaks to (its own
/// binary, not whatever the path holds now), and what is written after reaches S3.
#[test]
fn the_agent_is_restarted_after_the_binary_was_replaced_on_disk() {
    let s3 = S3Server::start();
    let ws = Workspace::new(&s3, "upg/", "/upgws");
    let t = ws.tmp.path();
    let installed = t.join("bin").join("s3shim");
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    std::fs::copy(bin(), &installed).unwrap();
    let (started, stop) = (t.join("started"), t.join("stop"));
    let script = format!(
        "echo before > /upgws/before.txt && touch {} && while [ ! -e {} ]; do sleep 0.05; done && echo after > /upgws/after.txt",
        started.display(),
        stop.display()
    );
    let template = ws.command("c", &["bash", "-c", &script]);
    let mut c = std::process::Command::new(&installed);
    c.args(template.get_args());
    env_like(&mut c, &template);
    c.env("S3SHIM_LIB", lib())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = c.spawn().unwrap();
    let log = ws.cache("c").join(layout::STATE_DIR).join(layout::LOG_NAME);
    wait_until("the workload to start", || started.exists());
    assert_eq!(agents_ready(&log), 1);
    // The upgrade: a new file renamed over the old path (here one that cannot be an agent).
    let new = t.join("bin").join("s3shim.new");
    std::fs::write(&new, "#!/bin/sh\nexit 3\n").unwrap();
    std::fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&new, &installed).unwrap();
    let agent = *children_with(run.id(), "\0agent\0")
        .first()
        .expect("the agent under run");
    // SAFETY: a process this test started.
    unsafe { libc::kill(agent as i32, libc::SIGKILL) };
    wait_until("the restarted agent", || agents_ready(&log) == 2);
    std::fs::write(&stop, "").unwrap();
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {stderr}", out.status);
    assert!(stderr.contains("died: killed by SIGKILL"), "{stderr}");
    assert_eq!(s3.get("upg/before.txt").as_deref(), Some(&b"before\n"[..]));
    assert_eq!(s3.get("upg/after.txt").as_deref(), Some(&b"after\n"[..]));
}
