//! The configuration, read once from the environment given to the ELF constructor and
//! kept in static buffers. Hooks never read the environment.
//!
//! Missing or invalid settings leave the shim inert: [`active`] is false and every hook
//! forwards to the real function.

use crate::buf::{as_cstr, Writer, PATH_MAX};
use crate::path::{normalize, under, Prefixes};
use core::cell::UnsafeCell;
use core::ffi::{c_char, CStr};
use core::sync::atomic::{AtomicBool, Ordering};
use s3shim_protocol::layout::{
    ENV_CACHE, ENV_DISABLE, ENV_MOUNT, ENV_SOCKET, ENV_UV_IO_URING, SOCKET_PATH_MAX, TREE_DIR,
};

/// Room for every setting: each is at most a path (or the socket path) plus its `NAME=`.
const ARENA: usize = 8 * (PATH_MAX + 32);

/// Where one setting lies in the arena: `arena[start..start + len]`, NUL at the end.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

impl Span {
    const EMPTY: Span = Span { start: 0, len: 0 };
}

/// The configuration: every setting NUL-terminated, back to back in one buffer. Every
/// process the shim is loaded into writes it from the constructor, and settings packed
/// together touch one page where a PATH_MAX buffer each touched eight (page faults are
/// a good part of what the shim adds to starting a program). Laid out in order, so the
/// spans and the start of the arena share that page (Rust's own layout put the spans
/// 32 KiB after the arena's start, on a second page); see also [`Shared`].
#[repr(C)]
pub struct Config {
    mount: Span,
    tree: Span,
    cache: Span,
    socket: Span,
    /// This library's absolute path (for `LD_PRELOAD` in exec'd programs).
    lib: Span,
    /// Ready-made `NAME=value` entries for exec'd programs.
    env: [Span; 4],
    /// Length of the tree path (`prefixes().tree.len()`).
    pub tree_len: usize,
    used: usize,
    arena: [u8; ARENA],
}

impl Config {
    pub const fn empty() -> Config {
        Config {
            arena: [0; ARENA],
            used: 0,
            mount: Span::EMPTY,
            tree: Span::EMPTY,
            cache: Span::EMPTY,
            socket: Span::EMPTY,
            lib: Span::EMPTY,
            env: [Span::EMPTY; 4],
            tree_len: 0,
        }
    }

    #[inline]
    fn bytes(&self, s: Span) -> &[u8] {
        debug_assert!(s.start + s.len <= ARENA);
        // SAFETY: every span is made by `push*`, which keep it inside the arena. Every
        // hooked call reads both prefixes, so the bounds checks showed.
        unsafe { self.arena.get_unchecked(s.start..s.start + s.len) }
    }

    fn cstr(&self, s: Span) -> Option<&CStr> {
        as_cstr(self.arena.get(s.start..)?, s.len)
    }

    /// Appends one setting written by `fill` into the free part of the arena (at most
    /// `max` bytes plus the NUL, which `fill` writes).
    // The constructor-only functions sit together at the start of the code (the
    // linker puts `.text.startup.*` there, next to `_init`), so loading touches one
    // window of code pages instead of three.
    #[cfg_attr(not(test), link_section = ".text.startup.s3shim")]
    fn push(&mut self, max: usize, fill: impl FnOnce(&mut [u8]) -> Option<usize>) -> Option<Span> {
        let start = self.used;
        // A path setting fits in PATH_MAX with its NUL, as the kernel requires.
        let room_end = (start + max.min(PATH_MAX - 1) + 1).min(ARENA);
        let room = self.arena.get_mut(start..room_end)?;
        let len = fill(room)?;
        self.used = start + len + 1;
        Some(Span { start, len })
    }

