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
