/* Drives the C API of include/s3shim.h, for tests/capi.rs.
 *
 *   capi inert          every call fails with ENOTCONN (the shim has no configuration)
 *   capi run MOUNT      under `s3shim run`: states, fetch, flush, status; after the flush
 *                       of MOUNT/new.txt it prints "flushed" and waits for a line on
 *                       stdin, so the test can look at S3 before the program goes on.
 *
 * Prints one line per check; a failed check prints "FAIL ..." and exits 1. */
#define _GNU_SOURCE
#include "s3shim.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *mount;

#define CHECK(cond, ...)                                                                  \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            printf("FAIL line %d: %s (errno %d %s): ", __LINE__, #cond, errno,            \
                   strerror(errno));                                                      \
            printf(__VA_ARGS__);                                                          \
            printf("\n");                                                                 \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

static const char *at(const char *rel) {
    static char buf[8][4096];
    static int next;
    char *b = buf[next++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", mount, rel);
    return b;
}

/* A call that must fail with `want` and leave -1. */
static void fails_with(int r, int want, const char *what) {
    int e = errno;
    CHECK(r == -1 && e == want, "%s gave %d, errno %d, wanted -1 with %d", what, r, e, want);
}

static int inert(void) {
    struct s3shim_status st = {.size = sizeof st};
    CHECK(s3shim_api_version() == S3SHIM_API_VERSION, "api version");
    errno = 0;
    fails_with(s3shim_flush(NULL), ENOTCONN, "flush(NULL)");
    fails_with(s3shim_flush("/tmp"), ENOTCONN, "flush");
    fails_with(s3shim_path_state("/tmp"), ENOTCONN, "path_state");
    fails_with(s3shim_fetch("/tmp", 0), ENOTCONN, "fetch");
    fails_with(s3shim_status(&st), ENOTCONN, "status");
    printf("inert ok\n");
    return 0;
}

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0, "open %s", path);
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write %s", path);
    CHECK(close(fd) == 0, "close %s", path);
}

static void status(struct s3shim_status *st) {
    memset(st, 0xff, sizeof *st);
    st->size = sizeof *st;
    errno = 1234;
    CHECK(s3shim_status(st) == 0, "status");
    CHECK(errno == 1234, "status keeps errno on success");
    CHECK(st->size == sizeof *st, "status size %u", st->size);
}

static int run(void) {
    struct s3shim_status st;
    char line[64];

    CHECK(s3shim_api_version() == S3SHIM_API_VERSION, "api version");

    /* Listed, never read: a placeholder; an unlisted directory beside it. The first
     * question looks the path up in S3 (nothing is listed yet). */
    errno = 1234;
    CHECK(s3shim_path_state(at("dir/a.txt")) == S3SHIM_PLACEHOLDER, "a.txt placeholder");
    CHECK(errno == 1234, "path_state keeps errno on success");
    CHECK(s3shim_path_state(at("dir/sub")) == S3SHIM_UNLISTED, "sub unlisted");
    CHECK(s3shim_path_state(at("dir")) == S3SHIM_LOCAL, "dir listed");
    CHECK(s3shim_path_state("/etc") == S3SHIM_OUTSIDE, "outside");
    fails_with(s3shim_path_state(at("dir/none.txt")), ENOENT, "path_state of nothing");
    fails_with(s3shim_path_state(NULL), EINVAL, "path_state(NULL)");
    printf("states ok\n");

    /* Fetch one file, then a whole subtree, without reading either. */
    CHECK(s3shim_fetch(at("dir/a.txt"), 0) == 0, "fetch a.txt");
    CHECK(s3shim_path_state(at("dir/a.txt")) == S3SHIM_LOCAL, "a.txt local after fetch");
    CHECK(s3shim_path_state(at("dir/sub/deep/c.txt")) == S3SHIM_PLACEHOLDER,
          "c.txt placeholder before the tree fetch");
    CHECK(s3shim_fetch(at("dir/sub"), S3SHIM_FETCH_TREE) == 0, "fetch tree");
    CHECK(s3shim_path_state(at("dir/sub/b.txt")) == S3SHIM_LOCAL, "b.txt local");
    CHECK(s3shim_path_state(at("dir/sub/deep/c.txt")) == S3SHIM_LOCAL, "c.txt local");
    CHECK(s3shim_fetch(at("dir/a.txt"), 0) == 0, "fetch of a local file");
    fails_with(s3shim_fetch(at("dir/none.txt"), 0), ENOENT, "fetch of nothing");
    fails_with(s3shim_fetch(at("dir/a.txt"), 2), EINVAL, "fetch with an unknown flag");
    fails_with(s3shim_fetch("/etc", 0), EINVAL, "fetch outside");
    printf("fetch ok\n");

    /* Relative to a cwd in the folder. */
    CHECK(chdir(at("dir")) == 0, "chdir");
    CHECK(s3shim_path_state("sub/b.txt") == S3SHIM_LOCAL, "relative path");
    CHECK(chdir("/") == 0, "chdir /");

    /* Flush one file: the test checks S3 before this program goes on. */
    write_file(at("new.txt"), "written by C\n");
    errno = 1234;
    CHECK(s3shim_flush(at("new.txt")) == 0, "flush new.txt");
    CHECK(errno == 1234, "flush keeps errno on success");
    fails_with(s3shim_flush("/etc/hostname"), EINVAL, "flush outside");
    printf("flushed\n");
    fflush(stdout);
    CHECK(fgets(line, sizeof line, stdin) != NULL, "the test's go-ahead");

    /* A change that cannot go up (a name S3 keys cannot carry) stays pending and
     * failed; the flush of everything reports it. */
    write_file(at("bad-\xff"), "12345");
    fails_with(s3shim_flush(NULL), EIO, "flush with an unuploadable change");
    status(&st);
    CHECK(st.pending == 1 && st.pending_bytes == 5, "pending %llu, %llu bytes",
          (unsigned long long)st.pending, (unsigned long long)st.pending_bytes);
    CHECK(st.failed == 1, "failed %llu", (unsigned long long)st.failed);
    CHECK(st.paused == 0 && st.conflicts == 0 && st.in_flight == 0,
          "paused %u conflicts %llu in flight %llu", st.paused,
          (unsigned long long)st.conflicts, (unsigned long long)st.in_flight);
    printf("status pending ok\n");

    /* Gone again: nothing pending, and the flush of everything succeeds. */
    CHECK(unlink(at("bad-\xff")) == 0, "unlink");
    CHECK(s3shim_flush(at("dir")) == 0, "flush of a directory");
    status(&st);
    CHECK(st.pending == 0 && st.pending_bytes == 0 && st.failed == 0,
          "after: pending %llu, %llu bytes, failed %llu", (unsigned long long)st.pending,
          (unsigned long long)st.pending_bytes, (unsigned long long)st.failed);
    {
        struct s3shim_status small = {.size = 8};
        fails_with(s3shim_status(&small), EINVAL, "status with a small size");
        fails_with(s3shim_status(NULL), EINVAL, "status(NULL)");
    }
    printf("status clean ok\n");
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 2 && strcmp(argv[1], "inert") == 0)
        return inert();
    if (argc == 3 && strcmp(argv[1], "run") == 0) {
        mount = argv[2];
        return run();
    }
    fprintf(stderr, "usage: capi inert | capi run MOUNT\n");
    return 2;
}
