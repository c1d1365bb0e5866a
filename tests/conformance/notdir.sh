# `..`, `.` and a trailing `/` after a file name: ENOTDIR, as on a local disk (issue 15),
# on a cold tree, by absolute and by relative paths.
set -euo pipefail
try() { if out=$("$@" 2>&1); then echo "ok: $out"; else echo "failed: $out" | sed "s|$W|@W@|g"; fi; }
W=$1
try cat "$1/seed/readme.txt/../readme.txt"
try cat "$1/seed/readme.txt/."
try cat "$1/seed/readme.txt/"
try stat -c %n "$1/seed/src/main.c/.."
try ls "$1/seed/deep/a/other.txt/../b"
cd "$1/seed"
try cat readme.txt/../readme.txt
try cat src/util.h/../util.h
try cat src/util.h/
cd "$1"
try cat seed/readme.txt
