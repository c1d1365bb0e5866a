#!/usr/bin/env bash
# Builds and edits a workspace with real programs. Run once natively and once under
# `s3shim run` with W as the workspace path; the outputs and resulting trees must match.
# Usage: build_tree.sh W NODE
set -euo pipefail
W=$1
NODE=${2:-node}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$W"
echo "pwd: $(pwd | sed "s|^$W|W|")"

# bash + coreutils: nested dirs, an empty dir, a big file, a script, odd names.
mkdir -p src/lib/deep docs empty
echo 'fn main() {}' > src/main.rs
printf 'line %s\n' $(seq 1 200) > src/lib/deep/lines.txt
head -c 20971520 < <(seq 1 3000000) > big.bin
printf '#!/bin/sh\necho "script ran with $1"\n' > run.sh
chmod +x run.sh
./run.sh arg1
echo "spaces and unicode" > "docs/notes with spaces ünïcödé.md"
ln -s src/main.rs link-to-main
touch -d '2025-05-06 07:08:09.123456789' docs/dated.txt
echo "stat: $(stat -c '%s %a %F' big.bin run.sh empty "docs/notes with spaces ünïcödé.md" | tr '\n' ' ')"
echo "readlink: $(readlink link-to-main)"

# Edit in place, append, sed -i (temp file + rename), truncate.
echo "appended" >> src/lib/deep/lines.txt
sed -i 's/line 7$/line seven/' src/lib/deep/lines.txt
printf 'short' > docs/trunc.txt
truncate -s 3 docs/trunc.txt
: > docs/emptied.txt

# Rename a file and a directory, delete a file and a tree.
mv src/main.rs src/app.rs
mv docs documentation
mkdir -p junk/a/b && echo x > junk/a/b/x && echo y > junk/y
rm junk/y
rm -r junk
echo "after rm: $(ls -1 | tr '\n' ' ')"
echo "wc: $(wc -l < src/lib/deep/lines.txt) $(head -c 20 big.bin | od -An -c | tr -s ' ')"

# python3 and node read and write here.
python3 "$here/work.py" "$W"
"$NODE" "$here/work.js" "$W"

# git: init, commit, status, log.
git init -q -b main
git add -A
git commit -q -m "first commit"
echo "change" >> README.md
git add README.md && git commit -q -m "second"
echo "git status: [$(git status --porcelain)]"
git log --format='%H %s'
git ls-files | head -20
