# Debian's Go toolchain (its own system calls, no libc hooks) on a cold folder: vet with
# absolute mount paths (from outside the folder too), gofmt -l/-w, go test, go build and
# run a program that reads a data file, and a program that rewrites a file it read.
set -euo pipefail
scratch=$(mktemp -d)
trap 'chmod -R u+w "$scratch"; rm -rf "$scratch"' EXIT
export GOCACHE=$scratch/cache GOPATH=$scratch/path GOTOOLCHAIN=local GOFLAGS=-mod=mod GOPROXY=off
cd /
go vet "$1/gomod/main.go" "$1/gomod/util.go" && echo "vet from outside: ok"
cd "$1/gomod"
go vet "$1/gomod/..." && echo "vet absolute: ok"
echo "gofmt -l:"; gofmt -l "$1/gomod" | sed "s|$1|@W@|"
gofmt -w ugly.go && cat ugly.go
go test ./... | sed -E 's/[[:space:]]+[0-9.]+s$//'
go build -o hello . && ./hello "$1/gomod/data/input.txt" data/input.txt && rm hello
go run ./cmd/upper "$1/gomod/data/rewrite.txt" && cat data/rewrite.txt
ls
