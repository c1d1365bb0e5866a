#include <stdio.h>
#include "lib.h"
#include "util.h"

int main(int argc, char **argv) {
  printf("%s %s %ld\n", UTIL_NAME, argv[1], count_bytes(argv[2]));
  return argc == 3 ? 0 : 1;
}
