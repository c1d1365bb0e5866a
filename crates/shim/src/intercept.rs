//! Programs the shim cannot enter — static binaries (no `PT_INTERP`) and Go binaries
//! (they make their own system calls even when dynamically linked) — are supervised by
//! the agent through seccomp user notification (issue 15): just before exec, the child
//! installs a filter that traps only the path system calls, hands the listener fd to
//! the agent (`Op::Supervise`, SCM_RIGHTS), and execs. The agent makes the cache
//! complete for each trapped path (list, fetch) and lets the kernel continue. The filter
//! is inherited by everything the program starts.
//!
//! When that is not possible (seccomp or user notification unavailable, a filter not
//! allowed, `S3SHIM_INTERCEPT=0`), the caller falls back to making the subtrees the
//! program will use local before exec (see `static_exec`), and says so on stderr.
//!
//! Runs in (v)fork children: stack buffers and raw syscalls only.

use crate::agent;
use crate::sys::raw_syscall5;
use core::ffi::{c_int, CStr};
use core::mem::MaybeUninit;
use rustix::fd::{AsFd, FromRawFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use s3shim_protocol::wire::Op;

/// fchmodat2 (Linux 6.6) has the same number on every architecture; the libc crate
/// names it only for some (not for aarch64).
const SYS_FCHMODAT2: libc::c_long = 452;

/// Set to `0` (or `off`) to never install a filter: the fallback applies.
pub const ENV_INTERCEPT: &CStr = c"S3SHIM_INTERCEPT";

const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
/// Program headers read at most (more than any real binary has).
const MAX_PHDRS: usize = 64;
/// `NT_GO_BUILDID`: the note Go's linker writes into every ELF it makes.
const NT_GO_BUILDID: u32 = 4;

/// Why a program cannot be entered by the shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    /// An ELF without an interpreter: `LD_PRELOAD` is never loaded.
    Static,
    /// A Go binary (static or not): the Go runtime makes its own system calls.
    Go,
}

