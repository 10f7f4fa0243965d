#!/bin/sh
# Build a minimal busybox rootfs for the integration tests.
#
#   scripts/mkrootfs.sh [DEST]      (default: <repo>/target/rootfs)
#
# The rootfs holds Debian's static busybox plus one *relative* symlink per applet
# (an absolute link would point at the host's /bin/busybox, which does not exist
# inside the container), a passwd/group with a few users, and /etc/hostname.
# Mount points the tests use exist already (a runtime would create a missing one in
# this shared tree): /t and /out (survival programs and their results), and
# lib -> usr/lib, lib64 -> usr/lib64 (empty) so that a test binding the host's /usr at
# /usr can run the host's dynamic binaries.
# The result is cached: DEST/.stamp records the sha256 of the busybox it was built
# from and the layout version, and a second run with both unchanged exits at once. The tree is built in
# DEST.tmp and renamed into place, so a reader never sees a half-built rootfs.
set -eu

repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-"$repo/target/rootfs"}
busybox=/bin/busybox

if [ ! -x "$busybox" ]; then
    echo "mkrootfs: $busybox missing, installing busybox-static" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y busybox-static >&2 || {
        apt-get update >&2 && apt-get install -y busybox-static >&2
    }
fi

# Bump when the layout below changes, so cached trees are rebuilt.
layout=3
sum="$(sha256sum "$busybox" | cut -d' ' -f1) layout $layout"
if [ -f "$dest/.stamp" ] && [ "$(cat "$dest/.stamp")" = "$sum" ]; then
    exit 0
fi

mkdir -p "$(dirname "$dest")"
# Serialise concurrent builders (tests run in parallel, CI may run two suites).
lock="$dest.lock"
exec 9>"$lock"
flock 9
if [ -f "$dest/.stamp" ] && [ "$(cat "$dest/.stamp")" = "$sum" ]; then
    exit 0
fi

tmp="$dest.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
for d in bin sbin usr/bin usr/sbin usr/lib usr/lib64 etc proc sys dev tmp root run var t out; do
    mkdir -p "$tmp/$d"
done
ln -s usr/lib "$tmp/lib"
ln -s usr/lib64 "$tmp/lib64"
chmod 1777 "$tmp/tmp"
chmod 0700 "$tmp/root"
cp "$busybox" "$tmp/bin/busybox"
chmod 0755 "$tmp/bin/busybox"

# One relative symlink per applet: usr/bin/env -> ../../bin/busybox.
"$busybox" --list-full | while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    dir=$(dirname "$applet")
    up=""
    if [ "$dir" != . ]; then
        mkdir -p "$tmp/$dir"
        # one "../" per path component of the applet's directory
        up=$(echo "$dir" | sed -e 's|[^/][^/]*|..|g' -e 's|$|/|')
    fi
    ln -sfn "${up}bin/busybox" "$tmp/$applet"
done

cat >"$tmp/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
tester:x:1000:1000:tester:/tmp:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$tmp/etc/group" <<'EOF'
root:x:0:
tester:x:1000:
extra:x:1001:tester
nogroup:x:65534:
EOF
echo amber >"$tmp/etc/hostname"
printf '%s' "$sum" >"$tmp/.stamp"

# Swap in atomically: the old tree (if any) is moved aside first, because
# rename(2) cannot replace a non-empty directory.
if [ -e "$dest" ]; then
    old="$dest.old.$$"
    mv "$dest" "$old"
    mv "$tmp" "$dest"
    rm -rf "$old"
else
    mv "$tmp" "$dest"
fi
