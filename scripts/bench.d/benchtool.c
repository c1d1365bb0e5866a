/* Small loops for scripts/bench, in C so that the loop itself costs next to nothing and
 * every libc call goes through the same entry points a real program uses (and so through
 * the shim's hooks when it is preloaded).
 *
 *   benchtool save N FILE SIZE      editor save: open(O_TRUNC), write, fdatasync, close; N times
 *                                   (save i writes SIZE+i bytes, so the last one has a size
 *                                   of its own that a bucket listing can recognise)
 *   benchtool create N DIR          mkdir DIR, then N files of 64 bytes in it
 *   benchtool outside N FILE        stat, open, close FILE; N times (FILE outside the mount)
 *   benchtool readloop N LISTFILE   N passes over the paths in LISTFILE: stat, open, read all, close
 *   benchtool spawn N PROG          posix_spawn PROG and wait for it; N times
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void die(const char *what, const char *arg) {
    fprintf(stderr, "benchtool: %s %s: %s\n", what, arg ? arg : "", strerror(errno));
    exit(1);
}

static int save(long n, const char *file, long size) {
    char *buf = malloc(size + n);
    if (!buf) die("malloc", NULL);
    for (long i = 0; i < n; i++) {
        long len = size + i;
        memset(buf, 'a' + (int)(i % 26), len);
        int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) die("open", file);
        for (long off = 0; off < len;) {
            ssize_t w = write(fd, buf + off, len - off);
            if (w < 0) die("write", file);
            off += w;
        }
        if (fdatasync(fd) != 0) die("fdatasync", file);
        if (close(fd) != 0) die("close", file);
    }
    free(buf);
    return 0;
}

static int create(long n, const char *dir) {
    if (mkdir(dir, 0755) != 0) die("mkdir", dir);
    char path[4096], body[64];
    memset(body, 'x', sizeof body);
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/f%06ld.txt", dir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) die("open", path);
        if (write(fd, body, sizeof body) != (ssize_t)sizeof body) die("write", path);
        if (close(fd) != 0) die("close", path);
    }
    return 0;
}

static int outside(long n, const char *file) {
    struct stat st;
    for (long i = 0; i < n; i++) {
        if (stat(file, &st) != 0) die("stat", file);
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) die("open", file);
        close(fd);
    }
    return 0;
}

static int readloop(long n, const char *listfile) {
    FILE *f = fopen(listfile, "r");
    if (!f) die("fopen", listfile);
    size_t cap = 1024, count = 0;
    char **paths = malloc(cap * sizeof *paths);
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!*line) continue;
        if (count == cap) paths = realloc(paths, (cap *= 2) * sizeof *paths);
        paths[count++] = strdup(line);
    }
    fclose(f);
    static char buf[1 << 16];
    struct stat st;
    for (long pass = 0; pass < n; pass++) {
        for (size_t i = 0; i < count; i++) {
            if (stat(paths[i], &st) != 0) die("stat", paths[i]);
            int fd = open(paths[i], O_RDONLY | O_CLOEXEC);
            if (fd < 0) die("open", paths[i]);
            while (read(fd, buf, sizeof buf) > 0) {
            }
            close(fd);
        }
    }
    return 0;
}

static int spawn(long n, const char *prog) {
    char *argv[] = {(char *)prog, NULL};
    for (long i = 0; i < n; i++) {
        pid_t pid;
        int rc = posix_spawn(&pid, prog, NULL, NULL, argv, environ);
        if (rc != 0) {
            errno = rc;
            die("posix_spawn", prog);
        }
        int status;
        if (waitpid(pid, &status, 0) < 0) die("waitpid", prog);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "benchtool: %s failed\n", prog);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: benchtool save|create|outside|readloop|spawn N ARG [SIZE]\n");
        return 2;
    }
    long n = atol(argv[2]);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "save") && argc == 5) return save(n, argv[3], atol(argv[4]));
    if (!strcmp(cmd, "create")) return create(n, argv[3]);
    if (!strcmp(cmd, "outside")) return outside(n, argv[3]);
    if (!strcmp(cmd, "readloop")) return readloop(n, argv[3]);
    if (!strcmp(cmd, "spawn")) return spawn(n, argv[3]);
    fprintf(stderr, "benchtool: unknown command %s\n", cmd);
    return 2;
}
