//! Programs the shim cannot enter (static binaries: no `PT_INTERP`, so `LD_PRELOAD` is
//! never loaded — VS Code's ripgrep, Go tools) read the cache directly. Before one is
//! exec'd with its cwd or an argument in the tree, that subtree is made local, bytes
//! included (`FetchTree`), and the exec waits for it.
//!
//! Runs in (v)fork children: stack buffers and raw syscalls only.

use crate::buf::PATH_MAX;
use crate::config;
use crate::cwd;
use crate::hydrate;
use crate::intercept;
use crate::loc::Loc;
use crate::sys;
use core::ffi::{c_char, c_int, CStr};
use libc::AT_FDCWD;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};

const PT_INTERP: u32 = 3;
/// Program headers read at most (more than any real binary has).
const MAX_PHDRS: usize = 64;

/// Whether the file at `real` (a path the kernel can open) is an ELF executable without
/// an interpreter. Anything unreadable or not ELF is "not static" (the kernel decides).
pub fn is_static_elf(real: &CStr) -> bool {
    let Ok(fd) = rustix::fs::open(real, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) else {
        return false;
    };
    let mut eh = [0u8; 64];
    if !matches!(rustix::io::pread(&fd, &mut eh[..], 0), Ok(64)) || !eh.starts_with(b"\x7fELF") {
        return false;
    }
    // 64-bit little-endian only (x86_64, aarch64).
    if eh.get(4..6) != Some(&[2, 1]) {
        return false;
    }
    // A little-endian field of `n` bytes at offset `o`.
    let le = |o: usize, n: usize| {
        let b = eh.get(o..o + n)?;
        Some(b.iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x)))
    };
    // e_phoff, e_phentsize, e_phnum.
    let (Some(phoff), Some(phentsize), Some(phnum)) = (le(32, 8), le(54, 2), le(56, 2)) else {
        return false;
    };
    let (phentsize, phnum) = (phentsize as usize, phnum as usize);
    if phentsize < 56 || phnum == 0 || phnum > MAX_PHDRS {
        return false;
    }
    let mut ph = [0u8; MAX_PHDRS * 64];
    let Some(buf) = ph.get_mut(..phentsize.saturating_mul(phnum).min(MAX_PHDRS * 64)) else {
        return false;
    };
    let Ok(n) = rustix::io::pread(&fd, &mut *buf, phoff) else {
        return false;
    };
    let has_interp = buf
        .get(..n)
        .unwrap_or(&[])
        .chunks_exact(phentsize)
        .any(|h| h.get(..4) == Some(&PT_INTERP.to_le_bytes()[..]));
    !has_interp
}

/// Whether an exec of `argv` with the current cwd touches the tree at all (no syscall).
unsafe fn touches_tree(argv: *const *const c_char) -> bool {
    if cwd::state().0 == cwd::INSIDE {
        return true;
    }
    let cfg = config::get();
    let p = cfg.prefixes();
    crate::env::entries(argv).skip(1).any(|a| {
        let a = a.to_bytes();
        crate::path::under(a, p.mount).is_some() || crate::path::under(a, p.tree).is_some()
    })
}

/// Before exec'ing the program at `real` (already mapped), in the process that execs it:
/// a program that bypasses libc (static, Go) gets the agent as its supervisor (see
/// [`crate::intercept`]); where that is not possible, and its cwd or an argument is in
/// the tree, those subtrees are made local and a one-line warning names the program.
/// Errors are the agent's (the exec fails with them rather than letting the program
/// see placeholders).
///
/// # Safety
/// `real` is a valid C string, `argv` a NULL-terminated array of C strings.
pub unsafe fn prepare(real: *const c_char, argv: *const *const c_char) -> Result<(), c_int> {
    prepare_as(real, argv, true)
}

/// [`prepare`] for `posix_spawn`, which runs in the parent: a filter installed here
/// would trap the parent, so only the fallback applies.
///
/// # Safety
/// As [`prepare`].
pub unsafe fn prepare_in_parent(
    real: *const c_char,
    argv: *const *const c_char,
) -> Result<(), c_int> {
    prepare_as(real, argv, false)
}

unsafe fn prepare_as(
    real: *const c_char,
    argv: *const *const c_char,
    in_child: bool,
) -> Result<(), c_int> {
    if !config::active() || crate::cstr::cbytes(real).is_none() {
        return Ok(());
    }
    let Some(kind) = intercept::bypass_kind(CStr::from_ptr(real)) else {
        return Ok(());
    };
    let why = if in_child {
        match intercept::supervise()? {
            intercept::Supervised::Yes => return Ok(()),
            intercept::Supervised::No(why) => why,
        }
    } else {
        "it is started with posix_spawn"
    };
    if !touches_tree(argv) {
        return Ok(());
    }
    let what: &[u8] = match kind {
        intercept::Bypass::Go => b"a Go program",
        intercept::Bypass::Static => b"a static program",
    };
    intercept::warn(&[
        b"s3shim: ",
        crate::cstr::cbytes(real).unwrap_or(b"?"),
        b" is ",
        what,
        b" the shim cannot enter and cannot be supervised (",
        why.as_bytes(),
        b"): the folder it uses is made local before it starts",
    ]);
    if cwd::state().0 == cwd::INSIDE {
        let mut here = [0u8; PATH_MAX];
        let n = sys::getcwd(&mut here)?;
        hydrate::fetch_tree_abs(here.get(..n).unwrap_or(&[]))?;
    }
    for arg in crate::env::entries(argv).skip(1) {
        let mut loc = Loc::new();
        if hydrate::resolve(&mut loc, AT_FDCWD, arg.as_ptr()).is_err() || !loc.in_tree {
            continue;
        }
        let mut abs = [0u8; PATH_MAX];
        let Some(n) = loc.real_abs(&mut abs) else {
            continue;
        };
        let Some(p) = crate::buf::as_cstr(&abs, n) else {
            continue;
        };
        // A name that does not exist (yet) is a pattern or an option, not a tree.
        match rustix::fs::statat(CWD, p, AtFlags::empty()) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                hydrate::fetch_tree_abs(abs.get(..n).unwrap_or(&[]))?
            }
            Ok(_) => hydrate::fetch_abs(abs.get(..n).unwrap_or(&[]))?,
            Err(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_static_elf;

    #[test]
    fn elf_without_an_interpreter_is_static() {
        // Debian's ldconfig is static-pie; coreutils are dynamic; a script is not ELF.
        assert!(is_static_elf(c"/sbin/ldconfig"));
        assert!(!is_static_elf(c"/bin/true"));
        assert!(!is_static_elf(c"/etc/hostname"));
        assert!(!is_static_elf(c"/nonexistent"));
    }
}
