#!/bin/sh
# Install what amber's build, demo and tests need on a fresh Debian 12 machine, then build the
# test rootfs. Idempotent: packages already present are not fetched again.
#   scripts/setup.sh
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
need=""
for pkg in runc busybox-static libseccomp-dev pkg-config gcc libcap2-bin; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need="$need $pkg"
done
if [ -n "$need" ]; then
    echo "setup: installing$need" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # shellcheck disable=SC2086
    apt-get install -y -qq $need >&2
fi
"$repo/scripts/mkrootfs.sh"
# podman, conmon and containerd for the engine suites (idempotent).
"$repo/scripts/engines-setup.sh" >/dev/null
