//! The environment of exec'd programs, and the `PATH` search of `execvp`.
//!
//! VS Code strips `LD_PRELOAD` from its children, and `env -u`/`env -i` drop it too, so
//! every exec and spawn gets a rebuilt environment: everything it had, with this library
//! in `LD_PRELOAD` (other entries kept), the shim's settings, and `UV_USE_IO_URING=0`.
//!
//! Exec runs in forked (possibly vforked) children of multithreaded parents, so the new
//! array and the one string it needs are built in caller memory: an 8 KiB stack buffer
//! in the common case, else one anonymous mapping ([`Arena`]). No malloc, no Rust
//! allocation, no lock. (A mapping made in a vfork child outlives the child's exec in
//! the parent's address space, hence the stack first.)

use crate::buf::Writer;
use core::ffi::{c_char, CStr};
use s3shim_protocol::layout::LIB_NAME;

const LD_PRELOAD: &[u8] = b"LD_PRELOAD";

/// What exec adds to every environment.
pub struct Inject<'a> {
    /// This library's absolute path.
    pub lib: &'a [u8],
    /// Whole `NAME=value` entries that replace any entry with the same name.
    pub set: &'a [&'a CStr],
}

/// Entries of a NULL-terminated C array (NULL array = empty).
///
/// # Safety
/// `arr` is NULL or a NULL-terminated array of valid C strings.
pub unsafe fn entries<'a>(arr: *const *const c_char) -> impl Iterator<Item = &'a CStr> {
    pointers(arr).map(|p| CStr::from_ptr(p))
}

/// The entry pointers of a NULL-terminated C array, without measuring the strings (a
/// spawn looks at every entry of the environment: `strlen` of each was most of the cost).
///
/// # Safety
/// As for [`entries`].
unsafe fn pointers(arr: *const *const c_char) -> impl Iterator<Item = *const c_char> {
    let mut i = 0usize;
    core::iter::from_fn(move || {
        if arr.is_null() {
            return None;
        }
        let p = *arr.add(i);
        if p.is_null() {
            return None;
        }
        i += 1;
        Some(p)
    })
}

/// Number of entries of a NULL-terminated array.
///
/// # Safety
/// As for [`entries`].
pub unsafe fn count(arr: *const *const c_char) -> usize {
    pointers(arr).count()
}

/// The value of the environment entry `e` when its name is `name` (`name=value`),
/// compared in place: only the value of a matching entry is measured.
///
/// # Safety
/// `e` is a valid C string.
pub unsafe fn value_if_named<'a>(e: *const c_char, name: &[u8]) -> Option<&'a [u8]> {
    let e = e.cast::<u8>();
    for (k, &b) in name.iter().enumerate() {
        if *e.add(k) != b {
            return None;
        }
    }
    if *e.add(name.len()) != b'=' {
        return None;
    }
    Some(CStr::from_ptr(e.add(name.len() + 1).cast()).to_bytes())
}

/// The value of `name` in a C environment array.
///
/// # Safety
/// `envp` as for [`entries`].
pub unsafe fn value_of<'a>(envp: *const *const c_char, name: &[u8]) -> Option<&'a [u8]> {
    pointers(envp).find_map(|e| value_if_named(e, name))
}

fn name_of(entry: &[u8]) -> &[u8] {
    let end = entry.iter().position(|&b| b == b'=').unwrap_or(entry.len());
    entry.get(..end).unwrap_or(entry)
}

/// Whether an `LD_PRELOAD` value already loads this library (same path, or any
/// `libs3shim.so`: two copies would map twice).
pub fn preload_has(value: &[u8], lib: &[u8]) -> bool {
    value
        .split(|&b| b == b':' || b == b' ')
        .filter(|t| !t.is_empty())
        .any(|t| t == lib || t.rsplit(|&b| b == b'/').next() == Some(LIB_NAME.as_bytes()))
}

