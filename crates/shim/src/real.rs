//! The real libc functions behind the hooks.
//!
//! Each entry becomes a module `real::<name>` with the function type `F`, its slot `SYM`
//! and `get()`. Nothing is resolved at load: a program that calls no hooked function
//! (`true`, `echo`, `env`) never calls `dlsym`, and resolving all ~130 slots at load was
//! half of what the shim added to starting a program.
//!
//! The first empty slot a process meets is filled together with the [`resolve_eager`] set: the
//! functions that programs call in a `vfork` child before `exec` and in signal handlers,
//! where `dlsym` (which takes the loader's lock) does not belong. A program makes some
//! ordinary hooked call (an `open`, a `stat`) before it spawns children or installs
//! cleanup handlers, so those paths find their slots filled. (In a `fork` child a lazy
//! `dlsym` is as safe as glibc's own lazy PLT binding: glibc resets the loader lock in
//! the child.) Two threads resolving at once store the same values. A missing symbol is
//! remembered and reported as `None` (the hook fails with `ENOSYS`), never a panic.
//!
//! Adding a family: add its signatures here (and to [`resolve_eager`] if a vfork child or a signal
//! handler calls it), then the hooks in `hooks/`.

use core::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use libc::{
    dev_t, gid_t, mode_t, off64_t, off_t, pid_t, posix_spawn_file_actions_t, posix_spawnattr_t,
    size_t, ssize_t, timespec, timeval, uid_t, utimbuf, DIR, FILE,
};

/// Marks a slot whose symbol `dlsym` did not find.
const MISSING: *mut c_void = usize::MAX as *mut c_void;

/// One resolvable symbol's slot. Only the address lives here, zero until resolved (so
/// the slots take no page of the file and no relocation); the name is a constant next to
/// it (`real::<name>::NAME`). Names stored as pointers needed ~150 relocations, which
/// the loader wrote into these pages in every process.
pub struct Sym {
    ptr: AtomicPtr<c_void>,
}

impl Sym {
    pub const fn new() -> Sym {
        Sym {
            ptr: AtomicPtr::new(core::ptr::null_mut()),
        }
    }

    /// The address of `name` (NUL-terminated), resolved on first use.
    #[inline]
    pub fn get(&self, name: &'static [u8]) -> Option<*mut c_void> {
        let p = self.ptr.load(Ordering::Acquire);
        if p.is_null() {
            return self.resolve(name);
        }
        if p == MISSING {
            None
        } else {
            Some(p)
        }
    }

    #[cold]
    fn resolve(&self, name: &'static [u8]) -> Option<*mut c_void> {
        if !EAGER_DONE.swap(true, Ordering::AcqRel) {
            resolve_eager();
        }
        self.resolve_one(name)
    }

    fn fill(&self, name: &'static [u8]) {
        if self.ptr.load(Ordering::Acquire).is_null() {
            self.resolve_one(name);
        }
    }

    fn resolve_one(&self, name: &'static [u8]) -> Option<*mut c_void> {
        // SAFETY: `name` is NUL-terminated (built with concat!(.., "\0")).
        let mut p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) };
        if p.is_null() {
            // Compat-only symbols (e.g. `__xstat` in a future glibc) are still reachable
            // by their base version.
            // SAFETY: as above.
            p = unsafe {
                libc::dlvsym(
                    libc::RTLD_NEXT,
                    name.as_ptr().cast(),
                    BASE_VERSION.as_ptr().cast(),
                )
            };
        }
        let store = if p.is_null() { MISSING } else { p };
        self.ptr.store(store, Ordering::Release);
        (!p.is_null()).then_some(p)
    }
}

impl Default for Sym {
    fn default() -> Self {
        Sym::new()
    }
}

#[cfg(target_arch = "aarch64")]
const BASE_VERSION: &[u8] = b"GLIBC_2.17\0";
#[cfg(not(target_arch = "aarch64"))]
const BASE_VERSION: &[u8] = b"GLIBC_2.2.5\0";

macro_rules! reals {
    ($( $name:ident : fn($($arg:ty),* $(,)?) -> $ret:ty; )*) => {
        $(
            #[allow(non_snake_case, non_camel_case_types, dead_code)]
            pub mod $name {
                use super::*;
                pub type F = unsafe extern "C" fn($($arg),*) -> $ret;
                pub const NAME: &[u8] = concat!(stringify!($name), "\0").as_bytes();
                pub static SYM: Sym = Sym::new();
                #[inline]
                pub fn get() -> Option<F> {
                    // SAFETY: the symbol has this C signature in glibc.
                    SYM.get(NAME).map(|p| unsafe { core::mem::transmute::<*mut c_void, F>(p) })
                }
            }
        )*
    };
}

