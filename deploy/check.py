"""Checks the Kubernetes example (deploy/kubernetes/*.yaml) with a YAML parser and the
promises the README makes for it: one pod per user, a bounded emptyDir cache at the
image's cache path, a preStop flush and a grace period longer than the drain timeout,
credentials from a Secret (or workload identity), nothing privileged.
Run by scripts/test (python with PyYAML from the test venv): python3 deploy/check.py"""
import pathlib
import sys

import yaml

here = pathlib.Path(__file__).parent
problems = []


def need(cond, what):
    if not cond:
        problems.append(what)


files = sorted((here / "kubernetes").glob("*.yaml"))
need(files, "no deploy/kubernetes/*.yaml")
for f in files:
    docs = [d for d in yaml.safe_load_all(f.read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    need({"Deployment", "Secret", "ServiceAccount", "Service"} <= kinds.keys(), f"{f.name}: kinds {sorted(kinds)}")
    dep = kinds["Deployment"]
    spec = dep["spec"]
    need(spec.get("replicas") == 1, "one pod per user: replicas 1")
    need(spec.get("strategy", {}).get("type") == "Recreate", "Recreate: never two pods on one prefix")
    pod = spec["template"]["spec"]
    need(pod["securityContext"].get("runAsNonRoot") is True, "runAsNonRoot")
    [c] = pod["containers"]
    sc = c["securityContext"]
    need(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
    need(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities drop ALL")
    need(not sc.get("privileged"), "not privileged")
    env = {e["name"]: e for e in c["env"]}
    need(env["S3SHIM_KEY_PREFIX"]["value"].endswith("/"), "a prefix per user ending in /")
    cache = env["S3SHIM_CACHE"]["value"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    cache_vol = [n for n, p in mounts.items() if cache.startswith(p + "/")]
    need(cache_vol, f"S3SHIM_CACHE {cache} is on a volume")
    if cache_vol:
        v = vols[max(cache_vol, key=lambda n: len(mounts[n]))]
        need("sizeLimit" in v.get("emptyDir", {}), "the cache is an emptyDir with a sizeLimit")
    for v in vols.values():
        need("hostPath" not in v, f"no hostPath ({v['name']})")
    need(c["lifecycle"]["preStop"]["exec"]["command"][-1] == "flush", "preStop runs s3shim flush")
    grace = pod["terminationGracePeriodSeconds"]
    drain = int(env["S3SHIM_DRAIN_TIMEOUT_SECS"]["value"])
    need(grace > drain, f"grace period {grace}s > drain timeout {drain}s")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        need(env[k]["valueFrom"]["secretKeyRef"]["name"] == kinds["Secret"]["metadata"]["name"], f"{k} from the Secret")
    need(pod["serviceAccountName"] == kinds["ServiceAccount"]["metadata"]["name"], "the ServiceAccount (workload identity)")
    resources = {d["kind"] for d in docs}
    print(f"deploy/check.py: {f.name}: {len(docs)} documents ({', '.join(sorted(resources))})")

for p in problems:
    print(f"deploy/check.py: FAIL: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
