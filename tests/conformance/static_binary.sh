# A static binary (no LD_PRELOAD possible) searching a cold tree from its cwd, like VS
# Code's ripgrep: the shim must make the tree local before exec.
set -euo pipefail
cd "$1/seed"
"$HELPERS/static-grep" needle
cd "$1"
"$HELPERS/static-grep" needle seed/deep
