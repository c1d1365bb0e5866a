# esbuild (a Go binary, from npm) bundling by absolute mount paths, cwd outside the folder.
set -euo pipefail
cd /
esbuild "$1/web/src/main.js" --bundle --format=esm --log-level=warning --outfile="$1/web/out.js"
sed "s|$1|@W@|g" "$1/web/out.js"
