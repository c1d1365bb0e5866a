/* execl, execle and execlp take a NULL-terminated variadic argument list, which stable
 * Rust cannot define. These helpers collect the list into an argv on the stack (as glibc
 * does: no malloc, so they are safe after fork and vfork) and call the shim's exported
 * execve/execvp, which map the path and re-inject the environment. The exported names
 * are tiny naked trampolines in src/hooks/exec.rs that jump here: rustc's version
 * script would hide symbols defined in C. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <unistd.h>

extern char **environ;

#define HIDDEN __attribute__((visibility("hidden")))

/* Number of arguments after `first` up to the terminating NULL; -1 if absurd. */
#define COUNT_ARGS(first, out)                                                           \
    do {                                                                                 \
        va_list ap_;                                                                     \
        (out) = 0;                                                                       \
        if ((first) != NULL) {                                                           \
            (out) = 1;                                                                   \
            va_start(ap_, first);                                                        \
            while (va_arg(ap_, const char *) != NULL) {                                  \
                if ((out) == INT_MAX - 1) {                                              \
                    (out) = -1;                                                          \
                    break;                                                               \
                }                                                                        \
                (out)++;                                                                 \
            }                                                                            \
            va_end(ap_);                                                                 \
        }                                                                                \
    } while (0)

/* Declares `argv` (NULL-terminated) from `arg, ...`, and `ap`, left open just past the
 * last argument collected (execle's envp follows the NULL that ends the list). */
#define COLLECT_ARGV(arg)                                                                \
    long argc;                                                                           \
    COUNT_ARGS(arg, argc);                                                               \
    if (argc < 0) {                                                                      \
        errno = E2BIG;                                                                   \
        return -1;                                                                       \
    }                                                                                    \
    const char *argv[argc + 1];                                                          \
    va_list ap;                                                                          \
    va_start(ap, arg);                                                                   \
    for (long i = 0; i < argc; i++)                                                      \
        argv[i] = i == 0 ? arg : va_arg(ap, const char *);                               \
    argv[argc] = NULL

HIDDEN int s3shim_c_execl(const char *path, const char *arg, ...) {
    COLLECT_ARGV(arg);
    va_end(ap);
    return execve(path, (char *const *)argv, environ);
}

HIDDEN int s3shim_c_execle(const char *path, const char *arg, ...) {
    COLLECT_ARGV(arg);
    /* The envp follows the NULL that ends the list (when arg itself was NULL, that NULL
     * was `arg`, so the envp is the first variadic argument). */
    if (argc > 0)
        (void)va_arg(ap, const char *);
    char *const *envp = va_arg(ap, char *const *);
    va_end(ap);
    return execve(path, (char *const *)argv, envp);
}

HIDDEN int s3shim_c_execlp(const char *file, const char *arg, ...) {
    COLLECT_ARGV(arg);
    va_end(ap);
    return execvp(file, (char *const *)argv);
}
