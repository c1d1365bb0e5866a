//! Supervising programs that bypass libc (issue 15): static binaries and Go programs
//! make their own system calls, so no preload hook sees them. Just before such a program
//! is exec'd, the shim installs a seccomp filter that traps only the path system calls
//! and hands the listener fd to us (`Op::Supervise`). For every trapped call this
//! supervisor reads the path from the caller's memory, and when it names an entry in the
//! tree, makes the cache complete for it — lists unlisted ancestors (the entry's absence
//! is then the truth), lists a directory that is opened, fetches a placeholder that is
//! opened or exec'd, discards one that is truncated — and then lets the kernel run the
//! call (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`). A hydration that fails fails the call with
//! its errno: a placeholder is never read as zeros.
//!
//! One thread per listener receives; calls that need nothing (outside the tree, or
//! complete) are answered on that thread, the rest on the runtime, so one slow download
//! does not hold up the program's other threads.
//!
//! The kernel resolves the path itself after we answer, so absolute mount paths work
//! only where the mount path exists as a symlink to the tree ([`link_mount`]).
//!
//! Named for what it intercepts; `src/run/supervise.rs` is the other supervision, `run`
//! restarting the agent.

use super::Ctx;
use s3shim_protocol::marker::Marker;
use s3shim_protocol::names;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::Interest;
use tokio::net::UnixStream;
use tracing::{debug, info, warn};

/// fchmodat2 (Linux 6.6) has the same number on every architecture; the libc crate
/// names it only for some (not for aarch64).
const SYS_FCHMODAT2: libc::c_long = 452;

/// Receives the listener fd (one byte with SCM_RIGHTS after the request frame) and
/// starts serving it. Returns the errno for the reply.
pub(crate) async fn accept(ctx: Arc<Ctx>, stream: &UnixStream) -> i32 {
    let (fd, mount) = match recv_fd(stream).await {
        Ok((fd, mount)) => (
            fd,
            (!mount.is_empty()).then(|| PathBuf::from(OsStr::from_bytes(&mount))),
        ),
        Err(e) => {
            warn!("supervise: no listener received: {e}");
            return libc::EINVAL;
        }
    };
    sync_wake_up(&fd);
    let sup = Arc::new(Supervisor {
        tree: ctx.tree.clone(),
        ctx,
        mount,
        fd: Arc::new(fd),
        rt: tokio::runtime::Handle::current(),
    });
    match std::thread::Builder::new()
        .name("supervise".into())
        .spawn(move || sup.serve())
    {
        Ok(_) => 0,
        Err(e) => {
            warn!("supervise: cannot start a thread: {e}");
            libc::EAGAIN
        }
    }
}

/// `SECCOMP_IOCTL_NOTIF_SET_FLAGS` (`SECCOMP_IOW(4, __u64)`; Linux 6.6), not in libc yet.
const NOTIF_SET_FLAGS: u64 = 0x4008_2104;
/// `SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP`: the kernel hands the caller's CPU straight to
/// the supervisor and back (the caller waits for the answer anyway), instead of waking
/// it on another CPU: a trapped call then costs about a third less.
const SYNC_WAKE_UP: u64 = 1;

/// Asks for synchronous wake-ups on the listener; older kernels refuse, which only
/// costs speed.
fn sync_wake_up(fd: &OwnedFd) {
    // SAFETY: valid fd; this ioctl takes its argument by value.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), NOTIF_SET_FLAGS as _, SYNC_WAKE_UP) };
    if r != 0 {
        debug!(
            "supervise: no synchronous wake-ups here: {}",
            io::Error::last_os_error()
        );
    }
}

/// The listener and the mount path the shim sent with it.
async fn recv_fd(stream: &UnixStream) -> io::Result<(OwnedFd, Vec<u8>)> {
    loop {
        stream.readable().await?;
        match stream.try_io(Interest::READABLE, || recv_fd_now(stream.as_raw_fd())) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            r => return r,
        }
    }
}

fn recv_fd_now(sock: RawFd) -> io::Result<(OwnedFd, Vec<u8>)> {
    let mut bytes = vec![0u8; libc::PATH_MAX as usize + 1];
    let mut iov = libc::iovec {
        iov_base: bytes.as_mut_ptr().cast(),
        iov_len: bytes.len(),
    };
    // Room for one SCM_RIGHTS message with one fd (CMSG_SPACE(4) = 24 on 64-bit).
    let mut cbuf = [0u64; 8];
    // SAFETY: a zeroed msghdr is valid; the pointers below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: valid socket and msghdr.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
    }
    // SAFETY: walking the control messages the kernel wrote into `cbuf`.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if !c.is_null() && (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS
        {
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>());
            bytes.truncate(n as usize);
            return Ok((OwnedFd::from_raw_fd(fd), bytes));
        }
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, "no fd attached"))
}

