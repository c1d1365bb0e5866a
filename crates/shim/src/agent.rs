//! Requests to the agent: one connection per request (AF_UNIX stream, CLOEXEC), one frame
//! out, one response in. Blocking, allocation-free, raw syscalls only. Used on slow paths.
//!
//! The agent may be restarting (it died; the `run` supervising it starts a new one): a
//! request that cannot reach it, or loses it before the answer, waits for the new one and
//! is sent again — all requests are idempotent — for as long as a `run` holds the cache's
//! `run.lock` and at most `S3SHIM_AGENT_WAIT_SECS` (default 60 s). Only then, or at once
//! when no `run` holds the lock (nothing would start an agent), is it `EIO`.

use crate::buf::PATH_MAX;
use core::ffi::c_int;
use core::sync::atomic::{AtomicU32, Ordering};
use rustix::fd::OwnedFd;
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketAddrUnix, SocketFlags, SocketType};
use s3shim_protocol::layout::{RUN_LOCK_NAME, STATE_DIR, TREE_DIR};
use s3shim_protocol::names::is_valid_rel_path;
use s3shim_protocol::wire::{self, Op, RESPONSE_BODY_MAX};

/// The longest a request waits for a restarting agent, in seconds.
static WAIT_SECS: AtomicU32 = AtomicU32::new(60);
/// Pause between attempts while the agent is away.
const RETRY_NS: i64 = 50_000_000;

/// Sets the wait from `S3SHIM_AGENT_WAIT_SECS` (decimal seconds; anything else keeps the
/// default). Called by the constructor.
pub fn set_wait(value: Option<&[u8]>) {
    let Some(v) = value.filter(|v| !v.is_empty() && v.len() <= 9) else {
        return;
    };
    let mut n: u32 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return;
        }
        n = n * 10 + u32::from(b - b'0');
    }
    WAIT_SECS.store(n, Ordering::Relaxed);
}

/// Why a request got no answer.
enum Failed {
    /// The agent answered with this errno.
    Agent(c_int),
    /// Not reachable, or gone before it answered: worth waiting for a new agent.
    Lost,
}

/// Sends `op` for `rel` (relative to the tree, `""` = root) and waits for the answer.
/// `Err(errno)`: the agent's error, or `EIO` when no agent can be reached (see the
/// module's note on restarts) or it misbehaves.
pub fn request(op: Op, rel: &[u8]) -> Result<(), c_int> {
    let mut wait = Wait::new();
    loop {
        let r = try_send(op, rel).and_then(|fd| try_answer(&fd, |_| {}));
        match r {
            Ok(()) => return Ok(()),
            Err(Failed::Agent(e)) => return Err(e),
            Err(Failed::Lost) if wait.again() => {}
            Err(Failed::Lost) => return Err(libc::EIO),
        }
    }
}

/// Sends `op` for `rel` without waiting: the connection to read the answer from with
/// [`answer`] (the caller can do other work while the agent handles it).
pub fn send(op: Op, rel: &[u8]) -> Result<OwnedFd, c_int> {
    let mut wait = Wait::new();
    loop {
        match try_send(op, rel) {
            Ok(fd) => return Ok(fd),
            Err(Failed::Agent(e)) => return Err(e),
            Err(Failed::Lost) if wait.again() => {}
            Err(Failed::Lost) => return Err(libc::EIO),
        }
    }
}

/// Waits for the answer to a request made with [`send`] (a sync: `Sync` or `Flush`). An
/// agent lost before it answered is replaced by a `Flush` to the next one, which waits
/// for every pending change, the synced file's included.
pub fn answer(fd: &OwnedFd) -> Result<(), c_int> {
    // The payload (text for humans) is not needed here; it is drained so the agent's
    // write does not fail.
    match try_answer(fd, |_| {}) {
        Ok(()) => Ok(()),
        Err(Failed::Agent(e)) => Err(e),
        Err(Failed::Lost) => request(Op::Flush, b""),
    }
}

fn try_send(op: Op, rel: &[u8]) -> Result<OwnedFd, Failed> {
    if !is_valid_rel_path(rel) {
        return Err(Failed::Agent(libc::EINVAL));
    }
    let mut frame = [0u8; wire::REQUEST_MAX];
    let n = wire::encode_request(op, rel, &mut frame).ok_or(Failed::Agent(libc::ENAMETOOLONG))?;
    let sock = crate::config::get()
        .socket()
        .ok_or(Failed::Agent(libc::EIO))?;
    let fd = connect(sock).map_err(|_| Failed::Lost)?;
    send_all(&fd, frame.get(..n).unwrap_or(&[])).map_err(|_| Failed::Lost)?;
    Ok(fd)
}

