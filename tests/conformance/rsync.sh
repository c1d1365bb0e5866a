# rsync -a from cold content, then an incremental run and --delete.
set -euo pipefail
cd "$1"
rsync -a seed/ r1/
find r1 -printf '%P %y %m %s %l\n' | sort
find r1 -type f -printf '%P %T@\n' | sort
diff -r seed r1 && echo identical
echo changed > seed/readme.txt
touch -d '2022-02-02' seed/readme.txt
rm seed/notes\ with\ space.txt
# (directory times are left out: this rsync does not keep them, so they show timing)
rsync -ai --delete --omit-dir-times seed/ r1/ | sort
rsync -ai --delete --omit-dir-times seed/ r1/ | wc -l
cat r1/readme.txt
