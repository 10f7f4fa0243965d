#!/bin/sh
# The project's test command: setup, build, unit tests, then the end-to-end integration suite
# as root against the built amber binary, and the same suite against runc (the reference: a test
# runc fails is a wrong test or a runc difference that the test documents).
#   scripts/test.sh            everything
#   SKIP_RUNC=1 scripts/test.sh   skip the runc reference run
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
echo "== unit tests" >&2
cargo test --locked -p amber
echo "== integration tests against amber" >&2
AMBER_RUNTIME="$repo/target/debug/amber" cargo test --locked -p amber-integration
if [ -z "${SKIP_RUNC:-}" ]; then
    echo "== integration tests against runc (reference)" >&2
    AMBER_RUNTIME="$(command -v runc)" cargo test --locked -p amber-integration
fi
echo "== nothing left behind" >&2
scripts/check-clean.sh
