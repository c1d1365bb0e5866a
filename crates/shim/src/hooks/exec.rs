//! exec and spawn: map the program path, fetch it if it is a placeholder (the kernel
//! reads its bytes and mode), and give the new program a rebuilt environment that loads
//! the shim again (see [`crate::env`]).
//!
//! These run in forked, possibly vforked, children of multithreaded parents: stack
//! buffers and one anonymous mapping only, no malloc, no lock. glibc's execvp/execvpe
//! call their internal `__execve`, so the `PATH` search is done here (glibc's rules) and
//! every candidate goes through the mapping. posix_spawn's child also uses internal calls,
//! so the path and environment are prepared in the parent.
//!
//! posix_spawn is in `hooks::spawn`, the `#!` reading in [`crate::script`].

use super::{in_tree, real};
use crate::buf::PATH_MAX;
use crate::config;
use crate::cstr::cbytes;
use crate::env::{self, count, Arena, Candidates, Inject, DEFAULT_PATH};
use crate::errno::{errno, set_errno};
use crate::hydrate::{self, Pre};
use crate::loc::Loc;
use crate::ret::Ret;
use crate::static_exec;
use core::ffi::{c_char, c_int};
use libc::AT_FDCWD;

use crate::script::{shebang, spare_space, Argv, MAX_INTERP_DEPTH};

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
pub(super) unsafe fn with_env<T>(
    envp: Argv,
    extra: usize,
    body: impl FnOnce(Argv, &mut [u8]) -> T,
) -> T {
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
    if let Err(e) = hydrate::resolve(&mut loc, AT_FDCWD, path) {
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
    if !empty
        && flags == 0
        && (dirfd == AT_FDCWD || cbytes(path).is_some_and(|b| b.starts_with(b"/")))
    {
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