struct Supervisor {
    ctx: Arc<Ctx>,
    tree: PathBuf,
    mount: Option<PathBuf>,
    fd: Arc<OwnedFd>,
    rt: tokio::runtime::Handle,
}

/// What a trapped call needs of one of its paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Whether it exists must be the truth (stat, access, unlink, create).
    Entry,
    /// Its entries are read (chdir, rmdir, an opened directory, a rename target).
    Dir,
    /// Its bytes are read (open, exec; a directory opened is listed).
    Bytes,
    /// Its whole content is replaced (O_TRUNC, truncate to 0).
    Replace,
}

/// One path argument: `dirfd` (`None` = the cwd) and its address in the caller.
#[derive(Debug, Clone, Copy)]
struct PathArg {
    dirfd: Option<i32>,
    addr: u64,
    want: Want,
}

/// What the cache needs before the call may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Nothing,
    Lookup,
    ListDir,
    Fetch,
    Discard,
}

fn open_want(flags: u64) -> Want {
    let f = flags as i32;
    if f & libc::O_TRUNC != 0 && f & libc::O_ACCMODE != libc::O_RDONLY {
        Want::Replace
    } else if f & libc::O_PATH != 0 {
        Want::Dir
    } else {
        Want::Bytes
    }
}

fn at(dirfd: u64) -> Option<i32> {
    let d = dirfd as i32;
    (d != libc::AT_FDCWD).then_some(d)
}

/// The path arguments of a trapped call (at most two), from its number and registers.
/// `read_u64` reads the caller's memory (for `openat2`'s flags).
fn path_args(nr: i64, a: &[u64; 6], read_u64: impl Fn(u64) -> Option<u64>) -> [Option<PathArg>; 2] {
    let cwd = |addr, want| {
        Some(PathArg {
            dirfd: None,
            addr,
            want,
        })
    };
    let rel = |dirfd, addr, want| {
        Some(PathArg {
            dirfd: at(dirfd),
            addr,
            want,
        })
    };
    use Want::*;
    #[cfg(target_arch = "x86_64")]
    {
        match nr {
            libc::SYS_open => return [cwd(a[0], open_want(a[1])), None],
            libc::SYS_creat => return [cwd(a[0], Replace), None],
            libc::SYS_stat
            | libc::SYS_lstat
            | libc::SYS_access
            | libc::SYS_readlink
            | libc::SYS_chmod
            | libc::SYS_chown
            | libc::SYS_lchown
            | libc::SYS_utime
            | libc::SYS_utimes
            | libc::SYS_mknod
            | libc::SYS_mkdir
            | libc::SYS_unlink => return [cwd(a[0], Entry), None],
            libc::SYS_rmdir => return [cwd(a[0], Dir), None],
            libc::SYS_symlink => return [cwd(a[1], Entry), None],
            libc::SYS_link => return [cwd(a[0], Entry), cwd(a[1], Entry)],
            libc::SYS_rename => return [cwd(a[0], Entry), cwd(a[1], Dir)],
            libc::SYS_futimesat => return [rel(a[0], a[1], Entry), None],
            _ => {}
        }
    }
    match nr {
        libc::SYS_openat => [rel(a[0], a[1], open_want(a[2])), None],
        libc::SYS_openat2 => {
            let flags = read_u64(a[2]).unwrap_or(0);
            [rel(a[0], a[1], open_want(flags)), None]
        }
        libc::SYS_execve => [cwd(a[0], Bytes), None],
        libc::SYS_execveat => [rel(a[0], a[1], Bytes), None],
        libc::SYS_truncate => [cwd(a[0], if a[1] == 0 { Replace } else { Bytes }), None],
        libc::SYS_chdir => [cwd(a[0], Dir), None],
        libc::SYS_statfs
        | libc::SYS_setxattr
        | libc::SYS_lsetxattr
        | libc::SYS_getxattr
        | libc::SYS_lgetxattr
        | libc::SYS_listxattr
        | libc::SYS_llistxattr
        | libc::SYS_removexattr
        | libc::SYS_lremovexattr => [cwd(a[0], Entry), None],
        libc::SYS_mkdirat
        | libc::SYS_mknodat
        | libc::SYS_fchownat
        | libc::SYS_newfstatat
        | libc::SYS_readlinkat
        | libc::SYS_fchmodat
        | SYS_FCHMODAT2
        | libc::SYS_faccessat
        | libc::SYS_faccessat2
        | libc::SYS_utimensat
        | libc::SYS_statx => [rel(a[0], a[1], Entry), None],
        libc::SYS_unlinkat => {
            let want = if a[2] as i32 & libc::AT_REMOVEDIR != 0 {
                Dir
            } else {
                Entry
            };
            [rel(a[0], a[1], want), None]
        }
        libc::SYS_symlinkat => [rel(a[1], a[2], Entry), None],
        libc::SYS_linkat => [rel(a[0], a[1], Entry), rel(a[2], a[3], Entry)],
        libc::SYS_renameat | libc::SYS_renameat2 => [rel(a[0], a[1], Entry), rel(a[2], a[3], Dir)],
        _ => [None, None],
    }
}

