/* Prints its cwd and "ready", waits for a line on stdin, then prints the file argv[1]
 * (a file another writer adds in S3 after this program started). */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) return 2;
    printf("cwd %s\nready\n", cwd);
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 3;
    FILE *f = fopen(argv[1], "r");
    if (!f) { perror(argv[1]); return 1; }
    char b[256];
    size_t n = fread(b, 1, sizeof b - 1, f);
    b[n] = 0;
    printf("read %zu [%s]\n", n, b);
    char link[4096];
    ssize_t m = readlink("/proc/self/cwd", link, sizeof link - 1);
    link[m < 0 ? 0 : m] = 0;
    printf("proc-cwd %s\n", link);
    return 0;
}
