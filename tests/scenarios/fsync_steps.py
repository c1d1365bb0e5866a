"""Writes a file under the mount and makes it durable three ways (fdatasync, fsync,
syscall(SYS_fdatasync)); after each, announces the step and waits for the test to check
S3 and let it go on. argv: mount dir, handshake dir."""
import ctypes
import os
import sys
import time

mount, hs = sys.argv[1], sys.argv[2]
SYS_FDATASYNC = 75  # x86_64


def step(n):
    open(os.path.join(hs, f"step-{n}"), "w").close()
    go = os.path.join(hs, f"go-{n}")
    while not os.path.exists(go):
        time.sleep(0.01)


path = os.path.join(mount, "saved.txt")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"version 1\n")
os.fdatasync(fd)
step(1)
os.ftruncate(fd, 0)
os.pwrite(fd, b"version 2, longer\n", 0)
os.fsync(fd)
step(2)
os.pwrite(fd, b"version 3, raw syscall\n", 0)
libc = ctypes.CDLL(None, use_errno=True)
if libc.syscall(SYS_FDATASYNC, fd) != 0:
    sys.exit("syscall(SYS_fdatasync) failed: errno %d" % ctypes.get_errno())
step(3)
os.close(fd)
