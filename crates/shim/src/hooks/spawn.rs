//! posix_spawn and its file actions: the spawn child makes internal calls the shim never
//! sees, so the program path is mapped (and fetched, and a `#!` chain followed) and the
//! environment rebuilt in the parent, before the real call.

use super::exec::with_env;
use super::in_tree;
use crate::buf::PATH_MAX;
use crate::config;
use crate::cstr::cbytes;
use crate::env::{Candidates, DEFAULT_PATH};
use crate::errno::{errno, set_errno};
use crate::hydrate::{self, AfterMiss, Pre};
use crate::loc::Loc;
use crate::script::{executable, shebang, spare_space, Argv, MAX_INTERP_DEPTH};
use crate::static_exec;
use core::ffi::{c_char, c_int};
use libc::{pid_t, posix_spawn_file_actions_t, posix_spawnattr_t, AT_FDCWD};

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
    if let Err(e) = hydrate::resolve(&mut loc, AT_FDCWD, path) {
        return e;
    }
    if !loc.in_tree {
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
            if c.is_some()
                && hydrate::resolve(&mut loc, AT_FDCWD, buf.as_ptr().cast()).is_ok()
                && loc.in_tree
            {
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
            if hydrate::resolve(&mut loc, AT_FDCWD, buf.as_ptr().cast()).is_err() {
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
    if let Err(e) = hydrate::resolve(&mut loc, AT_FDCWD, path) {
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
    if let Err(e) = hydrate::resolve(&mut loc, AT_FDCWD, path) {
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
