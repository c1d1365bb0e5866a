#!/usr/bin/env python3
"""The benchmark driver behind scripts/bench (which builds and installs what it needs).

Runs workloads w1-w8 (issue 6) on a native directory, on this project under `s3shim run`
and on the FUSE peers s3fs-fuse and `rclone mount --vfs-cache-mode full`, all against ONE
S3 server on loopback (`s3shim server`), plus the aws-cli baselines and the shim micro
benchmarks, and writes bench/results/<date>-<host>.{md,json}.

Everything it starts (server, sessions, mounts) is registered and torn down in `finally`,
also on SIGINT/SIGTERM/SIGHUP, so a failed run leaves no mount and no process behind.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ACCESS_KEY, SECRET_KEY = "bench", "bench-secret-key"
BUCKETS = {"shim": "bench-shim", "s3fs": "bench-s3fs", "rclone": "bench-rclone", "aws": "bench-aws",
           # --compare-exe: the other build's workspace (micro rows only).
           "compare": "bench-compare"}
# The hydration marker (crates/protocol marker.rs): a file that has it is a placeholder.
MARKER_XATTR = "user.s3shim"
WORKLOADS = ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"]
# Workloads whose result is judged by the time until the data is in S3 as well.
WRITE_WORKLOADS = {"w1", "w2", "w5", "w6", "w7", "w8"}
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
}


def log(*a):
    print("[bench %s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


class Cleanup:
    """What the run started, undone in reverse order."""

    def __init__(self):
        self.actions = []

    def add(self, name, fn):
        self.actions.append((name, fn))
        return len(self.actions) - 1

    def run_one(self, idx):
        name, fn = self.actions[idx]
        self.actions[idx] = (name, None)
        if fn:
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - cleanup must go on
                log("cleanup of %s failed: %s" % (name, e))

    def run_all(self):
        for i in reversed(range(len(self.actions))):
            self.run_one(i)


CLEANUP = Cleanup()


def stop_process(p, grace=15):
    """Stops a process started with start_new_session (its whole group)."""
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def kill_strays(base):
    """Processes of this run that left their process group (the agent calls setsid):
    found by the run's unique work directory in their command line, stopped by pid."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if base.encode() in f.read():
                    os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass


def spawn(args, env=None, stdout=None, stderr=None, name=None):
    p = subprocess.Popen(args, env=env, stdout=stdout, stderr=stderr, start_new_session=True)
    idx = CLEANUP.add(name or args[0], lambda: stop_process(p))
    return p, idx


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def sh(cmd, env, check=True, capture=False):
    """Runs a bash command line; returns (seconds, CompletedProcess)."""
    t0 = time.perf_counter()
    cp = subprocess.run(["bash", "-c", cmd], env=env, check=False,
                        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                        stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if check and cp.returncode != 0:
        raise RuntimeError("command failed (%d): %s\n%s" % (cp.returncode, cmd, cp.stderr[-2000:]))
    return dt, cp


def sh_cpu(cmd, env):
    """Runs a bash command line; returns (wall seconds, CPU seconds of it and its children).
    CPU time is what the micro benchmarks compare: on a shared machine wall time mostly
    measures the wait for a core."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    dt, _ = sh(cmd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return dt, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def proc_cpu(pid):
    """User+system CPU seconds of a live process (all its threads), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def drop_caches():
    """Drops the page cache for the cold runs; False when the machine does not allow it."""
    try:
        subprocess.run(["sync"], check=True)
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- the distance

# S3 Standard request prices (us-east-1 price list), dollars per 1,000 requests: PUT, COPY,
# POST and LIST are billed at the first tier, GET, HEAD and the rest at the second,
# DELETE is free.
PRICE_PER_1000 = {"PUT": 0.005, "COPY": 0.005, "POST": 0.005, "LIST": 0.005,
                  "GET": 0.0004, "HEAD": 0.0004, "OTHER": 0.0004, "DELETE": 0.0}


def request_cost(counts):
    """Dollars the requests would cost on S3."""
    return sum(PRICE_PER_1000.get(k, 0) * n / 1000 for k, n in counts.items())


class DelayProxy:
    """`delay-proxy` (crates/delay-proxy) in front of the S3 server for one client: adds
    the one-way delay each way, and counts the client's requests by kind."""

    def __init__(self, exe, upstream, delay_ms, mbit, name):
        args = [exe, "--upstream", upstream, "--delay-ms", str(delay_ms), "--stats-listen", "127.0.0.1:0"]
        if mbit:
            args += ["--mbit", str(mbit)]
        self.proc, _ = spawn(args, stdout=subprocess.PIPE, name="delay-proxy " + name)
        lines = [self.proc.stdout.readline().decode().split() for _ in range(2)]
        info = {l[0]: l[1] for l in lines if len(l) == 2}
        if "endpoint" not in info or "stats" not in info:
            raise RuntimeError("delay-proxy did not start: %r" % lines)
        self.endpoint = info["endpoint"]
        host, port = info["stats"].rsplit(":", 1)
        self.stats_addr = (host, int(port))

    def counts(self):
        """{kind: requests so far}."""
        with socket.create_connection(self.stats_addr) as c:
            data = b""
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
        out = {}
        for line in data.decode().splitlines():
            k, v = line.split()
            out[k] = int(v)
        return out


def requests_between(before, after):
    """Requests of each billed kind between two `counts()` snapshots (kinds with none left out)."""
    return {k: after[k] - before.get(k, 0) for k in PRICE_PER_1000 if after.get(k, 0) - before.get(k, 0)}


def fetched_bytes(tree_dir):
    """Bytes on disk of the files under a shim cache's tree whose bytes are there (no
    hydration marker): what `--cache-max-size` bounds."""
    total = 0
    for dirpath, _dirs, names in os.walk(tree_dir):
        for n in names:
            p = os.path.join(dirpath, n)
            try:
                st = os.lstat(p)
                if not os.path.isfile(p) or os.path.islink(p):
                    continue
                try:
                    os.getxattr(p, MARKER_XATTR, follow_symlinks=False)
                    continue
                except OSError:
                    pass
                total += st.st_blocks * 512
            except OSError:
                pass
    return total


# --------------------------------------------------------------------------- S3 access

class S3:
    def __init__(self, endpoint):
        import boto3
        from botocore.config import Config
        self.client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                          max_pool_connections=16))

    def files(self, bucket, prefix):
        """{key: size} of the objects under prefix, without `dir/` marker objects."""
        out = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for o in page.get("Contents", []):
                if not o["Key"].endswith("/"):
                    out[o["Key"]] = o["Size"]
        return out


def manifest(local_dir, key_prefix):
    """{key: size} of the regular files under local_dir (a native directory)."""
    out = {}
    for dirpath, _dirs, names in os.walk(local_dir):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                rel = os.path.relpath(p, local_dir)
                out[key_prefix + rel] = os.path.getsize(p)
    return out


# --------------------------------------------------------------------------- targets

class Target:
    """A place the workloads run in. `root` is the path programs use."""
    name = ""
    bucket = None
    # The local cache directory of targets that have one (emptied by restart_cold).
    cache = None

    def __init__(self, base):
        self.base = base
        self.env = dict(os.environ)

    def start(self):
        pass

    def stop(self):
        pass

    def restart_cold(self):
        """Comes back with nothing cached locally."""
        self.stop()
        if self.cache:
            shutil.rmtree(self.cache, ignore_errors=True)
        self.start()


class Native(Target):
    name = "native"

    def __init__(self, base):
        super().__init__(base)
        self.root = os.path.join(base, "native")
        os.makedirs(self.root)


