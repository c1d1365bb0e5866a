# A `gcc -static` program (no LD_PRELOAD possible) reading, writing and listing by
# absolute and relative paths, started with its cwd outside the folder.
set -euo pipefail
cd /
"$HELPERS/bypass-io" "$1"
cat "$1/cdir/new.txt" "$1/cdir/sub/new2.txt"
ls "$1/cdir" "$1/cdir/sub"
