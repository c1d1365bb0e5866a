#!/usr/bin/env bash
# Installs s3shim, libs3shim.so and the code-server-s3 wrapper under a prefix:
#
#   scripts/install-image.sh --from DIR --prefix PREFIX
#
#   DIR/s3shim, DIR/libs3shim.so  ->  PREFIX/bin/s3shim, PREFIX/lib/s3shim/libs3shim.so
#   code-server-s3 (beside this script)  ->  PREFIX/bin/code-server-s3
#   the sync extension, DIR/s3shim-sync-*.vsix or else built from ../extension
#                                        ->  PREFIX/share/s3shim/s3shim-sync-<version>.vsix
#                                            (the wrapper installs it into code-server)
#
# The Dockerfile runs exactly this (into /usr/local), and the browser test
# (scripts/e2e/s3shim-e2e.sh) runs it into a temporary prefix and starts code-server
# through the installed wrapper, so the image's layout is the tested one.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
from='' prefix=''
while (($#)); do
	case $1 in
		--from) from=$2; shift 2 ;;
		--prefix) prefix=$2; shift 2 ;;
		*) echo "usage: install-image.sh --from DIR --prefix PREFIX" >&2; exit 2 ;;
	esac
done
[[ -n $from && -n $prefix ]] || { echo "usage: install-image.sh --from DIR --prefix PREFIX" >&2; exit 2; }
for f in "$from/s3shim" "$from/libs3shim.so" "$here/code-server-s3"; do
	[[ -f $f ]] || { echo "install-image.sh: $f missing (cargo build --release --workspace)" >&2; exit 2; }
done
install -D -m 0755 "$from/s3shim" "$prefix/bin/s3shim"
install -D -m 0644 "$from/libs3shim.so" "$prefix/lib/s3shim/libs3shim.so"
install -D -m 0755 "$here/code-server-s3" "$prefix/bin/code-server-s3"
vsix=
for cand in "$from"/s3shim-sync-*.vsix; do [[ -f $cand ]] && vsix=$cand; done
built=
if [[ -z $vsix && -x $here/../extension/build-vsix ]]; then
	built=$(mktemp -d)
	vsix=$("$here/../extension/build-vsix" "$built")
fi
if [[ -n $vsix ]]; then
	rm -f "$prefix"/share/s3shim/s3shim-sync-*.vsix
	install -D -m 0644 "$vsix" "$prefix/share/s3shim/$(basename "$vsix")"
	[[ -n $built ]] && rm -rf "$built"
else
	echo "install-image.sh: no s3shim-sync-*.vsix in $from and no extension/ to build it from: the wrapper runs code-server without the sync extension" >&2
fi
# The installed binary must find the installed library by itself (../lib/s3shim).
"$prefix/bin/s3shim" --version >/dev/null
echo "install-image.sh: installed into $prefix"
