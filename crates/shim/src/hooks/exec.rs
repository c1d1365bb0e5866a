//! exec and spawn: map the program path, fetch it if it is a placeholder (the kernel
//! reads its bytes and mode), and give the new program a rebuilt environment that loads
//! the shim again (see [`crate::env`]).
//!
//! These run in forked, possibly vforked, children of multithreaded parents: stack
//! buffers and one anonymous mapping only, no malloc, no lock. glibc's execvp/execvpe
//! call their internal `__execve`, so the `PATH` search is done here (glibc's rules) and
//! every candidate goes through the mapping. posix_spawn's child also uses internal calls,
//! so the path and environment are prepared in the parent.

use super::{in_tree, real};
use crate::config;
use crate::env::{self, count, Arena, Candidates, Inject, DEFAULT_PATH};
use crate::hydrate::{self, AfterMiss, Pre};
use crate::loc::Loc;
use crate::ret::Ret;
use crate::static_exec;
use crate::sys::{cbytes, errno, set_errno, PATH_MAX};
use core::ffi::{c_char, c_int};
use libc::{pid_t, posix_spawn_file_actions_t, posix_spawnattr_t, AT_FDCWD};

type Argv = *const *const c_char;

/// Longest file name execvp accepts (Linux `NAME_MAX`).
const NAME_MAX: usize = 255;

extern "C" {
    static environ: *const *const c_char;
}

fn current_environ() -> Argv {
    // SAFETY: reading the pointer value of glibc's `environ`.
    unsafe { core::ptr::addr_of!(environ).read() }
}

/// Below this many bytes the new environment is built on the stack: after `vfork` a
/// mapping made by the child would stay behind in the parent's address space once the
/// child execs, so the common case makes none. Larger ones get an anonymous mapping.
const STACK_ENV: usize = 8192;

/// Runs `body` with the rebuilt environment and `extra` spare bytes (pointer-aligned,
/// for rewritten argvs). If no memory can be had, the original environment is used:
/// the program still runs, unshimmed, rather than not at all.
unsafe fn with_env<T>(envp: Argv, extra: usize, body: impl FnOnce(Argv, &mut [u8]) -> T) -> T {
    let cfg = config::get();
    let set = cfg.env_entries();
    let inj = Inject {
        lib: cfg.lib(),
        set: &set,
    };
    let extra = extra.div_ceil(16) * 16;
    let ready = env::is_ready(envp, &inj);
    let need = extra + if ready { 0 } else { env::needed(envp, &inj) };
    let mut stack = core::mem::MaybeUninit::<[u64; STACK_ENV / 8]>::uninit();
    let mut arena = None;
    let bytes: &mut [u8] = if need <= STACK_ENV {
        // Only the `need` bytes used are zeroed: zeroing all 8 KiB on every spawn cost a
        // quarter of what the shim added to a spawn in the parent.
        let p = stack.as_mut_ptr().cast::<u8>();
        // SAFETY: `p` is 8-aligned and valid for STACK_ENV >= `need` bytes, which are
        // initialised before the slice is made.
        core::ptr::write_bytes(p, 0, need);
        core::slice::from_raw_parts_mut(p, need)
    } else {
        match Arena::new(need) {
            Some(a) => arena.insert(a).bytes(),
            None => return body(envp, &mut []),
        }
    };
    let (ex, rest) = bytes.split_at_mut(extra.min(bytes.len()));
    if ready {
        return body(envp, ex);
    }
    match env::build(envp, &inj, rest) {
        Some(new_env) => body(new_env, ex),
        None => body(envp, ex),
    }
}

/// Nested interpreters followed (the kernel allows 4 since Linux 5.x: BINPRM_MAX_RECURSION).
const MAX_INTERP_DEPTH: usize = 4;
/// Bytes of a `#!` line the kernel reads (BINPRM_BUF_SIZE).
const SHEBANG_MAX: usize = 256;

/// Room for one `#!` line (interpreter, NUL, argument, NUL), pointer-aligned.
const LINE_ROOM: usize = SHEBANG_MAX + 8;

