/* Cost per intercepted call: `stat N path` times N stat() calls, `open N path` N
 * open+close; prints nanoseconds per call. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) return 2;
    long n = atol(argv[2]);
    struct timespec a, b;
    struct stat st;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        if (!strcmp(argv[1], "stat")) {
            if (stat(argv[3], &st) != 0) return 1;
        } else {
            int fd = open(argv[3], O_RDONLY);
            if (fd < 0) return 1;
            close(fd);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("%s %.0f ns/call\n", argv[1], ns / n);
    return 0;
}