    /// Appends the concatenation of `parts`.
    #[cfg_attr(not(test), link_section = ".text.startup.s3shim")]
    fn push_concat(&mut self, parts: &[&[u8]]) -> Option<Span> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        self.push(total, |room| {
            let mut w = Writer::new(room);
            for p in parts {
                w.put(p)?;
            }
            Some(w.len)
        })
    }

    /// Appends a copy of an earlier setting followed by `tail`.
    #[cfg_attr(not(test), link_section = ".text.startup.s3shim")]
    fn push_with(&mut self, head: Span, tail: &[u8]) -> Option<Span> {
        let start = self.used;
        let end = start.checked_add(head.len + tail.len())?;
        if end >= ARENA {
            return None;
        }
        self.arena
            .copy_within(head.start..head.start + head.len, start);
        self.arena
            .get_mut(start + head.len..end)?
            .copy_from_slice(tail);
        *self.arena.get_mut(end)? = 0;
        self.used = end + 1;
        Some(Span {
            start,
            len: end - start,
        })
    }

    /// Appends `NAME=` followed by an earlier setting.
    #[cfg_attr(not(test), link_section = ".text.startup.s3shim")]
    fn push_env(&mut self, name: &str, value: Span) -> Option<Span> {
        let start = self.used;
        let mut w = Writer::new(self.arena.get_mut(start..)?);
        w.put(name.as_bytes())?;
        w.put(b"=")?;
        let head = w.len;
        let end = start.checked_add(head + value.len)?;
        if end >= ARENA {
            return None;
        }
        self.arena
            .copy_within(value.start..value.start + value.len, start + head);
        *self.arena.get_mut(end)? = 0;
        self.used = end + 1;
        Some(Span {
            start,
            len: end - start,
        })
    }

    pub fn prefixes(&self) -> Prefixes<'_> {
        Prefixes {
            mount: self.bytes(self.mount),
            tree: self.bytes(self.tree),
        }
    }

    pub fn socket(&self) -> Option<&CStr> {
        self.cstr(self.socket)
    }

    /// The tree's real path, for a `chdir` into it.
    pub fn tree_cstr(&self) -> Option<&CStr> {
        self.cstr(self.tree)
    }

    pub fn lib(&self) -> &[u8] {
        self.bytes(self.lib)
    }

    /// The four `NAME=value` entries every exec'd program gets.
    pub fn env_entries(&self) -> [&CStr; 4] {
        self.env.map(|s| {
            // SAFETY: every span is made by `push*`, which write its NUL at `start + len`
            // inside the arena and no NUL before it (the settings are C strings). Every
            // spawn asks for these; checking them again cost a scan of each.
            unsafe {
                CStr::from_bytes_with_nul_unchecked(
                    self.arena.get_unchecked(s.start..=s.start + s.len),
                )
            }
        })
    }

    /// Fills the configuration from the three settings and this library's path; `false`
    /// (and a config that must not be used) when anything is missing or invalid.
    #[cfg_attr(not(test), link_section = ".text.startup.s3shim")]
    pub fn parse(
        &mut self,
        mount: Option<&[u8]>,
        cache: Option<&[u8]>,
        socket: Option<&[u8]>,
        lib: &[u8],
    ) -> bool {
        self.used = 0;
        self.parse_inner(mount, cache, socket, lib).is_some()
    }

    #[cfg_attr(not(test), link_section = ".text.startup.s3shim")]
    fn parse_inner(
        &mut self,
        mount: Option<&[u8]>,
        cache: Option<&[u8]>,
        socket: Option<&[u8]>,
        lib: &[u8],
    ) -> Option<()> {
        let (mount, cache) = (mount?, cache?);
        // Normalising never lengthens a path by more than its trailing `/`.
        self.mount = self.push(mount.len() + 1, |out| clean_dir(mount, out))?;
        self.cache = self.push(cache.len() + 1, |out| clean_dir(cache, out))?;
        let mut slash_tree = [0u8; 64];
        let mut w = Writer::new(&mut slash_tree);
        w.put(b"/")?;
        w.put(TREE_DIR.as_bytes())?;
        let n = w.len;
        self.tree = self.push_with(self.cache, slash_tree.get(..n)?)?;
        if self.tree.len >= PATH_MAX {
            return None;
        }
        self.tree_len = self.tree.len;
        // A mount inside the tree, or the tree inside the mount, would map forever.
        let p = self.prefixes();
        if under(p.tree, p.mount).is_some() || under(p.mount, p.tree).is_some() {
            return None;
        }
        let socket = socket?;
        if socket.first() != Some(&b'/') || socket.len() > SOCKET_PATH_MAX {
            return None;
        }
        self.socket = self.push_concat(&[socket])?;
        if lib.first() != Some(&b'/') {
            return None;
        }
        self.lib = self.push(lib.len() + 1, |out| normalize(lib, out))?;
        self.env = [
            self.push_env(ENV_MOUNT, self.mount)?,
            self.push_env(ENV_CACHE, self.cache)?,
            self.push_env(ENV_SOCKET, self.socket)?,
            self.push_concat(&[ENV_UV_IO_URING.as_bytes(), b"=0"])?,
        ];
        Some(())
    }
}

