#!/bin/sh
# Fuzz smoke test: build amber's cargo-fuzz targets (fuzz/, cached in fuzz/target) and run each
# one for a bounded time from its checked-in seed corpus (fuzz/corpus/<target>/). Fails if
# libFuzzer reports a crash, panic, sanitizer error, timeout or OOM; the reproducer is left in
# fuzz/artifacts/<target>/ (replay it with `cargo fuzz run --dev -s none <target> <file>` in fuzz/).
#
#   scripts/fuzz-smoke.sh                 every target, FUZZ_SECONDS (20) each
#   FUZZ_SECONDS=300 scripts/fuzz-smoke.sh config
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); works on a stable toolchain (see
# FUZZ_SANITIZER below). The working corpus is a scratch copy under fuzz/target, so a run never
# adds files to the checked-in seeds. Keep fuzz/target between CI runs: a cold build takes
# 1.5-2.5 min on 2 cores, a whole warm smoke run ~45 s.
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo/fuzz"

secs=${FUZZ_SECONDS:-20}
runs=${FUZZ_RUNS:-5000000}
targets=${*:-config state}
# FUZZ_PROFILE=dev (default): fuzz/Cargo.toml's dev profile (opt-level 1, debug assertions and
# overflow checks): a cold build takes about as long as cargo-fuzz's release build, but a rebuild
# after an amber change is incremental (seconds instead of minutes) and inputs run about as
# fast. FUZZ_PROFILE=release: cargo-fuzz's default (optimised, debug assertions).
case ${FUZZ_PROFILE:-dev} in
    dev) profile=--dev ;;
    release) profile= ;;
    *) echo "fuzz-smoke: FUZZ_PROFILE is dev or release" >&2; exit 2 ;;
esac
# FUZZ_SANITIZER=none (default) or address. The parsers are safe Rust (src/spec denies unsafe
# code), so a panic, an overflow or a failed debug assertion is what a smoke run can find; ASan
# costs 3-4x in executions per second. address needs the nightly -Zsanitizer flag, which stable
# rustc accepts with RUSTC_BOOTSTRAP=1 (the stable rust-std ships the ASan runtime).
sanitizer=${FUZZ_SANITIZER:-none}

command -v cargo-fuzz >/dev/null 2>&1 || {
    echo "fuzz-smoke: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2
    exit 1
}
if [ "$sanitizer" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi

start=$(date +%s)
echo "== fuzz: build (${FUZZ_PROFILE:-dev} profile, sanitizer $sanitizer)" >&2
# shellcheck disable=SC2086 # $profile is empty or one flag
cargo fuzz build $profile -s "$sanitizer"
built=$(date +%s)
echo "== fuzz: built in $((built - start)) s" >&2

status=0
for t in $targets; do
    seeds="corpus/$t"
    [ -d "$seeds" ] || { echo "fuzz-smoke: no seed corpus $seeds" >&2; exit 1; }
    work="target/smoke-corpus/$t"
    rm -rf "$work"
    mkdir -p "$work" "artifacts/$t"
    cp "$seeds"/* "$work"/
    echo "== fuzz: $t for at most ${secs} s / $runs runs" >&2
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a blow-up is an OOM crash.
    # shellcheck disable=SC2086
    if ! cargo fuzz run $profile -s "$sanitizer" "$t" "$work" -- \
        -max_total_time="$secs" -runs="$runs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 >"target/smoke-$t.log" 2>&1; then
        tail -n 40 "target/smoke-$t.log" >&2
        echo "fuzz-smoke: $t FAILED (log: fuzz/target/smoke-$t.log, reproducer in fuzz/artifacts/$t/)" >&2
        status=1
    else
        grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "target/smoke-$t.log" >&2 || true
        echo "fuzz-smoke: $t ok" >&2
    fi
done
echo "== fuzz: total $(($(date +%s) - start)) s" >&2
exit $status
