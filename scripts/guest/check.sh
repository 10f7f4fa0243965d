#!/bin/sh
# Run inside the test guest (scripts/test-guest.sh scripts/guest/check.sh): check that the guest
# is a pure cgroup v2 host on a 6.1 kernel, then run a busybox container with runc under pids
# and memory limits and check that both limits are enforced.
#   RUNC (default /usr/sbin/runc), AMBER_ROOTFS (default <repo>/target/rootfs)
set -u
repo=$(cd "$(dirname "$0")/../.." && pwd)
runc=${RUNC:-/usr/sbin/runc}
rootfs=${AMBER_ROOTFS:-"$repo/target/rootfs"}
bad=0
check() { # NAME OK-CONDITION-EXIT-STATUS
    if [ "$2" = 0 ]; then echo "ok   $1"; else echo "FAIL $1"; bad=1; fi
}

fstype=$(stat -fc %T /sys/fs/cgroup)
echo "stat -fc %T /sys/fs/cgroup: $fstype"
[ "$fstype" = cgroup2fs ]; check "cgroup2 at /sys/fs/cgroup" $?
n1=$(awk '$3 == "cgroup"' /proc/self/mounts | wc -l)
[ "$n1" = 0 ]; check "no cgroup v1 hierarchy mounted" $?
echo "uname -r: $(uname -r)"
case $(uname -r) in 6.1.*) r=0 ;; *) r=1 ;; esac
check "guest kernel is 6.1" $r
echo "controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"

if [ ! -x "$runc" ] || [ ! -x "$rootfs/bin/busybox" ]; then
    echo "FAIL runc ($runc) or the rootfs ($rootfs) is missing"
    exit 1
fi
"$runc" --version | head -n 1
t0=$(date +%s.%N)
b=$(mktemp -d /tmp/guest-check.XXXXXX)
cg=/guest-check-$$
(cd "$b" && "$runc" spec) || { echo "FAIL runc spec"; exit 1; }
# Limits: 16 pids, 32 MiB of memory without swap; a script exercising both.
python3 - "$b/config.json" "$rootfs" "$cg" <<'EOF' || { echo "FAIL editing config.json"; exit 1; }
import json, sys
path, rootfs, cg = sys.argv[1:]
c = json.load(open(path))
c["root"] = {"path": rootfs, "readonly": True}
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", """
echo "in container: pids.max=$(cat /sys/fs/cgroup/pids.max) memory.max=$(cat /sys/fs/cgroup/memory.max)"
(i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); done) 2>/dev/null
echo "pids.current=$(cat /sys/fs/cgroup/pids.current) pids.events.max=$(awk '$1 == "max" {print $2}' /sys/fs/cgroup/pids.events)"
killall sleep 2>/dev/null
awk 'BEGIN { s = "x"; while (1) s = s s }'
echo "hog exit=$?"
echo "memory.events.oom_kill=$(awk '$1 == "oom_kill" {print $2}' /sys/fs/cgroup/memory.events)"
exit 7
"""]
c["linux"]["cgroupsPath"] = cg
c["linux"]["resources"] = {
    "pids": {"limit": 16},
    "memory": {"limit": 32 << 20, "swap": 32 << 20},
}
json.dump(c, open(path, "w"), indent=2)
EOF
"$runc" --root "$b/state" run --bundle "$b" "guest-check-$$" >"$b/out" 2>"$b/err"
rc=$?
t1=$(date +%s.%N)
sed 's/^/  | /' "$b/out" "$b/err"
[ "$rc" = 7 ]; check "runc run exit code 7 (was $rc)" $?
grep -q "pids.max=16 memory.max=33554432" "$b/out"; check "limits visible in the container's cgroup" $?
cur=$(sed -n 's/.*pids.current=\([0-9]*\).*/\1/p' "$b/out")
evmax=$(sed -n 's/.*pids.events.max=\([0-9]*\).*/\1/p' "$b/out")
[ -n "$cur" ] && [ "$cur" -le 16 ] && [ "${evmax:-0}" -gt 0 ]
check "pids limit enforced (pids.current=$cur, forks refused=$evmax)" $?
grep -q "hog exit=137" "$b/out"; check "memory hog OOM-killed (exit 137)" $?
oom=$(sed -n 's/.*oom_kill=\([0-9]*\).*/\1/p' "$b/out")
[ "${oom:-0}" -ge 1 ]; check "memory.events oom_kill=$oom" $?
[ ! -e "/sys/fs/cgroup$cg" ]; check "cgroup $cg removed after the run" $?
rm -rf "$b"
echo "runc check took $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s"
[ "$bad" = 0 ] && echo "guest check: all ok"
exit $bad