/// An absolute directory setting: normalised, without a trailing `/`, not `/` itself.
#[cfg_attr(not(test), link_section = ".text.startup.s3shim")]
fn clean_dir(v: &[u8], out: &mut [u8]) -> Option<usize> {
    if v.first() != Some(&b'/') {
        return None;
    }
    let mut n = normalize(v, out)?;
    if n > 1 && out.get(n - 1) == Some(&b'/') {
        n -= 1;
        *out.get_mut(n)? = 0;
    }
    (n > 1).then_some(n)
}

/// The flag and the configuration it publishes, side by side: the constructor writes
/// both, so they share one page (one page fault per process, where separate statics took
/// up to three). Aligned so the written part (the flag, the spans and the first few
/// hundred bytes of the arena) never straddles a page boundary; a larger alignment
/// would start .bss on a page of its own.
#[repr(C, align(512))]
struct Shared {
    active: AtomicBool,
    config: UnsafeCell<Config>,
}
// SAFETY: `config` is written only by `init` before `active` is published with Release;
// read only after an Acquire load of `active` returned true.
unsafe impl Sync for Shared {}

static CONFIG: Shared = Shared {
    active: AtomicBool::new(false),
    config: UnsafeCell::new(Config::empty()),
};

/// Whether the shim maps anything in this process.
#[inline]
pub fn active() -> bool {
    CONFIG.active.load(Ordering::Acquire)
}

/// The configuration; only meaningful when [`active`].
#[inline]
pub fn get() -> &'static Config {
    // SAFETY: see `Shared`.
    unsafe { &*CONFIG.config.get() }
}

/// The value of `name` in a C environment array.
///
/// # Safety
/// `envp` is NULL or a NULL-terminated array of C strings.
#[cfg_attr(not(test), link_section = ".text.startup.s3shim")]
pub unsafe fn env_value<'a>(envp: *const *const c_char, name: &str) -> Option<&'a [u8]> {
    crate::env::value_of(envp, name.as_bytes())
}

/// Reads the configuration (from the constructor, single-threaded).
///
/// # Safety
/// `envp` as for [`env_value`]; no other thread may be using the shim yet.
#[cfg_attr(not(test), link_section = ".text.startup.s3shim")]
pub unsafe fn init(envp: *const *const c_char) {
    if env_value(envp, ENV_DISABLE) == Some(b"1") {
        return;
    }
    let mount = env_value(envp, ENV_MOUNT);
    let cache = env_value(envp, ENV_CACHE);
    let socket = env_value(envp, ENV_SOCKET);
    if mount.is_none() && cache.is_none() {
        return;
    }
    let Some(name) = own_name() else {
        return;
    };
    let cfg = &mut *CONFIG.config.get();
    let parsed = if name.first() == Some(&b'/') {
        cfg.parse(mount, cache, socket, name)
    } else {
        parse_with_relative_name(cfg, mount, cache, socket, name)
    };
    if parsed {
        CONFIG.active.store(true, Ordering::Release);
    }
}