/// The size in bytes of the region [`build`] needs.
///
/// # Safety
/// `env` as for [`entries`].
pub unsafe fn needed(env: *const *const c_char, inj: &Inject<'_>) -> usize {
    let n = count(env);
    let slots = n + inj.set.len() + 2;
    let value = match preload_value(env).filter(|v| !v.is_empty()) {
        Some(v) if preload_has(v, inj.lib) => v.len(),
        Some(v) => inj.lib.len() + 1 + v.len(),
        None => inj.lib.len(),
    };
    slots * size_of::<*const c_char>() + LD_PRELOAD.len() + 1 + value + 1
}

/// The first `LD_PRELOAD` value (what the loader uses).
unsafe fn preload_value<'a>(env: *const *const c_char) -> Option<&'a [u8]> {
    value_of(env, LD_PRELOAD)
}

/// Whether `env` already holds what [`build`] would add, each once: an `LD_PRELOAD`
/// that loads this library and every `set` entry exactly. A program run from the
/// session (a shell, make, a test runner) spawns with such an environment, and passing
/// it on as it is saves the rebuild on every spawn. Entries are told apart by their
/// first byte before any is compared.
///
/// # Safety
/// `env` as for [`entries`].
pub unsafe fn is_ready(env: *const *const c_char, inj: &Inject<'_>) -> bool {
    // Each setting whole, its name, and the name's first byte, measured once.
    let mut want: [&[u8]; 8] = [&[]; 8];
    let mut names: [&[u8]; 8] = [&[]; 8];
    let mut firsts = [0u8; 8];
    if inj.set.len() > want.len() {
        return false;
    }
    for (i, s) in inj.set.iter().enumerate() {
        let (Some(w), Some(n), Some(f)) = (want.get_mut(i), names.get_mut(i), firsts.get_mut(i))
        else {
            return false;
        };
        *w = s.to_bytes();
        *n = name_of(w);
        *f = w.first().copied().unwrap_or(0);
    }
    let n_set = inj.set.len();
    // The first bytes of all the names, as a 256-bit set: most entries are passed over
    // with one bit test.
    let mut starts = [0u64; 4];
    for &b in firsts
        .get(..n_set)
        .unwrap_or(&[])
        .iter()
        .chain(LD_PRELOAD.first())
    {
        if let Some(w) = starts.get_mut(usize::from(b >> 6)) {
            *w |= 1 << (b & 63);
        }
    }
    // Bit 0: LD_PRELOAD; bit i + 1: `set[i]`.
    let mut seen = 0u32;
    for e in pointers(env) {
        let first = *e.cast::<u8>();
        if starts.get(usize::from(first >> 6)).copied().unwrap_or(0) & (1 << (first & 63)) == 0 {
            continue;
        }
        if LD_PRELOAD.first() == Some(&first) {
            if let Some(v) = value_if_named(e, LD_PRELOAD) {
                if seen & 1 != 0 || !preload_has(v, inj.lib) {
                    return false;
                }
                seen |= 1;
                continue;
            }
        }
        for i in 0..n_set {
            if firsts.get(i) != Some(&first) {
                continue;
            }
            let (Some(name), Some(w)) = (names.get(i), want.get(i)) else {
                return false;
            };
            if value_if_named(e, name).is_some() {
                if seen & (2 << i) != 0 || CStr::from_ptr(e).to_bytes() != *w {
                    return false;
                }
                seen |= 2 << i;
            }
        }
    }
    seen == (2 << n_set) - 1
}

