//! `s3shim run`: start (or join) the cache's agent, run a command under the shim, and
//! return once everything it wrote is in S3.

mod supervise;

use crate::client;
use crate::config::Settings;
use anyhow::{bail, Context, Result};
use s3shim_protocol::layout;
use s3shim_protocol::wire::Op;
use std::ffi::{OsStr, OsString};
use std::io::BufRead;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// How long `run` waits for an agent to come up (including one draining before it).
const AGENT_START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long descendants that outlive the command (code-server's extension hosts linger a
/// few seconds) may go on writing before the final flush.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// Variables never passed to the command: credentials belong to the agent alone. The key
/// id goes too: alone it is useless to the command, and tools given half a key pair fail
/// with a confusing message instead of using their own configuration.
pub const CREDENTIAL_ENV: [&str; 4] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
];

/// `summary`: print one line with what the agent downloaded (CI logs, warm-cache checks).
pub fn run(settings: &Settings, command: &[OsString], summary: bool) -> Result<i32> {
    let lib = find_lib()?;
    let supervisor = supervise::Supervisor::start(settings)?;
    // issue 15: programs the shim cannot enter (static, Go) resolve absolute mount paths
    // through the kernel, so the mount path is made a link to the tree where it can be.
    let tree = settings.tree();
    let link = crate::agent::intercept::link_mount(&settings.mount, &tree);
    let status = run_command(settings, &lib, command);
    wait_for_orphans(ORPHAN_GRACE);
    if link == crate::agent::intercept::MountLink::Created {
        crate::agent::intercept::unlink_mount(&settings.mount, &tree);
    }
    let status = status?;
    let draining = Instant::now();
    // Through restarts: a dead agent is replaced by the supervisor and asked again.
    let (errno, report) = supervisor
        .request(Op::Flush)
        .context("waiting for uploads")?;
    if summary {
        // Asked before the session closes: the agent may exit right after.
        let (_, text) = supervisor.request(Op::Status)?;
        eprintln!("s3shim: {}", client::summary_line(&text));
    }
    supervisor.close();
    let sig = STOPPED_BY.load(Ordering::SeqCst);
    if sig != 0 {
        // A container stop: say that the queue was drained, and how long it took.
        eprintln!(
            "s3shim: stopped by signal {sig}; drained uploads in {:.1} s",
            draining.elapsed().as_secs_f64()
        );
    }
    let mut code = status;
    if errno != 0 {
        eprintln!(
            "s3shim: these changes are not in S3 (they stay in the cache {} and are retried when the agent runs again):",
            settings.tree().display()
        );
        for line in report.lines() {
            let (path, why) = line.split_once('\t').unwrap_or((line, ""));
            eprintln!("  {path}: {why}");
        }
        if code == 0 {
            code = 1;
        }
    }
    Ok(code)
}

/// The preload library: `$S3SHIM_LIB`, else next to this binary, else in `../lib`.
pub fn find_lib() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("S3SHIM_LIB") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("S3SHIM_LIB names {}, which does not exist", p.display());
    }
    let exe = std::env::current_exe().context("cannot locate the s3shim binary")?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    for cand in [
        dir.join(layout::LIB_NAME),
        dir.join("../lib/s3shim").join(layout::LIB_NAME),
        dir.join("../lib").join(layout::LIB_NAME),
    ] {
        if cand.is_file() {
            return Ok(cand.canonicalize()?);
        }
    }
    bail!(
        "cannot find {} next to {} or in ../lib; build it (cargo build --workspace) or set S3SHIM_LIB",
        layout::LIB_NAME,
        exe.display()
    )
}

/// Makes the cache (private) and its state directory.
fn prepare_cache(settings: &Settings) -> Result<()> {
    if let Some(sentence) = crate::config::make_private(&settings.cache)? {
        eprintln!("s3shim: {sentence}");
    }
    let state = settings.state_dir();
    std::fs::create_dir_all(&state).map_err(|e| {
        anyhow::anyhow!(
            "cannot create {} ({e}); pass a writable --cache or fix its permissions",
            state.display()
        )
    })?;
    Ok(())
}

