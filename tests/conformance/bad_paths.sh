# NULL and unmapped path arguments: the same errno (or the same crash) as natively.
set -euo pipefail
mkdir -p "$1/bad-paths"
cd "$1/bad-paths"
"$HELPERS/bad_paths"
