/* Result paths from libc calls a shell cannot make directly: getcwd family, realpath,
   canonicalize_file_name, glob, nftw, ftw, fts (fts_children too), readlink of /proc/self,
   AF_UNIX names, dladdr, tempnam. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <fts.h>
#include <ftw.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <errno.h>
#include <unistd.h>

static int on_nftw(const char *p, const struct stat *st, int type, struct FTW *f) {
  (void)st;
  printf("nftw %s %d %d %s\n", p, type, f->level, p + f->base);
  return 0;
}

static int on_ftw(const char *p, const struct stat *st, int type) {
  printf("ftw %s %d %ld\n", p, type, S_ISDIR(st->st_mode) ? 0L : (long)st->st_size);
  return 0;
}

static int by_name(const FTSENT **a, const FTSENT **b) { return strcmp((*a)->fts_name, (*b)->fts_name); }

int main(int argc, char **argv) {
  const char *dir = argv[1];
  char buf[4096], abs[4096];
  printf("getcwd %s\n", getcwd(buf, sizeof buf));
  char *g = get_current_dir_name();
  printf("get_current_dir_name %s\n", g);
  free(g);
  snprintf(abs, sizeof abs, "%s/%s", buf, dir);
  char *r = realpath(dir, NULL);
  printf("realpath %s\n", r);
  free(r);
  r = canonicalize_file_name("seed/deep/../link");
  printf("canonicalize %s\n", r);
  free(r);
  ssize_t n = readlink("/proc/self/cwd", buf, sizeof buf - 1);
  buf[n > 0 ? n : 0] = 0;
  printf("proc-cwd %s\n", buf);
  int fd = open("seed/readme.txt", O_RDONLY);
  char link[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  n = readlink(link, buf, sizeof buf - 1);
  buf[n > 0 ? n : 0] = 0;
  printf("proc-fd %s\n", buf);
  close(fd);

  glob_t gl;
  char pat[4200];
  snprintf(pat, sizeof pat, "%s/*/*", abs);
  printf("glob-abs %d\n", glob(pat, 0, NULL, &gl));
  for (size_t i = 0; i < gl.gl_pathc; i++) printf("  %s\n", gl.gl_pathv[i]);
  globfree(&gl);
  printf("glob-rel %d\n", glob("seed/*.txt", GLOB_MARK, NULL, &gl));
  for (size_t i = 0; i < gl.gl_pathc; i++) printf("  %s\n", gl.gl_pathv[i]);
  globfree(&gl);
  printf("glob-none %d\n", glob("seed/*.nothing", 0, NULL, &gl));

  /* Walkers visit in directory order (the script sorts the output); run in a child. */
  fflush(stdout);
  int p[2];
  if (pipe(p)) return 1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    close(p[0]);
    nftw(abs, on_nftw, 8, FTW_PHYS);
    nftw("seed/deep", on_nftw, 8, FTW_PHYS | FTW_DEPTH);
    nftw("seed/../seed/src", on_nftw, 8, FTW_PHYS);
    ftw(abs, on_ftw, 8);
    FTS *fts = fts_open((char *[]){(char *)abs, "seed/src", NULL}, FTS_PHYSICAL, by_name);
    for (FTSENT *e; (e = fts_read(fts));)
      printf("fts %s %s %d %s\n", e->fts_path, e->fts_accpath, e->fts_info, e->fts_name);
    fts_close(fts);
    /* fts_children lists share fts's path buffer; the walk goes on after them. */
    for (int nochdir = 0; nochdir < 2; nochdir++) {
      fts = fts_open((char *[]){(char *)abs, NULL}, FTS_PHYSICAL | (nochdir ? FTS_NOCHDIR : 0), by_name);
      FTSENT *top = fts_read(fts);
      for (FTSENT *c = fts_children(fts, 0); c; c = c->fts_link)
        printf("fts_children%d %s %.*s %s %s\n", nochdir, top->fts_path, (int)c->fts_pathlen,
               c->fts_path, c->fts_accpath == c->fts_path ? "=" : c->fts_accpath, c->fts_name);
      for (FTSENT *e; (e = fts_read(fts));)
        if (e->fts_level == 1) printf("fts_after%d %s %d\n", nochdir, e->fts_path, e->fts_info);
      fts_close(fts);
    }
    fflush(stdout);
    _exit(0);
  }
  close(p[1]);
  FILE *in = fdopen(p[0], "r");
  while (fgets(buf, sizeof buf, in)) fputs(buf, stdout);

  /* Raw syscalls, as libuv and static-minded code issue them. */
  char raw[4096];
  long rn = syscall(SYS_getcwd, raw, sizeof raw);
  printf("raw-getcwd %d %s\n", rn == (long)strlen(raw) + 1, raw);
  struct stat st;
#ifdef SYS_stat
  rn = syscall(SYS_stat, "seed/deep/a/other.txt", &st);
#else /* aarch64 has only the *at calls */
  rn = syscall(SYS_newfstatat, AT_FDCWD, "seed/deep/a/other.txt", &st, 0);
#endif
  printf("raw-stat %ld %ld\n", rn, (long)st.st_size);
  char target[4200];
  snprintf(target, sizeof target, "%s/src/main.c", abs);
#ifdef SYS_open
  int rfd = syscall(SYS_open, target, O_RDONLY);
#else
  int rfd = syscall(SYS_openat, AT_FDCWD, target, O_RDONLY);
