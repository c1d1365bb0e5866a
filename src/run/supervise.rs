//! Supervision of the agent by the `run` that holds a session with it. When the agent
//! dies (a signal, the OOM killer, a panic, any exit) while the session is still wanted,
//! `run` starts a new one at once — after a backoff if it keeps dying — and says so on
//! stderr and in the agent log. While `run` holds `run.lock` (shared), the shim's requests
//! wait for the new agent instead of failing. What was written before and during the gap
//! is in the cache; the new agent's start-up scan finds it and uploads it.

use super::{connect_or_start, prepare_cache};
use crate::client;
use crate::config::Settings;
use anyhow::{Context, Result};
use parking_lot::{Condvar, Mutex};
use s3shim_protocol::layout;
use s3shim_protocol::wire::{self, Op};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An agent that ran at least this long before dying is restarted at once. After
/// `QUICK_DEATHS` in a row that died sooner, each restart waits (doubling from
/// `FIRST_BACKOFF` up to `MAX_BACKOFF`), so a crash loop does not spin; the cap stays well
/// below the shim's default wait (60 s), so programs still get their answer.
const STABLE: Duration = Duration::from_secs(5);
/// How long closing a session waits for the agent to say it has the session's last
/// changes in S3 (`run` flushed just before, so normally nothing is left).
const CLOSE_WAIT: Duration = Duration::from_secs(120);
const QUICK_DEATHS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the final flush waits for the supervisor to bring an agent back.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Agents this process started, with how each ended once it has.
static AGENTS: Mutex<Option<HashMap<u32, Option<ExitStatus>>>> = Mutex::new(None);
static AGENT_ENDED: Condvar = Condvar::new();

/// Notes an agent this process started (its reaper calls [`ended`]).
pub fn spawned(pid: u32) {
    AGENTS
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(pid, None);
}

pub fn ended(pid: u32, status: ExitStatus) {
    AGENTS
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(pid, Some(status));
    AGENT_ENDED.notify_all();
}

/// Whether `pid` is an agent this process started (reaped by its own thread).
pub fn is_agent(pid: u32) -> bool {
    AGENTS.lock().as_ref().is_some_and(|m| m.contains_key(&pid))
}

/// How agent `pid` ended. Its session closes as it dies; its exit status reaches the
/// reaper at about the same time, so this waits for it a little.
fn cause_of(pid: Option<u32>) -> String {
    let Some(pid) = pid else {
        return "its session closed; it was started by another run".into();
    };
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut agents = AGENTS.lock();
    loop {
        if let Some(Some(status)) = agents.as_ref().and_then(|m| m.get(&pid)) {
            return describe(*status);
        }
        if AGENT_ENDED.wait_until(&mut agents, deadline).timed_out() {
            return "its session closed while the process still ran".into();
        }
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (_, Some(libc::SIGKILL)) => {
            "killed by SIGKILL (kill -9, or the kernel's OOM killer)".into()
        }
        (_, Some(libc::SIGABRT)) => "aborted (SIGABRT: an agent bug; its log says where)".into(),
        (_, Some(sig)) => format!("killed by signal {sig}"),
        _ => "ended".into(),
    }
}

struct State {
    session: UnixStream,
    agent: Option<u32>,
    /// Bumped with every new session: a request that lost its agent waits for it.
    generation: u64,
    closing: bool,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

pub struct Supervisor {
    shared: Shared,
    socket: PathBuf,
    thread: Option<JoinHandle<()>>,
    /// `run.lock`, held shared for the whole session: it tells the shim a supervisor is
    /// there, so a missing agent is worth waiting for.
    _lock: std::fs::File,
}

impl Supervisor {
    /// Opens a session with the cache's agent (starting one if none runs) and watches it.
    pub fn start(settings: &Settings) -> Result<Supervisor> {
        prepare_cache(settings)?;
        let lock = take_run_lock(settings)?;
        let (session, agent) = connect_or_start(settings)?;
        let shared: Shared = Arc::new((
            Mutex::new(State {
                session,
                agent,
                generation: 0,
                closing: false,
            }),
            Condvar::new(),
        ));
        let (s, sh) = (settings.clone(), shared.clone());
        let thread = std::thread::Builder::new()
            .name("supervisor".into())
            .spawn(move || watch(&s, &sh))
            .context("starting the supervisor thread")?;
        Ok(Supervisor {
            shared,
            socket: settings.socket(),
            thread: Some(thread),
            _lock: lock,
        })
    }

