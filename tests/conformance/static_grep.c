/* A stand-in for VS Code's static ripgrep: walks a directory (default ".") with
   opendir/readdir and prints each regular file holding the needle, with its size. Built
   with -static, so LD_PRELOAD never enters it. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int hits;

static void walk(const char *dir, const char *needle) {
  DIR *d = opendir(dir);
  if (!d) { printf("cannot open %s\n", dir); return; }
  struct dirent *e;
  char names[256][256];
  int n = 0;
  while ((e = readdir(d)) && n < 256)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
      snprintf(names[n++], 256, "%s", e->d_name);
  closedir(d);
  qsort(names, n, 256, (int (*)(const void *, const void *))strcmp);
  for (int i = 0; i < n; i++) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, names[i]);
    struct stat st;
    if (lstat(p, &st)) continue;
    if (S_ISDIR(st.st_mode)) { walk(p, needle); continue; }
    if (!S_ISREG(st.st_mode)) continue;
    FILE *f = fopen(p, "rb");
    if (!f) { printf("cannot read %s\n", p); continue; }
    static char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    if (memmem(buf, len, needle, strlen(needle))) { printf("%s:%ld\n", p, (long)st.st_size); hits++; }
  }
}

int main(int argc, char **argv) {
  walk(argc > 2 ? argv[2] : ".", argv[1]);
  printf("%d files match\n", hits);
  return 0;
}
