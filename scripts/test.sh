#!/bin/sh
# The project's test command: setup, build, unit tests, then the end-to-end integration suite
# as root against the built amber binary, and the same suite against runc (the reference: a test
# runc fails is a wrong test or a runc difference that the test documents).
#   scripts/test.sh            everything
#   SKIP_RUNC=1 scripts/test.sh    skip the runc reference runs
#   SKIP_GUEST=1 scripts/test.sh   skip the qemu cgroup v2 guest
#   SKIP_FUZZ=1 scripts/test.sh    skip the fuzz smoke run
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
[ "$(id -u)" = 0 ] || { echo "test.sh: run as root (the integration tests create real containers)" >&2; exit 1; }

scripts/setup.sh
echo "== build" >&2
cargo build --locked
echo "== fmt and clippy" >&2
cargo fmt --all --check
cargo clippy --locked --workspace --all-targets -- -D warnings
cargo fmt --manifest-path fuzz/Cargo.toml --check
echo "== unit tests" >&2
cargo test --locked -p amber
echo "== integration tests against amber" >&2
# One full rerun on failure, announced: the containerd suite has shown a rare lost-output flake
# under heavy load (an open issue); a failure that repeats still fails the run.
if ! AMBER_RUNTIME="$repo/target/debug/amber" cargo test --locked -p amber-integration --no-fail-fast; then
    echo "== FLAKY? integration tests against amber failed once; rerunning them all" >&2
    AMBER_RUNTIME="$repo/target/debug/amber" cargo test --locked -p amber-integration --no-fail-fast
fi
if [ -z "${SKIP_RUNC:-}" ]; then
    echo "== integration tests against runc (reference)" >&2
    AMBER_RUNTIME="$(command -v runc)" cargo test --locked -p amber-integration
fi
echo "== runtime-spec conformance suite" >&2
if [ -z "${SKIP_RUNC:-}" ]; then
    runtime-spec/run --compare    # amber, then runc (the reference), with a side-by-side table
else
    runtime-spec/run amber
fi
if [ -z "${SKIP_GUEST:-}" ]; then
    echo "== cgroup v2 guest (qemu, kernel 6.1): runc check, cgroups and lifecycle tests against amber" >&2
    scripts/test-guest.sh
fi
if [ -z "${SKIP_FUZZ:-}" ]; then
    echo "== fuzz smoke: config and state parsers (cargo-fuzz, bounded)" >&2
    command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
    scripts/fuzz-smoke.sh
fi
echo "== nothing left behind" >&2
scripts/check-clean.sh
