#!/usr/bin/env python3
"""Benchmark amber next to runc and crun in one run, reported as ratios (never a timed test).

  scripts/bench.sh [N]     N iterations per runtime (default 100)

For each runtime: `run` of a container whose process is /bin/true (create + start + wait +
delete in one foreground command), and create/start/delete as separate commands. Wall time per
container and CPU time (user+sys of the runtime and everything it forked, from RUSAGE_CHILDREN).
crun 1.8 refuses this hybrid cgroup layout
unless it runs in a private mount namespace with /sys/fs/cgroup/unified unmounted, so each crun
command is wrapped accordingly (the wrapper's cost is measured separately and subtracted).
"""
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100
# CPU is RUSAGE_CHILDREN of a fresh measuring process per runtime.


def bundle(tmp):
    b = os.path.join(tmp, "bundle")
    os.makedirs(b)
    subprocess.run([os.path.join(REPO, "target/release/amber"), "spec", "--bundle", b], check=True)
    with open(os.path.join(b, "config.json")) as f:
        c = json.load(f)
    c["root"]["path"] = os.path.join(REPO, "target/rootfs")
    c["process"]["terminal"] = False
    c["process"]["args"] = ["/bin/true"]
    c["ociVersion"] = "1.0.2-dev"  # crun 1.8 accepts only 1.0.x
    with open(os.path.join(b, "config.json"), "w") as f:
        json.dump(c, f)
    return b


def runtimes():
    out = [("amber", [os.path.join(REPO, "target/release/amber")])]
    if shutil.which("runc"):
        out.append(("runc", [shutil.which("runc")]))
    if shutil.which("crun"):
        # A private mount namespace without the hybrid unified mount (crun 1.8 refuses it).
        wrap = ["unshare", "-m", "sh", "-c", 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"', "crun-wrap"]
        out.append(("crun", wrap + [shutil.which("crun")]))
    return out


def measure(cmds):
    """Run each argv in cmds in order; return (wall, cpu, max_rss_kib)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    # The container inherits the runtime's stdio: a pipe would keep create waiting on its reader,
    # so errors go to a file.
    with tempfile.TemporaryFile() as err:
        for argv in cmds:
            err.seek(0)
            err.truncate()
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            if r.returncode != 0:
                err.seek(0)
                sys.exit(f"bench: {' '.join(argv)} failed ({r.returncode}): {err.read().decode(errors='replace')}")
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, after.ru_maxrss


def one(name, argv, b, tmp, wrap_cost):
    """Measure one runtime in a fresh process, so RUSAGE_CHILDREN (CPU and peak RSS) is its own."""
    root = os.path.join(tmp, "state-" + name)
    base = argv + ["--root", root]
    measure([base + ["run", "--bundle", b, f"warm-{name}"]])
    run = measure([base + ["run", "--bundle", b, f"r{i}-{name}"] for i in range(N)])
    split = []
    for i in range(N):
        cid = f"s{i}-{name}"
        split += [base + ["create", "--bundle", b, cid], base + ["start", cid], base + ["delete", "-f", cid]]
    sp = measure(split)
    if name == "crun":
        # Subtract the unshare wrapper: once per command.
        run = (run[0] - wrap_cost[0], run[1] - wrap_cost[1], run[2])
        sp = (sp[0] - 3 * wrap_cost[0], sp[1] - 3 * wrap_cost[1], sp[2])
    return {"run": run, "split": sp, "rss": sp[2]}


def main():
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    if len(sys.argv) > 2 and sys.argv[2] == "--one":
        name, b, tmp, wrap = sys.argv[3], sys.argv[4], sys.argv[5], json.loads(sys.argv[6])
        argv = dict(runtimes())[name]
        print(json.dumps(one(name, argv, b, tmp, wrap)))
        return
    tmp = tempfile.mkdtemp(prefix="amber-bench.")
    try:
        b = bundle(tmp)
        wrap_cost = measure([["unshare", "-m", "true"]] * N)
        results = {}
        for name, _ in runtimes():
            r = subprocess.run(
                [sys.executable, __file__, str(N), "--one", name, b, tmp, json.dumps(wrap_cost)],
                capture_output=True, text=True,
            )
            if r.returncode != 0:
                sys.exit(f"bench: measuring {name} failed: {r.stderr}")
            out = r.stdout
            results[name] = json.loads(out)
        print(f"\n{N} containers of /bin/true per runtime (per container, milliseconds)\n")
        print(f"{'runtime':8} {'run wall':>9} {'run cpu':>9} {'c+s+d wall':>11} {'c+s+d cpu':>10}")
        for name, r in results.items():
            print(f"{name:8} {1000*r['run'][0]/N:9.2f} {1000*r['run'][1]/N:9.2f} "
                  f"{1000*r['split'][0]/N:11.2f} {1000*r['split'][1]/N:10.2f}")
        print("\nratios (amber / other; below 1.00 means amber is better)")
        a = results["amber"]
        for name, r in results.items():
            if name == "amber":
                continue
            print(f"  vs {name:5}: run wall {a['run'][0]/r['run'][0]:.2f}  run cpu {a['run'][1]/r['run'][1]:.2f}  "
                  f"create+start+delete wall {a['split'][0]/r['split'][0]:.2f}  cpu {a['split'][1]/r['split'][1]:.2f}")
        # Peak RSS is not reported: RUSAGE_CHILDREN's ru_maxrss counts the forked Python before
        # exec, which dwarfs the runtimes (all three read ~14.5 MiB). A per-runtime measurement
        # needs a smaller launcher; left for the next benchmark pass.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
