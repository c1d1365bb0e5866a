//! The shim's own system calls: raw, so they never enter the shim's own hooks and never
//! touch errno (rustix's `linux_raw` backend, or a raw syscall for `getcwd`, which rustix
//! only offers allocating, and `mincore`, which it lacks).

use crate::buf::Writer;
use core::ffi::c_int;

/// `getcwd(2)` into `buf` (NUL-terminated); returns the length without the NUL.
pub fn getcwd(buf: &mut [u8]) -> Result<usize, c_int> {
    // SAFETY: the kernel writes at most `buf.len()` bytes.
    let r = unsafe {
        raw_syscall3(
            libc::SYS_getcwd as usize,
            buf.as_mut_ptr() as usize,
            buf.len(),
            0,
        )
    };
    if r < 0 {
        return Err(-r as c_int);
    }
    // The kernel counts the NUL; an unreachable cwd comes back as "(unreachable)/...".
    let n = (r as usize).saturating_sub(1);
    match buf.first() {
        Some(b'/') if n > 0 => Ok(n),
        _ => Err(libc::ENOENT),
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn raw_syscall3(n: usize, a1: usize, a2: usize, a3: usize) -> isize {
    let ret: isize;
    core::arch::asm!(
        "syscall",
        inlateout("rax") n as isize => ret,
        in("rdi") a1,
        in("rsi") a2,
        in("rdx") a3,
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack)
    );
    ret
}

#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn raw_syscall3(n: usize, a1: usize, a2: usize, a3: usize) -> isize {
    let ret: isize;
    core::arch::asm!(
        "svc 0",
        in("x8") n,
        inlateout("x0") a1 as isize => ret,
        in("x1") a2,
        in("x2") a3,
        options(nostack)
    );
    ret
}

/// Closes an fd the shim got from a real call and is undoing (never marked in the fd
/// table: the hook marks only the fd it hands back).
pub fn close_fd(fd: c_int) {
    if fd >= 0 {
        // SAFETY: the fd came from a successful open the shim is undoing.
        unsafe { rustix::io::close(fd) };
    }
}

/// `/proc/self/fd/<fd>` into `w`.
pub fn proc_fd_path(w: &mut Writer<'_>, fd: c_int) -> Option<()> {
    w.put(b"/proc/self/fd/")?;
    w.put_u64(u64::try_from(fd).ok()?)
}

/// The path an fd refers to (`readlink /proc/self/fd/N`) into `out`, NUL-terminated;
/// returns its length. Slow paths only.
pub fn fd_path(fd: c_int, out: &mut [u8]) -> Option<usize> {
    let mut name = [0u8; 40];
    let mut w = Writer::new(&mut name);
    proc_fd_path(&mut w, fd)?;
    let link = w.cstr()?;
    let cap = out.len().checked_sub(1)?;
    let n = rustix::fs::readlinkat_raw(rustix::fs::CWD, link, out.get_mut(..cap)?).ok()?;
    if n >= cap {
        return None;
    }
    *out.get_mut(n)? = 0;
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buf::PATH_MAX;

    #[test]
    fn raw_getcwd_matches_std() {
        let mut b = [0u8; PATH_MAX];
        let n = getcwd(&mut b).unwrap();
        let std_cwd = std::env::current_dir().unwrap();
        assert_eq!(&b[..n], std_cwd.to_str().unwrap().as_bytes());
        assert_eq!(b[n], 0);
        let mut tiny = [0u8; 2];
        assert_eq!(getcwd(&mut tiny), Err(libc::ERANGE));
    }
}