class Shim(Target):
    name = "shim"
    bucket = BUCKETS["shim"]

    def __init__(self, base, exe, endpoint):
        super().__init__(base)
        self.exe, self.endpoint = exe, endpoint
        self.root = os.path.join(base, "shim-ws")
        self.gen = 0
        self.proc = None
        # `--cache-max-size` of the next sessions (None: no limit).
        self.max_size = None

    def start(self, cache=None):
        self.gen += 1
        self.cache = cache or os.path.join(self.base, "shim-cache-%d" % self.gen)
        envfile = os.path.join(self.base, "shim-%d.env" % self.gen)
        self.pidfile = os.path.join(self.base, "shim-%d.pid" % self.gen)
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                   AWS_REGION="us-east-1")
        env.pop("S3SHIM_CACHE_MAX_SIZE", None)
        if self.max_size is not None:
            env["S3SHIM_CACHE_MAX_SIZE"] = str(self.max_size)
        # The session holder: records the environment its programs get, then waits.
        hold = 'env -0 > "$1.tmp" && mv "$1.tmp" "$1" && echo $$ > "$2" && exec sleep 1000000'
        self.log = open(os.path.join(self.base, "shim-%d.log" % self.gen), "w")
        self.proc, self.idx = spawn(
            [self.exe, "run", "--bucket", self.bucket, "--mount", self.root, "--cache", self.cache,
             "--endpoint", self.endpoint, "--", "bash", "-c", hold, "hold", envfile, self.pidfile],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, name="s3shim run")
        wait_for(lambda: os.path.exists(envfile) or self.proc.poll() is not None, 60, "s3shim run")
        if self.proc.poll() is not None:
            raise RuntimeError("s3shim run exited: see " + self.log.name)
        with open(envfile) as f:
            inner = dict(e.split("=", 1) for e in f.read().split("\0") if "=" in e)
        self.env = dict(os.environ)
        for k, v in inner.items():
            if k.startswith("S3SHIM_") or k in ("LD_PRELOAD", "UV_USE_IO_URING"):
                self.env[k] = v

    def stop(self):
        if not self.proc:
            return
        self.end_session(self.proc, self.pidfile, self.idx, self.log)
        self.proc = None

    @staticmethod
    def end_session(proc, pidfile, idx, logf):
        # Ending the holder ends the session; `run` then waits until everything is in S3.
        try:
            with open(pidfile) as f:
                os.kill(int(f.read()), signal.SIGTERM)
            proc.wait(300)
        except (OSError, ValueError, subprocess.TimeoutExpired) as e:
            log("shim stop: %s" % e)
        CLEANUP.run_one(idx)
        logf.close()

    def rejoin(self):
        """A new `s3shim run` on the same cache joins the running agent; then the old
        session ends (the agent stays: the new session holds it)."""
        old = (self.proc, self.pidfile, self.idx, self.log)
        self.start(cache=self.cache)
        self.end_session(*old)

    def agent_pid(self):
        """The pid of the agent serving this cache, or None."""
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if b"agent" in argv and self.cache.encode() in b" ".join(argv):
                return int(pid)
        return None

    def agent_rss(self):
        """(VmRSS, VmHWM) in KiB of the agent serving this cache."""
        pid = self.agent_pid()
        if pid is None:
            return None
        try:
            st = {}
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    st[k] = v.strip()
            return int(st["VmRSS"].split()[0]), int(st["VmHWM"].split()[0])
        except (OSError, KeyError, ValueError):
            return None


class Fuse(Target):
    """A FUSE peer: mounted at `root`; its local cache is wiped for the cold run."""

    def __init__(self, base, endpoint):
        super().__init__(base)
        self.endpoint = endpoint
        self.root = os.path.join(base, self.name + "-mnt")
        self.cache = os.path.join(base, self.name + "-cache")
        os.makedirs(self.root)
        self.proc = None

    def command(self):
        raise NotImplementedError

    def start(self):
        os.makedirs(self.cache, exist_ok=True)
        self.log = open(os.path.join(self.base, self.name + ".log"), "a")
        args, env = self.command()
        self.proc, self.idx = spawn(args, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                    name=self.name)
        root = self.root
        unmount_idx = CLEANUP.add("unmount " + root, lambda: unmount(root))
        self.unmount_idx = unmount_idx
        wait_for(lambda: os.path.ismount(root) or self.proc.poll() is not None, 60, self.name + " mount")
        if self.proc.poll() is not None:
            raise RuntimeError("%s exited: see %s" % (self.name, self.log.name))

    def stop(self):
        if not self.proc:
            return
        CLEANUP.run_one(self.unmount_idx)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            pass
        CLEANUP.run_one(self.idx)
        self.log.close()
        self.proc = None


