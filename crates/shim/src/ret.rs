//! How a hooked function reports failure, so the common hook code works for `int`,
//! `ssize_t`, `long` and pointer results alike.

use crate::errno::set_errno;
use core::ffi::c_int;

pub trait Ret: Copy {
    /// Whether this result is the function's failure value.
    fn failed(self) -> bool;
    /// The failure value (`-1` or `NULL`).
    fn failure() -> Self;
    /// Sets errno and returns the failure value.
    #[inline]
    fn fail(errno: c_int) -> Self {
        set_errno(errno);
        Self::failure()
    }
    /// What a hook returns when the real function does not exist.
    #[cold]
    fn enosys() -> Self {
        Self::fail(libc::ENOSYS)
    }
}

macro_rules! int_ret {
    ($($t:ty),*) => {$(
        impl Ret for $t {
            #[inline]
            fn failed(self) -> bool {
                self == -1
            }
            #[inline]
            fn failure() -> Self {
                -1
            }
        }
    )*};
}
int_ret!(i32, i64, isize);

impl<T> Ret for *mut T {
    #[inline]
    fn failed(self) -> bool {
        self.is_null()
    }
    #[inline]
    fn failure() -> Self {
        core::ptr::null_mut()
    }
}

impl Ret for () {
    fn failed(self) -> bool {
        false
    }
    fn failure() -> Self {}
}