/// Builds the new environment in `region` (at least [`needed`] bytes, pointer-aligned).
/// Returns the new `envp`, valid while `region`, `env` and `inj` live.
///
/// # Safety
/// `env` as for [`entries`].
pub unsafe fn build(
    env: *const *const c_char,
    inj: &Inject<'_>,
    region: &mut [u8],
) -> Option<*const *const c_char> {
    let n = count(env);
    let slots = n + inj.set.len() + 2;
    let table_bytes = slots.checked_mul(size_of::<*const c_char>())?;
    if region.len() < table_bytes
        || !(region.as_ptr() as usize).is_multiple_of(align_of::<*const c_char>())
    {
        return None;
    }
    let (table, strings) = region.split_at_mut(table_bytes);

    // The LD_PRELOAD entry: ours first, then whatever was there.
    let old = preload_value(env).filter(|v| !v.is_empty());
    let mut w = Writer::new(strings);
    w.put(LD_PRELOAD)?;
    w.put(b"=")?;
    match old {
        Some(v) if preload_has(v, inj.lib) => w.put(v)?,
        Some(v) => {
            w.put(inj.lib)?;
            w.put(b":")?;
            w.put(v)?;
        }
        None => w.put(inj.lib)?,
    }
    let preload_ptr = w.buf.as_ptr() as *const c_char;

    let table = table.as_mut_ptr() as *mut *const c_char;
    let mut k = 0usize;
    let mut push = |p: *const c_char| {
        if k < slots {
            // SAFETY: `k < slots` and the table holds `slots` pointers.
            table.add(k).write(p);
            k += 1;
        }
    };
    // The names of the entries that replace the environment's own (measured once).
    let mut names: [&[u8]; 8] = [LD_PRELOAD; 8];
    let mut n_names = 1;
    for s in inj.set {
        if let Some(slot) = names.get_mut(n_names) {
            *slot = name_of(s.to_bytes());
            n_names += 1;
        }
    }
    let names = names.get(..n_names).unwrap_or(&[]);
    // (More settings than `names` holds are compared the slow way.)
    let more = inj.set.get(n_names - 1..).unwrap_or(&[]);
    for e in pointers(env) {
        let replaced = names.iter().any(|n| value_if_named(e, n).is_some())
            || more
                .iter()
                .any(|s| value_if_named(e, name_of(s.to_bytes())).is_some());
        if !replaced {
            push(e);
        }
    }
    for s in inj.set {
        push(s.as_ptr());
    }
    push(preload_ptr);
    push(core::ptr::null());
    Some(table as *const *const c_char)
}

/// One anonymous private mapping, unmapped on drop (only reached when exec failed).
pub struct Arena {
    ptr: *mut u8,
    len: usize,
}

impl Arena {
    pub fn new(len: usize) -> Option<Arena> {
        let len = len.max(1);
        // SAFETY: a fresh anonymous mapping.
        let p = unsafe {
            rustix::mm::mmap_anonymous(
                core::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
        }
        .ok()?;
        Some(Arena { ptr: p.cast(), len })
    }

    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable, owned by us.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        let _ = unsafe { rustix::mm::munmap(self.ptr.cast(), self.len) };
    }
}

/// glibc's `PATH` when the variable is unset (`_CS_PATH`).
pub const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// `execvp`'s candidates: for each `PATH` element `dir/file`, or `file` alone for an
/// empty element (the cwd), as glibc's `execvpe` builds them.
pub struct Candidates<'a> {
    rest: Option<&'a [u8]>,
    file: &'a [u8],
}

