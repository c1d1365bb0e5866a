//! The configuration, read once from the environment given to the ELF constructor and
//! kept in static buffers. Hooks never read the environment.
//!
//! Missing or invalid settings leave the shim inert: [`active`] is false and every hook
//! forwards to the real function.

use crate::path::{normalize, under, Prefixes};
use crate::sys::{as_cstr, Writer, PATH_MAX};
use core::cell::UnsafeCell;
use core::ffi::{c_char, CStr};
use core::sync::atomic::{AtomicBool, Ordering};
use s3shim_protocol::layout::{
    ENV_CACHE, ENV_DISABLE, ENV_MOUNT, ENV_SOCKET, ENV_UV_IO_URING, SOCKET_PATH_MAX, TREE_DIR,
};

/// Fixed-size configuration; every path is NUL-terminated at its length.
pub struct Config {
    pub mount: [u8; PATH_MAX],
    pub mount_len: usize,
    pub tree: [u8; PATH_MAX],
    pub tree_len: usize,
    pub cache: [u8; PATH_MAX],
    pub cache_len: usize,
    pub socket: [u8; SOCKET_PATH_MAX + 1],
    pub socket_len: usize,
    /// This library's absolute path (for `LD_PRELOAD` in exec'd programs).
    pub lib: [u8; PATH_MAX],
    pub lib_len: usize,
    /// Ready-made `NAME=value` entries for exec'd programs.
    pub env_mount: [u8; PATH_MAX + 32],
    pub env_cache: [u8; PATH_MAX + 32],
    pub env_socket: [u8; SOCKET_PATH_MAX + 32],
    pub env_uring: [u8; 32],
}

impl Config {
    pub const fn empty() -> Config {
        Config {
            mount: [0; PATH_MAX],
            mount_len: 0,
            tree: [0; PATH_MAX],
            tree_len: 0,
            cache: [0; PATH_MAX],
            cache_len: 0,
            socket: [0; SOCKET_PATH_MAX + 1],
            socket_len: 0,
            lib: [0; PATH_MAX],
            lib_len: 0,
            env_mount: [0; PATH_MAX + 32],
            env_cache: [0; PATH_MAX + 32],
            env_socket: [0; SOCKET_PATH_MAX + 32],
            env_uring: [0; 32],
        }
    }

    pub fn prefixes(&self) -> Prefixes<'_> {
        Prefixes {
            mount: self.mount.get(..self.mount_len).unwrap_or(&[]),
            tree: self.tree.get(..self.tree_len).unwrap_or(&[]),
        }
    }

    pub fn socket(&self) -> Option<&CStr> {
        as_cstr(&self.socket, self.socket_len)
    }

    pub fn lib(&self) -> &[u8] {
        self.lib.get(..self.lib_len).unwrap_or(&[])
    }

    /// The four `NAME=value` entries every exec'd program gets.
    pub fn env_entries(&self) -> [&CStr; 4] {
        fn c(b: &[u8]) -> &CStr {
            CStr::from_bytes_until_nul(b).unwrap_or(c"")
        }
        [
            c(&self.env_mount),
            c(&self.env_cache),
            c(&self.env_socket),
            c(&self.env_uring),
        ]
    }

    /// Fills the configuration from the three settings and this library's path; `false`
    /// (and a config that must not be used) when anything is missing or invalid.
    pub fn parse(
        &mut self,
        mount: Option<&[u8]>,
        cache: Option<&[u8]>,
        socket: Option<&[u8]>,
        lib: &[u8],
    ) -> bool {
        self.parse_inner(mount, cache, socket, lib).is_some()
    }

    fn parse_inner(
        &mut self,
        mount: Option<&[u8]>,
        cache: Option<&[u8]>,
        socket: Option<&[u8]>,
        lib: &[u8],
    ) -> Option<()> {
        self.mount_len = clean_dir(mount?, &mut self.mount)?;
        self.cache_len = clean_dir(cache?, &mut self.cache)?;
        let mut w = Writer::new(&mut self.tree);
        w.put(self.cache.get(..self.cache_len)?)?;
        w.put(b"/")?;
        w.put(TREE_DIR.as_bytes())?;
        self.tree_len = w.len;
        // A mount inside the tree, or the tree inside the mount, would map forever.
        let p = self.prefixes();
        if under(p.tree, p.mount).is_some() || under(p.mount, p.tree).is_some() {
            return None;
        }
        let socket = socket?;
        if socket.first() != Some(&b'/') || socket.len() > SOCKET_PATH_MAX {
            return None;
        }
        let mut w = Writer::new(&mut self.socket);
        w.put(socket)?;
        self.socket_len = w.len;
        if lib.first() != Some(&b'/') {
            return None;
        }
        self.lib_len = normalize(lib, &mut self.lib)?;

        let mut w = Writer::new(&mut self.env_mount);
        w.put(ENV_MOUNT.as_bytes())?;
        w.put(b"=")?;
        w.put(self.mount.get(..self.mount_len)?)?;
        let mut w = Writer::new(&mut self.env_cache);
        w.put(ENV_CACHE.as_bytes())?;
        w.put(b"=")?;
        w.put(self.cache.get(..self.cache_len)?)?;
        let mut w = Writer::new(&mut self.env_socket);
        w.put(ENV_SOCKET.as_bytes())?;
        w.put(b"=")?;
        w.put(self.socket.get(..self.socket_len)?)?;
        let mut w = Writer::new(&mut self.env_uring);
        w.put(ENV_UV_IO_URING.as_bytes())?;
        w.put(b"=0")?;
        Some(())
    }
}

