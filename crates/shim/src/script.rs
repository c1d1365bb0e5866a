//! Interpreter scripts: a `#!` file read the way the kernel reads it, and the argv the
//! kernel would build for it, so exec and spawn can start the interpreter themselves
//! with the script's virtual path (see `hooks::exec`). Stack buffers and raw syscalls
//! only: this runs in (v)forked children.

use crate::env::count;
use crate::ret::Ret;
use core::ffi::{c_char, c_int};

/// A NULL-terminated vector of C strings (argv, envp).
pub type Argv = *const *const c_char;

/// Nested interpreters followed (the kernel allows 4 since Linux 5.x: BINPRM_MAX_RECURSION).
pub const MAX_INTERP_DEPTH: usize = 4;
/// Bytes of a `#!` line the kernel reads (BINPRM_BUF_SIZE).
const SHEBANG_MAX: usize = 256;

/// Room for one `#!` line (interpreter, NUL, argument, NUL), pointer-aligned.
const LINE_ROOM: usize = SHEBANG_MAX + 8;

/// Spare bytes exec needs for rewritten argvs (a `#!` chain and the ENOEXEC fallback).
pub unsafe fn spare_space(argv: Argv) -> usize {
    let per_step =
        (count(argv).max(1) + 4 + MAX_INTERP_DEPTH) * core::mem::size_of::<*const c_char>();
    (per_step + LINE_ROOM) * (MAX_INTERP_DEPTH + 2)
}

/// When `real` (the mapped form of `path`) is an executable regular file starting with
/// `#!`: writes the interpreter line and the argv the kernel would build
/// (`interp [arg] path argv[1..]`) into `spare`, and returns the interpreter, that argv,
/// and the rest of `spare`. `None` otherwise (the kernel handles the file itself).
pub unsafe fn shebang(
    path: *const c_char,
    real: *const c_char,
    argv: Argv,
    spare: &mut [u8],
) -> Option<(*const c_char, Argv, &mut [u8])> {
    if executable(real) != 0 {
        return None;
    }
    let mut head = [0u8; SHEBANG_MAX];
    let n = {
        let c = core::ffi::CStr::from_ptr(real);
        let fd = rustix::fs::open(
            c,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .ok()?;
        rustix::io::read(&fd, &mut head[..]).ok()?
    };
    if !head.starts_with(b"#!") {
        return None;
    }
    let argc = count(argv);
    let slots = 1 + 1 + 1 + argc.saturating_sub(1) + 1;
    let table = slots * core::mem::size_of::<*const c_char>();
    if spare.len() < table + LINE_ROOM {
        return None;
    }
    let (area, rest) = spare.split_at_mut(table);
    let (line, rest) = rest.split_at_mut(LINE_ROOM);
    let (interp_len, arg_len) = parse_shebang(head.get(..n)?, line)?;
    let base = line.as_ptr().cast::<c_char>();
    let new_argv = area.as_mut_ptr() as *mut *const c_char;
    let mut k = 0;
    new_argv.add(k).write(base);
    k += 1;
    if arg_len.is_some() {
        new_argv.add(k).write(base.add(interp_len + 1));
        k += 1;
    }
    new_argv.add(k).write(path);
    k += 1;
    for i in 1..argc {
        new_argv.add(k).write(*argv.add(i));
        k += 1;
    }
    new_argv.add(k).write(core::ptr::null());
    Some((base, new_argv as Argv, rest))
}

/// Parses a `#!` line the way Linux does: the interpreter is the first word after `#!`
/// (blanks skipped), the optional argument is the rest of the line with surrounding
/// blanks trimmed. Writes `interp\0arg\0` into `out`; returns their lengths.
pub fn parse_shebang(head: &[u8], out: &mut [u8]) -> Option<(usize, Option<usize>)> {
    let rest = head.strip_prefix(b"#!")?;
    // The kernel needs the whole line within its buffer (or a word that ends in it).
    let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = rest.get(..line_end)?;
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = line.iter().position(|b| !blank(b))?;
    let line = line.get(start..)?;
    let iend = line.iter().position(blank).unwrap_or(line.len());
    let interp = line.get(..iend)?;
    let tail = line.get(iend..)?;
    let a0 = tail.iter().position(|b| !blank(b));
    let arg = a0.and_then(|a| {
        let t = tail.get(a..)?;
        let e = t.iter().rposition(|b| !blank(b))?;
        t.get(..=e)
    });
    let mut w = crate::buf::Writer::new(out);
    w.put(interp)?;
    let ilen = interp.len();
    match arg {
        Some(a) => {
            w.put(b"\0")?;
            w.put(a)?;
            Some((ilen, Some(a.len())))
        }
        None => Some((ilen, None)),
    }
}

/// Whether `p` is a regular file this process may execute (raw syscalls; sets errno on
/// failure so the ENOENT rule can see it).
pub unsafe fn executable(p: *const c_char) -> c_int {
    let c = core::ffi::CStr::from_ptr(p);
    let r = rustix::fs::access(c, rustix::fs::Access::EXEC_OK).and_then(|_| rustix::fs::stat(c));
    match r {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => 0,
        Ok(_) => Ret::fail(libc::EACCES),
        Err(e) => Ret::fail(e.raw_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_shebang;

    fn parse(s: &str) -> Option<(String, Option<String>)> {
        let mut out = [0u8; 300];
        let (i, a) = parse_shebang(s.as_bytes(), &mut out)?;
        let interp = String::from_utf8(out[..i].to_vec()).unwrap();
        let arg = a.map(|n| String::from_utf8(out[i + 1..i + 1 + n].to_vec()).unwrap());
        assert_eq!(out[i + a.map_or(0, |n| n + 1)], 0);
        Some((interp, arg))
    }

    #[test]
    fn shebang_lines_parse_like_linux() {
        let s = |x: &str| x.to_string();
        assert_eq!(parse("#!/bin/sh\necho"), Some((s("/bin/sh"), None)));
        assert_eq!(
            parse("#! /usr/bin/env python3\n"),
            Some((s("/usr/bin/env"), Some(s("python3"))))
        );
        assert_eq!(
            parse("#!/bin/bash -e -x  \n"),
            Some((s("/bin/bash"), Some(s("-e -x"))))
        );
        assert_eq!(
            parse("#!\t/workspace/.venv/bin/python\t\n"),
            Some((s("/workspace/.venv/bin/python"), None))
        );
        assert_eq!(parse("#!/bin/sh"), Some((s("/bin/sh"), None)));
        assert_eq!(parse("#!\n"), None);
        assert_eq!(parse("#!   \n"), None);
        assert_eq!(parse("\x7fELF"), None);
        assert_eq!(parse("echo hi\n"), None);
    }
}