/// Whether the file at `real` (a path the kernel can open) is a program that bypasses
/// libc. Anything unreadable or not a 64-bit little-endian ELF is `None` (the kernel
/// decides what it is).
pub fn bypass_kind(real: &CStr) -> Option<Bypass> {
    let fd = rustix::fs::open(real, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let mut eh = [0u8; 64];
    if !matches!(rustix::io::pread(&fd, &mut eh[..], 0), Ok(64)) || eh[..4] != *b"\x7fELF" {
        return None;
    }
    // 64-bit little-endian only (x86_64, aarch64).
    if eh[4] != 2 || eh[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| -> Option<usize> {
        Some(u16::from_le_bytes(eh.get(o..o + 2)?.try_into().ok()?) as usize)
    };
    let phoff = u64::from_le_bytes(eh.get(32..40)?.try_into().ok()?);
    let (phentsize, phnum) = (u16_at(54)?, u16_at(56)?);
    if phentsize < 56 || phnum == 0 || phnum > MAX_PHDRS {
        return None;
    }
    let mut ph = [0u8; MAX_PHDRS * 64];
    let buf = ph.get_mut(..phentsize.saturating_mul(phnum).min(MAX_PHDRS * 64))?;
    let n = rustix::io::pread(&fd, &mut *buf, phoff).ok()?;
    let mut has_interp = false;
    let mut go = false;
    for h in buf.get(..n)?.chunks_exact(phentsize) {
        let ty = u32::from_le_bytes(h.get(..4)?.try_into().ok()?);
        if ty == PT_INTERP {
            has_interp = true;
        }
        if ty == PT_NOTE && !go {
            let off = u64::from_le_bytes(h.get(8..16)?.try_into().ok()?);
            let size = u64::from_le_bytes(h.get(32..40)?.try_into().ok()?);
            go = has_go_note(&fd, off, size);
        }
    }
    if go {
        Some(Bypass::Go)
    } else if !has_interp {
        Some(Bypass::Static)
    } else {
        None
    }
}

/// Whether the notes at `off..off+size` hold Go's build id (owner `Go`, type 4).
fn has_go_note(fd: &OwnedFd, off: u64, size: u64) -> bool {
    let mut notes = [0u8; 512];
    let want = (size as usize).min(notes.len());
    let Some(buf) = notes.get_mut(..want) else {
        return false;
    };
    let Ok(n) = rustix::io::pread(fd, buf, off) else {
        return false;
    };
    let notes = notes.get(..n).unwrap_or(&[]);
    let mut at = 0usize;
    let u32_at = |o: usize| -> Option<u32> {
        Some(u32::from_le_bytes(notes.get(o..o + 4)?.try_into().ok()?))
    };
    while let (Some(namesz), Some(descsz), Some(ty)) = (u32_at(at), u32_at(at + 4), u32_at(at + 8))
    {
        let name = notes.get(at + 12..at + 12 + namesz as usize);
        if ty == NT_GO_BUILDID && name.is_some_and(|n| n.starts_with(b"Go\0")) {
            return true;
        }
        let align = |x: u32| (x as usize).div_ceil(4) * 4;
        at += 12 + align(namesz) + align(descsz);
    }
    false
}

/// Whether the user turned interception off (`S3SHIM_INTERCEPT=0`/`off`/`no`).
fn disabled() -> bool {
    // SAFETY: getenv reads the environment without allocating.
    let v = unsafe { libc::getenv(ENV_INTERCEPT.as_ptr()) };
    if v.is_null() {
        return false;
    }
    // SAFETY: getenv returned a C string.
    let v = unsafe { CStr::from_ptr(v) }.to_bytes();
    matches!(v, b"0" | b"off" | b"no" | b"false")
}

/// What [`supervise`] managed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supervised {
    /// A filter is in place and the agent listens (or an ancestor's filter covers us).
    Yes,
    /// Interception is not available; the sentence says why (for the warning).
    No(&'static str),
}

/// Installs the path-syscall filter in this (about to exec) process and hands its
/// listener to the agent. `Err(errno)` only when the filter is in place but the agent
/// did not take the listener: the exec must not go on (its path calls would fail).
pub fn supervise() -> Result<Supervised, c_int> {
    if disabled() {
        return Ok(Supervised::No("S3SHIM_INTERCEPT=0"));
    }
    if yama_restricts() {
        return Ok(Supervised::No(
            "Yama ptrace_scope is 1 or more: the agent may not read the memory of programs it did not start",
        ));
    }
    // The request first: an agent that cannot be reached means no filter at all.
    let Ok(conn) = agent::send(Op::Supervise, b"") else {
        return Ok(Supervised::No("the agent cannot be reached"));
    };
    // Yama (ptrace_scope 1) lets only ancestors read our memory unless we name the
    // reader; the agent is not our ancestor. Without Yama this fails harmlessly.
    if let Ok(cred) = rustix::net::sockopt::socket_peercred(&conn) {
        // SAFETY: prctl with these arguments only sets a flag on this process.
        unsafe {
            raw_syscall5(
                libc::SYS_prctl as usize,
                libc::PR_SET_PTRACER as usize,
                cred.pid.as_raw_nonzero().get() as usize,
                0,
                0,
                0,
            )
        };
    }
    let listener = match install_filter() {
        Ok(Some(fd)) => fd,
        // Already under a supervising filter (an ancestor's): it sees our calls too.
        Ok(None) => return Ok(Supervised::Yes),
        Err(why) => return Ok(Supervised::No(why)),
    };
    let sent = send_fd(&conn, &listener, crate::config::get().prefixes().mount);
    let answered = sent.is_ok() && agent::answer(&conn).is_ok();
    drop(listener);
    if answered {
        Ok(Supervised::Yes)
    } else {
        // The filter cannot be taken back: with the listener closed, the trapped calls
        // (the exec first) fail with ENOSYS. Fail the exec with a clearer error.
        Err(libc::EIO)
    }
}

/// Whether Yama (`ptrace_scope` >= 1) keeps the agent, not an ancestor, from reading
/// the memory of the program's children (`PR_SET_PTRACER` covers only the program).
fn yama_restricts() -> bool {
    let Ok(fd) = rustix::fs::open(
        c"/proc/sys/kernel/yama/ptrace_scope",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let mut b = [0u8; 4];
    matches!(rustix::io::read(&fd, &mut b), Ok(n) if n > 0 && b[0] != b'0')
}

/// Sends the listener with the mount path (so the agent recognises absolute mount paths).
fn send_fd(conn: &OwnedFd, fd: &OwnedFd, mount: &[u8]) -> Result<(), c_int> {
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    let fds = [fd.as_fd()];
    if !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(libc::EIO);
    }
    let payload: &[u8] = if mount.is_empty() { b"/" } else { mount };
    let iov = [rustix::io::IoSlice::new(payload)];
    match rustix::net::sendmsg(conn, &iov, &mut cmsg, SendFlags::NOSIGNAL) {
        Ok(n) if n == payload.len() => Ok(()),
        _ => Err(libc::EIO),
    }
}

/// System calls that take a path, trapped for the supervisor. fd-only calls
/// (`getdents64`, `fchdir`, `fstat`, `read`) are not: a directory is listed when it is
/// opened, a file fetched when it is opened.
#[cfg(target_arch = "x86_64")]
pub const TRAPPED: &[i64] = &[
    libc::SYS_open,
    libc::SYS_creat,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_access,
    libc::SYS_execve,
    libc::SYS_truncate,
    libc::SYS_chdir,
    libc::SYS_rename,
    libc::SYS_mkdir,
    libc::SYS_rmdir,
    libc::SYS_link,
    libc::SYS_unlink,
    libc::SYS_symlink,
    libc::SYS_readlink,
    libc::SYS_chmod,
    libc::SYS_chown,
    libc::SYS_lchown,
    libc::SYS_utime,
    libc::SYS_utimes,
    libc::SYS_mknod,
    libc::SYS_statfs,
    libc::SYS_futimesat,
    libc::SYS_openat,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_fchownat,
    libc::SYS_newfstatat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_readlinkat,
    libc::SYS_fchmodat,
    libc::SYS_faccessat,
    libc::SYS_utimensat,
    libc::SYS_renameat2,
    libc::SYS_execveat,
    libc::SYS_statx,
    libc::SYS_openat2,
    libc::SYS_faccessat2,
    SYS_FCHMODAT2,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
];

#[cfg(target_arch = "aarch64")]
pub const TRAPPED: &[i64] = &[
    libc::SYS_execve,
    libc::SYS_truncate,
    libc::SYS_chdir,
    libc::SYS_statfs,
    libc::SYS_openat,
    libc::SYS_mkdirat,
    libc::SYS_mknodat,
    libc::SYS_fchownat,
    libc::SYS_newfstatat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_linkat,
    libc::SYS_symlinkat,
    libc::SYS_readlinkat,
    libc::SYS_fchmodat,
    libc::SYS_faccessat,
    libc::SYS_utimensat,
    libc::SYS_renameat2,
    libc::SYS_execveat,
    libc::SYS_statx,
    libc::SYS_openat2,
    libc::SYS_faccessat2,
    SYS_FCHMODAT2,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
];

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;
/// x32 system calls have this bit set in their number; they are let through.
const X32_BIT: u32 = 0x4000_0000;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
const MAX_INSNS: usize = 8 + 64;
const _: () = assert!(TRAPPED.len() + 8 <= MAX_INSNS);

/// Builds the filter: other architectures (ia32 compat) and x32 pass, the [`TRAPPED`]
/// numbers go to the listener, everything else passes. Returns the length used.
pub fn build_filter(out: &mut [libc::sock_filter; MAX_INSNS]) -> usize {
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let allow = libc::SECCOMP_RET_ALLOW;
    let notify = libc::SECCOMP_RET_USER_NOTIF;
    let mut n = 0;
    let mut put = |i| {
        // Never full: MAX_INSNS covers the fixed part and every trapped number (checked
        // at compile time below).
        if let Some(slot) = out.get_mut(n) {
            *slot = i;
            n += 1;
        }
    };
    put(ins(BPF_LD_W_ABS, 0, 0, 4)); // seccomp_data.arch
    put(ins(BPF_JEQ_K, 1, 0, AUDIT_ARCH));
    put(ins(BPF_RET_K, 0, 0, allow));
    put(ins(BPF_LD_W_ABS, 0, 0, 0)); // seccomp_data.nr
    put(ins(BPF_JGE_K, 0, 1, X32_BIT));
    put(ins(BPF_RET_K, 0, 0, allow));
    let k = TRAPPED.len();
    for (i, nr) in TRAPPED.iter().enumerate() {
        // Equal: jump over the rest of the list and the ALLOW, to NOTIFY.
        put(ins(BPF_JEQ_K, (k - i) as u8, 0, *nr as u32));
    }
    put(ins(BPF_RET_K, 0, 0, allow));
    put(ins(BPF_RET_K, 0, 0, notify));
    n
}

const SECCOMP_SET_MODE_FILTER: usize = 1;
const SECCOMP_GET_ACTION_AVAIL: usize = 2;

/// Installs the filter with a new listener. `Ok(None)`: a listener already exists above
/// us (EBUSY). `Err(why)`: interception is not possible here.
fn install_filter() -> Result<Option<OwnedFd>, &'static str> {
    let mut insns = [libc::sock_filter {
        code: 0,
        jt: 0,
        jf: 0,
        k: 0,
    }; MAX_INSNS];
    let len = build_filter(&mut insns);
    let prog = libc::sock_fprog {
        len: len as u16,
        filter: insns.as_mut_ptr(),
    };
    let prog_ptr = &prog as *const libc::sock_fprog as usize;
    let base = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as usize;
    // Killable waits (5.19+): Go's preemption signals would otherwise interrupt every
    // wait and restart the call again and again.
    let killable = libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV as usize;
    let mut nnp_set = false;
    let mut flags = base | killable;
    loop {
        // SAFETY: `prog` and its instructions outlive the call.
        let r = unsafe {
            raw_syscall5(
                libc::SYS_seccomp as usize,
                SECCOMP_SET_MODE_FILTER,
                flags,
                prog_ptr,
                0,
                0,
            )
        };
        if r >= 0 {
            // SAFETY: the kernel returned a new fd that nothing else owns.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(r as i32) }));
        }
        match -r as c_int {
            libc::EBUSY => return Ok(None),
            // Without CAP_SYS_ADMIN a filter needs no_new_privs (setuid programs started
            // below this one then run without their privileges).
            libc::EACCES if !nnp_set => {
                nnp_set = true;
                // SAFETY: prctl with these arguments only sets a flag on this process.
                let r = unsafe {
                    raw_syscall5(
                        libc::SYS_prctl as usize,
                        libc::PR_SET_NO_NEW_PRIVS as usize,
                        1,
                        0,
                        0,
                        0,
                    )
                };
                if r < 0 {
                    return Err("no_new_privs cannot be set");
                }
            }
            libc::EINVAL if flags & killable != 0 => flags = base,
            libc::EINVAL => return Err("this kernel has no seccomp user notification (5.0+)"),
            libc::ENOSYS => return Err("this kernel has no seccomp"),
            libc::EACCES | libc::EPERM => return Err("seccomp filters are not allowed here"),
            _ => return Err("a seccomp filter could not be installed"),
        }
    }
}

/// Whether this process could install a supervising filter (a read-only probe: asks the
/// kernel whether `SECCOMP_RET_USER_NOTIF` is available). For `s3shim doctor`.
pub fn user_notif_available() -> bool {
    let action: u32 = libc::SECCOMP_RET_USER_NOTIF;
    // SAFETY: the kernel reads one u32.
    let r = unsafe {
        raw_syscall5(
            libc::SYS_seccomp as usize,
            SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32 as usize,
            0,
            0,
        )
    };
    r == 0
}

/// Writes one line to stderr (raw write, no lock): the fallback warning.
pub fn warn(parts: &[&[u8]]) {
    let mut line = [0u8; 1024];
    let mut w = crate::buf::Writer::new(&mut line);
    for p in parts {
        if w.put(p).is_none() {
            break;
        }
    }
    let n = w.len.min(line.len() - 1);
    if let Some(end) = line.get_mut(n) {
        *end = b'\n';
    }
    // SAFETY: fd 2 is borrowed for one write.
    let err = unsafe { rustix::fd::BorrowedFd::borrow_raw(2) };
    let _ = rustix::io::write(err, line.get(..=n).unwrap_or(&[]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_and_static_programs_are_recognised() {
        // Debian's ldconfig is static-pie; coreutils are dynamic; a script is not ELF.
        assert_eq!(bypass_kind(c"/sbin/ldconfig"), Some(Bypass::Static));
        assert_eq!(bypass_kind(c"/bin/true"), None);
        assert_eq!(bypass_kind(c"/etc/hostname"), None);
        assert_eq!(bypass_kind(c"/nonexistent"), None);
        // Debian's go is dynamically linked, and still a Go program.
        let go = c"/usr/lib/go/bin/go";
        assert!(
            std::path::Path::new(go.to_str().unwrap()).exists(),
            "install Debian's golang-go for this test"
        );
        assert_eq!(bypass_kind(go), Some(Bypass::Go));
    }

    #[test]
    fn the_filter_traps_every_listed_call_and_fits() {
        let mut f = [libc::sock_filter {
            code: 0,
            jt: 0,
            jf: 0,
            k: 0,
        }; MAX_INSNS];
        let n = build_filter(&mut f);
        assert_eq!(n, 6 + TRAPPED.len() + 2);
        // Every jump of the list lands on the NOTIFY return.
        for (i, ins) in f.iter().enumerate().skip(6).take(TRAPPED.len()) {
            assert_eq!(i + 1 + ins.jt as usize, n - 1);
        }
        assert_eq!(f[n - 1].k, libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(f[n - 2].k, libc::SECCOMP_RET_ALLOW);
    }
}
