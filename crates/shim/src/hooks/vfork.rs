//! `vfork` and `clone`: the children they make may run on this process's memory, so the
//! hooks must from then on check who owns the shared state ([`crate::owner`]). These
//! entry points only record that, then jump to the real function with the caller's
//! registers and stack untouched: a `vfork` child returns through the caller's frame,
//! so no Rust frame may stand between them (hence naked functions).

use crate::owner;
use core::ffi::c_void;

/// Records the possible shared-memory child; returns the real function to jump to.
extern "C" fn before_vfork() -> *const c_void {
    owner::children_may_share_memory();
    match crate::real::vfork::get() {
        Some(f) => f as *const c_void,
        None => enosys as *const c_void,
    }
}

extern "C" fn before_clone() -> *const c_void {
    owner::children_may_share_memory();
    match crate::real::clone::get() {
        Some(f) => f as *const c_void,
        None => enosys as *const c_void,
    }
}

/// Stands in for a missing real function: -1 with `ENOSYS`, as the hooks do.
extern "C" fn enosys() -> libc::c_int {
    crate::ret::Ret::enosys()
}

/// Calls `$before` with the caller's argument registers saved, then tail-jumps to the
/// address it returned, so the real function sees exactly the caller's call.
#[cfg(target_arch = "x86_64")]
macro_rules! tail_jump {
    ($before:path) => {
        core::arch::naked_asm!(
            // Argument registers (clone takes six plus one on the stack, left in place).
            "push rdi",
            "push rsi",
            "push rdx",
            "push rcx",
            "push r8",
            "push r9",
            // Six pushes after the return address: 8 more keep the call 16-aligned.
            "sub rsp, 8",
            "call {before}",
            "add rsp, 8",
            "pop r9",
            "pop r8",
            "pop rcx",
            "pop rdx",
            "pop rsi",
            "pop rdi",
            "jmp rax",
            before = sym $before,
        )
    };
}

#[cfg(target_arch = "aarch64")]
macro_rules! tail_jump {
    ($before:path) => {
        core::arch::naked_asm!(
            "stp x29, x30, [sp, #-80]!",
            "mov x29, sp",
            "stp x0, x1, [sp, #16]",
            "stp x2, x3, [sp, #32]",
            "stp x4, x5, [sp, #48]",
            "stp x6, x7, [sp, #64]",
            "bl {before}",
            "mov x16, x0",
            "ldp x0, x1, [sp, #16]",
            "ldp x2, x3, [sp, #32]",
            "ldp x4, x5, [sp, #48]",
            "ldp x6, x7, [sp, #64]",
            "ldp x29, x30, [sp], #80",
            "br x16",
            before = sym $before,
        )
    };
}

#[unsafe(naked)]
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn vfork() -> libc::pid_t {
    tail_jump!(before_vfork)
}

#[unsafe(naked)]
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __vfork() -> libc::pid_t {
    tail_jump!(before_vfork)
}

/// glibc's `clone(fn, stack, flags, arg, ...)`; its arguments pass through untouched.
#[unsafe(naked)]
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn clone() -> libc::c_int {
    tail_jump!(before_clone)
}

#[unsafe(naked)]
#[cfg_attr(not(test), no_mangle)]
pub unsafe extern "C" fn __clone() -> libc::c_int {
    tail_jump!(before_clone)
}
