"""A mixed workload for the supervision test: each round lists a directory never listed
before and checks every byte of its files, writes, renames and deletes files, moves the
read directory; once every directory was read, it reads the moved ones again. Any error
(an EIO included) ends it with a non-zero status. It runs until the stop file exists,
then writes what `s3shim status` says to the status file. After each round it writes
the number of rounds done to the progress file.
argv: mount, progress file, stop file, status file, s3shim binary, directories."""
import os
import subprocess
import sys

mount, progress, stop, status_out, s3shim, ndirs = sys.argv[1:7]
ndirs = int(ndirs)
SLOTS = 64


def body(d, f):
    return (f"d{d:02} f{f}\n" * (200 + 37 * f)).encode()


def check_dir(path, d):
    names = sorted(os.listdir(path))
    want = sorted([f"f{f}.txt" for f in range(4)] + ["sub"])
    assert names == want, (path, names)
    for f in range(4):
        with open(os.path.join(path, f"f{f}.txt"), "rb") as fh:
            got = fh.read()
        assert got == body(d, f), (path, f, len(got))
    with open(os.path.join(path, "sub", "deep.txt"), "rb") as fh:
        assert fh.read() == f"deep {d}\n".encode(), path


os.makedirs(f"{mount}/work", exist_ok=True)
os.makedirs(f"{mount}/moved", exist_ok=True)
i = 0
while not os.path.exists(stop):
    d = i % ndirs
    if i < ndirs:
        check_dir(f"{mount}/src/d{d:02}", d)
        os.rename(f"{mount}/src/d{d:02}", f"{mount}/moved/d{d:02}")
    else:
        check_dir(f"{mount}/moved/d{d:02}", d)
    # A bounded set of names (rounds run as fast as the machine goes, thousands while
    # the test waits for restarts), each reused: a round writes one, renames it over an
    # older one, and every third round deletes the previous round's. Deletes made while
    # no agent runs are found by the next agent's start-up scan, which reads the
    # directory while this goes on.
    slot = i % SLOTS
    with open(f"{mount}/work/w{slot}.txt", "wb") as fh:
        fh.write(f"written in round {i}\n".encode() * (i % 50 + 1))
    os.rename(f"{mount}/work/w{slot}.txt", f"{mount}/work/r{slot}.txt")
    if i % 3 == 2:
        os.remove(f"{mount}/work/r{(i - 1) % SLOTS}.txt")
    i += 1
    with open(progress + ".tmp", "w") as fh:
        fh.write(str(i))
    os.rename(progress + ".tmp", progress)
# Everything read once more (what was never listed comes in now): the cache then holds
# the whole tree, for the byte-for-byte comparison with the bucket.
for d, _, fs in os.walk(mount):
    for f in fs:
        with open(os.path.join(d, f), "rb") as fh:
            fh.read()
out = subprocess.run([s3shim, "status"], capture_output=True, text=True, check=True)
with open(status_out, "w") as fh:
    fh.write(out.stdout)
print(f"rounds {i}")
