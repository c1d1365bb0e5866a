"""Saves while the S3 endpoint goes down and comes back. After each step, announces it
and waits for the test. argv: mount dir, handshake dir."""
import errno
import os
import sys
import time

mount, hs = sys.argv[1], sys.argv[2]


def step(n):
    open(os.path.join(hs, f"step-{n}"), "w").close()
    go = os.path.join(hs, f"go-{n}")
    while not os.path.exists(go):
        time.sleep(0.01)


def save(name, data):
    fd = os.open(os.path.join(mount, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    try:
        os.fdatasync(fd)
        print(f"{name}: synced")
    except OSError as e:
        print(f"{name}: {errno.errorcode[e.errno]}")
    os.close(fd)


save("a.txt", b"before the outage\n")
step(1)  # the endpoint goes down
save("b.txt", b"during the outage\n")
os.makedirs(os.path.join(mount, "d"))
with open(os.path.join(mount, "d", "c.txt"), "wb") as f:
    f.write(os.urandom(100000))
step(2)  # the endpoint comes back
step(3)  # everything is in S3 again
