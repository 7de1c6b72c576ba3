#!/usr/bin/env bash
# Builds the small Linux guest that tests boot under QEMU (TCG or KVM): Debian's cloud kernel plus a
# busybox-static initramfs whose init loads the virtio modules, runs the script given on the kernel
# command line, prints a marker and powers off. Prints the directory that holds `vmlinuz` and
# `initramfs.gz`. Cached per kernel version under ${PHOST_GUEST_CACHE:-~/.cache/phost/test-guest}.
# Needs: apt-get (Debian's packages), dpkg-deb, gzip, /bin/busybox (package busybox-static).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${PHOST_GUEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/phost/test-guest}
die() { echo "test-guest: $*" >&2; exit 1; }
command -v dpkg-deb >/dev/null || die "dpkg-deb missing (Debian package dpkg)"

bb=/bin/busybox
[ -x "$bb" ] && [ -n "$("$bb" --list | grep -x insmod)" ] || die "busybox-static missing (Debian package busybox-static)"
ldd "$bb" >/dev/null 2>&1 && die "$bb is dynamically linked: install Debian package busybox-static"

# The versioned kernel package that linux-image-cloud-amd64 points at.
meta=linux-image-cloud-amd64
dep() { apt-cache depends "$meta" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
pkg=$(dep)
if [ -z "$pkg" ]; then
  apt-get update -qq >/dev/null 2>&1 || true
  pkg=$(dep)
fi
[ -n "$pkg" ] || die "cannot resolve $meta (apt-get update; Debian's package lists needed)"
out="$cache/$pkg"
if [ -f "$out/vmlinuz" ] && [ -f "$out/initramfs.gz" ] && [ "$out/initramfs.gz" -nt "$here/init" ]; then
  echo "$out"; exit 0
fi

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
deb=$(ls "$cache"/"$pkg"_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
  (cd "$work" && apt-get download "$pkg" >/dev/null 2>&1) || { apt-get update -qq >/dev/null 2>&1; (cd "$work" && apt-get download "$pkg" >/dev/null 2>&1); } \
    || die "apt-get download $pkg failed"
  mv "$work"/"$pkg"_*.deb "$cache"/
  deb=$(ls "$cache"/"$pkg"_*.deb | head -n1)
fi
dpkg-deb -x "$deb" "$work/k"
kver=$(ls "$work/k/lib/modules")
cp "$work/k/boot/vmlinuz-$kver" "$out/vmlinuz.tmp"

root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc,lib/modules,mnt}
cp "$bb" "$root/bin/busybox"
cp "$here/init" "$root/init"; chmod 755 "$root/init"
# Load order matters: each module after the ones it needs (built-in ones are simply absent).
: > "$root/etc/modules"
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk failover \
         net_failover virtio_net scsi_common scsi_mod virtio_scsi sd_mod virtio_console button evdev; do
  f=$(find "$work/k/lib/modules/$kver" -name "$m.ko" | head -n1)
  [ -n "$f" ] || continue
  cp "$f" "$root/lib/modules/$m.ko"; echo "$m" >> "$root/etc/modules"
done
(cd "$root" && find . | "$bb" cpio -o -H newc 2>/dev/null | gzip -9) > "$out/initramfs.gz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"; mv "$out/initramfs.gz.tmp" "$out/initramfs.gz"
echo "$kver" > "$out/kernel-version"
echo "$out"
