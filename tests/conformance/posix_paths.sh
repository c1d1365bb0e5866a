# `..` and symlinks with POSIX meaning.
set -euo pipefail
cd "$1"
mkdir a b
echo in-b > b/f
cat a/../b/f "$1/a/../b/f" "$1/seed/../b/f"
ls "$1/seed/deep/../deep"
ln -s seed/deep d
cat d/a/b/c/leaf.txt
ls d/../
cat d/../readme.txt
cat d/../seed/readme.txt 2>/dev/null || echo "d/../seed/readme.txt: absent (physical ..)"
ln -s ../seed/readme.txt b/rel
cat b/rel
ln -s "$1/seed" abs
cat abs/readme.txt
ls abs/deep
cat abs/../seed/readme.txt 2>/dev/null || echo "abs/../seed: absent"
ln -s "$1" self
ls self/seed/deep
cd seed
cd ..
cd ..
pwd
[ -d "$(basename "$1")" ] && echo "parent holds the folder" || echo "parent does not list the folder"
cd "$1/d"
pwd; pwd -P
cd ..
pwd; pwd -P
cd -P "$1/d/.."
pwd
cd "$1"
# A last `.` or `..` keeps its meaning (rename of it fails), and calls that do not follow
# a last symlink do not follow it (rmdir of a dangling one is ENOTDIR, not ENOENT).
mkdir -p r0/r1
python3 -c '
import os
for src in ("r0/r1/.", "r0/r1/.."):
    try:
        os.rename(src, "r2")
        print("renamed", src)
    except OSError as e:
        print("rename", src, e.strerror)
'
ln -s nowhere dangling
rmdir dangling 2>&1 || true
ln -s "$1/r0" abs-r0
rmdir abs-r0 2>&1 || true
ls -d r0/r1 abs-r0/r1
# The folder named without `..` but not in normal form (`//`, `/./`, `./`): the same
# files, from outside it and from its parent, by path and relative to a directory fd.
parent=$(dirname "$1"); base=$(basename "$1")
cat "/$1/seed/readme.txt" "$parent/./$base/seed/readme.txt" "$parent//$base/seed/./readme.txt"
(cd "$parent" && cat "./$base/seed/readme.txt" "$base//seed/readme.txt")
python3 -c '
import os, sys
parent, base = os.path.split(sys.argv[1])
d = os.open(parent, os.O_RDONLY)
for rel in ("./" + base + "/seed/readme.txt", base + "//seed/./readme.txt"):
    f = os.open(rel, os.O_RDONLY, dir_fd=d)
    print(rel.replace(base, "@B@"), os.read(f, 100).decode().strip())
    os.close(f)
' "$1"
