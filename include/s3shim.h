/*
 * s3shim.h: what libs3shim.so exports beyond libc.
 *
 * A program or extension running in a workspace folder (a process started under
 * `s3shim run`, or code-server's tree) can ask about and control the folder's sync state
 * without parsing the output of `s3shim status`. The library is the one loaded with
 * LD_PRELOAD; link with -ls3shim (and an rpath to its directory), or look the functions
 * up with dlsym(RTLD_DEFAULT, "s3shim_flush") to run without the shim too.
 *
 * Every function:
 * - returns -1 and sets errno on failure (errno is left alone on success);
 * - fails with ENOTCONN, and does nothing else, when the shim is inert in this process
 *   (loaded without its configuration, e.g. outside `s3shim run`);
 * - takes paths as the program sees them (`/workspace/src/a.c`, or relative to the
 *   current directory), and fails with EINVAL for a path outside the folder where the
 *   call needs one inside it;
 * - blocks the calling thread only as documented, and is safe to call from any thread.
 * The errno the agent answers with is passed on unchanged, as the same failure would
 * reach read() or fsync(); EIO when the agent cannot be reached.
 */
#ifndef S3SHIM_H
#define S3SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The API this header describes. A new function or a larger s3shim_status raises it;
 * nothing is removed or changed in meaning within one major library version. */
#define S3SHIM_API_VERSION 1

/* The API version the loaded library implements: compare with S3SHIM_API_VERSION
 * before using a function newer than the library. Never fails. */
int s3shim_api_version(void);

/* Blocks until the changes made so far to `path` are in S3 (a file: its bytes and
 * metadata; a directory, or NULL: every change in the folder, as `s3shim flush`).
 * 0 when they are; -1 with errno EIO when one could not be uploaded (the agent keeps it
 * and retries; `s3shim status` names it). */
int s3shim_flush(const char *path);

/* What s3shim_path_state returns. */
#define S3SHIM_OUTSIDE 0     /* not in the folder: none of the shim's business */
#define S3SHIM_LOCAL 1       /* in the cache: a file's bytes, a directory's entries */
#define S3SHIM_PLACEHOLDER 2 /* a file only listed: its bytes are still only in S3 */
#define S3SHIM_UNLISTED 3    /* a directory whose entries are not listed yet */

/* The state of the entry at `path` (symlinks followed). An entry not in the cache yet
 * is looked up in S3 first (as stat() would); -1 with ENOENT when there is none. Never
 * downloads bytes. */
int s3shim_path_state(const char *path);

/* For s3shim_fetch's `flags`. */
#define S3SHIM_FETCH_TREE 1 /* the whole subtree under a directory, bytes included */

/* Makes `path` local and blocks until it is: a placeholder's bytes are downloaded, an
 * unlisted directory is listed; with S3SHIM_FETCH_TREE every file below a directory is
 * downloaded too (what the shim does before it execs a program it cannot enter).
 * 0 when done (also when there was nothing to do); -1 with errno otherwise (ENOENT: no
 * such entry in S3 either; EINVAL: outside the folder or an unknown flag). */
int s3shim_fetch(const char *path, int flags);

/* A snapshot of the agent's sync state. Set `size` to sizeof(struct s3shim_status)
 * before the call: a later API version may append fields, and fills only what the
 * caller's size holds. */
struct s3shim_status {
    uint32_t size;          /* in: sizeof(struct s3shim_status) */
    uint32_t paused;        /* 1 when uploads are paused (S3 unreachable), else 0 */
    uint64_t pending;       /* changes not in S3 yet */
    uint64_t pending_bytes; /* bytes of their local files */
    uint64_t in_flight;     /* of those, uploads being made now */
    uint64_t failed;        /* changes that could not be uploaded */
    uint64_t conflicts;     /* conflicts kept, both versions saved */
};

/* Fills `status` from the agent (one round trip, no waiting for uploads). 0 or -1 with
 * errno (EINVAL: NULL, or `size` smaller than API version 1's struct). */
int s3shim_status(struct s3shim_status *status);

#ifdef __cplusplus
}
#endif

#endif /* S3SHIM_H */
