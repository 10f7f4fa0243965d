#!/usr/bin/env python3
"""Checkpoint/restore benchmark (a benchmark, never a timed test): amber next to runc and crun.

  scripts/bench-cr.sh [N]      N repetitions per workload (default 5); medians are reported

Workloads, each the container's init:
  idle    busybox `sh -c 'sleep 1000000; :'` (two processes)
  256M    scripts/bench-cr/hog.c holding 256 MiB of dirtied private anonymous memory
  1G      the same with 1 GiB

Per repetition (amber): `run -d`; `checkpoint --leave-running` (frozen time: dump.log's figure,
from the freeze to the moment the tasks run again, and the hog's own view: the longest gap
between two of its 1 ms ticks); kill and delete; `run -d` again; `checkpoint` (the default:
the container is killed; wall time, image size, amber's peak RSS); `restore -d` (wall time,
peak RSS); then the hog verifies every word of its memory and must report PASS.
Peak RSS and wall time come from scripts/bench-cr/rusage-run.c, a small static launcher that
wait4()s the runtime process itself (so the figure is the runtime's, not a forked Python's).
Images go to a directory on the same file system as $TMPDIR (page cache, no fsync; runc/CRIU
do not fsync either). Before each measured command the machine is let settle (sync, 1 s). runc and crun delegate checkpoint to CRIU; the CRIU here (Debian 12's
3.17) does not run on this kernel, so their attempt is shown with its error, and amber is
compared with the reference figures for runc + CRIU 4.2 measured on this kind of VM (issue 7).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AMBER = os.path.join(REPO, "target/release/amber")
BUILD = os.path.join(REPO, "target/bench-cr")
# runc + CRIU 4.2 on this 2-vCPU VM (issue 7): seconds.
REFERENCE = {"idle": (0.21, 0.23), "1G": (0.90, 1.15)}
WORKLOADS = [("idle", None), ("256M", 256), ("1G", 1024)]


def sh(argv, **kw):
    return subprocess.run(argv, check=True, **kw)


def bundle(tmp, name, args, out):
    b = os.path.join(tmp, "bundle-" + name)
    os.makedirs(b)
    sh([AMBER, "spec", "--bundle", b])
    with open(os.path.join(b, "config.json")) as f:
        c = json.load(f)
    c["root"]["path"] = os.path.join(REPO, "target/rootfs")
    c["process"]["terminal"] = False
    c["process"]["args"] = args
    c["ociVersion"] = "1.0.2-dev"  # crun 1.8 accepts only 1.0.x
    c["mounts"].append({"destination": "/out", "type": "bind", "source": out, "options": ["rbind", "rw"]})
    c["mounts"].append({"destination": "/bench", "type": "bind", "source": BUILD, "options": ["rbind", "ro"]})
    with open(os.path.join(b, "config.json"), "w") as f:
        json.dump(c, f)
    return b


class Runner:
    """Runs runtime commands through rusage-run with stdio on files (the container inherits them)."""

    def __init__(self, tmp, argv, root):
        self.tmp, self.argv, self.root = tmp, argv, root
        self.stdout = open(os.path.join(tmp, "container.out"), "ab")

    def __call__(self, *args, check=True):
        rec = os.path.join(self.tmp, "rusage.txt")
        if os.path.exists(rec):
            os.unlink(rec)
        # A named file (the container inherits it: an unlinked one could not be checkpointed).
        errpath = os.path.join(self.tmp, "runtime.err")
        with open(errpath, "w+b") as err:
            r = subprocess.run(
                [os.path.join(BUILD, "rusage-run"), rec, *self.argv, "--root", self.root, *args],
                stdin=subprocess.DEVNULL, stdout=self.stdout, stderr=err,
            )
            err.seek(0)
            msg = err.read().decode(errors="replace")
        if check and r.returncode != 0:
            raise RuntimeError(f"{os.path.basename(self.argv[-1])} {' '.join(args)} failed ({r.returncode}): {msg}")
        try:
            with open(rec) as f:
                code, wall, rss, user, system = f.read().split()
            return {"rc": int(code), "wall": float(wall), "rss_kib": int(rss), "cpu": float(user) + float(system),
                    "stderr": msg}
        except FileNotFoundError:
            return {"rc": r.returncode, "wall": float("nan"), "rss_kib": 0, "cpu": float("nan"), "stderr": msg}


def wait_file(path, timeout=60):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {path}")
        time.sleep(0.01)
    with open(path) as f:
        return f.read().strip()


def settle():
    """Let earlier steps' background work finish before a measurement: write back dirty data
    (the image just written, the hog's files) and give the file system a moment for the
    journal and the discards of deleted images (this disk is mounted with `discard`); without
    it, that work lands on whichever step runs next, checkpoint or restore, at random."""
    sh(["sync"])
    time.sleep(1)


def init_pid(run, cid):
    r = subprocess.run([AMBER, "--root", run.root, "state", cid], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["pid"]


def du(path):
    total = 0
    for d, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(d, f)) for f in files)
    return total


def dump_log_frozen(work):
    """The 'frozen X s' figure of the last line of dump.log."""
    with open(os.path.join(work, "dump.log")) as f:
        line = f.read().strip().splitlines()[-1]
    words = line.replace(";", " ").replace("(", " ").split()
    return float(words[words.index("frozen") + 1].rstrip("s"))


def clean_out(out):
    for name in os.listdir(out):
        os.unlink(os.path.join(out, name))


def amber_once(tmp, name, mib, b, out, i):
    run = Runner(tmp, [AMBER], os.path.join(tmp, "state"))
    cid = f"cr-{name}-{i}"
    hog = mib is not None
    res = {}
    clean_out(out)
    # 1. --leave-running: frozen time as amber and as the hog see it.
    run("run", "-d", "--bundle", b, cid)
    if hog:
        wait_file(os.path.join(out, "hog.ready"))
    else:
        time.sleep(0.2)
    img = os.path.join(tmp, f"img-{name}-{i}")
    work = os.path.join(tmp, f"work-{name}-{i}")
    settle()
    r = run("checkpoint", "--leave-running", "--image-path", img + "-lr", "--work-path", work, cid)
    res["lr_wall"] = r["wall"]
    res["frozen"] = dump_log_frozen(work)
    if hog:
        pid = init_pid(run, cid)
        os.kill(pid, 10)  # SIGUSR1: report the longest gap
        res["hog_gap"] = int(wait_file(os.path.join(out, "hog.gap"))) / 1e6
    shutil.rmtree(img + "-lr")
    run("delete", "-f", cid)
    clean_out(out)
    # 2. checkpoint (kill) + restore.
    run("run", "-d", "--bundle", b, cid)
    if hog:
        wait_file(os.path.join(out, "hog.ready"))
    else:
        time.sleep(0.2)
    settle()
    r = run("checkpoint", "--image-path", img, "--work-path", work, cid)
    res["ckpt_wall"], res["ckpt_rss"], res["ckpt_cpu"] = r["wall"], r["rss_kib"], r["cpu"]
    res["ckpt_frozen"] = dump_log_frozen(work)
    res["image"] = du(img)
    settle()
    r = run("restore", "-d", "--bundle", b, "--image-path", img, "--work-path", work, cid)
    res["rest_wall"], res["rest_rss"], res["rest_cpu"] = r["wall"], r["rss_kib"], r["cpu"]
    if hog:
        pid = init_pid(run, cid)
        os.kill(pid, 12)  # SIGUSR2: verify
        verdict = wait_file(os.path.join(out, "hog.result"))
        if verdict != "PASS":
            raise RuntimeError(f"{name}: the restored hog says {verdict}")
    else:
        st = json.loads(subprocess.run([AMBER, "--root", run.root, "state", cid], capture_output=True,
                                       text=True, check=True).stdout)
        if st["status"] != "running":
            raise RuntimeError(f"{name}: restored container is {st['status']}")
    run("delete", "-f", cid)
    shutil.rmtree(img)
    return res


def other_runtime(tmp, rt_name, b):
    """runc/crun: run the idle container and try to checkpoint it; report what happens."""
    root = os.path.join(tmp, "state-" + rt_name)
    argv = [shutil.which(rt_name)]
    if rt_name == "crun":
        # crun 1.8 refuses this hybrid cgroup layout unless the unified mount is hidden (see bench.py).
        argv = ["unshare", "-m", "sh", "-c", 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"', "w"] + argv
    run = Runner(tmp, argv, root)
    cid = f"cr-{rt_name}"
    try:
        run("run", "-d", "--bundle", b, cid)
        time.sleep(0.2)
        work = os.path.join(tmp, f"work-{rt_name}")
        r = run("checkpoint", "--image-path", os.path.join(tmp, f"img-{rt_name}"), "--work-path", work, cid,
                check=False)
        err = r["stderr"].strip()
        log = os.path.join(work, "dump.log")
        if os.path.exists(log):
            with open(log) as f:
                tail = [line for line in f.read().splitlines() if "rror" in line][-3:]
            err += ("\n    dump.log: " + "\n    dump.log: ".join(tail)) if tail else ""
        return r["rc"], err
    finally:
        subprocess.run(argv + ["--root", root, "delete", "-f", cid], capture_output=True)


def med(rows, key):
    vals = [r[key] for r in rows if key in r]
    return statistics.median(vals) if vals else float("nan")


def main():
    if os.geteuid() != 0:
        sys.exit("bench-cr: run as root")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    only = sys.argv[2].split(",") if len(sys.argv) > 2 else None
    load_before = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="amber-bench-cr.")
    out = os.path.join(tmp, "out")
    os.makedirs(out)
    results = {}
    try:
        for name, mib in WORKLOADS:
            if only and name not in only:
                continue
            args = ["sh", "-c", "sleep 1000000; :"] if mib is None else ["/bench/hog", str(mib), "/out"]
            b = bundle(tmp, name, args, out)
            rows = []
            for i in range(n):
                rows.append(amber_once(tmp, name, mib, b, out, i))
                print(f"  {name} #{i + 1}: " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                                                         for k, v in rows[-1].items()), file=sys.stderr)
            results[name] = rows
        others = []
        for rt in ("runc", "crun"):
            if shutil.which(rt):
                b = bundle(tmp, "idle-" + rt, ["sh", "-c", "sleep 1000000; :"], out)
                others.append((rt, other_runtime(tmp, rt, b)))
    finally:
        subprocess.run(["sh", "-c", f'for c in $({AMBER} --root {tmp}/state list -q 2>/dev/null); do '
                                    f'{AMBER} --root {tmp}/state delete -f "$c"; done'])
        shutil.rmtree(tmp, ignore_errors=True)

    load_after = os.getloadavg()
    print(f"\namber checkpoint/restore, median of {n} (wall seconds; RSS MiB of the amber process)")
    print(f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
          "(other work on the machine shows in these figures)\n")
    def rng(rows, key):
        vals = [r[key] for r in rows if key in r]
        return f"{min(vals):.3f}-{max(vals):.3f}" if vals else "-"

    hdr = (f"{'workload':9} {'ckpt wall':>9} {'frozen':>7} {'hog gap':>8} {'image MiB':>9} {'ckpt RSS':>8} "
           f"{'rest wall':>9} {'rest RSS':>8}")
    print(hdr)
    for name, rows in results.items():
        gap = med(rows, "hog_gap")
        print(f"{name:9} {med(rows, 'ckpt_wall'):9.3f} {med(rows, 'frozen'):7.3f} "
              f"{'-' if gap != gap else f'{gap:.3f}':>8} {med(rows, 'image') / 2**20:9.1f} "
              f"{med(rows, 'ckpt_rss') / 1024:8.1f} {med(rows, 'rest_wall'):9.3f} {med(rows, 'rest_rss') / 1024:8.1f}")
    print("\nranges (min-max over the repetitions)")
    for name, rows in results.items():
        print(f"  {name:5}: checkpoint {rng(rows, 'ckpt_wall')} (CPU {rng(rows, 'ckpt_cpu')})  "
              f"frozen {rng(rows, 'frozen')}  restore {rng(rows, 'rest_wall')} (CPU {rng(rows, 'rest_cpu')})")
    print("  CPU: user+system seconds of the amber process and the children it waited for. A slow run\n"
          "  that costs more CPU too did costlier work (fresh memory the VM's host had to fault in), one\n"
          "  with the same CPU waited (for other work on the machine).")
    print("\n  frozen: dump.log, from the freeze until the tasks run again (checkpoint --leave-running);"
          "\n  hog gap: the longest pause the hog itself saw between two 1 ms ticks during that checkpoint.")
    print("\nratios vs runc + CRIU 4.2 on this VM (issue 7 reference; below 1.00 means amber is faster)")
    for name, (ck, rs) in REFERENCE.items():
        if name in results:
            rows = results[name]
            print(f"  {name:5}: checkpoint {med(rows, 'ckpt_wall'):.3f}s / {ck:.2f}s = {med(rows, 'ckpt_wall') / ck:.2f}"
                  f"   restore {med(rows, 'rest_wall'):.3f}s / {rs:.2f}s = {med(rows, 'rest_wall') / rs:.2f}")
    for rt, (rc, err) in others:
        print(f"\n{rt} checkpoint (criu here: {criu_version()}) exit {rc}:\n    " + (err or "(no message)").replace("\n", "\n    "))


def criu_version():
    try:
        r = subprocess.run(["criu", "--version"], capture_output=True, text=True, timeout=10)
        return r.stdout.split("\n")[0].replace("Version: ", "").strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"


if __name__ == "__main__":
    main()
