/* Path arguments (and AF_UNIX addresses) that are NULL or point to unmapped memory: each call runs in a child
   and prints what it returned and errno, or the signal that ended it. Run with the cwd in
   the folder, so the valid argument of two-path calls names an entry in the tree. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *bad;

/* A call returning int: -1 and errno on failure. */
#define INT_CALL(expr) do { errno = 0; long r = (long)(expr); \
    printf("%ld %s\n", r, r < 0 ? strerrorname_np(errno) : "-"); } while (0)
/* A call returning a pointer: NULL and errno on failure. */
#define PTR_CALL(expr) do { errno = 0; void *r = (void *)(expr); \
    printf("%s %s\n", r ? "ptr" : "NULL", r ? "-" : strerrorname_np(errno)); } while (0)

static void call(const char *name, const char *p) {
  char buf[4096];
  struct stat st;
  char *const argv[] = {"x", NULL};
  char *const envp[] = {NULL};
  if (!strcmp(name, "open")) INT_CALL(open(p, O_RDONLY));
  else if (!strcmp(name, "openat")) INT_CALL(openat(AT_FDCWD, p, O_RDONLY));
  else if (!strcmp(name, "creat")) INT_CALL(creat(p, 0644));
  else if (!strcmp(name, "stat")) INT_CALL(stat(p, &st));
  else if (!strcmp(name, "lstat")) INT_CALL(lstat(p, &st));
  else if (!strcmp(name, "fstatat")) INT_CALL(fstatat(AT_FDCWD, p, &st, 0));
  else if (!strcmp(name, "access")) INT_CALL(access(p, F_OK));
  else if (!strcmp(name, "readlink")) INT_CALL(readlink(p, buf, sizeof buf));
  else if (!strcmp(name, "rename-from")) INT_CALL(rename(p, "f"));
  else if (!strcmp(name, "rename-to")) INT_CALL(rename("f", p));
  else if (!strcmp(name, "link-from")) INT_CALL(link(p, "f2"));
  else if (!strcmp(name, "link-to")) INT_CALL(link("f", p));
  else if (!strcmp(name, "symlink-target")) INT_CALL(symlink(p, "s"));
  else if (!strcmp(name, "symlink-name")) INT_CALL(symlink("f", p));
  else if (!strcmp(name, "unlink")) INT_CALL(unlink(p));
  else if (!strcmp(name, "mkdir")) INT_CALL(mkdir(p, 0755));
  else if (!strcmp(name, "rmdir")) INT_CALL(rmdir(p));
  else if (!strcmp(name, "truncate")) INT_CALL(truncate(p, 1));
  else if (!strcmp(name, "chmod")) INT_CALL(chmod(p, 0644));
  else if (!strcmp(name, "chown")) INT_CALL(chown(p, -1, -1));
  else if (!strcmp(name, "lchown")) INT_CALL(lchown(p, -1, -1));
  else if (!strcmp(name, "utimensat")) INT_CALL(utimensat(AT_FDCWD, p, NULL, 0));
  else if (!strcmp(name, "mkfifo")) INT_CALL(mkfifo(p, 0644));
  else if (!strcmp(name, "mknod")) INT_CALL(mknod(p, S_IFIFO | 0644, 0));
  else if (!strcmp(name, "chdir")) INT_CALL(chdir(p));
  else if (!strcmp(name, "bind")) INT_CALL(bind(socket(AF_UNIX, SOCK_STREAM, 0), (const void *)p, sizeof(struct sockaddr_un)));
  else if (!strcmp(name, "connect")) INT_CALL(connect(socket(AF_UNIX, SOCK_STREAM, 0), (const void *)p, sizeof(struct sockaddr_un)));
  else if (!strcmp(name, "execve")) INT_CALL(execve(p, argv, envp));
  else if (!strcmp(name, "execv")) INT_CALL(execv(p, argv));
  else if (!strcmp(name, "execvp")) INT_CALL(execvp(p, argv));
  else if (!strcmp(name, "opendir")) PTR_CALL(opendir(p));
  else if (!strcmp(name, "fopen")) PTR_CALL(fopen(p, "r"));
  else if (!strcmp(name, "realpath")) PTR_CALL(realpath(p, buf));
  else { printf("unknown\n"); }
  fflush(stdout);
}

int main(void) {
  /* An address that is certainly unmapped: a page mapped and given back. */
  char *page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED || munmap(page, 4096) != 0) return 2;
  bad = page;
  int fd = open("f", O_CREAT | O_WRONLY, 0644);
  if (fd < 0) return 3;
  close(fd);
  const char *names[] = {"open", "openat", "creat", "stat", "lstat", "fstatat", "access",
                         "readlink", "rename-from", "rename-to", "link-from", "link-to",
                         "symlink-target", "symlink-name", "unlink", "mkdir", "rmdir",
                         "truncate", "chmod", "chown", "lchown", "utimensat", "mkfifo",
                         "mknod", "chdir", "bind", "connect", "execve", "execv", "execvp", "opendir", "fopen",
                         "realpath"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    for (int which = 0; which < 2; which++) {
      printf("%s %s ", names[i], which ? "unmapped" : "NULL");
      fflush(stdout);
      pid_t pid = fork();
      if (pid == 0) {
        call(names[i], which ? bad : NULL);
        _exit(0);
      }
      int status;
      if (waitpid(pid, &status, 0) != pid) return 4;
      if (WIFSIGNALED(status)) printf("signal %s\n", sigabbrev_np(WTERMSIG(status)));
    }
  }
  unlink("f");
  return 0;
}
