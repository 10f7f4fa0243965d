#!/bin/sh
# Checkpoint/restore benchmark: amber (release build) on an idle busybox container and on a
# process holding 256 MiB and 1 GiB of dirtied memory, next to runc/crun (whose CRIU does not
# run here: their error is shown) and the issue's reference figures for runc + CRIU 4.2.
#   scripts/bench-cr.sh [N [WORKLOADS]]     N repetitions (default 5); WORKLOADS e.g. idle,256M,1G
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
scripts/setup.sh
cargo build --release --locked --bin amber
mkdir -p target/bench-cr
gcc -O2 -static -Wall -o target/bench-cr/hog scripts/bench-cr/hog.c
gcc -O2 -static -Wall -o target/bench-cr/rusage-run scripts/bench-cr/rusage-run.c
python3 scripts/bench_cr.py "${1:-5}" ${2:+"$2"}
