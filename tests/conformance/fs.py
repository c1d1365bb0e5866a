"""python3 file APIs over cold and new content; paths printed relative to the folder."""
import os
import pathlib
import shutil
import sys
import tempfile

w = sys.argv[1]
os.chdir(w)


def rel(p):
    return p.replace(w, "W")


for root, dirs, files in os.walk("seed"):
    dirs.sort()
    print("walk", root, sorted(dirs), sorted(files))
for root, dirs, files in os.walk(os.path.join(w, "seed"), topdown=False):
    print("walk-up", rel(root), len(dirs), len(files))
with os.scandir("seed") as it:
    for e in sorted(it, key=lambda e: e.name):
        print("scandir", e.name, e.is_dir(), e.is_file(), e.is_symlink(), rel(e.path),
              e.stat(follow_symlinks=False).st_size if not e.is_dir() else "-")
shutil.copytree("seed", "pycopy", symlinks=True)
for p in sorted(pathlib.Path("pycopy").rglob("*")):
    st = p.lstat()
    print("copy", p, oct(st.st_mode), st.st_size if not p.is_dir() else "-")
print("same", pathlib.Path("pycopy/data.bin").read_bytes() == pathlib.Path("seed/data.bin").read_bytes())
shutil.copy2("seed/readme.txt", "copied2.txt")
print("copy2 mtime", int(os.stat("copied2.txt").st_mtime), int(os.stat("seed/readme.txt").st_mtime))
shutil.rmtree("pycopy")
print("rmtree", os.path.exists("pycopy"))
with tempfile.TemporaryDirectory(dir=w) as td:
    print("tempdir", rel(os.path.dirname(td)), os.path.isdir(td))
    with tempfile.NamedTemporaryFile(dir=td, delete=False) as f:
        f.write(b"temp")
    print("namedtemp", os.path.dirname(f.name) == td, open(f.name, "rb").read())
    fd, name = tempfile.mkstemp(dir=td, suffix=".x")
    os.write(fd, b"mk")
    os.close(fd)
    print("mkstemp", os.path.dirname(name) == td, name.endswith(".x"), os.path.getsize(name))
print("tempdir gone", sorted(os.listdir(w)))
p = pathlib.Path(w) / "pl"
p.mkdir()
(p / "a.txt").write_text("alpha\n")
(p / "sub" / "deeper").mkdir(parents=True)
(p / "a.txt").rename(p / "sub" / "b.txt")
(p / "link").symlink_to("sub/b.txt")
print("pathlib", sorted(str(x.relative_to(w)) for x in p.rglob("*")))
print("resolve", rel(str((p / "link").resolve())), rel(str(pathlib.Path("pl/sub/../sub").resolve())))
print("read", (p / "link").read_text(), end="")
print("glob", sorted(str(x) for x in pathlib.Path("seed").glob("**/*.txt")))
print("cwd", rel(os.getcwd()), rel(str(pathlib.Path.cwd())), rel(os.path.abspath("x/../y")))
os.replace("pl/sub/b.txt", "pl/c.txt")
print("stat", oct(os.stat("pl/c.txt").st_mode), os.stat("seed/link", follow_symlinks=False).st_size)
print("access", os.access("seed/bin/tool.sh", os.X_OK), os.access("seed/readme.txt", os.X_OK))
print("listdir", sorted(os.listdir("seed/deep/a/b/c")))
