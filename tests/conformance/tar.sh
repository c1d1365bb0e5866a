# tar create (from cold content) and extract, with reproducible headers.
set -euo pipefail
cd "$1"
t=(--sort=name --mtime=2021-01-01 --owner=0 --group=0 --numeric-owner)
tar -cf seed.tar "${t[@]}" seed
sha256sum seed.tar | cut -c1-64
tar -tvf seed.tar | awk '{print $1, $2, $3, $6, $7, $8}'
mkdir out
tar -xf seed.tar -C out
find out -printf '%P %y %m %s %l\n' | sort
diff -r seed out/seed && echo identical
tar -czf out.tgz "${t[@]}" -C out seed
mkdir again && tar -xzf out.tgz -C again && diff -r out again && echo round-trip
