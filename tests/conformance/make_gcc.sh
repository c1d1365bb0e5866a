# make + gcc building a small C project (sources partly cold in the bucket).
set -euo pipefail
cd "$1"
cp -r "$2/cproj" proj
cp seed/src/util.h proj/
cd proj
make -s
./app seed-data ../seed/readme.txt
make
sleep 1.1
touch lib.c
make
make -n
make clean >/dev/null
ls
