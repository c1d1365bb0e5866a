/* Stress under interception (static): `threads N` — N threads each open, stat and read
 * every file named on stdin-less argv; `storm N prog file` — N fork+exec of prog file,
 * 16 at a time; `slow file` — prints "opening" then reads a large file (to be killed). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

static char **files; static int nfiles; static int bad;

static void *worker(void *arg) {
    (void)arg;
    for (int i = 0; i < nfiles; i++) {
        struct stat st;
        if (stat(files[i], &st) != 0) { __sync_fetch_and_add(&bad, 1); continue; }
        int fd = open(files[i], O_RDONLY);
        if (fd < 0) { __sync_fetch_and_add(&bad, 1); continue; }
        char b[4096]; ssize_t n = read(fd, b, sizeof b); close(fd);
        /* Each file holds its own base name, repeated: zeros would not match. */
        const char *base = strrchr(files[i], '/') + 1;
        if (n != st.st_size || n < (ssize_t)strlen(base) || memcmp(b, base, strlen(base)) != 0)
            __sync_fetch_and_add(&bad, 1);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 2 && !strcmp(argv[1], "threads")) {
        int n = atoi(argv[2]);
        files = argv + 3; nfiles = argc - 3;
        pthread_t t[256];
        for (int i = 0; i < n; i++) pthread_create(&t[i], 0, worker, 0);
        for (int i = 0; i < n; i++) pthread_join(t[i], 0);
        printf("threads %d files %d bad %d\n", n, nfiles, bad);
        return bad != 0;
    }
    if (argc > 4 && !strcmp(argv[1], "storm")) {
        int n = atoi(argv[2]), ok = 0, running = 0;
        for (int i = 0; i < n; i++) {
            if (running == 16) { int s; wait(&s); running--; if (WIFEXITED(s) && !WEXITSTATUS(s)) ok++; }
            pid_t p = fork();
            if (p == 0) {
                int null = open("/dev/null", O_WRONLY); dup2(null, 1);
                execl(argv[3], argv[3], "threads", "1", argv[4], (char *)0);
                _exit(127);
            }
            running++;
        }
        while (running) { int s; wait(&s); running--; if (WIFEXITED(s) && !WEXITSTATUS(s)) ok++; }
        printf("storm %d ok %d\n", n, ok);
        return ok != n;
    }
    if (argc > 2 && !strcmp(argv[1], "slow")) {
        printf("opening\n"); fflush(stdout);
        int fd = open(argv[2], O_RDONLY);
        char b[65536]; long total = 0; ssize_t k;
        while (fd >= 0 && (k = read(fd, b, sizeof b)) > 0) total += k;
        printf("read %ld\n", total);
        return 0;
    }
    return 2;
}