impl Supervisor {
    fn serve(self: Arc<Self>) {
        let fd = self.fd.as_raw_fd();
        debug!("supervising listener {fd}");
        loop {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, -1) };
            if r < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                break;
            }
            if pfd.revents & libc::POLLIN == 0 {
                // Every process under the filter is gone.
                if pfd.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
                    break;
                }
                continue;
            }
            // SAFETY: the kernel wants a zeroed notification to fill.
            let mut n: libc::seccomp_notif = unsafe { std::mem::zeroed() };
            // SAFETY: valid fd and buffer of the ioctl's size.
            if unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV as _, &mut n) } < 0 {
                match io::Error::last_os_error().raw_os_error() {
                    // The caller died or was interrupted before we took it.
                    Some(libc::EINTR) | Some(libc::ENOENT) => continue,
                    _ => break,
                }
            }
            self.clone().handle(n);
        }
        debug!("listener {fd} closed: no process left under it");
    }

    fn handle(self: Arc<Self>, n: libc::seccomp_notif) {
        let pid = n.pid as i32;
        let args = path_args(n.data.nr as i64, &n.data.args, |addr| {
            let mut b = [0u8; 8];
            read_mem(pid, addr, &mut b).ok().filter(|&k| k == 8)?;
            Some(u64::from_le_bytes(b))
        });
        // Most trapped calls name a path outside the tree or a complete entry in it: they
        // are let through after one read of the caller's memory and at most one xattr
        // read, with no allocation (see `needs_nothing`). A pid reused meanwhile can only
        // make us look at the wrong path, and letting a call run is always safe, so no
        // ID_VALID check here.
        if args
            .iter()
            .flatten()
            .all(|arg| self.needs_nothing(pid, *arg))
        {
            self.respond(n.id, 0);
            return;
        }
        let mut work: Vec<(String, Want)> = Vec::new();
        for arg in args.into_iter().flatten() {
            match self.tree_path(pid, arg) {
                Ok(Some(rel)) => work.push((rel, arg.want)),
                Ok(None) => {}
                Err(e) => {
                    // The caller's memory cannot be read (another user's process, a
                    // Yama scope that forbids it): refuse rather than risk zeros.
                    warn!("supervise: cannot read the path of pid {pid}: {e}");
                    self.respond(n.id, libc::EPERM);
                    return;
                }
            }
        }
        // The pid may have died and been reused while we read its memory.
        if !self.id_valid(n.id) {
            return;
        }
        let needs: Vec<Need> = work.iter().map(|(r, w)| self.need(r, *w)).collect();
        if needs.iter().all(|n| *n == Need::Nothing) {
            self.respond(n.id, 0);
            return;
        }
        let me = self.clone();
        self.rt.spawn(async move {
            let mut err = 0;
            for (rel, want) in &work {
                if let Err(e) = me.complete(rel, *want).await {
                    warn!("supervise: {rel:?} for pid {pid}: {e}");
                    // The errno a libc program would get for the same failure.
                    err = super::error::errno(&e);
                    break;
                }
            }
            me.respond(n.id, err);
        });
    }

    /// Whether `arg` certainly needs nothing: its path (read from the caller's memory up
    /// to the end of that page, into a stack buffer) is lexically plain (no `.`, `..` or
    /// empty component) and lies outside the tree and the mount path, or names an entry
    /// of the tree that exists and carries no marker. Anything else (a marker, a missing
    /// entry, a path that needs normalising, a long one) is `false`: the full check
    /// decides.
    fn needs_nothing(&self, pid: i32, arg: PathArg) -> bool {
        const MAX: usize = libc::PATH_MAX as usize;
        if arg.addr == 0 {
            return true;
        }
        let mut raw = [0u8; MAX];
        let chunk = (4096 - arg.addr % 4096) as usize;
        let Ok(n) = read_mem(pid, arg.addr, &mut raw[..chunk.min(MAX)]) else {
            return false;
        };
        let Some(len) = raw[..n].iter().position(|&b| b == 0) else {
            return false;
        };
        if len == 0 {
            return true; // an empty path: the kernel answers for it (or AT_EMPTY_PATH)
        }
        let mut joined = [0u8; MAX];
        let abs: &[u8] = if raw[0] == b'/' {
            &raw[..len]
        } else {
            // Relative: to the cwd or the dirfd, as the kernel sees it.
            let mut link = [0u8; 32];
            let mut w = &mut link[..];
            let named = match arg.dirfd {
                None => std::io::Write::write_fmt(&mut w, format_args!("/proc/{pid}/cwd\0")),
                Some(d) => std::io::Write::write_fmt(&mut w, format_args!("/proc/{pid}/fd/{d}\0")),
            };
            if named.is_err() {
                return false;
            }
            // SAFETY: `link` holds a NUL-terminated path; `joined` is writable for MAX.
            let b =
                unsafe { libc::readlink(link.as_ptr().cast(), joined.as_mut_ptr().cast(), MAX) };
            if b <= 0 || b as usize + 1 + len >= MAX || joined[0] != b'/' {
                return false;
            }
            let b = b as usize;
            joined[b] = b'/';
            joined[b + 1..b + 1 + len].copy_from_slice(&raw[..len]);
            &joined[..b + 1 + len]
        };
        let tree = self.tree.as_os_str().as_bytes();
        let mount = self.mount.as_ref().map(|m| m.as_os_str().as_bytes());
        let rel = match place(abs, tree, mount) {
            Place::Outside => return true,
            Place::Unsure => return false,
            Place::In(rel) => rel,
        };
        // Noted before the marker is read: eviction backs out of a file noted while it
        // works on it (`evict::SupervisedPaths`).
        self.ctx.budget.supervised.note(rel);
        // The entry's marker, read at its cache path: none means complete or listed.
        let mut cpath = [0u8; MAX];
        let Some(end) = (tree.len() + 1 + rel.len())
            .checked_add(1)
            .filter(|&e| e <= MAX)
        else {
            return false;
        };
        cpath[..tree.len()].copy_from_slice(tree);
        cpath[tree.len()] = b'/';
        cpath[tree.len() + 1..end - 1].copy_from_slice(rel);
        let mut v = [0u8; 64];
        // SAFETY: NUL-terminated path and name, buffer of the given size.
        let r = unsafe {
            libc::getxattr(
                cpath.as_ptr().cast(),
                s3shim_protocol::marker::XATTR_NAME.as_ptr().cast(),
                v.as_mut_ptr().cast(),
                v.len(),
            )
        };
        r < 0
            && matches!(
                io::Error::last_os_error().raw_os_error(),
                Some(libc::ENODATA) | Some(libc::ENOTSUP)
            )
    }

    /// Makes the cache complete for `rel` (a few rounds: a lookup may reveal a
    /// directory to list or a placeholder to fetch).
    async fn complete(&self, rel: &str, want: Want) -> super::error::Result<()> {
        for _ in 0..3 {
            match self.need(rel, want) {
                Need::Nothing => return Ok(()),
                Need::Lookup => self.ctx.lookup(rel).await?,
                Need::ListDir => self.ctx.list_dir(rel).await?,
                Need::Fetch => self.ctx.fetch(rel).await?,
                Need::Discard => self.ctx.discard(rel).await?,
            }
        }
        Ok(())
    }

    /// What the cache needs for `rel` before a call that wants `want` (a few xattr
    /// reads, no request).
    fn need(&self, rel: &str, want: Want) -> Need {
        // Before the marker is read, as in `needs_nothing`.
        self.ctx.budget.supervised.note(rel.as_bytes());
        let p = self.ctx.local(rel);
        match marker(&p) {
            Ok(Some(Kind::Unlisted)) if matches!(want, Want::Dir | Want::Bytes) => Need::ListDir,
            Ok(Some(Kind::Placeholder)) if want == Want::Bytes => Need::Fetch,
            Ok(Some(Kind::Placeholder)) if want == Want::Replace => Need::Discard,
            Ok(_) => Need::Nothing,
            Err(_) => {
                // Missing: the truth only if the nearest existing ancestor is listed.
                let mut up = p.as_path();
                while let Some(parent) = up.parent() {
                    if !parent.starts_with(&self.tree) {
                        break;
                    }
                    match marker(parent) {
                        Ok(Some(Kind::Unlisted)) => return Need::Lookup,
                        Ok(_) => return Need::Nothing,
                        Err(_) => up = parent,
                    }
                }
                Need::Nothing
            }
        }
    }

    /// The path of `arg` relative to the tree, when it lies in it.
    fn tree_path(&self, pid: i32, arg: PathArg) -> io::Result<Option<String>> {
        if arg.addr == 0 {
            return Ok(None);
        }
        let raw = read_cstr(pid, arg.addr)?;
        if raw.is_empty() {
            return Ok(None);
        }
        let abs = if raw[0] == b'/' {
            PathBuf::from(OsStr::from_bytes(&raw))
        } else {
            let base = match arg.dirfd {
                None => format!("/proc/{pid}/cwd"),
                Some(d) => format!("/proc/{pid}/fd/{d}"),
            };
            match std::fs::read_link(&base) {
                Ok(b) => b.join(OsStr::from_bytes(&raw)),
                Err(_) => return Ok(None),
            }
        };
        let norm = normalize(&abs);
        let rest = if let Ok(r) = norm.strip_prefix(&self.tree) {
            r
        } else if let Some(r) = self.mount.as_ref().and_then(|m| norm.strip_prefix(m).ok()) {
            r
        } else {
            return Ok(None);
        };
        let rel = rest.as_os_str().as_bytes();
        if !names::is_valid_rel_path(rel) {
            return Ok(None);
        }
        Ok(std::str::from_utf8(rel).ok().map(str::to_string))
    }

    fn id_valid(&self, id: u64) -> bool {
        // SAFETY: valid fd; the kernel reads one u64.
        unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_ID_VALID as _,
                &id,
            ) == 0
        }
    }

    /// Lets the call run (`errno == 0`) or fails it with `errno`.
    fn respond(&self, id: u64, errno: i32) {
        let resp = libc::seccomp_notif_resp {
            id,
            val: 0,
            error: -errno,
            flags: if errno == 0 {
                libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32
            } else {
                0
            },
        };
        // SAFETY: valid fd and response. ENOENT: the caller is gone (killed) — fine.
        unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND as _,
                &resp,
            )
        };
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Unlisted,
    Placeholder,
}

