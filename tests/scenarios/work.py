"""Reads and writes in the workspace with the calls Python programs make."""
import json
import os
import pathlib
import shutil
import sys

w = sys.argv[1]
os.chdir(w)
print("py cwd:", os.getcwd().replace(w, "W", 1))
seen = []
for root, dirs, files in os.walk("."):
    dirs.sort()
    for f in sorted(files):
        seen.append(os.path.join(root, f))
print("py walk:", len(seen), "files")
with open("src/lib/deep/lines.txt") as f:
    lines = f.read().splitlines()
p = pathlib.Path("py-out")
p.mkdir()
(p / "summary.json").write_text(json.dumps({"lines": len(lines), "first": lines[0]}))
shutil.copytree("src", "py-out/src-copy")
os.rename("py-out/summary.json", "py-out/summary-renamed.json")
entries = sorted(e.name for e in os.scandir("py-out"))
print("py scandir:", entries)
print("py realpath:", os.path.realpath("py-out/../src").replace(w, "W", 1))
print("py exists:", os.path.exists("py-out/summary.json"), os.path.isfile("py-out/summary-renamed.json"))
