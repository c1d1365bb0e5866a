//! Compiles the C helpers: the NULL-terminated variadic exec functions, and (for release
//! builds, which use panic = "abort": see the workspace Cargo.toml) the stand-ins that
//! keep libgcc_s out of the library.
fn main() {
    println!("cargo:rerun-if-changed=csrc/execl.c");
    println!("cargo:rerun-if-changed=csrc/nounwind.c");
    println!("cargo:rerun-if-changed=csrc/nostart.c");
    cc::Build::new()
        .file("csrc/execl.c")
        .flag("-fvisibility=hidden")
        .warnings(true)
        .extra_warnings(true)
        .compile("s3shim_execl");
    // Calls from inside the library to its own exports (the standard library's `open64`,
    // `close`, `syscall`, the exec trampolines) bound at link time instead of looked up by
    // the loader in every process: they resolve to the same hooks either way, because the
    // preloaded library comes first in every lookup.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
    // The release library has no standard library, which is what linked libc before:
    // link it explicitly (its NEEDED entry, and symbol versions checked at link time).
    println!("cargo:rustc-link-lib=dylib=c");
    // CARGO_CFG_PANIC does not reflect the profile's `panic`, so the profile decides.
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        // Whole archive: nothing in this crate calls these, the standard library does, and
        // a plain archive member would be skipped before those references are seen.
        cc::Build::new()
            .file("csrc/nounwind.c")
            .flag("-fvisibility=hidden")
            .warnings(true)
            .extra_warnings(true)
            .link_lib_modifier("+whole-archive")
            .compile("s3shim_nounwind");
        // No C runtime start files: the constructor is an `.init_array` entry, which the
        // loader runs without them, and what they add (`_init`/`_fini`, the transactional
        // memory and profiling hooks, `__cxa_finalize`) cost every process four symbol
        // lookups (three that search every loaded object and fail) and two page faults.
        println!("cargo:rustc-cdylib-link-arg=-nostartfiles");
        cc::Build::new()
            .file("csrc/nostart.c")
            .warnings(true)
            .extra_warnings(true)
            .link_lib_modifier("+whole-archive")
            .compile("s3shim_nostart");
    }
}