/// Opens a session with the cache's agent, starting one if none runs. The returned
/// stream keeps the agent alive until it is dropped; the pid is the agent's when this
/// `run` started it.
fn connect_or_start(settings: &Settings) -> Result<(UnixStream, Option<u32>)> {
    let state = settings.state_dir();
    let deadline = Instant::now() + AGENT_START_TIMEOUT;
    let mut started = None;
    loop {
        if let Ok(mut s) = UnixStream::connect(settings.socket()) {
            client::send(&mut s, Op::Session, "")?;
            if let Ok((0, _)) = client::read_reply(&mut s) {
                return Ok((s, started));
            }
        }
        if Instant::now() > deadline {
            bail!(
                "no agent for {} came up within {AGENT_START_TIMEOUT:?}; see {}",
                settings.cache.display(),
                state.join(layout::LOG_NAME).display()
            );
        }
        match spawn_agent(settings, deadline)? {
            AgentStart::Ready(info, pid) => {
                started = Some(pid);
                if !info.is_empty() {
                    eprintln!("s3shim: {info}");
                }
            }
            // Another agent holds the cache (starting, or draining before exit).
            AgentStart::Busy => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

enum AgentStart {
    Ready(String, u32),
    Busy,
}

/// This binary, to start an agent of the same version. Once it was replaced on disk (an
/// upgrade during a days-long session) its path names the new file or nothing
/// (`current_exe` then says "... (deleted)"); the kernel's link still reaches the file
/// this process runs, so a restart after an upgrade starts the agent `run` speaks to.
fn own_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the s3shim binary")?;
    let same = |a: &Path, b: &Path| match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    let running = Path::new("/proc/self/exe");
    if same(&exe, running) {
        Ok(exe)
    } else {
        Ok(running.to_path_buf())
    }
}

fn spawn_agent(settings: &Settings, deadline: Instant) -> Result<AgentStart> {
    let state = settings.state_dir();
    let log_path = state.join(layout::LOG_NAME);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut cmd = Command::new(own_binary()?);
    cmd.arg("agent")
        .args(settings.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        // The agent works on the cache itself and must never run under the shim.
        .env_remove("LD_PRELOAD")
        .env("S3SHIM_DISABLE", "1");
    // SAFETY: setsid is async-signal-safe; a new session keeps the terminal's Ctrl-C
    // away from the agent, which must drain uploads, not die with the command.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the agent")?;
    let stdout = child.stdout.take().context("agent stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let r = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(r.map(|_| line));
    });
    let wait = deadline.saturating_duration_since(Instant::now());
    let line = match rx.recv_timeout(wait) {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => bail!("reading the agent's start-up line: {e}"),
        Err(_) => {
            let _ = child.kill();
            bail!(
                "the agent did not start within {AGENT_START_TIMEOUT:?}; see {}",
                log_path.display()
            );
        }
    };
    let line = line.trim_end_matches('\n');
    if line == "BUSY" {
        let _ = child.wait();
        return Ok(AgentStart::Busy);
    }
    if let Some(info) = line.strip_prefix("READY\t") {
        let pid = child.id();
        // The agent lives on by itself; reap it from a thread so it never lingers as a
        // zombie of ours, and keep how it ended for the supervisor.
        supervise::spawned(pid);
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                supervise::ended(pid, status);
            }
        });
        return Ok(AgentStart::Ready(info.to_string(), pid));
    }
    let _ = child.wait();
    match line.strip_prefix("ERROR\t") {
        Some(sentence) => bail!("{sentence}"),
        None => bail!(
            "the agent stopped during start-up; see {}",
            log_path.display()
        ),
    }
}

