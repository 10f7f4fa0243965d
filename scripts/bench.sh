#!/bin/sh
# Benchmarks: amber next to runc and crun (ratios), and the clone3/set_tid spawner next to fork.
#   scripts/bench.sh [N]
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
scripts/setup.sh
command -v crun >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq crun >&2 || true; }
cargo build --release --locked --bin amber --example spawn_bench
python3 scripts/bench.py "${1:-100}"
echo
./target/release/examples/spawn_bench 1000
