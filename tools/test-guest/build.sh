#!/usr/bin/env bash
# Builds the small Linux guest that tests boot under QEMU (TCG or KVM): Debian's cloud kernel plus a
# busybox-static initramfs whose init loads the virtio modules, runs the script given on the kernel
# command line, prints a marker and powers off. Prints the directory that holds `vmlinuz` and
# `initramfs.gz`. Cached per kernel version under ${PHOST_GUEST_CACHE:-~/.cache/phost/test-guest}.
# The guest also carries Debian's qemu-guest-agent and the shared libraries it links (glib, libc, ...),
# taken from their .deb files (ldd against the unpacked tree checks that nothing is missing).
# Needs: apt-get (Debian's packages), dpkg-deb, gzip, ldd, /bin/busybox (package busybox-static).
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
# "+qga": this kit carries the guest agent (kept apart from kits built without it)
out="$cache/$pkg+qga"
if [ -f "$out/vmlinuz" ] && [ -f "$out/initramfs.gz" ] && [ "$out/initramfs.gz" -nt "$here/init" ] \
   && [ "$out/initramfs.gz" -nt "$here/build.sh" ]; then
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
# qemu-guest-agent (the integration services' peer) and every library it links, from Debian's packages.
agent_pkgs="qemu-guest-agent libglib2.0-0 libpcre2-8-0 libnuma1 libudev1 liburing2 libc6"
mkdir -p "$cache/agent" "$work/a"
for p in $agent_pkgs; do
  ls "$cache/agent/${p}"_*.deb >/dev/null 2>&1 && continue
  (cd "$cache/agent" && apt-get download "$p" >/dev/null 2>&1) || die "apt-get download $p failed"
done
for d in "$cache"/agent/*.deb; do dpkg-deb -x "$d" "$work/a"; done
libdirs="$work/a/lib/x86_64-linux-gnu:$work/a/usr/lib/x86_64-linux-gnu"
needed=$(LD_LIBRARY_PATH=$libdirs ldd "$work/a/usr/sbin/qemu-ga") || die "ldd qemu-ga failed"
echo "$needed" | grep -q "not found" && die "qemu-ga needs a library none of [$agent_pkgs] has: $needed"
mkdir -p "$root"/{sbin,lib64,lib/x86_64-linux-gnu,var/run,etc/qemu}
cp "$work/a/usr/sbin/qemu-ga" "$root/sbin/qemu-ga"
for lib in $(echo "$needed" | awk '$2 == "=>" {print $3}'); do
  case "$lib" in "$work"/a/*) ;; *) die "qemu-ga resolved $lib outside the agent's packages" ;; esac
  cp -L "$lib" "$root/lib/x86_64-linux-gnu/"
done
cp -L "$work/a/lib64/ld-linux-x86-64.so.2" "$root/lib64/"
# What guest-shutdown and guest-set-time run (qemu-ga execs /sbin/shutdown -P|-h|-r +0 and /sbin/hwclock -w).
cp "$here/shutdown" "$root/sbin/shutdown"; chmod 755 "$root/sbin/shutdown"
ln -s /bin/busybox "$root/sbin/hwclock"
printf 'NAME="phost test guest"\nID=phost-test-guest\nVERSION_ID=1\nPRETTY_NAME="phost test guest (busybox, Debian kernel %s)"\n' "$kver" \
  > "$root/etc/os-release"

(cd "$root" && find . | "$bb" cpio -o -H newc 2>/dev/null | gzip -9) > "$out/initramfs.gz.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"; mv "$out/initramfs.gz.tmp" "$out/initramfs.gz"
echo "$kver" > "$out/kernel-version"
echo "$out"
