#!/bin/sh
# The main job on a fresh machine: set up, build amber, and run a real container from the busybox
# rootfs: create it at an exact host pid, start it, show state/list/ps, stop and delete it.
# (Checkpoint/restore joins this demo when it lands.)
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

mkdir -p "$work/bundle"
cd "$work/bundle"
"$amber" spec
# Point the template at the shared rootfs and run a small long-lived program.
python3 - "$repo/target/rootfs" <<'PY'
import json, sys
c = json.load(open("config.json"))
c["root"]["path"] = sys.argv[1]
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", "echo hello from pid $$ in $(hostname); while :; do sleep 1; done"]
json.dump(c, open("config.json", "w"), indent=2)
PY

# A free host pid for the container's init: pid-exact start with clone3(set_tid).
pid=4242
while [ -e /proc/$pid ]; do pid=$((pid + 1)); done

step amber create --init-pid $pid --pid-file pid "$id"
"$amber" --root "$root" create --bundle . --init-pid "$pid" --pid-file "$work/pid" "$id" > "$work/out" 2>&1
echo "pid file: $(cat "$work/pid")  (asked for $pid)"
step amber state "$id"
"$amber" --root "$root" state "$id"; echo
step amber start "$id"
"$amber" --root "$root" start "$id"
sleep 0.5
cat "$work/out"
grep NSpid "/proc/$pid/status"
step amber list
"$amber" --root "$root" list
step amber ps --format json "$id"
"$amber" --root "$root" ps --format json "$id"
step amber kill "$id" KILL
"$amber" --root "$root" kill "$id" KILL
sleep 0.3
"$amber" --root "$root" state "$id" | grep status
step amber delete "$id"
"$amber" --root "$root" delete "$id"
"$amber" --root "$root" list -f json
[ "$(cat "$work/pid")" = "$pid" ] || { echo "demo: init did not get pid $pid" >&2; exit 1; }
echo "demo: ok"