/// An absolute directory setting: normalised, without a trailing `/`, not `/` itself.
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

struct Shared(UnsafeCell<Config>);
// SAFETY: written only by `init` before `ACTIVE` is published with Release; read only
// after an Acquire load of `ACTIVE` returned true.
unsafe impl Sync for Shared {}

static CONFIG: Shared = Shared(UnsafeCell::new(Config::empty()));
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether the shim maps anything in this process.
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

/// The configuration; only meaningful when [`active`].
#[inline]
pub fn get() -> &'static Config {
    // SAFETY: see `Shared`.
    unsafe { &*CONFIG.0.get() }
}

/// The value of `name` in a C environment array.
///
/// # Safety
/// `envp` is NULL or a NULL-terminated array of C strings.
pub unsafe fn env_value<'a>(envp: *const *const c_char, name: &str) -> Option<&'a [u8]> {
    if envp.is_null() {
        return None;
    }
    let mut i = 0;
    loop {
        let e = *envp.add(i);
        if e.is_null() {
            return None;
        }
        let bytes = CStr::from_ptr(e).to_bytes();
        if let Some(v) = bytes
            .strip_prefix(name.as_bytes())
            .and_then(|r| r.strip_prefix(b"="))
        {
            return Some(v);
        }
        i += 1;
    }
}

/// Reads the configuration (from the constructor, single-threaded).
///
/// # Safety
/// `envp` as for [`env_value`]; no other thread may be using the shim yet.
pub unsafe fn init(envp: *const *const c_char) {
    if active() || env_value(envp, ENV_DISABLE) == Some(b"1") {
        return;
    }
    let mount = env_value(envp, ENV_MOUNT);
    let cache = env_value(envp, ENV_CACHE);
    let socket = env_value(envp, ENV_SOCKET);
    if mount.is_none() && cache.is_none() {
        return;
    }
    let mut lib = [0u8; PATH_MAX];
    let Some(lib_len) = own_path(&mut lib) else {
        return;
    };
    let cfg = &mut *CONFIG.0.get();
    if cfg.parse(mount, cache, socket, lib.get(..lib_len).unwrap_or(&[])) {
        ACTIVE.store(true, Ordering::Release);
    }
}

/// This library's path from `dladdr`, made absolute against the cwd if the loader was
/// given a relative one.
fn own_path(out: &mut [u8]) -> Option<usize> {
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    let here = own_path as *const () as *const libc::c_void;
    // SAFETY: `here` is an address inside this library.
    if unsafe { libc::dladdr(here, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr returns a C string owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) }.to_bytes();
    if name.first() == Some(&b'/') {
        let mut w = Writer::new(out);
        w.put(name)?;
        return Some(w.len);
    }
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
    fn environment_lookup() {
        let a = c"A=1";
        let m = c"S3SHIM_MOUNT=/w";
        let mm = c"S3SHIM_MOUNTX=/no";
        let env = [mm.as_ptr(), a.as_ptr(), m.as_ptr(), core::ptr::null()];
        unsafe {
            assert_eq!(env_value(env.as_ptr(), "S3SHIM_MOUNT"), Some(&b"/w"[..]));
            assert_eq!(env_value(env.as_ptr(), "A"), Some(&b"1"[..]));
            assert_eq!(env_value(env.as_ptr(), "B"), None);
            assert_eq!(env_value(core::ptr::null(), "A"), None);
        }
    }
}
