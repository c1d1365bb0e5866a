/* Fork/thread storm: worker threads stay inside the shim's hooks (stat, opendir/readdir,
   open/read, dirfd-relative stat, getcwd, realpath) on the tree while the main thread
   forks N times; each child makes hooked calls itself (stat, listdir, chdir, open) and
   execs a script in the tree (the exec path rebuilds the environment and follows #!).
   Prints one line per child from the script, then "done <ok>". */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int stop;
static atomic_long calls;

static void *worker(void *arg) {
  long n = (long)arg;
  char p[256], buf[4096];
  for (long i = 0; !atomic_load(&stop); i++) {
    int j = (int)((i + n) % 4);
    snprintf(p, sizeof p, "/workspace/d%d/f%d.txt", j, j + 4 * (int)(i % 5));
    struct stat st;
    stat(p, &st);
    snprintf(p, sizeof p, "/workspace/d%d", j);
    DIR *d = opendir(p);
    if (d) {
      while (readdir(d)) {
      }
      int dfd = dirfd(d);
      fstatat(dfd, "f0.txt", &st, 0);
      closedir(d);
    }
    int fd = open("/workspace/d0/f0.txt", O_RDONLY);
    if (fd >= 0) {
      read(fd, buf, sizeof buf);
      close(fd);
    }
    char *r = realpath("/workspace/d1/../d2", NULL);
    free(r);
    getcwd(buf, sizeof buf);
    atomic_fetch_add(&calls, 1);
  }
  return NULL;
}

int main(int argc, char **argv) {
  int iterations = argc > 1 ? atoi(argv[1]) : 1000;
  pthread_t t[4];
  for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, (void *)i);
  int ok = 0;
  for (int k = 0; k < iterations; k++) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      struct stat st;
      if (stat("/workspace/d2", &st) || chdir("/workspace/d1")) _exit(96);
      DIR *d = opendir("/workspace/d3");
      if (!d) _exit(95);
      closedir(d);
      int fd = open("f1.txt", O_RDONLY);
      if (fd < 0) _exit(94);
      close(fd);
      char *args[] = {"child.sh", NULL};
      execv("/workspace/bin/child.sh", args);
      _exit(97);
    }
    int status;
    if (waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) ok++;
    else fprintf(stderr, "child %d: status %d\n", k, status);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  printf("done %d %d\n", ok, atomic_load(&calls) > 0);
  return 0;
}
