#!/bin/sh
# Build (or reuse) the throw-away test guest: Debian 12's 6.1 kernel and a busybox initramfs.
#
#   scripts/guest/build.sh          prints nothing on success; writes target/guest/guest.env
#
# Outputs, all under target/guest/ (GUEST_DIR), each rebuilt only when its inputs change:
#   kernel/<pkg>_<version>/   the unpacked linux-image package (boot/, lib/modules/ indexed by
#                             depmod), vmlinux (uncompressed ELF, booted through its PVH entry)
#   initrd.img                busybox-static, the virtio/9p/overlay modules, scripts/guest/init,
#                             the reaper (scripts/guest/reaper.c, static); initrd.key = inputs
#   guest.env                 KVER, KERNEL, INITRD for scripts/test-guest.sh
# The kernel is the newest linux-image-6.1.0-N-amd64 apt knows (GUEST_KERNEL_PKG overrides);
# if apt knows none and a kernel is cached, the cached one is used.
# Needs root (apt-get, mknod). Installs qemu-system-x86, kmod, cpio, busybox-static, gcc as needed.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
src="$repo/scripts/guest"
out=${GUEST_DIR:-"$repo/target/guest"}
mkdir -p "$out"
exec 9>"$out/build.lock"
flock 9

log() { echo "guest-build: $*" >&2; }

# ---- tools
need=""
have() { command -v "$1" >/dev/null 2>&1; }
have qemu-system-x86_64 || need="$need qemu-system-x86"
have depmod && have modprobe || need="$need kmod"
have cpio || need="$need cpio"
[ -x /bin/busybox ] || need="$need busybox-static"
have gcc || need="$need gcc libc6-dev"
have python3 || need="$need python3"
have flock || need="$need util-linux"
if [ -n "$need" ]; then
    log "installing$need"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need >&2 || {
        apt-get update -qq >&2
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $need >&2
    }
fi

# ---- which kernel
newest_pkg() {
    apt-cache pkgnames linux-image-6.1.0- 2>/dev/null |
        grep -E '^linux-image-6\.1\.0-[0-9]+-amd64$' | sort -V | tail -n 1
}
pkg=${GUEST_KERNEL_PKG:-$(newest_pkg)}
if [ -z "$pkg" ]; then
    log "apt knows no linux-image-6.1.0-*-amd64: apt-get update"
    apt-get update -qq >&2 || true
    pkg=$(newest_pkg)
fi
ver=""
[ -n "$pkg" ] && ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)
if [ -n "$ver" ]; then
    kdir="$out/kernel/${pkg}_$ver"
else
    # Offline, or apt's lists are gone: use the newest kernel already unpacked.
    kdir=$(find "$out/kernel" -mindepth 1 -maxdepth 1 -name 'linux-image-*' ! -name '*.tmp' 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$kdir" ] || [ ! -f "$kdir/.done" ]; then
        log "no linux-image-6.1.0-*-amd64 package known to apt and none cached"
        exit 1
    fi
    log "apt knows no kernel package; using the cached $(basename "$kdir")"
fi

# ---- kernel: download, unpack, index modules, extract vmlinux (once per package version)
if [ ! -f "$kdir/.done" ]; then
    log "fetching $pkg $ver"
    tmp="$kdir.tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >&2)
    deb=$(ls "$tmp"/*.deb)
    dpkg-deb -x "$deb" "$tmp/root"
    rm -f "$deb"
    kv=$(ls "$tmp/root/lib/modules")
    depmod -b "$tmp/root" "$kv"
    if python3 "$src/extract-vmlinux.py" "$tmp/root/boot/vmlinuz-$kv" "$tmp/vmlinux"; then
        # QEMU boots an ELF kernel only through the PVH note (XEN_ELFNOTE_PHYS32_ENTRY = 18).
        if have readelf && ! readelf -n "$tmp/vmlinux" | grep -q 'note type: (0x00000012)'; then
            log "vmlinux has no PVH entry note: booting the bzImage"
            rm -f "$tmp/vmlinux"
        fi
    fi
    echo "$kv" >"$tmp/kver"
    touch "$tmp/.done"
    rm -rf "$kdir"
    mv "$tmp" "$kdir"
    # Older kernels are not needed any more.
    for d in "$out"/kernel/*/; do
        d=${d%/}
        [ "$d" = "$kdir" ] || rm -rf "$d"
    done
fi
kver=$(cat "$kdir/kver")
kernel="$kdir/vmlinux"
[ -f "$kernel" ] || kernel="$kdir/root/boot/vmlinuz-$kver"
moddir="$kdir/root/lib/modules/$kver"

# ---- initramfs (rebuilt when the kernel, init, reaper, busybox or this script change)
modules="virtio_pci 9pnet_virtio 9p overlay"
key=$(
    {
        echo "$kdir $modules"
        cat "$src/init" "$src/reaper.c" "$0"
        sha256sum /bin/busybox
    } | sha256sum | cut -d' ' -f1
)
if [ ! -f "$out/initrd.img" ] || [ "$(cat "$out/initrd.key" 2>/dev/null)" != "$key" ]; then
    log "building the initramfs"
    stage="$out/initrd.tmp"
    rm -rf "$stage"
    mkdir -p "$stage/bin" "$stage/dev" "$stage/modules" "$stage/proc" "$stage/sys" "$stage/mnt" "$stage/newroot"
    cp /bin/busybox "$stage/bin/busybox"
    ln -s busybox "$stage/bin/sh"
    mknod -m 600 "$stage/dev/console" c 5 1 2>/dev/null || true
    cp "$src/init" "$stage/init"
    chmod 755 "$stage/init"
    gcc -static -O2 -Wall -o "$stage/reaper" "$src/reaper.c"
    strip "$stage/reaper" 2>/dev/null || true
    # Modules in load order, each once (modprobe prints dependencies first).
    for m in $modules; do
        modprobe -d "$kdir/root" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
    done | awk '!seen[$0]++' | while read -r ko; do
        b=$(basename "$ko")
        cp "$ko" "$stage/modules/$b"
        echo "$b" >>"$stage/modules/order"
    done
    # Where the full module tree is, as a path the guest sees through its host-root share.
    echo "$moddir" >"$stage/modules/hostdir"
    (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) |
        gzip -6 >"$out/initrd.img.tmp"
    mv "$out/initrd.img.tmp" "$out/initrd.img"
    echo "$key" >"$out/initrd.key"
    rm -rf "$stage"
    log "initramfs: $(du -k "$out/initrd.img" | cut -f1) KiB"
fi

cat >"$out/guest.env.tmp" <<EOF
KVER=$kver
KERNEL=$kernel
INITRD=$out/initrd.img
EOF
mv "$out/guest.env.tmp" "$out/guest.env"