/// The loader was given a relative path to this library: made absolute against the cwd.
/// Out of line, so the constructor's own frame has no PATH_MAX buffer (its stack reached
/// into one more page in every process).
#[inline(never)]
fn parse_with_relative_name(
    cfg: &mut Config,
    mount: Option<&[u8]>,
    cache: Option<&[u8]>,
    socket: Option<&[u8]>,
    name: &[u8],
) -> bool {
    let mut abs = [0u8; PATH_MAX];
    match absolute(name, &mut abs) {
        Some(n) => cfg.parse(mount, cache, socket, abs.get(..n).unwrap_or(&[])),
        None => false,
    }
}

/// This library's path as the loader has it: the name of the loaded object whose
/// segments hold this function. (`dl_iterate_phdr` visits the few objects loaded so far;
/// `dladdr` also searched our symbol table for the nearest symbol, which cost more than
/// the rest of reading the configuration.)
#[cfg_attr(not(test), link_section = ".text.startup.s3shim")]
fn own_name() -> Option<&'static [u8]> {
    struct Search {
        here: usize,
        name: *const c_char,
    }
    #[cfg_attr(not(test), link_section = ".text.startup.s3shim")]
    unsafe extern "C" fn visit(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid `info` for the duration of the call, and
        // `data` is the `Search` below.
        let (info, search) = unsafe { (&*info, &mut *data.cast::<Search>()) };
        let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() {
            &[]
        } else {
            // SAFETY: `dlpi_phnum` headers at `dlpi_phdr`.
            unsafe { core::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
        };
        let base = info.dlpi_addr as usize;
        let ours = phdrs.iter().any(|h| {
            let start = base.wrapping_add(h.p_vaddr as usize);
            h.p_type == libc::PT_LOAD
                && search.here >= start
                && search.here - start < h.p_memsz as usize
        });
        if ours {
            search.name = info.dlpi_name;
            1
        } else {
            0
        }
    }
    let mut search = Search {
        here: own_name as *const () as usize,
        name: core::ptr::null(),
    };
    // SAFETY: `visit` only reads what the loader hands it and writes `search`.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&raw mut search).cast()) };
    if search.name.is_null() {
        return None;
    }
    // SAFETY: the loader's C string for this object, kept while we are loaded.
    Some(unsafe { CStr::from_ptr(search.name) }.to_bytes())
}

