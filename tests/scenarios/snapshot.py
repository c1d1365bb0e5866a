"""Prints one tab-separated line per entry of a tree: path, type, mode, size, content
hash or link target (left out with --no-content: nothing is read, so nothing is fetched),
and (with --mtime) the file's mtime in nanoseconds. Directory mtimes and the
contents of .git/index (a cache of inode numbers and ctimes) are left out: they describe
the machine, not the workspace."""
import hashlib
import os
import sys

top = sys.argv[1]
with_mtime = "--mtime" in sys.argv
with_content = "--no-content" not in sys.argv
out = []
for root, dirs, files in os.walk(top):
    dirs.sort()
    for name in sorted(dirs + files):
        p = os.path.join(root, name)
        rel = os.path.relpath(p, top)
        st = os.lstat(p)
        mode = oct(st.st_mode & 0o7777)
        if os.path.islink(p):
            line = f"{rel}\tlink\t{os.readlink(p)}"
        elif os.path.isdir(p):
            line = f"{rel}\tdir\t{mode}"
        else:
            if rel == ".git/index" or not with_content:
                digest = "-"
            else:
                with open(p, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()[:16]
            line = f"{rel}\tfile\t{mode}\t{st.st_size}\t{digest}"
            if with_mtime:
                line += f"\t{st.st_mtime_ns}"
        out.append(line)
print("\n".join(out))