impl<'a> Candidates<'a> {
    pub fn new(path: &'a [u8], file: &'a [u8]) -> Candidates<'a> {
        Candidates {
            rest: Some(path),
            file,
        }
    }

    /// Writes the next candidate into `out` (NUL-terminated). `None` when done;
    /// `Some(None)` for an element too long to use (glibc skips it too).
    pub fn next_into(&mut self, out: &mut [u8]) -> Option<Option<usize>> {
        let rest = self.rest?;
        let (elem, next) = match rest.iter().position(|&b| b == b':') {
            Some(i) => (rest.get(..i)?, rest.get(i + 1..)),
            None => (rest, None),
        };
        self.rest = next;
        let mut w = Writer::new(out);
        let ok = if elem.is_empty() {
            w.put(self.file)
        } else {
            w.put(elem)
                .and_then(|_| w.put(b"/"))
                .and_then(|_| w.put(self.file))
        };
        Some(ok.map(|_| w.len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn env_of(list: &[&str]) -> (Vec<CString>, Vec<*const c_char>) {
        let owned: Vec<CString> = list.iter().map(|s| CString::new(*s).unwrap()).collect();
        let mut ptrs: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(core::ptr::null());
        (owned, ptrs)
    }

    /// The settings the tests inject.
    const SET: [&CStr; 4] = [
        c"S3SHIM_MOUNT=/workspace",
        c"S3SHIM_CACHE=/c",
        c"S3SHIM_SOCKET=/c/.s3shim/agent.sock",
        c"UV_USE_IO_URING=0",
    ];

    fn test_inject<'a>(set: &'a [&'a CStr]) -> Inject<'a> {
        Inject {
            lib: b"/opt/lib/libs3shim.so",
            set,
        }
    }

    fn rebuild(list: &[&str]) -> Vec<String> {
        let (_owned, ptrs) = env_of(list);
        let inj = test_inject(&SET);
        // SAFETY: `ptrs` is a NULL-terminated array of live C strings, and `region` is `need` bytes
        // of `words`, which outlives it.
        unsafe {
            let need = needed(ptrs.as_ptr(), &inj);
            let mut words = vec![0u64; need.div_ceil(8)];
            let region = core::slice::from_raw_parts_mut(words.as_mut_ptr() as *mut u8, need);
            let out = build(ptrs.as_ptr(), &inj, region).unwrap();
            let got = entries(out)
                .map(|c| c.to_str().unwrap().to_string())
                .collect::<Vec<_>>();
            // Too small a region is refused, not overrun.
            let mut small = vec![0u64; need.div_ceil(8)];
            let region = core::slice::from_raw_parts_mut(small.as_mut_ptr() as *mut u8, need - 1);
            assert!(build(ptrs.as_ptr(), &inj, region).is_none());
            got
        }
    }

    #[test]
    fn env_without_preload_gets_everything() {
        let got = rebuild(&["HOME=/root", "PATH=/bin"]);
        assert_eq!(
            got,
            vec![
                "HOME=/root",
                "PATH=/bin",
                "S3SHIM_MOUNT=/workspace",
                "S3SHIM_CACHE=/c",
                "S3SHIM_SOCKET=/c/.s3shim/agent.sock",
                "UV_USE_IO_URING=0",
                "LD_PRELOAD=/opt/lib/libs3shim.so",
            ]
        );
    }

    #[test]
    fn empty_env() {
        let got = rebuild(&[]);
        assert_eq!(got.len(), 5);
        assert_eq!(got[4], "LD_PRELOAD=/opt/lib/libs3shim.so");
        // SAFETY: a null environment is allowed and counts as empty.
        unsafe {
            assert_eq!(count(core::ptr::null()), 0);
        }
    }

    #[test]
    fn other_preloads_are_kept_and_settings_replaced() {
        let got = rebuild(&[
            "LD_PRELOAD=/usr/lib/libfoo.so",
            "S3SHIM_MOUNT=/elsewhere",
            "UV_USE_IO_URING=1",
            "X=1",
            "S3SHIM_MOUNT=/dup",
        ]);
        assert_eq!(
            got,
            vec![
                "X=1",
                "S3SHIM_MOUNT=/workspace",
                "S3SHIM_CACHE=/c",
                "S3SHIM_SOCKET=/c/.s3shim/agent.sock",
                "UV_USE_IO_URING=0",
                "LD_PRELOAD=/opt/lib/libs3shim.so:/usr/lib/libfoo.so",
            ]
        );
    }

    #[test]
    fn preload_already_present_is_not_doubled() {
        let got = rebuild(&["LD_PRELOAD=/usr/lib/libfoo.so /opt/lib/libs3shim.so"]);
        assert_eq!(
            got.last().unwrap(),
            "LD_PRELOAD=/usr/lib/libfoo.so /opt/lib/libs3shim.so"
        );
        let got = rebuild(&["LD_PRELOAD=/other/copy/libs3shim.so"]);
        assert_eq!(got.last().unwrap(), "LD_PRELOAD=/other/copy/libs3shim.so");
        let got = rebuild(&["LD_PRELOAD="]);
        assert_eq!(got.last().unwrap(), "LD_PRELOAD=/opt/lib/libs3shim.so");
        assert!(!preload_has(
            b"/lib/libs3shim.so.bak",
            b"/opt/lib/libs3shim.so"
        ));
    }

    fn ready(env: &[&str]) -> bool {
        let (_owned, ptrs) = env_of(env);
        // SAFETY: a NULL-terminated array of C strings.
        unsafe { is_ready(ptrs.as_ptr(), &test_inject(&SET)) }
    }

    /// An environment that already has everything is passed on as it is; anything
    /// missing, different or doubled makes it rebuilt.
    #[test]
    fn a_ready_environment_is_recognised() {
        let full = [
            "HOME=/root",
            "S3SHIM_MOUNT=/workspace",
            "SHELL=/bin/sh",
            "S3SHIM_CACHE=/c",
            "S3SHIM_SOCKET=/c/.s3shim/agent.sock",
            "UV_USE_IO_URING=0",
            "LD_PRELOAD=/usr/lib/libfoo.so:/opt/lib/libs3shim.so",
            "LANG=C",
        ];
        assert!(ready(&full));
        for skip in [1, 3, 4, 5, 6] {
            let mut v = full.to_vec();
            v.remove(skip);
            assert!(!ready(&v), "without {}", full[skip]);
        }
        let mut v = full.to_vec();
        v[1] = "S3SHIM_MOUNT=/workspace2";
        assert!(!ready(&v), "a different mount");
        let mut v = full.to_vec();
        v[5] = "UV_USE_IO_URING=1";
        assert!(!ready(&v), "io_uring on");
        let mut v = full.to_vec();
        v[6] = "LD_PRELOAD=/usr/lib/libfoo.so";
        assert!(!ready(&v), "the library not preloaded");
        let mut v = full.to_vec();
        v.push("S3SHIM_CACHE=/c");
        assert!(!ready(&v), "a doubled entry");
        let mut v = full.to_vec();
        v.push("LD_PRELOAD=/opt/lib/libs3shim.so");
        assert!(!ready(&v), "a doubled LD_PRELOAD");
        assert!(!ready(&[]));
    }

    fn candidates(path: &str, file: &str) -> Vec<Option<String>> {
        let mut c = Candidates::new(path.as_bytes(), file.as_bytes());
        let mut out = [0u8; 32];
        let mut v = Vec::new();
        while let Some(r) = c.next_into(&mut out) {
            v.push(r.map(|n| String::from_utf8(out[..n].to_vec()).unwrap()));
        }
        v
    }

    #[test]
    fn path_search_candidates() {
        let s = |x: &str| Some(x.to_string());
        assert_eq!(
            candidates("/usr/bin:/workspace/bin", "ls"),
            vec![s("/usr/bin/ls"), s("/workspace/bin/ls")]
        );
        assert_eq!(
            candidates(":/bin:", "ls"),
            vec![s("ls"), s("/bin/ls"), s("ls")]
        );
        assert_eq!(candidates("", "ls"), vec![s("ls")]);
        assert_eq!(
            candidates("/bin:/a/very/long/directory/name/here", "tool"),
            vec![s("/bin/tool"), None]
        );
        assert_eq!(
            candidates(std::str::from_utf8(DEFAULT_PATH).unwrap(), "sh"),
            vec![s("/bin/sh"), s("/usr/bin/sh")]
        );
    }

    #[test]
    fn arena_maps_and_unmaps() {
        let mut a = Arena::new(10000).unwrap();
        let b = a.bytes();
        assert_eq!(b.len(), 10000);
        b[9999] = 7;
        assert_eq!(b.as_ptr() as usize % 4096, 0);
    }
}
