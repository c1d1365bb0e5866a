# esbuild's node API from a node process whose cwd is outside the folder (see
# esbuild_api.js); $HELPERS holds `node` and `esbuild` (the npm package's directory).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd /
"$HELPERS/node" "$here/esbuild_api.js" "$1" "$HELPERS/esbuild"