#endif
  n = read(rfd, raw, 10);
  printf("raw-open %.*s\n", (int)(n > 0 ? n : 0), raw);
  close(rfd);
  rn = syscall(SYS_readlinkat, AT_FDCWD, "/proc/self/cwd", raw, sizeof raw - 1);
  raw[rn > 0 ? rn : 0] = 0;
  printf("raw-readlinkat %s\n", raw);
  struct open_how how = {.flags = O_RDONLY};
  snprintf(target, sizeof target, "%s/deep/a/b/c/leaf.txt", abs);
  rfd = syscall(SYS_openat2, AT_FDCWD, target, &how, sizeof how);
  n = read(rfd, raw, 9);
  printf("raw-openat2 %.*s\n", (int)(n > 0 ? n : 0), raw);
  close(rfd);
  printf("raw-faccessat2 %ld %ld\n", syscall(SYS_faccessat2, AT_FDCWD, target, R_OK, 0),
         syscall(SYS_faccessat2, AT_FDCWD, "seed/nothing", F_OK, 0));
  snprintf(target, sizeof target, "%s/../renamed.txt", abs);
  close(open("to-rename.txt", O_CREAT | O_WRONLY, 0644));
  printf("raw-renameat2 %ld %d\n", syscall(SYS_renameat2, AT_FDCWD, "to-rename.txt", AT_FDCWD, target, 1 /* NOREPLACE */),
         access("renamed.txt", F_OK));
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    char *args[] = {"sh", "-c", "echo execveat $(pwd) $(head -c 5 seed/readme.txt)", NULL};
    char *env[] = {"PATH=/usr/bin:/bin", NULL};
    syscall(SYS_execveat, AT_FDCWD, "/bin/sh", args, env, 0);
    /* Only where the kernel lacks execveat (qemu-user emulating aarch64 on x86_64). */
    if (errno == ENOSYS) execve("/bin/sh", args, env);
    _exit(127);
  }
  int status;
  waitpid(child, &status, 0);
  struct file_handle *fh = malloc(sizeof *fh + MAX_HANDLE_SZ);
  fh->handle_bytes = MAX_HANDLE_SZ;
  int mount_id;
  snprintf(target, sizeof target, "%s/deep/a/other.txt", abs);
  printf("name_to_handle_at %d\n", name_to_handle_at(AT_FDCWD, target, fh, &mount_id, 0));
  free(fh);
  /* dlopen by path in the folder. */
#ifdef __aarch64__
  system("cp /lib/aarch64-linux-gnu/libm.so.6 seed-libm.so");
#else
  system("cp /lib/x86_64-linux-gnu/libm.so.6 seed-libm.so");
#endif
  snprintf(target, sizeof target, "%s/../seed-libm.so", abs);
  void *h = dlopen(target, RTLD_NOW);
  printf("dlopen %d %d\n", h != NULL, h && dlsym(h, "cos") != NULL);
  Dl_info di;
  void *extra;
  if (h && dladdr(dlsym(h, "cos"), &di)) printf("dladdr %s\n", di.dli_fname);
  if (h && dladdr1(dlsym(h, "sin"), &di, &extra, RTLD_DL_LINKMAP)) printf("dladdr1 %s\n", di.dli_fname);

  /* tempnam: $TMPDIR, else the directory given, when it is one; else P_tmpdir. */
  char here[4096];
  getcwd(here, sizeof here);
  mkdir("tmpd", 0755);
  mkdir("tmpd2", 0755);
  unsetenv("TMPDIR");
  const char *dirs[] = {"seed/../tmpd/", "tmpd2", "nothing-here"};
  for (int i = 0; i < 3; i++) {
    snprintf(target, sizeof target, "%s/%s", here, dirs[i]);
    if (i == 1) setenv("TMPDIR", target, 1);
    else unsetenv("TMPDIR");
    char *t = tempnam(i == 1 ? NULL : target, "pf");
    char *slash = t ? strrchr(t, '/') : NULL;
    printf("tempnam %.*s %.2s %zu\n", slash ? (int)(slash - t) : 0, t, slash ? slash + 1 : "", slash ? strlen(slash + 1) : 0);
    free(t);
  }
  char *tn = tmpnam(NULL);
  printf("tmpnam %.*s\n", (int)(strrchr(tn, '/') - tn), tn);

  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s/sock", buf[0] ? getcwd(buf, sizeof buf) : ".");
  printf("bind %d\n", bind(s, (struct sockaddr *)&a, sizeof a));
  listen(s, 1);
  struct sockaddr_un got;
  socklen_t len = sizeof got;
  getsockname(s, (struct sockaddr *)&got, &len);
  printf("getsockname %s\n", got.sun_path);
  int c = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un rel = {.sun_family = AF_UNIX};
  strcpy(rel.sun_path, "sock");
  printf("connect-rel %d\n", connect(c, (struct sockaddr *)&rel, sizeof rel));
  int c2 = socket(AF_UNIX, SOCK_STREAM, 0);
  printf("connect-abs %d\n", connect(c2, (struct sockaddr *)&a, sizeof a));
  int acc = accept(s, NULL, NULL);
  len = sizeof got;
  getpeername(c2, (struct sockaddr *)&got, &len);
  printf("getpeername %s\n", got.sun_path);
  close(acc);
  unlink("sock");
  printf("sock gone %d\n", access("sock", F_OK));
  return 0;
}
