//! Reading what a caller passes: the bytes of a C string (or a fixed-size argument such
//! as a socket address) without faulting on a bad pointer, so a hook can pass a bad
//! argument on and let the real function fail as it would without the shim.

use crate::sys::raw_syscall3;
use core::ffi::c_char;
use core::sync::atomic::{AtomicUsize, Ordering};

/// The bytes of a C string (without the NUL); `None` for NULL or a string that runs into
/// unmapped memory. Callers then pass the caller's pointer on unchanged, so the real
/// function fails (`EFAULT` from the kernel) or faults exactly as it would without the
/// shim. No signal handler: each 4 KiB block the string touches is checked against
/// [`READABLE`], and a block not in it is asked about with `mincore`, which fails with
/// `ENOMEM` on an unmapped page and faults nothing. Not caught: a mapped page without read
/// permission (`PROT_NONE`), or a page unmapped after it was seen mapped.
///
/// # Safety
/// `p` is NULL, points into unmapped memory, or is a valid C string that outlives the
/// result.
#[inline]
pub unsafe fn cbytes<'a>(p: *const c_char) -> Option<&'a [u8]> {
    let start = p as usize;
    let block = start >> BLOCK_SHIFT;
    // Fast path: a string ending in a block already seen mapped.
    if seen_readable(block) {
        let end = (block + 1) << BLOCK_SHIFT;
        // SAFETY: `[start, end)` lies in one readable block.
        let nul = libc::memchr(p.cast(), 0, end - start);
        if !nul.is_null() {
            return Some(core::slice::from_raw_parts(p.cast(), nul as usize - start));
        }
    }
    cbytes_checked(p)
}

/// [`cbytes`] one block at a time, asking about blocks not seen yet.
#[cold]
unsafe fn cbytes_checked<'a>(p: *const c_char) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    let start = p as usize;
    let mut at = start;
    loop {
        let block = at >> BLOCK_SHIFT;
        if !block_readable(block) {
            return None;
        }
        let end = (block + 1) << BLOCK_SHIFT;
        // SAFETY: `[at, end)` lies in one readable block.
        let nul = libc::memchr(at as *const libc::c_void, 0, end - at);
        if !nul.is_null() {
            return Some(core::slice::from_raw_parts(
                p.cast::<u8>(),
                nul as usize - start,
            ));
        }
        at = end;
    }
}

/// [`cbytes`] and [`crate::path::is_plain`] in one pass: the bytes of a path argument and
/// whether it needs no lexical normalisation. Every path a hooked call passes comes
/// through here, so on x86_64 it reads 16 aligned bytes at a time with SSE2 (an aligned
/// load never crosses into the next page) and finds the NUL and any `/` followed by `/`
/// or `.` with three byte compares per chunk; only a path with such a pair (a dotfile,
/// `./`, `//`) is looked at byte by byte. `memchr` for the NUL and again for each dot
/// was most of the shim's cost per call outside the mount.
///
/// # Safety
/// As [`cbytes`].
#[inline(always)]
pub unsafe fn cpath<'a>(p: *const c_char) -> Option<(&'a [u8], bool)> {
    #[cfg(target_arch = "x86_64")]
    if let Some((b, maybe_not_plain)) = cpath_sse2(p) {
        return Some((b, !maybe_not_plain || crate::path::is_plain(b)));
    }
    cpath_checked(p)
}

/// The portable [`cpath`], and the x86_64 one's way out when a block is not known yet.
#[cold]
unsafe fn cpath_checked<'a>(p: *const c_char) -> Option<(&'a [u8], bool)> {
    let b = cbytes(p)?;
    Some((b, crate::path::is_plain(b)))
}

/// The bytes of the C string at `p` and whether a `/` in it is followed by `/` or `.`
/// (a relative path counts as starting after a `/`), over blocks already in
/// [`READABLE`]; `None` sends the caller to the checked path (NULL, or a block not seen
/// yet).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn cpath_sse2<'a>(p: *const c_char) -> Option<(&'a [u8], bool)> {
    use core::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_load_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
        _mm_setzero_si128,
    };
    let start = p as usize;
    let seen = |at: usize| seen_readable(at >> BLOCK_SHIFT);
    if !seen(start) {
        return None;
    }
    let skip = (start & 15) as u32;
    let mut at = start & !15;
    // Bit i of a mask is byte i of the chunk; bytes before `p` do not count.
    let mut mask = (0xffff_u32 << skip) & 0xffff;
    // Bit 0: the byte before this chunk is a '/' (or, for a relative path, the string
    // starts at this chunk's first byte).
    let rel = *p.cast::<u8>() != b'/';
    let mut before = u32::from(rel) << skip;
    let mut flagged = 0u32;
    let zero = _mm_setzero_si128();
    let slash = _mm_set1_epi8(b'/' as i8);
    let dot = _mm_set1_epi8(b'.' as i8);
    loop {
        // SAFETY: `at` is 16-aligned and its block is readable (checked above and at each
        // block boundary below).
        let v = _mm_load_si128(at as *const __m128i);
        let z = (_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero)) as u32) & mask;
        let sl_v = _mm_cmpeq_epi8(v, slash);
        let s = (_mm_movemask_epi8(sl_v) as u32) & mask;
        let sd = (_mm_movemask_epi8(_mm_or_si128(sl_v, _mm_cmpeq_epi8(v, dot))) as u32) & mask;
        // Bytes (of this chunk) that are '/' or '.' right after a '/'.
        let pairs = ((s << 1) | before) & sd;
        if z != 0 {
            // Only what comes before the NUL counts.
            flagged |= pairs & (z - 1);
            let len = at + z.trailing_zeros() as usize - start;
            return Some((core::slice::from_raw_parts(p.cast(), len), flagged != 0));
        }
        flagged |= pairs;
        before = s >> 15;
        mask = 0xffff;
        at += 16;
        if at & ((1 << BLOCK_SHIFT) - 1) == 0 && !seen(at) {
            return None;
        }
    }
}