/// What a `vfork` child (Python's subprocess, for one) calls between `vfork` and `exec`,
/// and what signal handlers call to clean up (lock and temp files): resolved with the
/// first slot the process fills, so that these paths do not call `dlsym`.
fn resolve_eager() {
    open::SYM.fill(open::NAME);
    open64::SYM.fill(open64::NAME);
    openat::SYM.fill(openat::NAME);
    openat64::SYM.fill(openat64::NAME);
    close::SYM.fill(close::NAME);
    dup::SYM.fill(dup::NAME);
    dup2::SYM.fill(dup2::NAME);
    dup3::SYM.fill(dup3::NAME);
    fcntl::SYM.fill(fcntl::NAME);
    fcntl64::SYM.fill(fcntl64::NAME);
    close_range::SYM.fill(close_range::NAME);
    closefrom::SYM.fill(closefrom::NAME);
    chdir::SYM.fill(chdir::NAME);
    fchdir::SYM.fill(fchdir::NAME);
    execve::SYM.fill(execve::NAME);
    execv::SYM.fill(execv::NAME);
    execvp::SYM.fill(execvp::NAME);
    execvpe::SYM.fill(execvpe::NAME);
    syscall::SYM.fill(syscall::NAME);
    unlink::SYM.fill(unlink::NAME);
    unlinkat::SYM.fill(unlinkat::NAME);
    rename::SYM.fill(rename::NAME);
}

/// Whether the [`resolve_eager`] slots have been filled.
static EAGER_DONE: AtomicBool = AtomicBool::new(false);

/// Opaque pointer for callbacks and glibc types the shim only passes through.
pub type Opaque = *const c_void;

