#!/bin/sh
# Install the container engines that the engine suites drive (integration/tests/podman.rs and
# integration/tests/containerd.rs) on Debian 12: podman + conmon, containerd (which ships ctr
# and containerd-shim-runc-v2), runc (the reference runtime the suites compare against), and
# util-linux (`script` for the tty tests, `unshare`). Idempotent: packages already present are
# not fetched again. Prints the versions at the end.
#   scripts/engines-setup.sh
# Nothing is configured or started system-wide: the suites use private config, storage,
# sockets and daemons. crun, fuse-overlayfs and slirp4netns are not needed (runtimes are
# chosen with --runtime, storage is overlay or vfs on the host fs, networking is none).
set -eu
# one installer at a time (test binaries may call this concurrently)
if command -v flock >/dev/null 2>&1; then
    exec 9<"$0"
    flock 9
fi
need=""
for pkg in podman conmon containerd runc util-linux; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need="$need $pkg"
done
if [ -n "$need" ]; then
    echo "engines-setup: installing$need" >&2
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need >&2 || {
        apt-get update -qq >&2
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $need >&2
    }
fi
echo "podman:     $(podman --version 2>/dev/null || echo missing)"
echo "conmon:     $(conmon --version 2>/dev/null | head -n1 || echo missing)"
echo "containerd: $(containerd --version 2>/dev/null || echo missing)"
echo "ctr:        $(ctr --version 2>/dev/null || echo missing)"
echo "runc:       $(runc --version 2>/dev/null | head -n1 || echo missing)"
