# git over cold content: init, add, commit, branch, checkout, stash, merge, gc, status.
set -euo pipefail
cd "$1"
g() { git -c init.defaultBranch=main -c gc.auto=0 "$@"; }
cd seed
g init -q
g init
g add -A
g commit -q -m base
g status --porcelain
g branch feature
g checkout -q feature
echo "feature line" >> readme.txt
mkdir -p newdir && echo new > newdir/file.txt
g add -A && g commit -q -m feature
g checkout -q main
echo "main change" > src/util.h
g status --porcelain
g stash -q
g status --porcelain
g stash list
g stash pop -q
g status --porcelain
g commit -q -am main-change
g merge -q --no-edit feature
g log --format='%H %s' --graph
g gc -q
g count-objects -v | grep -E '^(count|in-pack|packs)'
g fsck --no-progress --full && echo fsck-ok
g status --porcelain --ignored
g ls-files -s | sort
g checkout -q HEAD~1 2>/dev/null; g rev-parse --abbrev-ref HEAD; g checkout -q main
cat readme.txt newdir/file.txt
g rev-parse --show-toplevel --git-dir --absolute-git-dir
