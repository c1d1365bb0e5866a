# Every path the system hands back names the mount path, never the cache.
set -euo pipefail
cd "$1/seed/deep"
pwd; pwd -P; /bin/pwd
readlink /proc/self/cwd
realpath a/b/../b/c/leaf.txt
python3 -c 'import os; print(os.getcwd()); print(os.path.realpath("a"))'
python3 -c 'import os; fd=os.open("a/b/c/leaf.txt", os.O_RDONLY); print(os.readlink(f"/proc/self/fd/{fd}"))'
cd "$1"
# Walk order is directory order: sorted, with the folder's path made the same first.
"$HELPERS/paths" seed | sed "s|$1|@W@|g" | LC_ALL=C sort
