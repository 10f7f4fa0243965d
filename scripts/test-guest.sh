#!/bin/sh
# Run tests in a throw-away qemu guest: Debian 12's 6.1 kernel on a pure cgroup v2 host
# (cgroup_no_v1=all), with the host's whole userland as a read-only 9p share under a tmpfs
# overlay, so host-built binaries and host paths work as they are. Run as root.
#
#   scripts/test-guest.sh               guest self-check (cgroup2, 6.1 kernel, runc with pids and
#                                       memory limits: scripts/guest/check.sh), then the cgroups
#                                       and lifecycle integration tests against amber
#   scripts/test-guest.sh CMD [ARG...]  run CMD in the guest, in the current directory
#
# The integration test binaries are built on the host (cargo test --no-run) and run directly in
# the guest (no cargo there), with AMBER_RUNTIME and AMBER_ROOTFS set. Exits with the guest
# command's exit code (1 if the guest failed to run it, 124 on timeout).
#
#   GUEST_TESTS    integration test targets of the default run   (default: "cgroups lifecycle cgroup_ops")
#   GUEST_FILTER   libtest arguments for them, e.g. "pids_limit" or "--skip spec_"   (default none)
#   GUEST_RUNTIME  runtime under test                (default: <repo>/target/debug/amber)
#   GUEST_THREADS  libtest --test-threads            (default: 2)
#   GUEST_TIMEOUT  hard limit on the whole guest run, seconds; qemu is killed (default: 600)
#   GUEST_MEM      guest memory in MiB (default: 2048)    GUEST_SMP  vCPUs (default: 2)
#   GUEST_ACCEL    tcg or kvm (default: kvm only if /proc/cpuinfo shows vmx or svm)
#
# Files: target/guest/ (kernel, initramfs: scripts/guest/build.sh), the running guest's
# target/guest/ctl/<pid>/ (control share, serial console log, qemu log), moved to
# target/guest/last/ when the run ends.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
gdir="$repo/target/guest"
t_start=$(date +%s.%N)
[ "$(id -u)" = 0 ] || { echo "test-guest: run as root" >&2; exit 1; }

log() { echo "test-guest: $*" >&2; }
q() { printf "'%s'" "$(printf %s "$1" | sed "s/'/'\\\\''/g")"; }
since() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

"$repo/scripts/guest/build.sh"
# shellcheck disable=SC1091
. "$gdir/guest.env"
"$repo/scripts/mkrootfs.sh"

runtime=${GUEST_RUNTIME:-"$repo/target/debug/amber"}
rootfs=${AMBER_ROOTFS:-"$repo/target/rootfs"}

# ---- the command the guest runs (a shell script on the control share)
run="$gdir/ctl/$$"
rm -rf "$run"
mkdir -p "$run/share" "$run/bin"
cmd="$run/share/cmd"
# Binaries the guest runs are snapshotted into the run dir: another build may replace
# target/debug/amber or a test binary while the guest runs (the guest reads them over 9p).
snap() { cp "$1" "$run/bin/$(basename "$1")" && echo "$run/bin/$(basename "$1")"; }
[ -f "$runtime" ] && runtime=$(snap "$runtime")
{
    echo "#!/bin/sh"
    echo "export AMBER_RUNTIME=$(q "$runtime") AMBER_ROOTFS=$(q "$rootfs")"
    [ -n "${AMBER_IS_AMBER:-}" ] && echo "export AMBER_IS_AMBER=$(q "$AMBER_IS_AMBER")"
    echo "export RUST_BACKTRACE=1"
} >"$cmd"
if [ $# -gt 0 ]; then
    {
        echo "cd $(q "$PWD") || exit 1"
        printf 'exec'
        for a in "$@"; do printf ' %s' "$(q "$a")"; done
        echo
    } >>"$cmd"
else
    tests=${GUEST_TESTS:-"cgroups lifecycle cgroup_ops"}
    exes=""
    if [ -x "$runtime" ]; then
        log "building the integration tests ($tests)"
        json="$run/cargo.json"
        (cd "$repo" && cargo test --locked -p amber-integration --no-run --message-format=json >"$json")
        # shellcheck disable=SC2086 # one argument per test target
        exes=$(python3 - "$json" $tests <<'EOF'
import json, sys
path, wanted = sys.argv[1], sys.argv[2:]
found = {}
for line in open(path):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    t = m.get("target", {})
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in t.get("kind", []):
        found[t["name"]] = m["executable"]
missing = [w for w in wanted if w not in found]
if missing:
    sys.exit("test-guest: no integration test target named %s (have: %s)" % (", ".join(missing), " ".join(sorted(found))))
print("\n".join(found[w] for w in wanted))
EOF
        )
        exes=$(for e in $exes; do snap "$e"; done)
    else
        log "no runtime at $runtime (build amber first): running only the guest check"
    fi
    {
        cat <<EOF
t0=\$(date +%s.%N)
echo "== guest check: cgroup v2, kernel, runc with limits"
sh $(q "$repo/scripts/guest/check.sh")
rc=\$?
t1=\$(date +%s.%N)
echo "guest-time: check took \$(awk "BEGIN { printf \\"%.1f\\", \$t1 - \$t0 }") s"
EOF
        if [ -n "$exes" ]; then
            echo "echo \"== integration tests ($tests) against \$AMBER_RUNTIME\""
            echo "cd $(q "$repo/integration") || exit 1"
            for e in $exes; do
                # shellcheck disable=SC2086
                echo "echo \"-- $(basename "$e")\"; $(q "$e") --test-threads=${GUEST_THREADS:-2} ${GUEST_FILTER:-} || rc=1"
            done
            cat <<EOF
t2=\$(date +%s.%N)
echo "guest-time: integration tests took \$(awk "BEGIN { printf \\"%.1f\\", \$t2 - \$t1 }") s"
EOF
        fi
        echo "exit \$rc"
    } >>"$cmd"
fi

# ---- boot
tsc_khz() {
    mhz=$(dmesg 2>/dev/null | sed -n 's/.*Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p' | tail -n 1)
    [ -n "$mhz" ] || mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Detected \([0-9.]*\) MHz processor.*/\1/p' | tail -n 1)
    [ -n "$mhz" ] || mhz=$(awk -F': *' '/^cpu MHz/ { print $2; exit }' /proc/cpuinfo)
    awk -v m="$mhz" 'BEGIN { printf "%d", m * 1000 }'
}
accel=${GUEST_ACCEL:-}
if [ -z "$accel" ]; then
    accel=tcg
    grep -qwE 'vmx|svm' /proc/cpuinfo && [ -w /dev/kvm ] && accel=kvm
fi
case $accel in
kvm) accel_args="-accel kvm -cpu host" ;;
*) accel_args="-accel tcg,thread=multi" ;;
esac
khz=$(tsc_khz)
append="console=ttyS0 quiet panic=-1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1"
[ "$khz" -gt 0 ] && append="$append tsc_early_khz=$khz tsc=reliable"
append="$append mitigations=off amber.repo=$repo"
timeout_s=${GUEST_TIMEOUT:-600}