reals! {
    // open
    open: fn(*const c_char, c_int, mode_t) -> c_int;
    open64: fn(*const c_char, c_int, mode_t) -> c_int;
    __open_2: fn(*const c_char, c_int) -> c_int;
    __open64_2: fn(*const c_char, c_int) -> c_int;
    openat: fn(c_int, *const c_char, c_int, mode_t) -> c_int;
    openat64: fn(c_int, *const c_char, c_int, mode_t) -> c_int;
    __openat_2: fn(c_int, *const c_char, c_int) -> c_int;
    __openat64_2: fn(c_int, *const c_char, c_int) -> c_int;
    creat: fn(*const c_char, mode_t) -> c_int;
    creat64: fn(*const c_char, mode_t) -> c_int;
    fopen: fn(*const c_char, *const c_char) -> *mut FILE;
    fopen64: fn(*const c_char, *const c_char) -> *mut FILE;
    freopen: fn(*const c_char, *const c_char, *mut FILE) -> *mut FILE;
    freopen64: fn(*const c_char, *const c_char, *mut FILE) -> *mut FILE;

    // stat
    stat: fn(*const c_char, *mut c_void) -> c_int;
    stat64: fn(*const c_char, *mut c_void) -> c_int;
    lstat: fn(*const c_char, *mut c_void) -> c_int;
    lstat64: fn(*const c_char, *mut c_void) -> c_int;
    fstatat: fn(c_int, *const c_char, *mut c_void, c_int) -> c_int;
    fstatat64: fn(c_int, *const c_char, *mut c_void, c_int) -> c_int;
    __xstat: fn(c_int, *const c_char, *mut c_void) -> c_int;
    __xstat64: fn(c_int, *const c_char, *mut c_void) -> c_int;
    __lxstat: fn(c_int, *const c_char, *mut c_void) -> c_int;
    __lxstat64: fn(c_int, *const c_char, *mut c_void) -> c_int;
    __fxstatat: fn(c_int, c_int, *const c_char, *mut c_void, c_int) -> c_int;
    __fxstatat64: fn(c_int, c_int, *const c_char, *mut c_void, c_int) -> c_int;
    statx: fn(c_int, *const c_char, c_int, c_uint, *mut c_void) -> c_int;
    statfs: fn(*const c_char, *mut c_void) -> c_int;
    statfs64: fn(*const c_char, *mut c_void) -> c_int;
    statvfs: fn(*const c_char, *mut c_void) -> c_int;
    statvfs64: fn(*const c_char, *mut c_void) -> c_int;
    pathconf: fn(*const c_char, c_int) -> c_long;
    inotify_add_watch: fn(c_int, *const c_char, u32) -> c_int;
    name_to_handle_at: fn(c_int, *const c_char, *mut c_void, *mut c_int, c_int) -> c_int;
    access: fn(*const c_char, c_int) -> c_int;
    faccessat: fn(c_int, *const c_char, c_int, c_int) -> c_int;
    eaccess: fn(*const c_char, c_int) -> c_int;
    euidaccess: fn(*const c_char, c_int) -> c_int;

    // syscall
    syscall: fn(c_long, c_long, c_long, c_long, c_long, c_long, c_long) -> c_long;

    // directories
    opendir: fn(*const c_char) -> *mut DIR;
    fdopendir: fn(c_int) -> *mut DIR;
    closedir: fn(*mut DIR) -> c_int;
    scandir: fn(*const c_char, *mut c_void, Opaque, Opaque) -> c_int;
    scandir64: fn(*const c_char, *mut c_void, Opaque, Opaque) -> c_int;
    scandirat: fn(c_int, *const c_char, *mut c_void, Opaque, Opaque) -> c_int;
    scandirat64: fn(c_int, *const c_char, *mut c_void, Opaque, Opaque) -> c_int;
    fts_open: fn(*const *const c_char, c_int, Opaque) -> *mut c_void;
    fts64_open: fn(*const *const c_char, c_int, Opaque) -> *mut c_void;
    fts_read: fn(*mut c_void) -> *mut c_void;
    fts64_read: fn(*mut c_void) -> *mut c_void;
    fts_children: fn(*mut c_void, c_int) -> *mut c_void;
    fts64_children: fn(*mut c_void, c_int) -> *mut c_void;
    fts_close: fn(*mut c_void) -> c_int;
    fts64_close: fn(*mut c_void) -> c_int;
    glob: fn(*const c_char, c_int, Opaque, *mut c_void) -> c_int;
    glob64: fn(*const c_char, c_int, Opaque, *mut c_void) -> c_int;
    nftw: fn(*const c_char, Opaque, c_int, c_int) -> c_int;
    nftw64: fn(*const c_char, Opaque, c_int, c_int) -> c_int;
    ftw: fn(*const c_char, Opaque, c_int) -> c_int;
    ftw64: fn(*const c_char, Opaque, c_int) -> c_int;
    mkdir: fn(*const c_char, mode_t) -> c_int;
    mkdirat: fn(c_int, *const c_char, mode_t) -> c_int;
    rmdir: fn(*const c_char) -> c_int;

    // names and metadata
    unlink: fn(*const c_char) -> c_int;
    unlinkat: fn(c_int, *const c_char, c_int) -> c_int;
    remove: fn(*const c_char) -> c_int;
    rename: fn(*const c_char, *const c_char) -> c_int;
    renameat: fn(c_int, *const c_char, c_int, *const c_char) -> c_int;
    renameat2: fn(c_int, *const c_char, c_int, *const c_char, c_uint) -> c_int;
    link: fn(*const c_char, *const c_char) -> c_int;
    linkat: fn(c_int, *const c_char, c_int, *const c_char, c_int) -> c_int;
    symlink: fn(*const c_char, *const c_char) -> c_int;
    symlinkat: fn(*const c_char, c_int, *const c_char) -> c_int;
    chmod: fn(*const c_char, mode_t) -> c_int;
    fchmodat: fn(c_int, *const c_char, mode_t, c_int) -> c_int;
    chown: fn(*const c_char, uid_t, gid_t) -> c_int;
    lchown: fn(*const c_char, uid_t, gid_t) -> c_int;
    fchownat: fn(c_int, *const c_char, uid_t, gid_t, c_int) -> c_int;
    truncate: fn(*const c_char, off_t) -> c_int;
    truncate64: fn(*const c_char, off64_t) -> c_int;
    utimensat: fn(c_int, *const c_char, *const timespec, c_int) -> c_int;
    utimes: fn(*const c_char, *const timeval) -> c_int;
    utime: fn(*const c_char, *const utimbuf) -> c_int;
    lutimes: fn(*const c_char, *const timeval) -> c_int;
    futimesat: fn(c_int, *const c_char, *const timeval) -> c_int;
    mkfifo: fn(*const c_char, mode_t) -> c_int;
    mkfifoat: fn(c_int, *const c_char, mode_t) -> c_int;
    mknod: fn(*const c_char, mode_t, dev_t) -> c_int;
    mknodat: fn(c_int, *const c_char, mode_t, dev_t) -> c_int;
    __xmknod: fn(c_int, *const c_char, mode_t, *mut dev_t) -> c_int;
    __xmknodat: fn(c_int, c_int, *const c_char, mode_t, *mut dev_t) -> c_int;
    lchmod: fn(*const c_char, mode_t) -> c_int;

    // temporary files
    mkstemp: fn(*mut c_char) -> c_int;
    mkstemp64: fn(*mut c_char) -> c_int;
    mkostemp: fn(*mut c_char, c_int) -> c_int;
    mkostemp64: fn(*mut c_char, c_int) -> c_int;
    mkstemps: fn(*mut c_char, c_int) -> c_int;
    mkstemps64: fn(*mut c_char, c_int) -> c_int;
    mkostemps: fn(*mut c_char, c_int, c_int) -> c_int;
    mkostemps64: fn(*mut c_char, c_int, c_int) -> c_int;
    mkdtemp: fn(*mut c_char) -> *mut c_char;
    mktemp: fn(*mut c_char) -> *mut c_char;

    // extended attributes
    getxattr: fn(*const c_char, *const c_char, *mut c_void, size_t) -> ssize_t;
    lgetxattr: fn(*const c_char, *const c_char, *mut c_void, size_t) -> ssize_t;
    fgetxattr: fn(c_int, *const c_char, *mut c_void, size_t) -> ssize_t;
    setxattr: fn(*const c_char, *const c_char, *const c_void, size_t, c_int) -> c_int;
    lsetxattr: fn(*const c_char, *const c_char, *const c_void, size_t, c_int) -> c_int;
    removexattr: fn(*const c_char, *const c_char) -> c_int;
    lremovexattr: fn(*const c_char, *const c_char) -> c_int;
    listxattr: fn(*const c_char, *mut c_char, size_t) -> ssize_t;
    llistxattr: fn(*const c_char, *mut c_char, size_t) -> ssize_t;
    flistxattr: fn(c_int, *mut c_char, size_t) -> ssize_t;

    // cwd and result paths
    chdir: fn(*const c_char) -> c_int;
    fchdir: fn(c_int) -> c_int;
    getcwd: fn(*mut c_char, size_t) -> *mut c_char;
    __getcwd_chk: fn(*mut c_char, size_t, size_t) -> *mut c_char;
    getwd: fn(*mut c_char) -> *mut c_char;
    __getwd_chk: fn(*mut c_char, size_t) -> *mut c_char;
    get_current_dir_name: fn() -> *mut c_char;
    readlink: fn(*const c_char, *mut c_char, size_t) -> ssize_t;
    readlinkat: fn(c_int, *const c_char, *mut c_char, size_t) -> ssize_t;
    __readlink_chk: fn(*const c_char, *mut c_char, size_t, size_t) -> ssize_t;
    __readlinkat_chk: fn(c_int, *const c_char, *mut c_char, size_t, size_t) -> ssize_t;
    realpath: fn(*const c_char, *mut c_char) -> *mut c_char;
    __realpath_chk: fn(*const c_char, *mut c_char, size_t) -> *mut c_char;
    canonicalize_file_name: fn(*const c_char) -> *mut c_char;

    // exec
    execve: fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
    execv: fn(*const c_char, *const *const c_char) -> c_int;
    execvp: fn(*const c_char, *const *const c_char) -> c_int;
    execvpe: fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
    execveat: fn(c_int, *const c_char, *const *const c_char, *const *const c_char, c_int) -> c_int;
    fexecve: fn(c_int, *const *const c_char, *const *const c_char) -> c_int;
    posix_spawn: fn(*mut pid_t, *const c_char, *const posix_spawn_file_actions_t,
        *const posix_spawnattr_t, *const *const c_char, *const *const c_char) -> c_int;
    posix_spawnp: fn(*mut pid_t, *const c_char, *const posix_spawn_file_actions_t,
        *const posix_spawnattr_t, *const *const c_char, *const *const c_char) -> c_int;
    posix_spawn_file_actions_addopen: fn(*mut posix_spawn_file_actions_t, c_int,
        *const c_char, c_int, mode_t) -> c_int;
    posix_spawn_file_actions_addchdir_np: fn(*mut posix_spawn_file_actions_t, *const c_char) -> c_int;

    // children that may share the memory (hooks/vfork.rs: only recorded)
    vfork: fn() -> pid_t;
    clone: fn() -> c_int;

    // sockets and libraries
    bind: fn(c_int, *const c_void, u32) -> c_int;
    connect: fn(c_int, *const c_void, u32) -> c_int;
    getsockname: fn(c_int, *mut c_void, *mut u32) -> c_int;
    getpeername: fn(c_int, *mut c_void, *mut u32) -> c_int;
    dlopen: fn(*const c_char, c_int) -> *mut c_void;
    dladdr: fn(*const c_void, *mut libc::Dl_info) -> c_int;
    dladdr1: fn(*const c_void, *mut libc::Dl_info, *mut *mut c_void, c_int) -> c_int;
    tempnam: fn(*const c_char, *const c_char) -> *mut c_char;

    // fds
    close: fn(c_int) -> c_int;
    dup: fn(c_int) -> c_int;
    dup2: fn(c_int, c_int) -> c_int;
    dup3: fn(c_int, c_int, c_int) -> c_int;
    fcntl: fn(c_int, c_int, c_ulong) -> c_int;
    fcntl64: fn(c_int, c_int, c_ulong) -> c_int;
    close_range: fn(c_uint, c_uint, c_int) -> c_int;
    closefrom: fn(c_int) -> ();
    fclose: fn(*mut FILE) -> c_int;

    // durability
    fsync: fn(c_int) -> c_int;
    fdatasync: fn(c_int) -> c_int;
}