def unmount(path):
    if os.path.ismount(path):
        r = subprocess.run(["fusermount", "-u", path], stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            subprocess.run(["fusermount", "-u", "-z", path], stderr=subprocess.DEVNULL)


class S3fs(Fuse):
    name = "s3fs"
    bucket = BUCKETS["s3fs"]

    def command(self):
        pw = os.path.join(self.base, "s3fs.passwd")
        with open(pw, "w") as f:
            f.write("%s:%s\n" % (ACCESS_KEY, SECRET_KEY))
        os.chmod(pw, 0o600)
        opts = "url=%s,use_path_request_style,passwd_file=%s,use_cache=%s,dbglevel=warn" % (
            self.endpoint, pw, self.cache)
        return ["s3fs", self.bucket, self.root, "-f", "-o", opts], dict(os.environ)


class Rclone(Fuse):
    name = "rclone"
    bucket = BUCKETS["rclone"]

    def command(self):
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        env.update(RCLONE_CONFIG_BENCH_TYPE="s3", RCLONE_CONFIG_BENCH_PROVIDER="Other",
                   RCLONE_CONFIG_BENCH_ENDPOINT=self.endpoint,
                   RCLONE_CONFIG_BENCH_ACCESS_KEY_ID=ACCESS_KEY,
                   RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY=SECRET_KEY,
                   RCLONE_CONFIG=os.path.join(self.base, "rclone.conf"))
        return ["rclone", "mount", "bench:" + self.bucket, self.root, "--vfs-cache-mode", "full",
                "--cache-dir", self.cache], env


# --------------------------------------------------------------------------- workloads

class Bench:
    def __init__(self, args, base, exe, tool, tree_tgz, endpoint, server_pid=None, aws_endpoint=None,
                 aws_bucket=BUCKETS["aws"], aws_proxy=None):
        self.args, self.base, self.exe, self.tool, self.tgz = args, base, exe, tool, tree_tgz
        # The server itself (the bench's own checks), and where aws-cli goes (the proxy).
        self.endpoint = endpoint
        self.aws_endpoint = aws_endpoint or endpoint
        self.aws_bucket = aws_bucket
        self.aws_proxy = aws_proxy
        self.server_pid = server_pid
        self.s3 = S3(endpoint)
        self.quick = args.quick
        # rclone never uploads some of git's files: without a bound each such step would
        # wait the whole deadline. s3fs's slowest step (w2) is in S3 within ~60 s here.
        self.durable_deadline = args.durable_deadline or (60 if self.quick else 240)
        self.results = {}  # workload -> target -> {"local": [..], "durable": [..]}
        self.notes = []
        self.big = os.path.join(base, "big.bin")
        big_mib = 16 if self.quick else 256
        self.big_mib = big_mib
        with open(self.big, "wb") as f:
            for _ in range(big_mib):
                f.write(os.urandom(1 << 20))
        self.can_drop = drop_caches()
        if not self.can_drop:
            self.notes.append("page cache could not be dropped: cold w4 runs only empty the targets' own caches")

    def record(self, w, target, kind, value):
        self.results.setdefault(w, {}).setdefault(target, {}).setdefault(kind, []).append(value)

    def durable(self, target, expected, t0):
        """Seconds from t0 until the bucket holds what the step changed: `expected` is
        (files that must be there with these sizes, files that must be gone)."""
        want, gone = expected
        # Only the keys the step touched are listed (the longest prefix they share): a
        # listing of the whole workspace (~2,500 objects after w1) costs boto3 about a
        # second, which would be counted as the target's time (w5's one big file).
        prefix = os.path.commonprefix(sorted(set(want) | set(gone))) or "w/"
        deadline = time.monotonic() + self.durable_deadline
        have = {}
        while time.monotonic() < deadline:
            have = self.s3.files(target.bucket, prefix)
            if all(have.get(k) == v for k, v in want.items()) and not any(k in have for k in gone):
                return time.perf_counter() - t0
            time.sleep(0.05)
        missing = [k for k in want if have.get(k) != want[k]][:5]
        extra = [k for k in gone if k in have][:5]
        self.notes.append("%s: not in S3 within the deadline (missing or different: %s; not deleted: %s)"
                          % (target.name, missing, extra))
        return None

    def step(self, w, target, cmd, expected=None, label=None):
        """Runs one timed workload step; for write workloads also waits until it is in S3.
        Also records the CPU time of the command itself and, for the shim, what the agent
        and the S3 server used meanwhile: on a 2-core machine they compete with it."""
        env = dict(target.env, **GIT_ENV, HOME=os.path.join(self.base, "home"))
        agent = target.agent_pid() if isinstance(target, Shim) else None
        label = label or w

        def busy():
            return {k: proc_cpu(p) for k, p in (("agent_cpu", agent), ("server_cpu", self.server_pid)) if p}

        def used(since, now):
            """CPU seconds each busy process used between two `busy()` snapshots."""
            return {k: now[k] - v for k, v in since.items() if v is not None and now.get(k) is not None}

        proxy = getattr(target, "proxy", None)
        req0 = proxy.counts() if proxy else None
        busy0 = busy()
        t0 = time.perf_counter()
        dt, cpu = sh_cpu(cmd, env)
        during = used(busy0, busy())
        self.record(label, target.name, "local", dt)
        self.record(label, target.name, "cpu", cpu)
        for k, v in during.items():
            self.record(label, target.name, k, v)
        if expected is not None and target.bucket:
            self.record(label, target.name, "durable", self.durable(target, expected, t0))
            # What uploading cost the agent and the server, from the step's start until in S3.
            for k, v in used(busy0, busy()).items():
                self.record(label, target.name, k + "_until_s3", v)
        if proxy:
            # Until in S3 for a step that writes (uploads are requests of the step too).
            counts = requests_between(req0, proxy.counts())
            self.record(label, target.name, "requests", sum(counts.values()))
            for k, v in counts.items():
                self.record(label, target.name, "req:" + k, v)
        log("%-8s %-7s %.3f s (cpu %.3f s, %s)" % (label, target.name, dt, cpu, ", ".join(
            "%s %.3f s" % kv for kv in during.items())))

    def one_rep(self, targets, only):
        """One pass of the selected workloads; each step runs on every target in turn, native
        first, so the native tree after the step says what must be in S3."""
        native = targets[0]
        nat_w = os.path.join(native.root, "w")
        W = {t.name: os.path.join(t.root, "w") for t in targets}
        tree = {t.name: W[t.name] + "/tree" for t in targets}

        def each(w, cmd_for, write=True, label=None, setup=False):
            # What the step changed on the native side is what must reach each bucket
            # (only that: a file a peer lost in an earlier step is reported there, once).
            before = manifest(nat_w, "w/") if os.path.isdir(nat_w) else {}
            exp = None
            for t in targets:
                cmd = cmd_for(t)
                if t is native:
                    if setup:
                        sh(cmd, t.env)
                    else:
                        self.step(w, t, cmd, label=label)
                    after = manifest(nat_w, "w/") if os.path.isdir(nat_w) else {}
                    exp = ({k: v for k, v in after.items() if before.get(k) != v},
                           [k for k in before if k not in after])
                    if write and not setup:
                        # Files the step wrote: each is at least one PUT to the server.
                        self.record(label or w, "native", "files", len(exp[0]))
                        self.record(label or w, "native", "bytes", sum(exp[0].values()))
                elif setup:
                    sh(cmd, dict(t.env, **GIT_ENV))
                    self.durable(t, exp, time.perf_counter())
                else:
                    self.step(w, t, cmd, exp if write else None, label=label)

        # w1 extract (also the setup of the later steps when not selected)
        each("w1", lambda t: "mkdir -p %s && tar xzf %s -C %s" % (tree[t.name], self.tgz, tree[t.name]),
             setup="w1" not in only)
        if "w2" in only:
            each("w2", lambda t: "cd %s && git init -q && git add -A && git commit -q -m import" % tree[t.name])
        if "w3" in only:
            each("w3", lambda t: "cd %s && for i in 1 2 3 4 5; do git status --porcelain >/dev/null; done"
                 % tree[t.name], write=False)
        if "open" in only and "w2" in only:
            # A fresh container opens a repository that is in S3: nothing cached, then
            # `git status` (git reads every file of the work tree and its index).
            for t in targets:
                t.restart_cold()
            if self.can_drop:
                drop_caches()
            each("open", lambda t: "cd %s && git status --porcelain > /dev/null" % tree[t.name], write=False,
                 label="open-cold")
            m = manifest(tree["native"], "")
            self.record("open-cold", "native", "files", len(m))
            self.record("open-cold", "native", "bytes", sum(m.values()))
        if "w4" in only:
            read = "cd %s && find . -type f -print0 | xargs -0 cat > /dev/null"
            for t in targets:
                sh(read % tree[t.name], t.env)  # warm up
            each("w4", lambda t: read % tree[t.name], write=False, label="w4-warm")
            for t in targets:
                t.restart_cold()
            if self.can_drop:
                drop_caches()
            each("w4", lambda t: read % tree[t.name], write=False, label="w4-cold")
            # Files read: each is at least one GET from the server on a cold cache.
            m = manifest(tree["native"], "")
            self.record("w4-cold", "native", "files", len(m))
            self.record("w4-cold", "native", "bytes", sum(m.values()))
        if "evict" in only:
            self.evict_rows(targets, tree)
        if "w5" in only:
            each("w5", lambda t: "dd if=%s of=%s/big.bin bs=1M conv=fsync status=none" % (self.big, W[t.name]),
                 label="w5-write")
            each("w5", lambda t: "cat %s/big.bin > /dev/null" % W[t.name], write=False, label="w5-read")
            # The same file from a new session (a new `run` joining the agent; a new mount
            # for the peers): it is local already, nothing should come from S3.
            for t in targets:
                if isinstance(t, Shim):
                    t.rejoin()
            each("w5", lambda t: "cat %s/big.bin > /dev/null" % W[t.name], write=False, label="w5-reread")
            each("w5", lambda t: "rm -f %s/big.bin" % W[t.name], setup=True)
        if "w6" in only:
            each("w6", lambda t: "%s save 200 %s/edit.txt 16384" % (self.tool, tree[t.name]))
            self.record("w6", "native", "saves", 200)
            self.put_floor(200, 16384)
        if "w7" in only:
            each("w7", lambda t: "%s create 1000 %s/new && mv %s/new %s/renamed"
                 % (self.tool, tree[t.name], tree[t.name], tree[t.name]))
        each("w8", lambda t: "rm -rf %s" % W[t.name], setup="w8" not in only)

    def evict_rows(self, targets, tree):
        """The cost of a bounded cache (issue 16): the cold read-everything workload (w4's)
        on a fresh cache without a limit, then with `--cache-max-size` a third of the
        tree's bytes, back to back in the same run. Only the shim has the limit; the
        fetched bytes left in its cache after the read say that it held."""
        read = "cd %s && find . -type f -print0 | xargs -0 cat > /dev/null"
        m = manifest(tree["native"], "")
        nbytes = sum(m.values())
        third = nbytes // 3
        for label, limit in (("evict-none", None), ("evict-third", third)):
            for t in targets:
                if isinstance(t, Shim):
                    t.max_size = limit
                    t.restart_cold()
                    if self.can_drop:
                        drop_caches()
                    self.step(label, t, read % tree[t.name], label=label)
                    self.record(label, t.name, "fetched_bytes_after", fetched_bytes(os.path.join(t.cache, "tree")))
                    self.record(label, t.name, "limit_bytes", limit)
            self.record(label, "native", "files", len(m))
            self.record(label, "native", "bytes", nbytes)
        for t in targets:
            if isinstance(t, Shim):
                t.max_size = None
                t.restart_cold()

    def put_floor(self, n, size):
        """w6's floor while fsync means "in S3": n PUTs of one size-byte object in a row,
        to the same server, over one kept-alive connection, each signed (SigV4, as every
        client must) just before it is sent. Plain http.client rather than boto3, whose
        own per-request work would inflate the floor."""
        import http.client
        import urllib.parse
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        creds = Credentials(ACCESS_KEY, SECRET_KEY)
        u = urllib.parse.urlparse(self.aws_endpoint)
        conn = http.client.HTTPConnection(u.hostname, u.port)
        body = os.urandom(size)
        path = "/%s/floor/edit.txt" % self.aws_bucket

        def put():
            req = AWSRequest(method="PUT", url=self.aws_endpoint + path, data=body)
            S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
            conn.request("PUT", path, body=body, headers=dict(req.headers.items()))
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError("PUT for the w6 floor failed: %d" % r.status)
        put()  # the connection is open and warm
        t0 = time.perf_counter()
        for _ in range(n):
            put()
        dt = time.perf_counter() - t0
        conn.close()
        self.record("w6-put-floor", "aws", "local", dt)
        self.s3.client.delete_object(Bucket=self.aws_bucket, Key="floor/edit.txt")
        log("w6 floor: %d PUTs of %d bytes in %.3f s" % (n, size, dt))

    # ------------------------------------------------------------------ baselines

    def aws_counted(self, name, args):
        """An aws-cli baseline: its time and its requests through the proxy."""
        c0 = self.aws_proxy.counts() if self.aws_proxy else None
        dt = self.aws(args)
        self.record(name, "aws", "local", dt)
        if c0 is not None:
            counts = requests_between(c0, self.aws_proxy.counts())
            self.record(name, "aws", "requests", sum(counts.values()))
            for k, v in counts.items():
                self.record(name, "aws", "req:" + k, v)
        return dt

    def aws(self, args, env=None):
        env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                   AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
        env.pop("AWS_CA_BUNDLE", None)
        return sh("aws --endpoint-url %s %s" % (self.aws_endpoint, args), env)[0]

    def baselines(self, native):
        """aws-cli transfers of the same data to the same server."""
        b = self.aws_bucket
        src = os.path.join(self.base, "baseline-src")
        shutil.rmtree(src, ignore_errors=True)
        os.makedirs(src)
        sh("tar xzf %s -C %s" % (self.tgz, src), None)
        self.aws_counted("aws-sync-upload", "s3 sync --quiet %s s3://%s/tree/" % (src, b))
        sh("cd %s && git init -q && git add -A && git commit -q -m import" % src,
           dict(os.environ, **GIT_ENV))
        self.aws_counted("aws-sync-upload-git", "s3 sync --quiet %s/.git s3://%s/tree/.git/" % (src, b))
        dl = os.path.join(self.base, "baseline-dl")
        shutil.rmtree(dl, ignore_errors=True)
        if self.can_drop:
            drop_caches()
        self.aws_counted("aws-cp-download", "s3 cp --quiet --recursive s3://%s/tree/ %s" % (b, dl))
        dt = self.aws("s3 cp --quiet %s s3://%s/big.bin" % (self.big, b))
        self.record("aws-cp-multipart-put", "aws", "local", dt)
        self.record("aws-cp-multipart-put", "aws", "MiB/s", os.path.getsize(self.big) / (1 << 20) / dt)
        self.aws("s3 rm --quiet --recursive s3://%s/" % b)
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(dl, ignore_errors=True)
        self.server_cost(b)

    def server_cost(self, bucket):
        """The server's CPU per PUT, GET and HEAD of a 14 KB object (the tree's mean file
        size), 16 requests at a time: what any client, however fast, costs the server,
        so what the rows that must move every file through it cannot go below."""
        from concurrent.futures import ThreadPoolExecutor
        n = 200 if self.quick else 2000
        body = os.urandom(14000)
        c = self.s3.client
        ops = {"PUT": lambda i: c.put_object(Bucket=bucket, Key="cost/f%05d" % i, Body=body),
               "GET": lambda i: c.get_object(Bucket=bucket, Key="cost/f%05d" % i)["Body"].read(),
               "HEAD": lambda i: c.head_object(Bucket=bucket, Key="cost/f%05d" % i)}
        for op, f in ops.items():
            c0 = proc_cpu(self.server_pid)
            with ThreadPoolExecutor(16) as ex:
                list(ex.map(f, range(n)))
            self.record("server-cpu-per-request", op, "ms", 1000 * (proc_cpu(self.server_pid) - c0) / n)
        c.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "cost/f%05d" % i} for i in range(min(n, 1000))]})

    # ------------------------------------------------------------------ micro

    def micro(self, shim, reps, compare=None):
        """`compare`: (label, Shim) of another build, measured in the same reps, each loop
        right after this build's (before/after of a change in one run)."""
        n_out = 20000 if self.quick else 200000
        n_exec = 200 if self.quick else 2000
        n_files = 500 if self.quick else 5000
        plain = dict(os.environ)
        outside_file = os.path.join(self.base, "outside.txt")
        with open(outside_file, "w") as f:
            f.write("x")
        # The shim's environment with the cwd outside the mount: what every tool run from
        # a terminal of the session pays.
        cases = {
            "micro-outside": "cd %s && %s outside %d %s" % (self.base, self.tool, n_out, outside_file),
            "micro-exec": "cd %s && %s spawn %d /bin/true" % (self.base, self.tool, n_exec),
        }
        # Hydrated loop: the same 5,000-file tree natively and in the workspace.
        lists = {}
        shims = [("shim", shim)] + ([compare] if compare else [])
        for name, root, env in [("native", os.path.join(self.base, "native"), plain)] + [
                (label, s.root, s.env) for label, s in shims]:
            d = root + "/hyd"
            sh("mkdir -p %s && for i in $(seq 50); do %s create %d %s/d$i; done" % (d, self.tool, n_files // 50, d), env)
            lst = os.path.join(self.base, "hyd-%s.list" % name)
            with open(lst, "w") as f:
                for i in range(1, 51):
                    for j in range(n_files // 50):
                        f.write("%s/d%d/f%06d.txt\n" % (d, i, j))
            lists[name] = lst
        envs = dict([("native", plain)] + [(label, s.env) for label, s in shims])
        for name, env in envs.items():
            sh("%s readloop 1 %s" % (self.tool, lists[name]), env)
        for label, s in shims:
            sh("%s flush" % s.exe, s.env)  # the uploads of the new files are done
        # The preload floor: the same loops with an empty library preloaded (built by
        # scripts/bench), so what the shim itself adds can be told from what preloading
        # anything costs.
        empty = os.path.join(os.path.dirname(self.tool), "empty-preload.so")
        targets = list(envs.items())
        if os.path.exists(empty):
            targets.append(("floor", dict(plain, LD_PRELOAD=empty)))
        for _ in range(reps):
            for label, cmd in cases.items():
                for name, env in targets:
                    wall, cpu = sh_cpu(cmd, env)
                    self.record(label, name, "local", wall)
                    self.record(label, name, "cpu", cpu)
            for name, env in envs.items():
                wall, cpu = sh_cpu("%s readloop 3 %s" % (self.tool, lists[name]), env)
                self.record("micro-hydrated", name, "local", wall)
                self.record("micro-hydrated", name, "cpu", cpu)
        # Instruction counts: not disturbed by the other load on a shared machine.
        if shutil.which("valgrind"):
            def ir(cmd, env):
                _, cp = sh("valgrind --tool=callgrind --callgrind-out-file=/dev/null " + cmd, env, capture=True)
                for line in cp.stderr.splitlines():
                    if "Collected :" in line:
                        return int(line.split(":")[-1])
                return None
            small = {
                "micro-outside": "%s outside 2000 %s" % (self.tool, outside_file),
                "micro-exec": "/bin/true",
                "micro-hydrated": "%s readloop 1 %s" % (self.tool, lists["native"]),
            }
            for label, cmd in small.items():
                self.record(label, "native", "Ir", ir(cmd, plain))
                for name, s in shims:
                    scmd = cmd if label != "micro-hydrated" else "%s readloop 1 %s" % (self.tool, lists[name])
                    self.record(label, name, "Ir", ir(scmd, s.env))
        sh("rm -rf %s/hyd" % os.path.join(self.base, "native"), plain)
        for _, s in shims:
            sh("rm -rf %s/hyd" % s.root, s.env)

    def agent_rss(self, shim):
        n = 5000 if self.quick else 100000
        d = shim.root + "/rss"
        per = 1000 if n >= 1000 else n
        sh("mkdir -p %s && for i in $(seq %d); do %s create %d %s/d$i; done" % (d, n // per, self.tool, per, d), shim.env)
        sh("%s flush" % self.exe, shim.env)
        after_write = shim.agent_rss()
        shim.restart_cold()
        _, cp = sh("find %s -type f | wc -l" % d, shim.env, capture=True)
        listed = int(cp.stdout.strip() or 0)
        after_list = shim.agent_rss()
        self.rss = {"files": n, "listed_cold": listed,
                    "after_write_kib": after_write, "after_cold_listing_kib": after_list}
        log("agent RSS (KiB, current/peak): after writing %d files %s; after listing them cold %s"
            % (n, after_write, after_list))
        sh("rm -rf %s" % d, shim.env)
        sh("%s flush" % self.exe, shim.env)


# --------------------------------------------------------------------------- report

def summary(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals),
            "failed": len(values) - len(vals)}


def fmt(s, unit="s"):
    if s is None:
        return "n/a (not in S3 in time)" if unit == "durable" else "n/a"
    failed = " +%d not in time" % s["failed"] if s.get("failed") else ""
    if unit == "Ir":
        return "%.0f" % s["median"]
    return "%.3f (%.3f–%.3f)%s" % (s["median"], s["min"], s["max"], failed)


def report(bench, targets, args, started, out_dir, machine=None, write=True):
    """Writes the results (`machine` given: re-rendered from an earlier run's JSON);
    `write=False`: returns (lines, data) instead."""
    host = machine["host"] if machine else socket.gethostname()
    res = {}
    for w, per in bench.results.items():
        res[w] = {t: {k: summary(v) for k, v in kinds.items()} for t, kinds in per.items()}
    machine = machine or {"host": host, "cpus": os.cpu_count(), "kernel": platform.release(),
                          "loadavg_at_start": started["load"], "loadavg_at_end": os.getloadavg()}
    data = {"date": started["date"], "machine": machine, "quick": args.quick, "reps": args.reps,
            "build": args.profile,
            "tree": started["tree"], "targets": [t.name for t in targets], "results": res,
            "agent_rss": getattr(bench, "rss", None), "notes": bench.notes, "raw": bench.results,
            "big_mib": bench.big_mib}

    def med(w, t, k="local"):
        s = res.get(w, {}).get(t, {}).get(k)
        return s["median"] if s else None

    def ratio(a, b):
        return "%.2f×" % (a / b) if a is not None and b else "n/a"

    def paired(num, den):
        """Median of the per-rep ratios: each rep's two runs were back to back, so on a
        shared machine they saw the same load more often than two medians did."""
        rs = [a / b for a, b in zip(num, den) if a is not None and b]
        return "%.2f×" % statistics.median(rs) if rs else "n/a"

    def e2e_runs(w, t):
        """End to end per rep: until in S3 for a step that writes, else the local time."""
        r = bench.results[w][t]
        return r["durable"] if r.get("durable") else r["local"]

    lines = ["# Benchmark %s on %s" % (started["date"], host), "",
             "- machine: %d CPUs, kernel %s, load average %.2f at start, %.2f at end (a shared machine "
             "makes absolute times noisy: compare the ratios)" % (
                 machine["cpus"], machine["kernel"], machine["loadavg_at_start"][0], machine["loadavg_at_end"][0]),
             "- tree: %s" % started["tree"],
             "- %s, %d rep(s); every cell is the median in seconds with min–max" % (
                 "--quick (small sizes)" if args.quick else "full sizes", args.reps),
             "- S3 server: %s on loopback, one bucket per target; "
             "%s build of s3shim and libs3shim.so" % (
                 "moto_server" if getattr(bench, "config", {}).get("server") == "moto"
                 else "`s3shim server` (crates/s3server)", args.profile),
             "- `in S3` = from the start of the step until a listing of the bucket shows every file the "
             "step created or changed, with its size, and none it deleted (the listing covers only the "
             "longest key prefix those files share)", ""]
    names = [t.name for t in targets]
    cols = (["workload"] + names + ["shim/native", "shim/native, paired"]
            + ["%s/shim" % n for n in names if n not in ("native", "shim")])
    hdr = "| " + " | ".join(cols) + " |"
    if any(w in res for w in ("w1", "w2", "w3", "w4-warm", "w5-write", "w6", "w7", "w8")):
        lines += ["## Workloads (local time, then time until in S3)", "", hdr,
                  "|" + "---|" * (hdr.count("|") - 1)]
    order = ["w1", "w2", "w3", "w4-warm", "w4-cold", "w5-write", "w5-read", "w6", "w7", "w8"]
    for w in order:
        if w not in res:
            continue
        for kind in ("local", "durable"):
            if kind == "durable" and not any(res[w].get(t, {}).get("durable") for t in names):
                continue
            row = "| %s %s | " % (w, "local" if kind == "local" else "in S3")
            row += " | ".join(fmt(res[w].get(t, {}).get(kind), "durable" if kind == "durable" and t != "native"
                                  else "s") for t in names)
            base = med(w, "native") if kind == "local" else None
            row += " | " + (ratio(med(w, "shim", kind), base) if base else "–")
            row += " | " + (paired(bench.results[w]["shim"]["local"], bench.results[w]["native"]["local"])
                            if base else "–")
            for n in names:
                if n not in ("native", "shim"):
                    row += " | " + ratio(med(w, n, kind), med(w, "shim", kind))
            lines.append(row + " |")
    cpu_rows = [w for w in order if w in res and res[w].get("shim", {}).get("cpu")]
    if cpu_rows:
        lines += ["", "## CPU during the local step", "",
                  "Seconds of CPU (user+system) used by the workload's command and its children, "
                  "and, during the shim's step, by the agent and by the S3 server (on loopback here; "
                  "remote in production). On a 2-core machine the agent and the server compete with "
                  "the command: `shim wall/native wall` well above `cmd CPU ratio` means waiting for "
                  "a core (or for the agent), not the shim's own cost.", "",
                  "| workload | native cmd CPU | shim cmd CPU | cmd CPU ratio | agent CPU | server CPU |",
                  "|---|---|---|---|---|---|"]
        for w in cpu_rows:
            cells = [w, fmt(res[w].get("native", {}).get("cpu")), fmt(res[w]["shim"].get("cpu")),
                     ratio(med(w, "shim", "cpu"), med(w, "native", "cpu")),
                     fmt(res[w]["shim"].get("agent_cpu")), fmt(res[w]["shim"].get("server_cpu"))]
            lines.append("| " + " | ".join(cells) + " |")
    until_rows = [w for w in order if w in res and res[w].get("shim", {}).get("agent_cpu_until_s3")]
    if until_rows:
        lines += ["", "## CPU until in S3 (shim)", "",
                  "Seconds of CPU the agent and the S3 server used from the start of the shim's step "
                  "until the bucket held the result: the cost of the uploads themselves, which on this "
                  "2-core machine bounds how fast they can go.", "",
                  "| workload | shim in S3 | agent CPU | server CPU |", "|---|---|---|---|"]
        for w in until_rows:
            sh_ = res[w]["shim"]
            lines.append("| %s | %s | %s | %s |" % (w, fmt(sh_.get("durable"), "durable"),
                                                     fmt(sh_.get("agent_cpu_until_s3")),
                                                     fmt(sh_.get("server_cpu_until_s3"))))
    e2e_rows = [w for w in order if w in res and all(res[w].get(t) for t in ("native", "shim", "s3fs"))]
    if e2e_rows:
        cost = res.get("server-cpu-per-request", {})
        per_req = {op: cost[op]["ms"]["median"] for op in ("PUT", "GET") if cost.get(op, {}).get("ms")}

        def with_server(w):
            """Native local time plus the server's CPU for a PUT per file written (a GET per
            file read for cold w4), spread over every core; None where that does not apply."""
            op = "GET" if w == "w4-cold" else "PUT" if w in ("w1", "w2", "w7") else None
            n = med(w, "native", "files")
            if op not in per_req or n is None or med(w, "native") is None:
                return None
            return med(w, "native") + n * per_req[op] / 1000 / (os.cpu_count() or 1)
        lines += ["", "## End to end against s3fs (the ≥ 20× goal)", "",
                  "End to end = the time until in S3 for a step that writes, the local time otherwise. "
                  "`bound` = s3fs end to end / native local time: what s3fs/shim would be if the shim "
                  "took native time and its writes were in S3 at once. `bound with the server` also "
                  "counts the server's CPU for one PUT per file written (one GET per file read, cold "
                  "w4; see the server's CPU per request below), on every core at once. Below 20× no "
                  "implementation can be 20× ahead of s3fs on that row with this server.", "",
                  "| workload | s3fs end to end | shim end to end | s3fs/shim | s3fs/shim, paired | bound "
                  "| files | bound with the server |",
                  "|---|---|---|---|---|---|---|---|"]
        for w in e2e_rows:
            def e2e(t):
                return med(w, t, "durable") if res[w][t].get("durable") else med(w, t)
            n = med(w, "native", "files")
            server_floor = with_server(w)
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                w, "%.3f" % e2e("s3fs") if e2e("s3fs") else "n/a",
                "%.3f" % e2e("shim") if e2e("shim") else "n/a",
                ratio(e2e("s3fs"), e2e("shim")), paired(e2e_runs(w, "s3fs"), e2e_runs(w, "shim")),
                ratio(e2e("s3fs"), med(w, "native")), "%d" % n if n is not None else "–",
                ratio(e2e("s3fs"), server_floor) if server_floor else "–"))
    cost = res.get("server-cpu-per-request", {})
    if cost:
        lines += ["", "## The server's CPU per request", "",
                  "Measured with boto3, 16 requests at a time, 14 KB objects (`server_cost`). "
                  "A step that moves N files through the server costs it at least N times this, "
                  "spread over %d cores: for w2 and w7 a PUT per file written, for cold w4 a GET "
                  "per file read." % (os.cpu_count() or 1), "",
                  "| request | server CPU, ms |", "|---|---|"]
        for op in ("PUT", "GET", "HEAD"):
            if op in cost:
                lines.append("| %s | %s |" % (op, fmt(cost[op].get("ms"))))
    floor = res.get("w6-put-floor", {}).get("aws", {}).get("local")
    if floor and "w6" in res:
        lines += ["", "## w6 floor (fsync = in S3)", "",
                  "Every fdatasync of w6 returns once the file is in S3, so 200 saves cannot take less "
                  "than 200 PUTs of the same 16 KiB object in a row to the same server (measured right "
                  "after w6: one signed PUT after another over a kept-alive connection). s3fs also PUTs on fsync.", "",
                  "| 200 PUTs of 16 KiB | native w6 | shim w6 | shim/floor | s3fs w6 / floor | floor/native |",
                  "|---|---|---|---|---|---|",
                  "| %s | %s | %s | %s | %s | %s |" % (
                      fmt(floor), fmt(res["w6"].get("native", {}).get("local")),
                      fmt(res["w6"].get("shim", {}).get("local")),
                      ratio(med("w6", "shim"), floor["median"]), ratio(med("w6", "s3fs"), floor["median"]),
                      ratio(floor["median"], med("w6", "native")))]
    cmp = {"aws-sync-upload": ("w1", "durable"), "aws-sync-upload-git": ("w2", "durable"),
           "aws-cp-download": ("w4-cold", "local"), "aws-cp-multipart-put": ("w5-write", "durable")}
    if any(b in res for b in cmp):
        lines += ["", "## Baselines (aws-cli against the same server)", "", "| baseline | seconds | compare with |",
                  "|---|---|---|"]
    for bname, (w, k) in cmp.items():
        if bname not in res:
            continue
        s = res.get(bname, {}).get("aws", {}).get("local")
        shim_v = med(w, "shim", k)
        extra = ""
        if bname == "aws-cp-multipart-put":
            rate = med(bname, "aws", "MiB/s")
            size = bench.big_mib
            if rate and shim_v:
                extra = "; aws %.0f MiB/s, shim w5 %.0f MiB/s (%.0f%%)" % (rate, size / shim_v, 100 * size / shim_v / rate)
                # Each rep's shim w5 against the aws-cli run of the same rep (the load of a
                # shared machine changes between reps more than within one).
                shim_runs = bench.results.get("w5-write", {}).get("shim", {}).get("durable", [])
                pairs = [100 * aws_t / shim_t for shim_t, aws_t in zip(shim_runs, bench.results[bname]["aws"]["local"])
                         if shim_t]
                if len(pairs) > 1:
                    extra += "; per rep %s%%: median %.0f%%, min %.0f%%" % (
                        "/".join("%.0f" % p for p in pairs), statistics.median(pairs), min(pairs))
        lines.append("| %s | %s | shim %s %s: %s (%s of the baseline)%s |" % (
            bname, fmt(s), w, "in S3" if k == "durable" else "local", "%.3f" % shim_v if shim_v else "n/a",
            ratio(shim_v, s["median"] if s else None), extra))
    lines += ["", "## Micro (the shim's environment vs none; cwd outside the mount)", "",
              "CPU = user+system time of the loop and its children (less disturbed than wall time "
              "on a shared machine); Ir = instructions counted by `valgrind --tool=callgrind` for one "
              "smaller run (outside: 2,000 iterations; exec: one `/bin/true`; hydrated: one pass).", "",
              "| micro | native wall s | shim wall s | wall ratio | native CPU s | shim CPU s | CPU ratio "
              "| native Ir | shim Ir | Ir ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m in ("micro-outside", "micro-exec", "micro-hydrated"):
        if m not in res:
            continue
        cells = [m]
        for kind in ("local", "cpu", "Ir"):
            unit = "Ir" if kind == "Ir" else "s"
            cells += [fmt(res[m].get("native", {}).get(kind), unit), fmt(res[m].get("shim", {}).get(kind), unit),
                      ratio(med(m, "shim", kind), med(m, "native", kind))]
        lines.append("| " + " | ".join(cells) + " |")
    floor_rows = [m for m in ("micro-outside", "micro-exec") if res.get(m, {}).get("floor")]
    if floor_rows:
        lines += ["", "The preload floor: the same loop with an empty library in `LD_PRELOAD` (CPU time).", "",
                  "| micro | floor CPU s | floor / native | shim / floor |", "|---|---|---|---|"]
        for m in floor_rows:
            lines.append("| %s | %s | %s | %s |" % (
                m, fmt(res[m]["floor"].get("cpu"), "s"), ratio(med(m, "floor", "cpu"), med(m, "native", "cpu")),
                ratio(med(m, "shim", "cpu"), med(m, "floor", "cpu"))))
    other = getattr(args, "compare_label", None)
    if other and any(other in res.get(m, {}) for m in ("micro-outside", "micro-exec", "micro-hydrated")):
        lines += ["", "## Micro: this build against %s (`--compare-exe`)" % other, "",
                  "Both builds' loops ran in the same reps, one right after the other; the ratio is "
                  "the median of the per-rep ratios of CPU time (below 1: this build is cheaper).", "",
                  "| micro | %s CPU s | this CPU s | this / %s (paired) | %s Ir | this Ir |" % (other, other, other),
                  "|---|---|---|---|---|---|"]
        for m in ("micro-outside", "micro-exec", "micro-hydrated"):
            if other not in res.get(m, {}):
                continue
            raw = bench.results[m]
            lines.append("| %s | %s | %s | %s | %s | %s |" % (
                m, fmt(res[m][other].get("cpu")), fmt(res[m]["shim"].get("cpu")),
                paired(raw["shim"]["cpu"], raw[other]["cpu"]),
                fmt(res[m][other].get("Ir"), "Ir"), fmt(res[m]["shim"].get("Ir"), "Ir")))
    if data["agent_rss"]:
        r = data["agent_rss"]
        lines += ["", "## Agent memory", "",
                  "- %d files written through the shim: agent VmRSS/VmHWM %s KiB" % (r["files"], r["after_write_kib"]),
                  "- then a fresh cache listing all %d cold: %s KiB" % (r["listed_cold"], r["after_cold_listing_kib"])]
    if "evict-third" in res and res["evict-third"].get("shim"):
        lines += ["", "## The cost of a bounded cache (issue 16)", "",
                  "Cold read of every file (`find | xargs cat`, w4's) on a fresh shim cache, without a "
                  "limit and with `--cache-max-size` a third of the tree's bytes, back to back. "
                  "`fetched after` = bytes of files whose bytes are in the cache once the read is over "
                  "(on-disk blocks).", "",
                  "| cache limit | shim local | agent CPU | requests | fetched after | limit |",
                  "|---|---|---|---|---|---|"]
        for w, what in (("evict-none", "none"), ("evict-third", "a third of the tree")):
            sh_ = res.get(w, {}).get("shim", {})
            reqs = {k[4:]: sh_[k]["median"] for k in sh_ if k.startswith("req:") and sh_[k]}
            lim = med(w, "shim", "limit_bytes")
            lines.append("| %s | %s | %s | %s | %s | %s |" % (
                what, fmt(sh_.get("local")), fmt(sh_.get("agent_cpu")),
                "%d (%s)" % (sum(reqs.values()), " ".join("%s %d" % kv for kv in sorted(reqs.items())))
                if reqs else "–",
                "%.1f MiB" % (med(w, "shim", "fetched_bytes_after") / 1048576)
                if med(w, "shim", "fetched_bytes_after") is not None else "–",
                "%.1f MiB" % (lim / 1048576) if lim else "–"))
        lines.append("| third / none | %s | %s | | | |" % (
            ratio(med("evict-third", "shim"), med("evict-none", "shim")),
            ratio(med("evict-third", "shim", "agent_cpu"), med("evict-none", "shim", "agent_cpu"))))
    if bench.notes:
        lines += ["", "## Notes", ""] + ["- " + n for n in bench.notes]
    if not write:
        return lines, data
    os.makedirs(out_dir, exist_ok=True)
    stamp = started["date"].replace(":", "")[:15]  # 2026-01-01T1200
    stem = os.path.join(out_dir, "%s-%s%s" % (stamp, host, "-quick" if args.quick else ""))
    with open(stem + ".json", "w") as f:
        json.dump(data, f, indent=1, default=str)
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    log("results: %s.md and .json" % stem)
    print("\n".join(lines))


def render(path):
    """Rebuilds a results file from its JSON (after a change to the report's tables)."""
    from types import SimpleNamespace as NS
    with open(path) as f:
        d = json.load(f)
    bench = NS(results=d["raw"], notes=d["notes"], rss=d.get("agent_rss"),
               big_mib=d.get("big_mib", 16 if d["quick"] else 256))
    targets = [NS(name=n) for n in d["targets"]]
    args = NS(quick=d["quick"], reps=d["reps"], profile=d.get("build", "release"))
    started = {"date": d["date"], "load": d["machine"]["loadavg_at_start"], "tree": d["tree"]}
    report(bench, targets, args, started, os.path.dirname(os.path.abspath(path)), machine=d["machine"])


# Which aws-cli baseline does the work of a workload (what an init container would run).
AWS_FOR = {"open-cold": "aws-cp-download", "w4-cold": "aws-cp-download", "w1": "aws-sync-upload",
           "w2": "aws-sync-upload-git", "w5-write": "aws-cp-multipart-put"}
# Workloads that move objects: reads of a cold cache (GET each), writes (PUT each).
READS = {"open-cold", "w4-cold", "evict-none", "evict-third"}
WRITES = {"w1", "w2", "w5-write", "w7"}


def distance_lines(runs, args):
    """The side-by-side tables: every configuration (server, one-way delay), every target,
    end to end, against the physical limit; then the requests and what they cost."""
    lines = ["## At a distance: end to end against the physical limit", "",
             "End to end = until in S3 for a step that writes, the local time otherwise (median, s). "
             "`limit` = objects ÷ %d requests in flight × round trip + bytes ÷ bandwidth: what any "
             "client could do over this round trip (bandwidth: %s); `+server` adds the server's CPU for "
             "one GET (reads) or PUT (writes) per object, over every core. w6: 200 saves, each in S3 "
             "before the next (one round trip each at best). Peers and aws-cli go through the same "
             "proxy (aws-cli: the baseline doing the same transfer)." % (
                 args.in_flight, "%g Mbit/s" % args.mbit if args.mbit else "not limited, the bytes term left out"),
             "", "| workload | server, one way | limit | +server | shim | s3fs | rclone | aws-cli | shim/limit "
             "| s3fs/shim | rclone/shim |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    req_lines = ["", "## Requests per workload and their S3 price", "",
                 "Requests counted by the delay proxy from the start of the step until in S3 "
                 "(G=GET, H=HEAD, L=LIST, P=PUT, C=COPY, M=POST (multipart), D=DELETE), and what they "
                 "would cost on S3's price list (PUT/COPY/POST/LIST $0.005, GET/HEAD $0.0004 per 1,000; "
                 "DELETE free), per run (median of the reps).", "",
                 "| workload | server, one way | shim | s3fs | rclone | aws-cli |", "|---|---|---|---|---|---|"]
    order = ["w1", "w2", "w3", "open-cold", "w4-warm", "w4-cold", "evict-none", "evict-third", "w5-write",
             "w5-read", "w5-reread", "w6", "w7", "w8"]
    for w in order:
        for name, bench, targets in runs:
            r = bench.results
            if w not in r:
                continue
            cfg = bench.config
            rtt = 2 * cfg["one_way_ms"] / 1000

            def med(t, k, wl=w):
                v = [x for x in r.get(wl, {}).get(t, {}).get(k, []) if x is not None]
                return statistics.median(v) if v else None

            def e2e(t, wl=w):
                if wl in AWS_FOR.values():
                    return med("aws", "local", wl)
                return med(t, "durable", wl) if r.get(wl, {}).get(t, {}).get("durable") else med(t, "local", wl)
            n = med("native", "files")
            nbytes = med("native", "bytes") or 0
            limit = plus = None
            if w == "w6":
                limit = 200 * rtt
            elif n is not None and (w in READS or w in WRITES):
                limit = -(-int(n) // args.in_flight) * rtt
                if cfg.get("mbit"):
                    limit += nbytes / (cfg["mbit"] * 1e6 / 8)
                cost = {op: med(op, "ms", "server-cpu-per-request") for op in ("GET", "PUT")}
                op = "GET" if w in READS else "PUT"
                if cost.get(op) is not None:
                    plus = limit + n * cost[op] / 1000 / (os.cpu_count() or 1)
            shim = e2e("shim")
            aws = e2e("aws", AWS_FOR[w]) if w in AWS_FOR else None

            def f(x):
                return "%.3f" % x if x is not None else "–"

            def rt(a, b):
                return "%.2f×" % (a / b) if a is not None and b else "–"
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                w, name, f(limit), f(plus), f(shim), f(e2e("s3fs")), f(e2e("rclone")), f(aws),
                rt(shim, limit), rt(e2e("s3fs"), shim), rt(e2e("rclone"), shim)))

            def reqs(t, wl=w):
                per = r.get(wl, {}).get(t, {})
                counts = {k[4:]: med(t, k, wl) for k in per if k.startswith("req:")}
                counts = {k: v for k, v in counts.items() if v}
                if not counts:
                    return "0" if per.get("requests") else "–"
                abbrev = {"GET": "G", "HEAD": "H", "LIST": "L", "PUT": "P", "COPY": "C", "POST": "M",
                          "DELETE": "D", "OTHER": "O"}
                parts = " ".join("%s%d" % (abbrev.get(k, k), v) for k, v in sorted(counts.items()))
                return "%d (%s) $%.4f" % (sum(counts.values()), parts, request_cost(counts))
            req_lines.append("| %s | %s | %s | %s | %s | %s |" % (
                w, name, reqs("shim"), reqs("s3fs"), reqs("rclone"),
                reqs("aws", AWS_FOR[w]) if w in AWS_FOR else "–"))
    return lines + req_lines


def report_all(runs, args, started, out_dir):
    """One results file for every configuration of the run: the side-by-side tables, then
    each configuration's own tables."""
    host = socket.gethostname()
    machine = {"host": host, "cpus": os.cpu_count(), "kernel": platform.release(),
               "loadavg_at_start": started["load"], "loadavg_at_end": os.getloadavg()}
    lines = ["# Benchmark %s on %s" % (started["date"], host), "",
             "- machine: %d CPUs, kernel %s, load average %.2f at start, %.2f at end (a shared machine "
             "makes absolute times noisy: compare the ratios)" % (
                 machine["cpus"], machine["kernel"], machine["loadavg_at_start"][0],
                 machine["loadavg_at_end"][0]),
             "- tree: %s" % started["tree"],
             "- configurations: %s; every client (the shim, the peers, aws-cli) reaches the server "
             "through its own `delay-proxy` (crates/delay-proxy), which adds the one-way delay each way "
             "and counts its requests" % "; ".join(n for n, _, _ in runs), ""]
    lines += distance_lines(runs, args)
    data = {"date": started["date"], "machine": machine, "quick": args.quick, "reps": args.reps,
            "build": args.profile, "tree": started["tree"], "configs": []}
    for name, bench, targets in runs:
        sub, d = report(bench, targets, args, started, out_dir, write=False)
        d["config"] = bench.config
        d["name"] = name
        data["configs"].append(d)
        body = sub[sub.index("") + 1:] if "" in sub else sub
        # The configuration's own tables, one heading level down.
        body = [l for l in body if not l.startswith("- machine:") and not l.startswith("- tree:")]
        lines += ["", "# %s" % name, ""] + [("#" + l) if l.startswith("#") else l for l in body]
    os.makedirs(out_dir, exist_ok=True)
    stamp = started["date"].replace(":", "")[:15]
    tag = "-".join("%s%g" % (b.config["server"], b.config["one_way_ms"]) for _, b, _ in runs)
    stem = os.path.join(out_dir, "%s-%s-%s%s" % (stamp, host, tag, "-quick" if args.quick else ""))
    with open(stem + ".json", "w") as f:
        json.dump(data, f, indent=1, default=str)
    with open(stem + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    log("results: %s.md and .json" % stem)
    print("\n".join(lines))


def render_all(path, args):
    """Rebuilds a multi-configuration results file from its JSON."""
    from types import SimpleNamespace as NS
    with open(path) as f:
        d = json.load(f)
    runs = []
    for c in d["configs"]:
        bench = NS(results=c["raw"], notes=c["notes"], rss=c.get("agent_rss"), config=c["config"],
                   big_mib=c.get("big_mib", 16 if d["quick"] else 256))
        runs.append((c["name"], bench, [NS(name=n) for n in c["targets"]]))
    args.quick, args.reps, args.profile = d["quick"], d["reps"], d.get("build", "release")
    args.in_flight = d["configs"][0]["config"].get("in_flight", 64)
    args.mbit = d["configs"][0]["config"].get("mbit")
    started = {"date": d["date"], "load": d["machine"]["loadavg_at_start"], "tree": d["tree"]}
    report_all(runs, args, started, os.path.dirname(os.path.abspath(path)))


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated: w1..w8, open, evict, micro, rss, baselines")
    ap.add_argument("--peers", default="s3fs,rclone", help="comma-separated peers, or none")
    ap.add_argument("--render", metavar="JSON",
                    help="only rewrite the .md (and .json) of an earlier run from its JSON")
    ap.add_argument("--durable-deadline", type=float, default=None,
                    help="seconds to wait for a step to be in S3 (default 240, --quick 60)")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--exe")
    ap.add_argument("--profile", default="release")
    ap.add_argument("--tool")
    ap.add_argument("--tree", help="the source tree tarball")
    ap.add_argument("--tree-desc", default="")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--delay-ms", default="0",
                    help="one-way delays to add between every client and the server, e.g. 0,10")
    ap.add_argument("--server", default="ours", help="S3 servers: ours, moto (comma-separated)")
    ap.add_argument("--mbit", type=float, default=None, help="bandwidth cap of the delay proxy, each way")
    ap.add_argument("--in-flight", type=int, default=64,
                    help="requests in flight assumed by the physical limit row")
    ap.add_argument("--proxy", help="the delay-proxy binary")
    ap.add_argument("--moto", default="moto_server", help="the moto_server program")
    ap.add_argument("--compare-exe", help="another build's s3shim (its libs3shim.so beside it): "
                    "the micro rows measure it too, interleaved with this build's")
    ap.add_argument("--compare-label", default="before", help="its name in the tables")
    args = ap.parse_args()
    if args.render:
        with open(args.render) as f:
            multi = "configs" in json.load(f)
        render_all(args.render, args) if multi else render(args.render)
        return
    if not (args.exe and args.tool and args.tree):
        ap.error("--exe, --tool and --tree are required (scripts/bench passes them)")
    if args.reps is None:
        args.reps = 1 if args.quick else 5
    only = set(x for x in args.only.split(",") if x) or set(WORKLOADS) | {"open", "evict", "micro", "rss", "baselines"}
    peers = [p for p in args.peers.split(",") if p and p != "none"]
    started = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
               "load": os.getloadavg(), "tree": args.tree_desc}

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    base = tempfile.mkdtemp(prefix="s3shim-bench.")
    if os.environ.get("S3SHIM_BENCH_KEEP") != "1":  # kept: agent logs, caches, for a failure
        CLEANUP.add("remove " + base, lambda: shutil.rmtree(base, ignore_errors=True))
    CLEANUP.add("stray processes", lambda: kill_strays(base))
    servers = [x for x in args.server.split(",") if x]
    delays = [float(x) for x in args.delay_ms.split(",") if x]
    configs = [(srv_kind, d) for srv_kind in servers for d in delays]
    suffix = {c: "%s-%s" % (c[0], ("%g" % c[1]).replace(".", "p")) for c in configs}
    runs = []  # (config name, Bench, targets)
    try:
        os.makedirs(os.path.join(base, "home"))
        for srv_kind in servers:
            buckets = ["%s-%s" % (b, suffix[c]) for c in configs if c[0] == srv_kind for b in BUCKETS.values()]
            srv, ep = start_server(srv_kind, args, base, buckets)
            log("S3 server (%s)" % srv_kind, ep, "work dir", base)
            for c in configs:
                if c[0] != srv_kind:
                    continue
                name = "%s, %g ms one way" % (srv_kind, c[1])
                cbase = os.path.join(base, suffix[c])
                os.makedirs(cbase)
                log("== configuration:", name)

                def proxied(who):
                    return DelayProxy(args.proxy, ep, c[1], args.mbit, who)
                aws_proxy = proxied("aws")
                bench = Bench(args, cbase, args.exe, args.tool, args.tree, ep, srv.pid,
                              aws_endpoint=aws_proxy.endpoint, aws_bucket="%s-%s" % (BUCKETS["aws"], suffix[c]),
                              aws_proxy=aws_proxy)
                bench.config = {"server": srv_kind, "one_way_ms": c[1], "mbit": args.mbit,
                                "in_flight": args.in_flight}
                targets = [Native(cbase)]
                p = proxied("shim")
                targets.append(Shim(cbase, args.exe, p.endpoint))
                targets[-1].proxy = p
                for peer in peers:
                    p = proxied(peer)
                    t = {"s3fs": S3fs, "rclone": Rclone}[peer](cbase, p.endpoint)
                    t.proxy = p
                    targets.append(t)
                for t in targets[1:]:
                    t.bucket = "%s-%s" % (BUCKETS[t.name], suffix[c])
                compare = None
                if args.compare_exe and "micro" in only:
                    os.makedirs(os.path.join(cbase, "compare"))
                    p = proxied("compare")
                    cs = Shim(os.path.join(cbase, "compare"), args.compare_exe, p.endpoint)
                    cs.proxy, cs.bucket = p, "%s-%s" % (BUCKETS["compare"], suffix[c])
                    compare = (args.compare_label, cs)
                    cs.start()
                for t in targets:
                    t.start()
                wl = [w for w in WORKLOADS if w in only]
                extra = {"open", "evict"} & only
                for rep in range(args.reps):
                    if wl or "evict" in extra:
                        log("rep %d/%d" % (rep + 1, args.reps))
                        bench.one_rep(targets, set(wl) | extra)
                    if "baselines" in only:
                        bench.baselines(targets[0])
                if "micro" in only:
                    bench.micro(targets[1], args.reps if not args.quick else 3, compare)
                if "rss" in only:
                    bench.agent_rss(targets[1])
                for t in reversed(targets):
                    t.stop()
                if compare:
                    compare[1].stop()
                runs.append((name, bench, targets))
            stop_process(srv)
        report_all(runs, args, started, args.out)
    finally:
        CLEANUP.run_all()


def start_server(kind, args, base, buckets):
    """Starts `s3shim server` or moto on loopback with these buckets: (process, endpoint)."""
    out = open(os.path.join(base, "server-%s.out" % kind), "w+")
    if kind == "ours":
        srv, _ = spawn([args.exe, "server", "--data", os.path.join(base, "s3data"),
                        "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY]
                       + sum((["--bucket", b] for b in buckets), []),
                       stdout=out, stderr=subprocess.STDOUT, name="s3shim server")

        def endpoint():
            out.seek(0)
            for line in out.read().splitlines():
                if line.startswith("endpoint "):
                    return line.split()[1]
            return None
        wait_for(lambda: endpoint() or srv.poll() is not None, 60, "s3shim server")
        ep = endpoint()
        if not ep:
            raise RuntimeError("s3shim server did not start: " + out.name)
        return srv, ep
    if kind != "moto":
        raise RuntimeError("unknown --server %s (ours, moto)" % kind)
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    srv, _ = spawn([args.moto, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                   name="moto_server")
    ep = "http://127.0.0.1:%d" % port
    s3 = S3(ep)

    def up():
        try:
            s3.client.list_buckets()
            return True
        except Exception:  # noqa: BLE001 - not listening yet
            return srv.poll() is not None
    wait_for(up, 60, "moto_server")
    if srv.poll() is not None:
        raise RuntimeError("moto_server exited: " + out.name)
    for b in buckets:
        s3.client.create_bucket(Bucket=b)
    return srv, ep


if __name__ == "__main__":
    main()
