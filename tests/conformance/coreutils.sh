# coreutils on pre-existing (cold) and new content: cp -a, mv, ln -s, chmod, touch -d,
# find -printf, du, stat.
set -euo pipefail
cd "$1"
# (no `total`: a never-read file occupies no blocks yet)
ls -la --time-style=+ seed | awk 'NR > 1 {print $1, $5, $NF}'
cat seed/readme.txt seed/link
cp -a seed copy
find copy -printf '%P %y %m %s %l\n' | sort
find copy -type f -printf '%P %TY-%Tm-%Td %TH:%TM:%TS\n' | sort
mv copy/readme.txt copy/moved.txt
mv copy/deep copy/deeper
ln -s ../seed/readme.txt copy/rel-link
ln -s "$1/seed/readme.txt" copy/abs-link
cat copy/rel-link copy/abs-link
readlink copy/abs-link copy/rel-link
chmod 600 copy/moved.txt
chmod -R g+w copy/deeper
chmod u-x copy/bin/tool.sh
touch -d '2020-01-02 03:04:05.5' copy/moved.txt
touch -h -d '2019-05-06 07:08:09' copy/rel-link
stat -c '%n %F %a %s %Y %X' copy/moved.txt
stat -c '%n %F %a %s' copy/deeper
stat -c '%n %F %a %s %Y' copy/rel-link copy/deeper/a/b/c/leaf.txt copy/data.bin copy/bin/tool.sh
stat -L -c '%n %F %s' copy/abs-link
du -ab copy | sort -k2
du -sk copy/data.bin
du -s --apparent-size --block-size=1 seed
cmp seed/data.bin copy/data.bin && echo same-bytes
find . -name '*.txt' -newer copy/moved.txt | sort
find copy -maxdepth 1 -type l -printf '%p -> %l\n' | sort
rm -r copy/deeper
ls copy