/// Whether `len` bytes at `p` lie in mapped memory (the check [`cbytes`] makes), for
/// arguments of a fixed size such as a socket address.
pub fn readable(p: *const u8, len: usize) -> bool {
    let start = p as usize;
    let Some(last) = start.checked_add(len.max(1) - 1) else {
        return false;
    };
    !p.is_null() && (start >> BLOCK_SHIFT..=last >> BLOCK_SHIFT).all(block_readable)
}

/// Granule of [`READABLE`]: the smallest page size Linux has, so a block never spans two
/// pages (mappings are page-aligned).
const BLOCK_SHIFT: u32 = 12;
const READABLE_SLOTS: usize = 512;

/// Blocks seen mapped, direct-mapped by their low bits; a slot holds [`known`] of its
/// block. Plain atomics, no lock and no allocation: safe in a forked child and in a
/// signal handler. A race only costs one more `mincore`.
static READABLE: [AtomicUsize; READABLE_SLOTS] = [const { AtomicUsize::new(0) }; READABLE_SLOTS];

/// What a slot of [`READABLE`] holds for `block` (address >> [`BLOCK_SHIFT`]): its
/// complement, so an empty slot is 0 (no block is all ones) and the table lives in .bss.
/// With a nonzero initial value its 4 KiB were file data that the loader mapped and
/// every process faulted in.
#[inline(always)]
fn known(block: usize) -> usize {
    !block
}

/// The system page size (`mincore` wants an address aligned to it); 0 until first asked.
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// Whether `block` is in [`READABLE`] (seen mapped before): one load, no system call.
#[inline(always)]
fn seen_readable(block: usize) -> bool {
    // The modulo keeps the index in bounds, so the check folds away.
    READABLE
        .get(block % READABLE_SLOTS)
        .is_some_and(|slot| slot.load(Ordering::Relaxed) == known(block))
}

fn block_readable(block: usize) -> bool {
    if seen_readable(block) {
        return true;
    }
    let mapped = block_mapped(block);
    if let Some(slot) = READABLE.get(block % READABLE_SLOTS).filter(|_| mapped) {
        slot.store(known(block), Ordering::Relaxed);
    }
    mapped
}

