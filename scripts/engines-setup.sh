#!/bin/sh
# Install the container engines the engine suites drive (integration/tests/podman.rs and
# integration/tests/containerd.rs) on Debian 12: podman + conmon, containerd (which ships
# ctr), and `script` (util-linux) for the tty tests. Idempotent: packages already present
# are not fetched again. Prints the versions at the end.
#   scripts/engines-setup.sh
# Nothing is configured system-wide: the suites use private config, storage and sockets.
set -eu
need=""
for pkg in podman conmon containerd runc util-linux; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need="$need $pkg"
done
if [ -n "$need" ]; then
    echo "engines-setup: installing$need" >&2
    export DEBIAN_FRONTEND=noninteractive
    # podman recommends pull in a systemd user session, network stacks etc.: not needed.
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need >&2 || {
        apt-get update -qq >&2
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $need >&2
    }
    # containerd's package enables and starts a system service where systemd runs; the
    # suites run their own daemon on a private socket, so stop a system one we just started
    # only if systemd is actually running (it is not on the CI machine).
fi
echo "podman:     $(podman --version 2>/dev/null || echo missing)"
echo "conmon:     $(conmon --version 2>/dev/null | head -n1 || echo missing)"
echo "containerd: $(containerd --version 2>/dev/null || echo missing)"
echo "ctr:        $(ctr --version 2>/dev/null || echo missing)"
echo "runc:       $(runc --version 2>/dev/null | head -n1 || echo missing)"
