#!/bin/sh
# The main job on a fresh machine: set up, build amber, and run a real container from the busybox
# rootfs: create it at an exact host pid, start it, show state/list/ps, checkpoint it (the
# native engine, no CRIU), restore it and show the pids match and the program goes on, then
# stop and delete it.
#   scripts/demo.sh
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root" >&2; exit 1; }
scripts/setup.sh
cargo build --release --locked
amber="$repo/target/release/amber"
work=$(mktemp -d /tmp/amber-demo.XXXXXX)
root="$work/state"
id=amber-demo-$$
cleanup() {
    "$amber" --root "$root" delete --force "$id" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

mkdir -p "$work/bundle" "$work/out"
cd "$work/bundle"
"$amber" spec
# Point the template at the shared rootfs; the container counts into a host directory, with a
# child process (sleep) most of the time, next to a subtree in nested pid namespaces.
python3 - "$repo/target/rootfs" "$work/out" <<'PY'
import json, sys
c = json.load(open("config.json"))
c["root"]["path"] = sys.argv[1]
c["process"]["terminal"] = False
# Two nested pid namespaces inside the container (what no CRIU can checkpoint): unshare -p -f
# makes a shell that is pid 1 of a second namespace, and inside it a sleep that is pid 1 of a third.
c["process"]["args"] = ["sh", "-c", "echo hello from pid $$ in $(hostname); unshare -p -f sh -c 'unshare -p -f sleep 1000000 & sleep 1000000' & i=0; while :; do i=$((i+1)); echo $i > /out/count.tmp; mv /out/count.tmp /out/count; sleep 3; done"]
# unshare(CLONE_NEWPID) needs CAP_SYS_ADMIN in the container's user namespace.
for k in ("bounding", "effective", "permitted"):
    c["process"]["capabilities"][k].append("CAP_SYS_ADMIN")
c["mounts"].append({"destination": "/out", "type": "bind", "source": sys.argv[2], "options": ["rbind", "rw"]})
json.dump(c, open("config.json", "w"), indent=2)
PY

# A free host pid for the container's init: pid-exact start with clone3(set_tid).
pid=4242
while [ -e /proc/$pid ]; do pid=$((pid + 1)); done

step amber create --init-pid $pid --pid-file pid "$id"
"$amber" --root "$root" create --bundle . --init-pid "$pid" --pid-file "$work/pid" "$id" > "$work/out/console" 2>&1
echo "pid file: $(cat "$work/pid")  (asked for $pid)"
[ "$(cat "$work/pid")" = "$pid" ] || { echo "demo: init did not get pid $pid" >&2; exit 1; }
step amber state "$id"
"$amber" --root "$root" state "$id"; echo
step amber start "$id"
"$amber" --root "$root" start "$id"
sleep 3.5
cat "$work/out/console"
grep NSpid "/proc/$pid/status"
step amber list
"$amber" --root "$root" list
step amber ps --format nspid "$id"
before=$("$amber" --root "$root" ps --format nspid "$id")
echo "$before"

step amber checkpoint --image-path img "$id"
"$amber" --root "$root" checkpoint --image-path "$work/img" --work-path "$work" "$id"
cat "$work/dump.log"
frozen=$(cat "$work/out/count")
sleep 3.5
echo "counter while checkpointed: $frozen -> $(cat "$work/out/count") (stopped)"
"$amber" --root "$root" list -q | grep -qx "$id" && { echo "demo: container still listed after checkpoint" >&2; exit 1; }

step amber checkpoint-inspect --image-path img
"$amber" checkpoint-inspect --image-path "$work/img" > "$work/inspect.json"
python3 - "$work/inspect.json" <<'PY2'
import json, sys
t = json.load(open(sys.argv[1]))["tree"]
for e in t["tasks"]:
    print("  dumped pid %-5s ppid %-5s NSpid (container level down) %s" % (e["pid"], e["ppid"], e.get("nspid") or [e["pid"]]))
PY2

step amber restore --image-path img "$id"
"$amber" --root "$root" restore --detach --image-path "$work/img" --work-path "$work" --pid-file "$work/pid2" "$id" >> "$work/out/console" 2>&1
cat "$work/restore.log"
after=$("$amber" --root "$root" ps --format nspid "$id")
echo "pids before: $before"
echo "pids after:  $after"
inner() { echo "$1" | python3 -c 'import json,sys; print(sorted(p["nspid"] for p in json.load(sys.stdin)))'; }
dumped=$(python3 -c 'import json,sys; print(sorted(e.get("nspid") or [e["pid"]] for e in json.load(open(sys.argv[1]))["tree"]["tasks"]))' "$work/inspect.json")
echo "NSpid vectors in the image:    $dumped"
echo "NSpid vectors after restore:   $(inner "$after")"
[ "$dumped" = "$(inner "$after")" ] || { echo "demo: the restored pids differ from the dumped ones" >&2; exit 1; }
echo "every process is back at its exact pid at every pid-namespace level"
deepest=$(python3 -c 'import json,sys; print(max(len(e.get("nspid") or [1]) for e in json.load(open(sys.argv[1]))["tree"]["tasks"]))' "$work/inspect.json")
[ "$deepest" -ge 3 ] || { echo "demo: expected a task 3 pid-namespace levels deep, deepest is $deepest" >&2; exit 1; }
sleep 3.5
echo "counter after restore: $frozen -> $(cat "$work/out/count") (continues)"
step amber kill "$id" KILL
"$amber" --root "$root" kill "$id" KILL
sleep 0.3
"$amber" --root "$root" state "$id" | grep status
step amber delete "$id"
"$amber" --root "$root" delete "$id"
"$amber" --root "$root" list -f json
echo "demo: ok"
