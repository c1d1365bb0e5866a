#include <stdio.h>
#include "lib.h"

long count_bytes(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  long n = 0;
  while (fgetc(f) != EOF) n++;
  fclose(f);
  return n;
}
