"""A write workload: creates, rewrites, appends, truncates, renames files and
directories (with content), deletes; sizes from empty to 256 KiB. Runs until killed,
or for as many operations as the optional fourth argument says.
argv: mount dir, flag file to create once started, random seed[, operations]."""
import os
import random
import shutil
import sys

mount, flag, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
limit = int(sys.argv[4]) if len(sys.argv) > 4 else None
rng = random.Random(seed)
root = os.path.join(mount, "w")
os.makedirs(root, exist_ok=True)
open(flag, "w").close()


def files():
    out = []
    for d, _, fs in os.walk(root):
        out += [os.path.join(d, f) for f in fs]
    return out


def dirs():
    return [d for d, _, _ in os.walk(root) if d != root]


n = 0
while limit is None or n < limit:
    n += 1
    op = rng.random()
    fs = files()
    if op < 0.35 or not fs:
        d = rng.choice(dirs() + [root])
        with open(os.path.join(d, f"f{n}.bin"), "wb") as f:
            f.write(os.urandom(rng.choice([0, 10, 4096, 70000, 262144])))
    elif op < 0.55:
        with open(rng.choice(fs), "r+b") as f:
            f.seek(rng.randrange(0, 8192))
            f.write(os.urandom(rng.randrange(1, 20000)))
    elif op < 0.62:
        with open(rng.choice(fs), "ab") as f:
            f.write(b"appended\n")
    elif op < 0.67:
        os.truncate(rng.choice(fs), rng.randrange(0, 100))
    elif op < 0.77:
        src = rng.choice(fs)
        os.rename(src, os.path.join(os.path.dirname(src), f"r{n}.bin"))
    elif op < 0.84:
        os.makedirs(os.path.join(rng.choice(dirs() + [root]), f"d{n}"), exist_ok=True)
    elif op < 0.89 and dirs():
        d = rng.choice(dirs())
        os.rename(d, os.path.join(root, f"moved{n}"))
    elif op < 0.95:
        os.unlink(rng.choice(fs))
    elif dirs():
        shutil.rmtree(rng.choice(dirs()))
