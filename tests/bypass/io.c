/* Reads, writes and lists in the folder by absolute and relative paths (static). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void show(const char *p) {
    char b[512];
    int fd = open(p, O_RDONLY);
    if (fd < 0) { printf("%s: open failed\n", p[0] == '/' ? "abs" : p); return; }
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    b[n < 0 ? 0 : n] = 0;
    printf("%s: %zd [%s]\n", p[0] == '/' ? "abs" : p, n, b);
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    char p[4096];
    snprintf(p, sizeof p, "%s/cdir/a.txt", argv[1]);
    show(p);
    snprintf(p, sizeof p, "%s/cdir", argv[1]);
    if (chdir(p) != 0) { perror("chdir"); return 1; }
    show("sub/b.txt");
    show("sub/../a.txt");
    DIR *d = opendir("sub");
    char *names[64]; int k = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) && k < 64) names[k++] = strdup(e->d_name);
    if (d) closedir(d);
    qsort(names, k, sizeof *names, cmp);
    for (int i = 0; i < k; i++) printf("entry %s\n", names[i]);
    FILE *f = fopen("new.txt", "w");
    fputs("written relative\n", f); fclose(f);
    snprintf(p, sizeof p, "%s/cdir/sub/new2.txt", argv[1]);
    f = fopen(p, "w");
    fputs("written absolute\n", f); fclose(f);
    struct stat st;
    int r = stat("new.txt", &st);
    printf("stat new.txt %d %lld\n", r, (long long)st.st_size);
    snprintf(p, sizeof p, "%s/cdir/sub/b.txt", argv[1]);
    r = stat(p, &st);
    printf("stat b.txt %d %lld\n", r, (long long)st.st_size);
    printf("missing %d\n", access("sub/none.txt", F_OK));
    return 0;
}