/// The marker of `p` (following symlinks, as the call will): `Err` when `p` is missing.
fn marker(p: &Path) -> io::Result<Option<Kind>> {
    let c = CString::new(p.as_os_str().as_bytes())?;
    let mut v = [0u8; 1];
    // SAFETY: valid C strings and buffer. One byte says the kind; ERANGE means a longer
    // value, which is still a marker.
    let r = unsafe {
        libc::getxattr(
            c.as_ptr(),
            s3shim_protocol::marker::XATTR_NAME.as_ptr().cast(),
            v.as_mut_ptr().cast(),
            0,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
            _ => Err(e),
        };
    }
    // Size known: read the value (markers are short).
    let mut buf = vec![0u8; r as usize];
    // SAFETY: as above, with a buffer of the reported size.
    let r = unsafe {
        libc::getxattr(
            c.as_ptr(),
            s3shim_protocol::marker::XATTR_NAME.as_ptr().cast(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if r < 0 {
        return Ok(None);
    }
    buf.truncate(r as usize);
    Ok(match Marker::parse(&buf) {
        Some(Marker::Unlisted { .. }) => Some(Kind::Unlisted),
        Some(Marker::Placeholder { .. }) => Some(Kind::Placeholder),
        None => None,
    })
}

/// Lexical normalisation (`.`, `..`, `//`); the kernel resolves symlinks afterwards.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Where a path lies, judged from its bytes alone.
#[derive(Debug, PartialEq, Eq)]
enum Place<'a> {
    /// Outside the tree and the mount path.
    Outside,
    /// This entry of the tree (relative to it), through the tree or the mount path.
    In(&'a [u8]),
    /// Not certain without the full check: not lexically plain (a `.`, `..` or empty
    /// component), or the tree or mount path itself, or a name that only starts like them.
    Unsure,
}

/// [`Place`] of the absolute path `abs`. Plain bytes are the path the kernel resolves,
/// component for component (symlinks aside, which the full check leaves to the kernel
/// too).
fn place<'a>(abs: &'a [u8], tree: &[u8], mount: Option<&[u8]>) -> Place<'a> {
    if abs.first() != Some(&b'/')
        || abs[1..]
            .split(|&b| b == b'/')
            .any(|c| c.is_empty() || c == b"." || c == b"..")
    {
        return Place::Unsure;
    }
    for prefix in std::iter::once(tree).chain(mount) {
        if let Some(rest) = abs.strip_prefix(prefix) {
            return match rest.strip_prefix(b"/") {
                Some(rel) if !rel.is_empty() => Place::In(rel),
                _ => Place::Unsure,
            };
        }
    }
    Place::Outside
}

/// Reads `buf.len()` bytes at `addr` in `pid`; returns how many were read.
fn read_mem(pid: i32, addr: u64, buf: &mut [u8]) -> io::Result<usize> {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` is our buffer; the kernel checks `remote`.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Reads a NUL-terminated string (at most PATH_MAX bytes) at `addr` in `pid`, a page at
/// a time (the string may end just before an unmapped page).
fn read_cstr(pid: i32, addr: u64) -> io::Result<Vec<u8>> {
    const PAGE: u64 = 4096;
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < libc::PATH_MAX as usize {
        let chunk = (PAGE - at % PAGE) as usize;
        let mut buf = vec![0u8; chunk];
        let n = match read_mem(pid, at, &mut buf) {
            Ok(n) => n,
            // A bad pointer: the kernel will say EFAULT itself.
            Err(e) if e.raw_os_error() == Some(libc::EFAULT) && out.is_empty() => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(e),
        };
        if let Some(z) = buf[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..z]);
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
        if n < chunk {
            break;
        }
        at += chunk as u64;
    }
    Ok(out)
}

/// What `s3shim run` did about the mount path for supervised programs.
#[derive(Debug, PartialEq, Eq)]
pub enum MountLink {
    /// It made the mount path a symlink to the tree (and removes it when it ends).
    Created,
    /// The mount path already is a symlink to the tree.
    Present,
    /// It could not be made; supervised programs resolve only relative paths and cache
    /// paths. The sentence says why.
    Blocked(String),
}

/// Makes the mount path a symlink to the tree where it does not exist (or is a dangling
/// symlink, e.g. to a removed cache), so that the kernel resolves absolute mount paths
/// for programs the shim is not in. Libc programs never see the link (the shim maps the
/// mount path before the kernel does).
pub fn link_mount(mount: &Path, tree: &Path) -> MountLink {
    match std::fs::symlink_metadata(mount) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(mount).unwrap_or_default();
            if target == tree {
                return MountLink::Present;
            }
            if target.exists() {
                return MountLink::Blocked(format!(
                    "{} is a symlink to {}",
                    mount.display(),
                    target.display()
                ));
            }
            // Dangling: replace it atomically.
            let tmp = mount.with_extension(format!("s3shim-{}", std::process::id()));
            let r =
                std::os::unix::fs::symlink(tree, &tmp).and_then(|_| std::fs::rename(&tmp, mount));
            match r {
                Ok(()) => MountLink::Created,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    MountLink::Blocked(format!("cannot replace {}: {e}", mount.display()))
                }
            }
        }
        Ok(_) => MountLink::Blocked(format!("{} exists and is not a symlink", mount.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match std::os::unix::fs::symlink(tree, mount) {
                Ok(()) => {
                    info!("made {} a symlink to the tree", mount.display());
                    MountLink::Created
                }
                Err(e) => MountLink::Blocked(format!("cannot create {}: {e}", mount.display())),
            }
        }
        Err(e) => MountLink::Blocked(format!("{}: {e}", mount.display())),
    }
}

/// Removes the link [`link_mount`] created, if it still points to `tree`.
pub fn unlink_mount(mount: &Path, tree: &Path) {
    if std::fs::read_link(mount).is_ok_and(|t| t == tree) {
        let _ = std::fs::remove_file(mount);
    }
}

/// Which mode applies to programs that bypass libc on this machine, for `s3shim doctor`:
/// `Ok(sentence)` when they are supervised, `Err(sentence)` when the fallback applies.
pub fn mode() -> Result<String, String> {
    if std::env::var(INTERCEPT_ENV)
        .is_ok_and(|v| matches!(v.as_str(), "0" | "off" | "no" | "false"))
    {
        return Err(format!(
            "{INTERCEPT_ENV}={}",
            std::env::var(INTERCEPT_ENV).unwrap_or_default()
        ));
    }
    if let Some(scope) = yama_scope().filter(|s| *s >= 1) {
        return Err(format!(
            "Yama ptrace_scope is {scope}: the agent may not read the memory of programs it did not start"
        ));
    }
    probe_filter()?;
    Ok("seccomp user notification works here: static and Go programs are supervised (their folder is filled as they use it)".into())
}

/// The shim's switch (`crates/shim/src/intercept.rs`).
pub const INTERCEPT_ENV: &str = "S3SHIM_INTERCEPT";

/// `/proc/sys/kernel/yama/ptrace_scope`, when Yama is there.
pub fn yama_scope() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Installs a listener filter in a throw-away child (what the shim does before exec).
fn probe_filter() -> Result<(), String> {
    // SAFETY: the child only makes raw system calls and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("cannot fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        let mut ins = [libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        }];
        let prog = libc::sock_fprog {
            len: 1,
            filter: ins.as_mut_ptr(),
        };
        // SAFETY: raw calls on this child only.
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
            let r = libc::syscall(
                libc::SYS_seccomp,
                1,
                libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
                &prog,
            );
            let code = if r >= 0 { 0 } else { *libc::__errno_location() };
            libc::_exit(code);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        libc::EINVAL => Err("this kernel has no seccomp user notification (Linux 5.0+)".into()),
        libc::ENOSYS => Err("this kernel has no seccomp".into()),
        e => Err(format!(
            "a seccomp filter cannot be installed here ({}); a container profile may forbid seccomp()",
            io::Error::from_raw_os_error(e)
        )),
    }
}

/// What `run` would do with the mount path, for `s3shim doctor` (nothing is created).
pub fn mount_link_status(mount: &Path, tree: &Path) -> Result<String, String> {
    match std::fs::symlink_metadata(mount) {
        Ok(m) if m.file_type().is_symlink() => {
            let t = std::fs::read_link(mount).unwrap_or_default();
            if t == tree {
                Ok(format!("{} is a symlink to the cache tree", mount.display()))
            } else if !t.exists() {
                Ok(format!("{} is a dangling symlink; `s3shim run` points it at the cache tree", mount.display()))
            } else {
                Err(format!("{} is a symlink to {}: programs that bypass libc cannot use absolute paths in the folder", mount.display(), t.display()))
            }
        }
        Ok(_) => Err(format!("{} exists: programs that bypass libc see it, not the folder, for absolute paths (relative ones work)", mount.display())),
        Err(_) => {
            let parent = mount.parent().unwrap_or(Path::new("/"));
            let c = CString::new(parent.as_os_str().as_bytes()).unwrap_or_default();
            // SAFETY: valid C string.
            if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 {
                Ok(format!("`s3shim run` makes {} a symlink to the cache tree while it runs (for programs that bypass libc)", mount.display()))
            } else {
                Err(format!("{} cannot be created ({} is not writable): programs that bypass libc cannot use absolute paths in the folder", mount.display(), parent.display()))
            }
        }
    }
}

/// Whether the program file at `path` bypasses libc (static: no `PT_INTERP`; or a Go
/// binary: `.note.go.buildid`), so that `LD_PRELOAD` cannot see its system calls. `run`
/// starts such a command through `/bin/sh -c 'exec ...'` so the shim in the shell
/// supervises it (the same rule as for every exec in the tree).
pub fn bypasses_libc(path: &Path) -> bool {
    use object::read::elf::{FileHeader, ProgramHeader};
    let Ok(data) = std::fs::read(path) else {
        return false;
    };
    let Ok(header) = object::elf::FileHeader64::<object::Endianness>::parse(&*data) else {
        return false;
    };
    let Ok(endian) = header.endian() else {
        return false;
    };
    let Ok(phdrs) = header.program_headers(endian, &*data) else {
        return false;
    };
    let is_static = !phdrs
        .iter()
        .any(|p| p.p_type(endian) == object::elf::PT_INTERP);
    let is_go = header.sections(endian, &*data).is_ok_and(|sections| {
        sections.iter().any(|s| {
            sections
                .section_name(endian, s)
                .is_ok_and(|n| n == b".note.go.buildid")
        })
    });
    is_static || is_go
}

/// The program `run` would execute for `prog` (a name is looked up in `PATH`).
pub fn find_program(prog: &OsStr) -> Option<PathBuf> {
    if prog.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(prog));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_decide_what_is_needed() {
        assert_eq!(open_want(libc::O_RDONLY as u64), Want::Bytes);
        assert_eq!(
            open_want((libc::O_WRONLY | libc::O_APPEND) as u64),
            Want::Bytes
        );
        assert_eq!(
            open_want((libc::O_WRONLY | libc::O_TRUNC) as u64),
            Want::Replace
        );
        // O_RDONLY|O_TRUNC is unspecified: fetch (never loses bytes).
        assert_eq!(
            open_want((libc::O_RDONLY | libc::O_TRUNC) as u64),
            Want::Bytes
        );
        assert_eq!(
            open_want((libc::O_PATH | libc::O_DIRECTORY) as u64),
            Want::Dir
        );
    }

    #[test]
    fn path_arguments_by_call() {
        let a = [libc::AT_FDCWD as u64, 0x1000, 0, 0x2000, 0, 0];
        let none = |_| None;
        let [p, q] = path_args(libc::SYS_renameat2, &a, none);
        let (p, q) = (p.unwrap(), q.unwrap());
        assert_eq!((p.dirfd, p.addr, p.want), (None, 0x1000, Want::Entry));
        assert_eq!((q.dirfd, q.addr, q.want), (Some(0), 0x2000, Want::Dir));
        let [p, _] = path_args(libc::SYS_openat2, &[3, 0x10, 0x20, 24, 0, 0], |_| {
            Some((libc::O_WRONLY | libc::O_TRUNC) as u64)
        });
        assert_eq!(p.unwrap().want, Want::Replace);
        assert_eq!(p.unwrap().dirfd, Some(3));
        assert!(path_args(libc::SYS_read, &a, none)[0].is_none());
    }

    #[test]
    fn programs_that_bypass_libc() {
        assert!(bypasses_libc(Path::new("/sbin/ldconfig")), "static-pie");
        assert!(!bypasses_libc(Path::new("/bin/true")));
        assert!(
            bypasses_libc(Path::new("/usr/lib/go/bin/go")),
            "Debian's dynamic go (install golang-go)"
        );
        assert!(!bypasses_libc(Path::new("/etc/hostname")));
    }

    #[test]
    fn paths_are_placed_from_their_bytes() {
        let (t, m) = (&b"/c/tree"[..], Some(&b"/w"[..]));
        assert_eq!(place(b"/etc/hosts", t, m), Place::Outside);
        assert_eq!(place(b"/c/tree/a/b", t, m), Place::In(b"a/b"));
        assert_eq!(place(b"/w/a", t, m), Place::In(b"a"));
        assert_eq!(place(b"/w/a", t, None), Place::Outside);
        // Not plain: `..` may lead into the tree (or out of it).
        assert_eq!(place(b"/tmp/../w/a", t, m), Place::Unsure);
        assert_eq!(place(b"/w/./a", t, m), Place::Unsure);
        assert_eq!(place(b"/w//a", t, m), Place::Unsure);
        assert_eq!(place(b"/w/a/", t, m), Place::Unsure);
        // The tree itself, and a name that only starts like the mount path.
        assert_eq!(place(b"/c/tree", t, m), Place::Unsure);
        assert_eq!(place(b"/wx/a", t, m), Place::Unsure);
        assert_eq!(place(b"/", t, m), Place::Unsure);
    }

    #[test]
    fn lexical_normalisation() {
        assert_eq!(
            normalize(Path::new("/a/./b//c/../d")),
            PathBuf::from("/a/b/d")
        );
        assert_eq!(normalize(Path::new("/../x")), PathBuf::from("/x"));
    }

    #[test]
    fn reads_a_string_across_a_page_boundary() {
        // Our own memory: a string that starts 3 bytes before a page ends.
        let mut page = vec![0u8; 3 * 4096];
        let base = page.as_ptr() as usize;
        let start = (base / 4096 + 2) * 4096 - 3;
        let off = start - base;
        page[off..off + 11].copy_from_slice(b"/abc/defgh\0");
        let got = read_cstr(std::process::id() as i32, start as u64).unwrap();
        assert_eq!(got, b"/abc/defgh");
    }
}
