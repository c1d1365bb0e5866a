/* Release builds link without the C runtime start files (-nostartfiles, see build.rs),
 * which is where `__dso_handle` normally comes from. `pthread_atfork` (a static stub in
 * libc_nonshared.a) passes it to `__register_atfork` to tie the handlers to this
 * library; like crtbeginS.o's, it is hidden and points at itself. */
__attribute__((visibility("hidden"))) void *const __dso_handle = (void *)&__dso_handle;