tpid=""
tailpid=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    set +e
    if [ -n "$tpid" ] && kill -0 "$tpid" 2>/dev/null; then
        kill "$tpid" 2>/dev/null
        sleep 1
    fi
    # qemu itself, if it outlived its timeout wrapper
    qpid=$(cat "$run/qemu.pid" 2>/dev/null)
    if [ -n "$qpid" ] && [ "$(cat "/proc/$qpid/comm" 2>/dev/null)" = qemu-system-x86 ]; then
        kill -KILL "$qpid" 2>/dev/null
    fi
    [ -n "$tailpid" ] && kill "$tailpid" 2>/dev/null
    if [ -d "$run" ]; then
        rm -rf "${run:?}/bin" "$gdir/last"
        mv "$run" "$gdir/last"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "booting $(basename "$KERNEL") ($KVER, $accel, ${GUEST_SMP:-2} vCPUs, ${GUEST_MEM:-2048} MiB, timeout ${timeout_s}s)"
t_boot=$(date +%s.%N)
# shellcheck disable=SC2086
timeout -k 5 "$timeout_s" qemu-system-x86_64 \
    -nodefaults -no-user-config -display none -no-reboot \
    -M pc $accel_args -smp "${GUEST_SMP:-2}" -m "${GUEST_MEM:-2048}" \
    -kernel "$KERNEL" -initrd "$INITRD" -append "$append" \
    -serial "file:$run/console.log" \
    -fsdev local,id=hostroot,path=/,security_model=passthrough,readonly=on,multidevs=remap \
    -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
    -fsdev "local,id=ctl,path=$run/share,security_model=passthrough" \
    -device virtio-9p-pci,fsdev=ctl,mount_tag=ctl \
    -pidfile "$run/qemu.pid" </dev/null >"$run/qemu.log" 2>&1 &
tpid=$!
tail -n +1 -s 0.2 -F --pid="$tpid" "$run/share/output" 2>/dev/null &
tailpid=$!
qrc=0
wait "$tpid" || qrc=$?
tpid=""
wait "$tailpid" 2>/dev/null || true
tailpid=""
t_end=$(date +%s.%N)

rc=1
if [ -f "$run/share/rc" ]; then
    rc=$(cat "$run/share/rc")
elif [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
    log "TIMEOUT: the guest ran longer than ${timeout_s}s and was killed"
    rc=124
else
    log "the guest did not report an exit code (qemu exited $qrc)"
fi
if [ "$rc" != 0 ] || [ ! -f "$run/share/rc" ]; then
    log "serial console (last lines; all in target/guest/last/console.log):"
    tail -n 30 "$run/console.log" >&2 || true
    [ -s "$run/qemu.log" ] && { log "qemu:"; cat "$run/qemu.log" >&2; }
fi
boot="?"
[ -f "$run/share/ready" ] && boot=$(since "$t_boot" "$(stat -c %.Y "$run/share/ready")")
log "guest boot ${boot}s (qemu start to command start), guest run $(since "$t_boot" "$t_end")s, total $(since "$t_start" "$t_end")s; exit $rc"
exit "$rc"
