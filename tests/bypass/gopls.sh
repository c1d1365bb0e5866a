# Debian's gopls (a dynamically linked Go program) answering a definition and a
# references query on files of a cold folder; the paths in its answers are mount paths.
set -euo pipefail
scratch=$(mktemp -d)
trap 'chmod -R u+w "$scratch"; rm -rf "$scratch"' EXIT
export GOCACHE=$scratch/cache GOPATH=$scratch/path GOTOOLCHAIN=local GOFLAGS=-mod=mod GOPROXY=off
cd "$1/gomod"
gopls definition "$1/gomod/main.go:17:43" 2>/dev/null; echo
gopls references "$1/gomod/util.go:6:6" 2>/dev/null
