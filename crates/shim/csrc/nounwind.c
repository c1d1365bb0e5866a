/* libs3shim.so is built with panic = "abort" (release): nothing in it ever unwinds. The
 * precompiled standard library still references these libgcc_s functions (landing pads,
 * backtraces), which made the loader map libgcc_s.so.1 into every process the shim is
 * loaded into, a measurable part of the cost of starting a program. These hidden
 * definitions satisfy those references inside the library, so libgcc_s is no longer
 * needed. Being hidden, they are not exported: the process's own unwinding (C++
 * exceptions, other Rust code) still uses libgcc_s. build.rs compiles this file only
 * when panic = "abort". */
#include <stdlib.h>

#define HIDDEN __attribute__((visibility("hidden")))

struct _Unwind_Context;
typedef int reason_code;
enum { URC_END_OF_STACK = 5 };

/* Only reached when unwinding, which panic = "abort" never starts. */
HIDDEN void _Unwind_Resume(void *exception) {
    (void)exception;
    abort();
}
HIDDEN void _Unwind_SetGR(struct _Unwind_Context *c, int reg, unsigned long v) {
    (void)c, (void)reg, (void)v;
    abort();
}
HIDDEN void _Unwind_SetIP(struct _Unwind_Context *c, unsigned long v) {
    (void)c, (void)v;
    abort();
}

/* A backtrace (RUST_BACKTRACE in a panic message) comes out empty. */
HIDDEN reason_code _Unwind_Backtrace(void *trace, void *arg) {
    (void)trace, (void)arg;
    return URC_END_OF_STACK;
}
HIDDEN unsigned long _Unwind_GetIP(struct _Unwind_Context *c) {
    (void)c;
    return 0;
}
HIDDEN unsigned long _Unwind_GetIPInfo(struct _Unwind_Context *c, int *before) {
    (void)c;
    *before = 0;
    return 0;
}
HIDDEN unsigned long _Unwind_GetDataRelBase(struct _Unwind_Context *c) {
    (void)c;
    return 0;
}
HIDDEN unsigned long _Unwind_GetTextRelBase(struct _Unwind_Context *c) {
    (void)c;
    return 0;
}
HIDDEN unsigned long _Unwind_GetRegionStart(struct _Unwind_Context *c) {
    (void)c;
    return 0;
}
HIDDEN void *_Unwind_GetLanguageSpecificData(struct _Unwind_Context *c) {
    (void)c;
    return 0;
}