/// `name` made absolute against the cwd and normalised.
fn absolute(name: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut cwd = [0u8; PATH_MAX];
    let n = crate::sys::getcwd(&mut cwd).ok()?;
    let mut joined = [0u8; PATH_MAX];
    let j = crate::path::join(cwd.get(..n)?, name, &mut joined)?;
    normalize(joined.get(..j)?, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(m: Option<&str>, c: Option<&str>, s: Option<&str>) -> Option<Box<Config>> {
        let mut cfg = Box::new(Config::empty());
        cfg.parse(
            m.map(str::as_bytes),
            c.map(str::as_bytes),
            s.map(str::as_bytes),
            b"/opt/s3shim/lib/libs3shim.so",
        )
        .then_some(cfg)
    }

    #[test]
    fn valid_settings() {
        let c = parsed(
            Some("/workspace/"),
            Some("/var/cache/s3//"),
            Some("/run/s3.sock"),
        )
        .unwrap();
        let p = c.prefixes();
        assert_eq!(p.mount, b"/workspace");
        assert_eq!(p.tree, b"/var/cache/s3/tree");
        assert_eq!(c.socket().unwrap().to_bytes(), b"/run/s3.sock");
        assert_eq!(c.lib(), b"/opt/s3shim/lib/libs3shim.so");
        let e: Vec<&[u8]> = c.env_entries().iter().map(|e| e.to_bytes()).collect();
        assert_eq!(
            e,
            vec![
                &b"S3SHIM_MOUNT=/workspace"[..],
                b"S3SHIM_CACHE=/var/cache/s3",
                b"S3SHIM_SOCKET=/run/s3.sock",
                b"UV_USE_IO_URING=0"
            ]
        );
    }

    #[test]
    fn invalid_settings_leave_the_shim_inert() {
        let ok_c = Some("/c");
        let ok_s = Some("/c/.s3shim/agent.sock");
        assert!(parsed(None, ok_c, ok_s).is_none());
        assert!(parsed(Some("/"), ok_c, ok_s).is_none(), "/ as the mount");
        assert!(parsed(Some("//"), ok_c, ok_s).is_none());
        assert!(
            parsed(Some("workspace"), ok_c, ok_s).is_none(),
            "relative mount"
        );
        assert!(parsed(Some(""), ok_c, ok_s).is_none());
        assert!(parsed(Some("/ws"), None, ok_s).is_none());
        assert!(parsed(Some("/ws"), Some("cache"), ok_s).is_none());
        assert!(parsed(Some("/ws"), ok_c, None).is_none());
        assert!(parsed(Some("/ws"), ok_c, Some("rel.sock")).is_none());
        let long_sock = format!("/{}", "s".repeat(SOCKET_PATH_MAX));
        assert!(parsed(Some("/ws"), ok_c, Some(&long_sock)).is_none());
        // The tree inside the mount, or the mount inside the tree.
        assert!(parsed(Some("/ws"), Some("/ws/cache"), ok_s).is_none());
        assert!(parsed(Some("/c/tree/x"), ok_c, ok_s).is_none());
        assert!(parsed(Some("/c/tree"), ok_c, ok_s).is_none());
        assert!(parsed(Some("/c"), ok_c, ok_s).is_none());
        // Beside each other is fine.
        assert!(parsed(Some("/c/treehouse"), ok_c, ok_s).is_some());
    }

    #[test]
    fn longest_settings_fit_and_longer_ones_are_refused() {
        let long = |c: &str, n: usize| format!("/{}", c.repeat(n));
        let m = long("m", 4000);
        let c = long("c", 4000);
        let s = long("s", SOCKET_PATH_MAX - 1);
        let lib = long("l", 4000);
        let mut cfg = Box::new(Config::empty());
        assert!(cfg.parse(
            Some(m.as_bytes()),
            Some(c.as_bytes()),
            Some(s.as_bytes()),
            lib.as_bytes()
        ));
        let p = cfg.prefixes();
        assert_eq!(p.mount, m.as_bytes());
        assert_eq!(p.tree, format!("{c}/tree").as_bytes());
        assert_eq!(cfg.tree_len, c.len() + 5);
        assert_eq!(cfg.socket().unwrap().to_bytes(), s.as_bytes());
        assert_eq!(cfg.lib(), lib.as_bytes());
        let e: Vec<Vec<u8>> = cfg
            .env_entries()
            .iter()
            .map(|e| e.to_bytes().to_vec())
            .collect();
        assert_eq!(e[0], format!("S3SHIM_MOUNT={m}").into_bytes());
        assert_eq!(e[1], format!("S3SHIM_CACHE={c}").into_bytes());
        assert_eq!(e[2], format!("S3SHIM_SOCKET={s}").into_bytes());
        assert_eq!(e[3], b"UV_USE_IO_URING=0");
        // A path of PATH_MAX bytes has no room for its NUL; a tree path likewise.
        let too_long = long("m", PATH_MAX - 1);
        assert!(parsed(Some(&too_long), Some("/c"), Some("/s")).is_none());
        let cache_at_limit = long("c", PATH_MAX - 4);
        assert!(parsed(Some("/ws"), Some(&cache_at_limit), Some("/s")).is_none());
    }

    #[test]
    fn environment_lookup() {
        let a = c"A=1";
        let m = c"S3SHIM_MOUNT=/w";
        let mm = c"S3SHIM_MOUNTX=/no";
        let env = [mm.as_ptr(), a.as_ptr(), m.as_ptr(), core::ptr::null()];
        // SAFETY: a NULL-terminated array of NUL-terminated strings that outlive the calls.
        unsafe {
            assert_eq!(env_value(env.as_ptr(), "S3SHIM_MOUNT"), Some(&b"/w"[..]));
            assert_eq!(env_value(env.as_ptr(), "A"), Some(&b"1"[..]));
            assert_eq!(env_value(env.as_ptr(), "B"), None);
            assert_eq!(env_value(core::ptr::null(), "A"), None);
        }
    }
}
