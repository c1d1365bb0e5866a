# node 24: fs sync/async/promises, fs.cp, fs.rm recursive, fs.watch, fs.realpath.
set -euo pipefail
"$NODE" "$2/fs.js" "$1"