/// Spare bytes exec needs for rewritten argvs (a `#!` chain and the ENOEXEC fallback).
unsafe fn spare_space(argv: Argv) -> usize {
    let per_step =
        (count(argv).max(1) + 4 + MAX_INTERP_DEPTH) * core::mem::size_of::<*const c_char>();
    (per_step + LINE_ROOM) * (MAX_INTERP_DEPTH + 2)
}

/// One execve attempt: map, fetch a placeholder, exec (with the ENOENT rule).
unsafe fn exec_one(path: *const c_char, argv: Argv, envp: Argv, spare: &mut [u8]) -> c_int {
    exec_depth(path, argv, envp, spare, 0)
}

/// An in-tree script starting with `#!` is not handed to the kernel under its cache
/// path: the interpreter is exec'd here (mapped too, so a venv under the mount works)
/// with the script's *virtual* path as its argument, as the kernel would have passed
/// it, so `$0` and `dirname "$0"` stay inside the mount.
unsafe fn exec_depth(
    path: *const c_char,
    argv: Argv,
    envp: Argv,
    spare: &mut [u8],
    depth: usize,
) -> c_int {
    let f = real!(execve);
    let mut loc = Loc::new();
    if let Err(e) = loc.resolve(AT_FDCWD, path) {
        return Ret::fail(e);
    }
    if !loc.in_tree {
        if let Err(e) = static_exec::prepare(loc.ptr(), argv) {
            return Ret::fail(e);
        }
        return f(loc.ptr(), argv, envp);
    }
    let spare_ptr = spare.as_mut_ptr();
    let spare_len = spare.len();
    in_tree(&loc, Pre::Fetch, &mut |_, p| {
        // SAFETY: the closure is the only user of `spare` while it runs.
        let spare = core::slice::from_raw_parts_mut(spare_ptr, spare_len);
        if depth < MAX_INTERP_DEPTH {
            if let Some((interp, new_argv, rest)) = shebang(path, p, argv, spare) {
                return exec_depth(interp, new_argv, envp, rest, depth + 1);
            }
        }
        if let Err(e) = static_exec::prepare(p, argv) {
            return Ret::fail(e);
        }
        f(p, argv, envp)
    })
}