/// Sends `op` for `rel`, waits for the answer and hands its payload to `sink` as it
/// arrives (in pieces of any size). A request whose agent is lost before any of the
/// payload arrived waits for the next agent and is sent again; one cut during the
/// payload is `EIO` (the sink has part of it).
pub fn request_reading(op: Op, rel: &[u8], mut sink: impl FnMut(&[u8])) -> Result<(), c_int> {
    let mut wait = Wait::new();
    loop {
        match try_send(op, rel).and_then(|fd| try_answer(&fd, &mut sink)) {
            Ok(()) => return Ok(()),
            Err(Failed::Agent(e)) => return Err(e),
            Err(Failed::Lost) if wait.again() => {}
            Err(Failed::Lost) => return Err(libc::EIO),
        }
    }
}

/// Waits for an answer and hands its payload to `sink`. `Lost` only while nothing of
/// the payload was handed out.
fn try_answer(fd: &OwnedFd, mut sink: impl FnMut(&[u8])) -> Result<(), Failed> {
    let mut header = [0u8; 4];
    recv_exact(fd, &mut header).map_err(|_| Failed::Lost)?;
    let body = wire::body_len(header);
    if !(4..=4 + RESPONSE_BODY_MAX).contains(&body) {
        return Err(Failed::Agent(libc::EIO));
    }
    let mut errno = [0u8; 4];
    recv_exact(fd, &mut errno).map_err(|_| Failed::Lost)?;
    let mut left = body - 4;
    let mut buf = [0u8; 512];
    while left > 0 {
        let piece = buf.get_mut(..left.min(512)).unwrap_or(&mut []);
        recv_exact(fd, piece).map_err(|_| Failed::Agent(libc::EIO))?;
        sink(piece);
        left -= piece.len();
    }
    match i32::from_le_bytes(errno) {
        0 => Ok(()),
        e if e > 0 => Err(Failed::Agent(e)),
        _ => Err(Failed::Agent(libc::EIO)),
    }
}

/// The bounded wait for a restarting agent.
struct Wait {
    /// Monotonic seconds when waiting began (`None`: not yet).
    since: Option<i64>,
}

impl Wait {
    fn new() -> Wait {
        Wait { since: None }
    }

    /// Whether to try again: a `run` supervises the cache and the wait is not over
    /// (after a pause). `false`: fail now.
    fn again(&mut self) -> bool {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic).tv_sec;
        let since = *self.since.get_or_insert(now);
        if now - since >= i64::from(WAIT_SECS.load(Ordering::Relaxed)) || !supervised() {
            return false;
        }
        let pause = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: RETRY_NS,
        };
        let _ = rustix::thread::nanosleep(&pause);
        true
    }
}

/// Whether a `run` holds the cache's `run.lock`: it restarts a dead agent, so one is
/// coming. Probed with a non-blocking exclusive lock, released at once.
fn supervised() -> bool {
    // The cache is the tree's parent: `CACHE/tree`.
    let tree = crate::config::get().prefixes().tree;
    let Some(cache) = tree.get(..tree.len().saturating_sub(TREE_DIR.len() + 1)) else {
        return false;
    };
    let mut buf = [0u8; PATH_MAX];
    let mut w = crate::buf::Writer::new(&mut buf);
    let built = (|| {
        w.put(cache)?;
        w.put(b"/")?;
        w.put(STATE_DIR.as_bytes())?;
        w.put(b"/")?;
        w.put(RUN_LOCK_NAME.as_bytes())
    })();
    let Some(path) = built.and_then(|()| w.cstr()) else {
        return false;
    };
    let Ok(fd) = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) else {
        return false;
    };
    // Dropping the fd releases a lock we got.
    matches!(
        rustix::fs::flock(&fd, rustix::fs::FlockOperation::NonBlockingLockExclusive),
        Err(Errno::WOULDBLOCK)
    )
}

fn connect(path: &core::ffi::CStr) -> Result<OwnedFd, Errno> {
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let addr = SocketAddrUnix::new(path)?;
    loop {
        match rustix::net::connect(&fd, &addr) {
            Ok(()) => return Ok(fd),
            Err(Errno::INTR) => continue,
            Err(Errno::ISCONN) => return Ok(fd),
            Err(e) => return Err(e),
        }
    }
}

fn send_all(fd: &OwnedFd, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // NOSIGNAL: a vanished agent must not kill the caller with SIGPIPE.
        match rustix::net::send(fd, buf, SendFlags::NOSIGNAL) {
            Ok(0) => return Err(Errno::PIPE),
            Ok(n) => buf = buf.get(n..).unwrap_or(&[]),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn recv_exact(fd: &OwnedFd, buf: &mut [u8]) -> Result<(), Errno> {
    let mut got = 0;
    while got < buf.len() {
        let rest = buf.get_mut(got..).unwrap_or(&mut []);
        match rustix::net::recv(fd, rest, RecvFlags::empty()) {
            Ok((0, _)) => return Err(Errno::PIPE),
            Ok((n, _)) => got += n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

// The request buffer must hold any path the shim can produce.
const _: () = assert!(wire::PATH_MAX >= PATH_MAX);