fn block_mapped(block: usize) -> bool {
    let mut page = PAGE_SIZE.load(Ordering::Relaxed);
    if page == 0 {
        // SAFETY: getauxval only reads the auxiliary vector.
        page = match unsafe { libc::getauxval(libc::AT_PAGESZ) } as usize {
            0 => 1 << BLOCK_SHIFT,
            n => n,
        };
        PAGE_SIZE.store(page, Ordering::Relaxed);
    }
    let addr = (block << BLOCK_SHIFT) & !(page - 1);
    let mut vec = 0u8;
    // SAFETY: mincore reads no user memory and writes one byte (one page) into `vec`.
    let r = unsafe {
        raw_syscall3(
            libc::SYS_mincore as usize,
            addr,
            1,
            &mut vec as *mut u8 as usize,
        )
    };
    r == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unmaps `len` bytes at `p` and forgets its blocks in [`READABLE`]. The table is
    /// process-wide and the tests run in one process: a block another test saw mapped
    /// (and unmapped since) can be where `mmap` puts this test's page, and a test that
    /// needs an unmapped page the shim has not seen must not inherit that memory (it read
    /// into the unmapped page: 1 run in ~600 died with SIGSEGV under load).
    unsafe fn unmap(p: *mut u8, len: usize) {
        assert_eq!(libc::munmap(p.cast(), len), 0);
        let first = p as usize >> BLOCK_SHIFT;
        let last = (p as usize + len - 1) >> BLOCK_SHIFT;
        for block in first..=last {
            if let Some(slot) = READABLE.get(block % READABLE_SLOTS) {
                let _ =
                    slot.compare_exchange(known(block), 0, Ordering::Relaxed, Ordering::Relaxed);
            }
        }
    }

    #[test]
    fn cbytes_reads_across_blocks_and_refuses_unmapped_memory() {
        // SAFETY: fresh anonymous mappings, only used here. A page is unmapped before
        // cbytes ever sees it (one seen mapped and then unmapped is the documented gap).
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let map = |len| {
                let p = libc::mmap(
                    core::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                assert_ne!(p, libc::MAP_FAILED);
                p.cast::<u8>()
            };
            assert_eq!(cbytes(core::ptr::null()), None);
            assert_eq!(cbytes(0xdead_c0de as *const c_char), None);
            // A string running from a page into an unmapped one.
            let one = map(2 * page);
            // Seen mapped before it is unmapped (as by another test; see `unmap`).
            assert!(readable(one.add(page), 1));
            unmap(one.add(page), page);
            let s = one.add(page - 3);
            s.copy_from_nonoverlapping(b"abc".as_ptr(), 3);
            assert_eq!(cbytes(s.cast()), None, "no NUL before the unmapped page");
            assert_eq!(cbytes(one.add(page).cast()), None);
            assert!(readable(one.add(page - 2), 2));
            assert!(!readable(one.add(page - 2), 3), "the last byte is unmapped");
            assert!(!readable(core::ptr::null(), 1));
            s.add(2).write(0);
            assert_eq!(cbytes(s.cast()), Some(&b"ab"[..]));
            // The same string crossing into a mapped page is read whole.
            let two = map(2 * page);
            let s = two.add(page - 3);
            s.copy_from_nonoverlapping(c"abcdef".as_ptr().cast(), 7);
            assert_eq!(cbytes(s.cast()), Some(&b"abcdef"[..]));
            unmap(one, page);
            unmap(two, 2 * page);
        }
    }

    /// The one-pass scan agrees with `cbytes` + `is_plain` at every alignment and length
    /// around the 16-byte chunks, for every pattern that makes a path not plain, and stops
    /// at a page that is not mapped.
    #[test]
    fn cpath_agrees_with_the_byte_by_byte_reading() {
        let mut cases: Vec<Vec<u8>> = Vec::new();
        let parts: [&[u8]; 9] = [
            b"",
            b".",
            b"..",
            b"a",
            b".a",
            b"a.",
            b"...",
            b"abcdefgh",
            b"x/",
        ];
        for abs in [true, false] {
            for x in parts {
                for y in parts {
                    for z in parts {
                        let mut v = Vec::new();
                        if abs {
                            v.push(b'/');
                        }
                        for (i, c) in [x, y, z].iter().enumerate() {
                            if i > 0 {
                                v.push(b'/');
                            }
                            v.extend_from_slice(c);
                        }
                        cases.push(v);
                    }
                }
            }
        }
        // Long ones: the pattern in a later chunk, and at every position across a chunk
        // boundary.
        for at in 0..40 {
            for pat in [&b"//"[..], b"/./", b"/../", b"/.", b"/..", b"/.x", b"/x."] {
                let mut v = b"/".to_vec();
                v.extend(std::iter::repeat_n(b'a', at));
                v.extend_from_slice(pat);
                cases.push(v.clone());
                v.extend_from_slice(b"tail/name");
                cases.push(v);
            }
        }
        let mut buf = vec![0u8; 4096 + 64];
        let base = (buf.as_mut_ptr() as usize + 15) & !15;
        let off = base - buf.as_ptr() as usize;
        for c in &cases {
            for shift in 0..17 {
                let at = off + shift;
                buf[at..at + c.len()].copy_from_slice(c);
                buf[at + c.len()] = 0;
                // Bytes after the NUL must not count.
                buf[at + c.len() + 1..at + c.len() + 20].fill(b'/');
                // SAFETY: a NUL-terminated string in `buf`.
                let p = unsafe { buf.as_ptr().add(at).cast::<c_char>() };
                for _ in 0..2 {
                    // The first call may take the checked path (block not seen yet).
                    // SAFETY: `p` points at a NUL-terminated string in `buf`.
                    let (b, plain) = unsafe { cpath(p) }.unwrap();
                    assert_eq!(b, &c[..], "{:?} at +{shift}", String::from_utf8_lossy(c));
                    assert_eq!(
                        plain,
                        crate::path::is_plain(c),
                        "{:?} at +{shift}",
                        String::from_utf8_lossy(c)
                    );
                }
            }
        }
        // SAFETY: a fresh anonymous mapping whose second page is unmapped before use.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let m = libc::mmap(
                core::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(m, libc::MAP_FAILED);
            let m = m.cast::<u8>();
            // Seen mapped first, as another test may have seen memory at this address:
            // what follows must hold however the table came to know the page.
            assert!(readable(m.add(page), 1));
            unmap(m.add(page), page);
            // Ends on the page's last byte: read whole, nothing read past it.
            let s = m.add(page - 6);
            s.copy_from_nonoverlapping(c"/a/./".as_ptr().cast(), 6);
            assert_eq!(cpath(s.cast()), Some((&b"/a/./"[..], false)));
            assert_eq!(cpath(s.cast()), Some((&b"/a/./"[..], false)));
            // No NUL before the unmapped page.
            s.add(5).write(b'x');
            assert_eq!(cpath(s.cast()), None);
            assert_eq!(cpath(core::ptr::null()), None);
            unmap(m, page);
        }
    }
}