/// When `real` (the mapped form of `path`) is an executable regular file starting with
/// `#!`: writes the interpreter line and the argv the kernel would build
/// (`interp [arg] path argv[1..]`) into `spare`, and returns the interpreter, that argv,
/// and the rest of `spare`. `None` otherwise (the kernel handles the file itself).
unsafe fn shebang(
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
    let mut w = crate::sys::Writer::new(out);
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

/// glibc's `maybe_script_execute`: run a file without a recognised format with /bin/sh.
unsafe fn exec_script(path: *const c_char, argv: Argv, envp: Argv, spare: &mut [u8]) {
    let argc = count(argv);
    let slots = argc.max(1) + 2;
    let need = slots * core::mem::size_of::<*const c_char>();
    if spare.len() < need {
        return;
    }
    let (area, rest) = spare.split_at_mut(need);
    let new_argv = area.as_mut_ptr() as *mut *const c_char;
    new_argv.write(c"/bin/sh".as_ptr());
    new_argv.add(1).write(path);
    if argc > 1 {
        for i in 1..argc {
            new_argv.add(i + 1).write(*argv.add(i));
        }
        new_argv.add(argc + 1).write(core::ptr::null());
    } else {
        new_argv.add(2).write(core::ptr::null());
    }
    exec_one(c"/bin/sh".as_ptr(), new_argv, envp, rest);
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn execve(path: *const c_char, argv: Argv, envp: Argv) -> c_int {
    let f = real!(execve);
    if !config::active() {
        return f(path, argv, envp);
    }
    with_env(envp, spare_space(argv), |env, ex| {
        exec_one(path, argv, env, ex)
    })
}

/// An fd exec (`fexecve`, `execveat` with `AT_EMPTY_PATH`) or one relative to a dirfd:
/// the environment is rebuilt; a relative path in the tree is mapped and fetched.
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn execveat(
    dirfd: c_int,
    path: *const c_char,
    argv: Argv,
    envp: Argv,
    flags: c_int,
) -> c_int {
    let f = real!(execveat);
    if !config::active() {
        return f(dirfd, path, argv, envp, flags);
    }
    let empty = cbytes(path).is_none_or(|b| b.is_empty());
    if !empty && flags == 0 && (dirfd == AT_FDCWD || cbytes(path).is_some_and(|b| b[0] == b'/')) {
        return execve(path, argv, envp);
    }
    with_env(envp, 0, |env, _| {
        if empty {
            return f(dirfd, path, argv, env, flags);
        }
        super::at_path(dirfd, path, Pre::Fetch, |d, p| f(d, p, argv, env, flags))
    })
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: Argv, envp: Argv) -> c_int {
    let f = real!(fexecve);
    if !config::active() {
        return f(fd, argv, envp);
    }
    with_env(envp, 0, |env, _| f(fd, argv, env))
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn execv(path: *const c_char, argv: Argv) -> c_int {
    execve(path, argv, current_environ())
}

/// glibc's execvpe: a name with `/` is executed as is (a script via /bin/sh); otherwise
/// each `PATH` element (default `/bin:/usr/bin`, empty = cwd) is tried; EACCES is
/// remembered, ENOENT/ENOTDIR/ESTALE/ENODEV/ETIMEDOUT move on, anything else stops.
unsafe fn execvpe_impl(file: *const c_char, argv: Argv, envp: Argv) -> c_int {
    let Some(name) = cbytes(file) else {
        // NULL or unmapped: glibc's own reaction (it reads the name first).
        return real!(execvpe)(file, argv, envp);
    };
    if name.is_empty() {
        return Ret::fail(libc::ENOENT);
    }
    with_env(envp, spare_space(argv), |env, ex| {
        if name.contains(&b'/') {
            exec_one(file, argv, env, ex);
            if errno() == libc::ENOEXEC {
                exec_script(file, argv, env, ex);
            }
            return -1;
        }
        if name.len() > NAME_MAX {
            return Ret::fail(libc::ENAMETOOLONG);
        }
        let path_var = cbytes(libc::getenv(c"PATH".as_ptr())).unwrap_or(DEFAULT_PATH);
        let mut cands = Candidates::new(path_var, name);
        let mut buf = [0u8; PATH_MAX];
        let mut got_eacces = false;
        while let Some(c) = cands.next_into(&mut buf) {
            if c.is_none() {
                continue;
            }
            let cand = buf.as_ptr().cast::<c_char>();
            exec_one(cand, argv, env, ex);
            if errno() == libc::ENOEXEC {
                exec_script(cand, argv, env, ex);
            }
            match errno() {
                libc::EACCES => got_eacces = true,
                libc::ENOENT | libc::ESTALE | libc::ENOTDIR | libc::ENODEV | libc::ETIMEDOUT => {}
                _ => return -1,
            }
        }
        if got_eacces {
            set_errno(libc::EACCES);
        }
        -1
    })
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: Argv) -> c_int {
    if !config::active() {
        let f = real!(execvp);
        return f(file, argv);
    }
    execvpe_impl(file, argv, current_environ())
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: Argv, envp: Argv) -> c_int {
    if !config::active() {
        let f = real!(execvpe);
        return f(file, argv, envp);
    }
    execvpe_impl(file, argv, envp)
}

// execl, execle, execlp: C-variadic, so defined in csrc/execl.c (which collects the list
// and calls the execve/execvp above). rustc's version script only exports Rust symbols,
// so the exported names are naked trampolines that jump to the hidden C functions with
// every register and stack argument untouched.
extern "C" {
    fn s3shim_c_execl();
    fn s3shim_c_execle();
    fn s3shim_c_execlp();
}

macro_rules! trampoline {
    ($name:ident, $target:ident) => {
        #[cfg_attr(not(test), no_mangle)]
        #[unsafe(naked)]
        pub unsafe extern "C" fn $name() {
            #[cfg(target_arch = "x86_64")]
            core::arch::naked_asm!("jmp {f}", f = sym $target);
            #[cfg(target_arch = "aarch64")]
            core::arch::naked_asm!("b {f}", f = sym $target);
        }
    };
}

trampoline!(execl, s3shim_c_execl);
trampoline!(execle, s3shim_c_execle);
trampoline!(execlp, s3shim_c_execlp);

/// posix_spawn returns an error number (errno is left alone): map, fetch, follow a `#!`
/// chain as exec does (the spawn child's internal execve never reaches the shim), spawn,
/// and on ENOENT apply the lookup rule.
unsafe fn spawn_at(
    path: *const c_char,
    argv: Argv,
    spare: &mut [u8],
    depth: usize,
    call: &impl Fn(*const c_char, Argv) -> c_int,
) -> c_int {
    let saved = errno();
    let mut loc = Loc::new();
    if let Err(e) = loc.resolve(AT_FDCWD, path) {
        return e;
    }
    if !loc.in_tree {
        // issue 15: posix_spawn runs this in the parent: no filter here, fallback only.
        if let Err(e) = static_exec::prepare_in_parent(loc.ptr(), argv) {
            return e;
        }
        return call(loc.ptr(), argv);
    }
    let spare_ptr = spare.as_mut_ptr();
    let spare_len = spare.len();
    let attempt = || {
        // SAFETY: one attempt at a time uses `spare`.
        let spare = core::slice::from_raw_parts_mut(spare_ptr, spare_len);
        if depth < MAX_INTERP_DEPTH {
            if let Some((interp, new_argv, rest)) = shebang(path, loc.ptr(), argv, spare) {
                return spawn_at(interp, new_argv, rest, depth + 1, call);
            }
        }
        // issue 15: in the parent (posix_spawn): fallback only.
        if let Err(e) = static_exec::prepare_in_parent(loc.ptr(), argv) {
            return e;
        }
        call(loc.ptr(), argv)
    };
    let r = (|| {
        hydrate::pre(&loc, Pre::Fetch)?;
        let mut r = attempt();
        let mut rechecked = false;
        while r == libc::ENOENT {
            match hydrate::after_miss([&loc], &mut rechecked) {
                AfterMiss::LookedUp => {
                    hydrate::pre(&loc, Pre::Fetch)?;
                    return Ok(attempt());
                }
                AfterMiss::CallAgain => r = attempt(),
                AfterMiss::CallAgainOnce => {
                    r = attempt();
                    break;
                }
                AfterMiss::Enoent => break,
                AfterMiss::Failed(e) => return Err(e),
            }
        }
        Ok(r)
    })();
    set_errno(saved);
    r.unwrap_or_else(|e| e)
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn posix_spawn(
    pid: *mut pid_t,
    path: *const c_char,
    fa: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: Argv,
    envp: Argv,
) -> c_int {
    let Some(f) = crate::real::posix_spawn::get() else {
        return libc::ENOSYS;
    };
    if !config::active() {
        return f(pid, path, fa, attr, argv, envp);
    }
    with_env(envp, spare_space(argv), |env, ex| {
        spawn_at(path, argv, ex, 0, &|p, a| f(pid, p, fa, attr, a, env))
    })
}

/// Whether `p` is a regular file this process may execute (raw syscalls; sets errno on
/// failure so the ENOENT rule can see it).
unsafe fn executable(p: *const c_char) -> c_int {
    let c = core::ffi::CStr::from_ptr(p);
    let r = rustix::fs::access(c, rustix::fs::Access::EXEC_OK).and_then(|_| rustix::fs::stat(c));
    match r {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => 0,
        Ok(_) => Ret::fail(libc::EACCES),
        Err(e) => Ret::fail(e.raw_os_error()),
    }
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn posix_spawnp(
    pid: *mut pid_t,
    file: *const c_char,
    fa: *const posix_spawn_file_actions_t,
    attr: *const posix_spawnattr_t,
    argv: Argv,
    envp: Argv,
) -> c_int {
    let Some(fp) = crate::real::posix_spawnp::get() else {
        return libc::ENOSYS;
    };
    if !config::active() {
        return fp(pid, file, fa, attr, argv, envp);
    }
    let name = cbytes(file).unwrap_or(&[]);
    let saved = errno();
    let r = with_env(envp, spare_space(argv), |env, ex| {
        if name.is_empty() || name.contains(&b'/') {
            return spawn_at(file, argv, ex, 0, &|p, a| fp(pid, p, fa, attr, a, env));
        }
        // The search is glibc's unless a PATH element lies in the tree: then walk PATH
        // here, and hand glibc either the mapped in-tree program or the name again when
        // the first hit is outside (glibc then finds that same one).
        let path_var = cbytes(libc::getenv(c"PATH".as_ptr())).unwrap_or(DEFAULT_PATH);
        let mut buf = [0u8; PATH_MAX];
        // First pass without syscalls: does any candidate map into the tree?
        let mut cands = Candidates::new(path_var, name);
        let mut any_in_tree = false;
        while let Some(c) = cands.next_into(&mut buf) {
            let mut loc = Loc::new();
            if c.is_some() && loc.resolve(AT_FDCWD, buf.as_ptr().cast()).is_ok() && loc.in_tree {
                any_in_tree = true;
                break;
            }
        }
        if !any_in_tree {
            return fp(pid, file, fa, attr, argv, env);
        }
        let mut cands = Candidates::new(path_var, name);
        while let Some(c) = cands.next_into(&mut buf) {
            if c.is_none() {
                continue;
            }
            let mut loc = Loc::new();
            if loc.resolve(AT_FDCWD, buf.as_ptr().cast()).is_err() {
                continue;
            }
            if loc.in_tree {
                if in_tree(&loc, Pre::Nothing, &mut |_, p| executable(p)) == 0 {
                    let Some(f) = crate::real::posix_spawn::get() else {
                        return libc::ENOSYS;
                    };
                    return spawn_at(buf.as_ptr().cast(), argv, ex, 0, &|p, a| {
                        f(pid, p, fa, attr, a, env)
                    });
                }
            } else if executable(loc.ptr()) == 0 {
                break;
            }
        }
        fp(pid, file, fa, attr, argv, env)
    });
    set_errno(saved);
    r
}

/// glibc copies the path at add time, so mapping here is enough. The child opens it with
/// internal calls, so a placeholder is fetched now (and the parent listed for O_CREAT).
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn posix_spawn_file_actions_addopen(
    fa: *mut posix_spawn_file_actions_t,
    fd: c_int,
    path: *const c_char,
    oflag: c_int,
    mode: libc::mode_t,
) -> c_int {
    let Some(f) = crate::real::posix_spawn_file_actions_addopen::get() else {
        return libc::ENOSYS;
    };
    if !config::active() {
        return f(fa, fd, path, oflag, mode);
    }
    let saved = errno();
    let mut loc = Loc::new();
    if let Err(e) = loc.resolve(AT_FDCWD, path) {
        return e;
    }
    if loc.in_tree {
        let create = if oflag & libc::O_CREAT != 0 {
            hydrate::pre(&loc, Pre::Create)
        } else {
            Ok(())
        };
        if let Err(e) = create.and_then(|_| hydrate::pre(&loc, Pre::Fetch)) {
            set_errno(saved);
            return e;
        }
    }
    set_errno(saved);
    f(fa, fd, loc.ptr(), oflag, mode)
}

#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn posix_spawn_file_actions_addchdir_np(
    fa: *mut posix_spawn_file_actions_t,
    path: *const c_char,
) -> c_int {
    let Some(f) = crate::real::posix_spawn_file_actions_addchdir_np::get() else {
        return libc::ENOSYS;
    };
    if !config::active() {
        return f(fa, path);
    }
    let saved = errno();
    let mut loc = Loc::new();
    if let Err(e) = loc.resolve(AT_FDCWD, path) {
        return e;
    }
    if loc.in_tree {
        if let Err(e) = hydrate::pre(&loc, Pre::ListDir) {
            set_errno(saved);
            return e;
        }
    }
    set_errno(saved);
    f(fa, loc.ptr())
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