static CHILD: AtomicI32 = AtomicI32::new(0);
/// The signal that stopped `run` (SIGTERM, SIGHUP), 0 if none.
static STOPPED_BY: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    STOPPED_BY.store(sig, Ordering::SeqCst);
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Runs the command under the shim and returns its exit code (128+N for signal N).
fn run_command(settings: &Settings, lib: &Path, command: &[OsString]) -> Result<i32> {
    let (prog, args) = command.split_first().context("no command given")?;
    // issue 15: a static or Go command is exec'd by a shell the shim is in, whose exec
    // hook puts it under the agent's supervision (run itself has no shim).
    let bypassing = crate::agent::intercept::find_program(prog)
        .is_some_and(|p| crate::agent::intercept::bypasses_libc(&p));
    let mut cmd = if bypassing {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg("exec \"$0\" \"$@\"").arg(prog);
        c
    } else {
        Command::new(prog)
    };
    cmd.args(args)
        .env(
            "LD_PRELOAD",
            preload_value(lib, std::env::var_os("LD_PRELOAD")),
        )
        .env(layout::ENV_MOUNT, &settings.mount)
        .env(layout::ENV_CACHE, &settings.cache)
        .env(layout::ENV_SOCKET, settings.socket())
        .env(layout::ENV_UV_IO_URING, "0")
        .env_remove("S3SHIM_DISABLE");
    for v in CREDENTIAL_ENV {
        cmd.env_remove(v);
    }
    // Our own environment still holds them: a non-dumpable process's /proc/PID/environ
    // and memory are closed to the command, which runs as the same user. (exec resets the
    // flag, so the command itself is dumpable as usual.)
    // SAFETY: prctl with these arguments only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // Orphaned descendants become our children, so we can wait for them (bounded) before
    // the final flush instead of flushing while they still write.
    // SAFETY: prctl with these arguments only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("s3shim: cannot run {}: {e}", prog.to_string_lossy());
            return Ok(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    CHILD.store(child.id() as i32, Ordering::SeqCst);
    // SAFETY: installing handlers; forward_signal only calls kill. Ctrl-C and Ctrl-\ reach
    // the command from the terminal directly, so `run` itself ignores them and waits.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            forward_signal as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGHUP,
            forward_signal as *const () as libc::sighandler_t,
        );
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGQUIT, libc::SIG_IGN);
    }
    let status = child.wait()?;
    CHILD.store(0, Ordering::SeqCst);
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Reaps descendants that outlived the command, waiting at most `grace` for them.
fn wait_for_orphans(grace: Duration) {
    let deadline = Instant::now() + grace;
    loop {
        let kids: Vec<u32> = children_of(std::process::id())
            .into_iter()
            .filter(|&p| !supervise::is_agent(p))
            .collect();
        if kids.is_empty() {
            return;
        }
        for &k in &kids {
            // SAFETY: reaping our own (adopted) children.
            unsafe { libc::waitpid(k as i32, std::ptr::null_mut(), libc::WNOHANG) };
        }
        if Instant::now() > deadline {
            eprintln!(
                "s3shim: {} background process(es) of the command still run; flushing without waiting for them",
                kids.len()
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Pids whose parent is `pid` (from /proc; zombies included, so they get reaped).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|st| {
                    // The command name may hold spaces and parentheses: parse after the last ')'.
                    let rest = &st[st.rfind(')')? + 2..];
                    rest.split(' ').nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// `LD_PRELOAD` with our library first, keeping what the user already preloads.
fn preload_value(lib: &Path, existing: Option<OsString>) -> OsString {
    let mut v = lib.as_os_str().to_os_string();
    if let Some(old) = existing.filter(|o| !o.is_empty()) {
        let ours = lib.as_os_str();
        let others: Vec<&OsStr> = std::os::unix::ffi::OsStrExt::as_bytes(old.as_os_str())
            .split(|&b| b == b':' || b == b' ')
            .filter(|p| !p.is_empty())
            .map(std::os::unix::ffi::OsStrExt::from_bytes)
            .filter(|p| *p != ours)
            .collect();
        for o in others {
            v.push(":");
            v.push(o);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preload_keeps_other_libraries_once() {
        let lib = Path::new("/opt/s3shim/libs3shim.so");
        assert_eq!(
            preload_value(lib, None),
            OsString::from("/opt/s3shim/libs3shim.so")
        );
        assert_eq!(
            preload_value(lib, Some("/x/a.so /opt/s3shim/libs3shim.so:/y/b.so".into())),
            OsString::from("/opt/s3shim/libs3shim.so:/x/a.so:/y/b.so")
        );
    }
}