    /// Sends `op` to the agent. When the agent is gone (dead, or being replaced), waits
    /// for the next one and asks it again: a flush is answered by the agent that has
    /// scanned the cache since, so nothing written before is left out.
    pub fn request(&self, op: Op) -> Result<(i32, String)> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let seen = self.shared.0.lock().generation;
            let err = match client::request(&self.socket, op, "") {
                Ok(r) => return Ok(r),
                Err(e) => e,
            };
            let (lock, cv) = &*self.shared;
            let mut st = lock.lock();
            while st.generation == seen {
                let supervising = self.thread.as_ref().is_some_and(|t| !t.is_finished());
                if !supervising || cv.wait_until(&mut st, deadline).timed_out() {
                    return Err(err);
                }
            }
        }
    }

    /// Ends the session in order: says so ([`wire::SESSION_BYE`]) and waits (bounded)
    /// until the agent closes its side, which it does once it has read what this
    /// session's programs changed and sent it to S3 (see the agent's `session`). The
    /// agent drains and exits once no session is left.
    pub fn close(mut self) {
        {
            let mut st = self.shared.0.lock();
            st.closing = true;
            let said = st.session.write_all(&[wire::SESSION_BYE]).is_ok()
                && st.session.shutdown(std::net::Shutdown::Write).is_ok()
                && st.session.set_read_timeout(Some(CLOSE_WAIT)).is_ok();
            if !said {
                let _ = st.session.shutdown(std::net::Shutdown::Both);
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn take_run_lock(settings: &Settings) -> Result<std::fs::File> {
    let path = settings.state_dir().join(layout::RUN_LOCK_NAME);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: a valid fd; shared, so every run on the cache holds it at once.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot lock {}", path.display()));
    }
    Ok(f)
}

/// The supervisor thread: waits for the session to close; unless `run` closed it, the
/// agent died, and a new one is started.
fn watch(settings: &Settings, shared: &Shared) {
    let (lock, cv) = &**shared;
    let mut quick_deaths = 0u32;
    let mut up_since = Instant::now();
    loop {
        let (probe, agent) = {
            let st = lock.lock();
            if st.closing {
                return;
            }
            (st.session.try_clone(), st.agent)
        };
        let Ok(mut probe) = probe else {
            return;
        };
        // The agent never writes on a session after accepting it: this returns when the
        // connection closes.
        let mut sink = [0u8; 64];
        while matches!(probe.read(&mut sink), Ok(n) if n > 0) {}
        if lock.lock().closing {
            return;
        }
        let cause = cause_of(agent);
        quick_deaths = if up_since.elapsed() >= STABLE {
            0
        } else {
            quick_deaths + 1
        };
        let mut backoff = backoff_after(quick_deaths);
        let n = record_restart(settings, &cause);
        let who = agent.map_or(String::new(), |p| format!(" (pid {p})"));
        let when = if backoff.is_zero() {
            String::new()
        } else {
            format!(" in {:.2} s (it keeps dying)", backoff.as_secs_f64())
        };
        say(
            settings,
            &format!("the agent{who} died: {cause}; starting a new one{when} (restart {n})"),
        );
        std::thread::sleep(backoff);
        loop {
            if lock.lock().closing {
                return;
            }
            match connect_or_start(settings) {
                Ok((session, agent)) => {
                    let mut st = lock.lock();
                    st.session = session;
                    st.agent = agent;
                    st.generation += 1;
                    cv.notify_all();
                    up_since = Instant::now();
                    break;
                }
                Err(e) => {
                    backoff = (backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                    say(
                        settings,
                        &format!(
                            "cannot start a new agent: {e:#}; trying again in {:.2} s",
                            backoff.as_secs_f64()
                        ),
                    );
                    std::thread::sleep(backoff);
                }
            }
        }
    }
}

/// The pause before a restart after `quick` deaths in a row of agents that did not last.
fn backoff_after(quick: u32) -> Duration {
    match quick.checked_sub(QUICK_DEATHS) {
        None | Some(0) => Duration::ZERO,
        Some(n) => FIRST_BACKOFF
            .saturating_mul(1 << (n - 1).min(16))
            .min(MAX_BACKOFF),
    }
}

/// One line on stderr and the same in the agent log (which the agent's own lines share).
fn say(settings: &Settings, line: &str) {
    eprintln!("s3shim: {line}");
    let log = settings.state_dir().join(layout::LOG_NAME);
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(log) {
        let _ = writeln!(
            f,
            "{} WARN s3shim run (pid {}): {line}",
            time::OffsetDateTime::now_utc(),
            std::process::id()
        );
    }
}

/// Counts a restart in the cache's `restarts` file (`count\tunix seconds\tcause`, shown
/// by `s3shim status`); returns the new count.
fn record_restart(settings: &Settings, cause: &str) -> u64 {
    let path = settings.state_dir().join(layout::RESTARTS_NAME);
    let before = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.split('\t').next()?.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let n = before + 1;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let cause = cause.replace(['\t', '\n'], " ");
    let _ = std::fs::write(&path, format!("{n}\t{secs}\t{cause}\n"));
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_only_when_agents_keep_dying() {
        let waits: Vec<u128> = (0..9).map(|q| backoff_after(q).as_millis()).collect();
        assert_eq!(waits, [0, 0, 0, 0, 250, 500, 1000, 2000, 4000]);
        assert_eq!(backoff_after(40), MAX_BACKOFF);
    }

    #[test]
    fn causes_are_worded() {
        assert_eq!(
            describe(ExitStatus::from_raw(libc::SIGKILL)),
            "killed by SIGKILL (kill -9, or the kernel's OOM killer)"
        );
        assert_eq!(
            describe(ExitStatus::from_raw(1 << 8)),
            "exited with status 1"
        );
        assert!(describe(ExitStatus::from_raw(libc::SIGABRT)).starts_with("aborted"));
    }
}
