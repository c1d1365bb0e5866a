//! Fixed buffers for paths: the shim allocates nothing, so every path it builds is
//! written into a stack buffer of [`PATH_MAX`] bytes, NUL-terminated, failing instead of
//! truncating.

use core::ffi::CStr;

/// Longest path (with its NUL) the kernel accepts.
pub const PATH_MAX: usize = 4096;

/// `buf[..len]` as a C string; `buf[len]` must be the NUL.
pub fn as_cstr(buf: &[u8], len: usize) -> Option<&CStr> {
    CStr::from_bytes_with_nul(buf.get(..len.checked_add(1)?)?).ok()
}

/// Appends bytes to a fixed buffer, keeping it NUL-terminated; fails instead of
/// truncating.
pub struct Writer<'a> {
    pub buf: &'a mut [u8],
    pub len: usize,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Writer<'a> {
        Writer { buf, len: 0 }
    }

    pub fn put(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        // Room for the NUL too.
        self.buf.get(end)?;
        self.buf.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        *self.buf.get_mut(end)? = 0;
        Some(())
    }

    pub fn put_u64(&mut self, mut v: u64) -> Option<()> {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            *digits.get_mut(i)? = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.put(digits.get(i..)?)
    }

    pub fn cstr(&self) -> Option<&CStr> {
        as_cstr(self.buf, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_refuses_overflow_and_terminates() {
        let mut b = [0xffu8; 8];
        let mut w = Writer::new(&mut b);
        assert!(w.put(b"abc").is_some());
        assert!(w.put_u64(1234).is_some(), "7 bytes + NUL fit in 8");
        assert!(w.put(b"x").is_none(), "8 bytes + NUL do not");
        assert_eq!(w.cstr().unwrap().to_bytes(), b"abc1234");
    }

    #[test]
    fn writer_numbers() {
        let mut b = [0u8; 32];
        let mut w = Writer::new(&mut b);
        w.put(b"/proc/self/fd/").unwrap();
        w.put_u64(0).unwrap();
        assert_eq!(w.cstr().unwrap().to_bytes(), b"/proc/self/fd/0");
        let mut w = Writer::new(&mut b);
        w.put_u64(65535).unwrap();
        assert_eq!(w.cstr().unwrap().to_bytes(), b"65535");
    }
}
