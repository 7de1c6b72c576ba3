#!/usr/bin/env bash
# Builds the phost appliance image from appliance-image/target/dist with ordinary Debian tools, without
# root mounts, loop devices or Docker:
#   target/image/phost.img      raw GPT disk (UEFI: a unified kernel image as EFI/BOOT/BOOTX64.EFI)
#   target/image/phost.img.zst  the same, compressed for download
#   target/image/phost.iso      hybrid ISO (BIOS and UEFI through GRUB; also dd-able to a USB stick)
#   target/image/applcfg.img    the APPLCFG partition alone (to attach as a "second stick" config)
#   target/image/{vmlinuz,initrd.img,phost.efi}, image.env (offsets and sizes for phost image flash)
#
# Disk layout (GPT, 1 MiB aligned):
#   p1 ESP       FAT   label PHOSTBOOT  EFI/BOOT/BOOTX64.EFI = kernel + initramfs (the read-only system)
#   p2 APPLCFG   FAT   label APPLCFG    appliance.toml, editable from any OS
#   p3 APPLDATA  ext4  label APPLDATA   /data: virtual disks, state; grown to the end of the disk at boot
#
# The system is the initramfs inside the UKI: one file that the firmware verifies and loads, replaced
# whole on update, never written at run time. (A squashfs partition would save the RAM the unpacked
# runtime occupies, but needs loop/isofs/squashfs drivers and a second code path for the ISO.)
#
# Environment: PHOST_IMAGE_OUT (default appliance-image/target/image), PHOST_IMAGE_CACHE (kernel .deb
# cache, default ~/.cache/phost-image), PHOST_CMDLINE (extra kernel arguments),
# PHOST_IMAGE_NO_ISO=1 (skip the ISO), PHOST_IMAGE_CONFIG (appliance.toml for APPLCFG; default the demo).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
dist="$root/appliance-image/target/dist"
out="${PHOST_IMAGE_OUT:-$root/appliance-image/target/image}"
cache="${PHOST_IMAGE_CACHE:-${HOME:-/root}/.cache/phost-image}"
work="$out/work"
log() { echo "image: $*" >&2; }
t_start=$(date +%s)

# ---- tools ------------------------------------------------------------------------------------
# package:probe (a command, or an absolute file the package ships)
need=()
for pc in busybox-static:/bin/busybox fdisk:sfdisk dosfstools:mkfs.vfat mtools:mcopy e2fsprogs:mke2fs \
          cpio:cpio zstd:zstd binutils:objcopy systemd-boot-efi:/usr/lib/systemd/boot/efi/linuxx64.efi.stub \
          grub-common:grub-mkrescue grub-efi-amd64-bin:/usr/lib/grub/x86_64-efi/moddep.lst \
          grub-pc-bin:/usr/lib/grub/i386-pc/moddep.lst xorriso:xorriso qemu-system-x86:qemu-system-x86_64 \
          ovmf:/usr/share/ovmf/OVMF.fd; do
  pkg=${pc%%:*} probe=${pc#*:}
  if [[ $probe == /* ]]; then [ -e "$probe" ] || need+=("$pkg"); else command -v "$probe" >/dev/null || need+=("$pkg"); fi
done
# busybox-static replaces busybox: make sure /bin/busybox is the static one
if [ -e /bin/busybox ] && ! dpkg -s busybox-static >/dev/null 2>&1; then need+=(busybox-static); fi
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { log "missing packages: ${need[*]} (apt-get install them, or run as root)"; exit 1; }
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
export PATH="$PATH:/usr/sbin:/sbin"
. "$root/.mvn/find-jdk.sh"

[ -f "$dist/lib/phost.jar" ] || { log "no $dist/lib/phost.jar: run ./mvnw -B -DskipTests -pl appliance-image -am package first"; exit 1; }
rm -rf "$work"; mkdir -p "$work" "$cache" "$out"
rootfs="$work/rootfs"
mkdir -p "$rootfs"/{bin,sbin,etc/phost,proc,sys,dev,run,tmp,data,config,root,opt/phost,lib/modules}
# merged /usr, as on the build host, so that libraries copied from there are found by their usual paths
mkdir -p "$rootfs/usr/lib/x86_64-linux-gnu" "$rootfs/usr/lib64"
ln -s usr/lib64 "$rootfs/lib64"
ln -s ../usr/lib/x86_64-linux-gnu "$rootfs/lib/x86_64-linux-gnu"

# ---- kernel from Debian's packages ------------------------------------------------------------
kdeb=$(ls "$cache"/linux-image-[0-9]*-amd64_*.deb 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$kdeb" ]; then
  kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n 1)
  if [ -z "$kpkg" ]; then apt-get update -qq; kpkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n 1); fi
  log "downloading $kpkg"
  (cd "$cache" && apt-get download -q "$kpkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
  kdeb=$(ls "$cache"/linux-image-[0-9]*-amd64_*.deb | sort -V | tail -n 1)
fi
log "kernel: $(basename "$kdeb")"
dpkg-deb -x "$kdeb" "$work/kernel"
kver=$(ls "$work/kernel/lib/modules")
cp "$work/kernel/boot/vmlinuz-$kver" "$out/vmlinuz"
busybox depmod -b "$work/kernel" "$kver"
moddep="$work/kernel/lib/modules/$kver/modules.dep"
# each wanted module after its dependencies, each once
: > "$rootfs/etc/phost/modules.load"
add_module() { # $1: path relative to the module tree
  grep -qxF "$1" "$rootfs/etc/phost/modules.load" && return 0
  local d
  for d in $(grep -F "$1:" "$moddep" | grep "^$1:" | cut -d: -f2); do add_module "$d"; done
  echo "$1" >> "$rootfs/etc/phost/modules.load"
  mkdir -p "$rootfs/lib/modules/$kver/$(dirname "$1")"
  cp "$work/kernel/lib/modules/$kver/$1" "$rootfs/lib/modules/$kver/$1"
}
while read -r m; do
  case "$m" in ''|'#'*) continue;; esac
  rel=$(grep -E "(^|/)$m\.ko:" "$moddep" | head -n 1 | cut -d: -f1 || true)   # (pipefail would exit silently)
  [ -n "$rel" ] || { log "kernel $kver has no module $m"; exit 1; }
  add_module "$rel"
done < "$here/modules.list"
cp "$work/kernel/lib/modules/$kver/modules.builtin" "$rootfs/lib/modules/$kver/" 2>/dev/null || true
busybox depmod -b "$rootfs" "$kver"
rm -rf "$work/kernel"

# ---- userspace: busybox, sfdisk/resize2fs with their libraries, the init ----------------------
cp /bin/busybox "$rootfs/bin/busybox"
for a in $("$rootfs/bin/busybox" --list); do
  [ -e "$rootfs/bin/$a" ] || ln -s busybox "$rootfs/bin/$a"
done
copy_with_libs() { # $1: binary or library; copies it (unless it is in the rootfs) and the libraries it links to
  local f
  for f in "$1" $(ldd "$1" 2>/dev/null | grep -o '/[^ ]*' || true); do
    # keep the name the loader looks for (the soname), in the directory with symlinks resolved
    f="$(readlink -f "$(dirname "$f")")/$(basename "$f")"
    case "$f" in "$rootfs"/*) continue;; esac
    [ -e "$rootfs$f" ] && continue
    mkdir -p "$rootfs$(dirname "$f")"
    cp -L "$f" "$rootfs$f"
  done
}
for b in sfdisk resize2fs; do
  copy_with_libs "$(command -v "$b")"
  ln -sf "$(readlink -f "$(command -v "$b")")" "$rootfs/sbin/$b" 2>/dev/null || true
done
# ---- QEMU for VM partitions: the binary, its TCG module and libraries, and only the firmware a -nodefaults
# q35 VM with phost's devices loads (found with strace -e openat on such a VM): SeaBIOS, the option ROM that
# boots -kernel, the TPR patching ROM, virtio-net's iPXE ROM; OVMF for firmware = "uefi". QEMU finds them
# relative to its own path (/usr/bin/../share/qemu, ../share/seabios, ../lib/ipxe/qemu), so the layout is
# kept. KVM is built in; TCG (no /dev/kvm) is a module.
qemu=$(command -v qemu-system-x86_64 || true)
[ -n "$qemu" ] || { log "qemu-system-x86_64 is not installed (Debian: apt-get install qemu-system-x86)"; exit 1; }
mkdir -p "$rootfs/usr/bin"
copy_with_libs "$(readlink -f "$qemu")"
[ -e "$rootfs/usr/bin/qemu-system-x86_64" ] || cp -L "$qemu" "$rootfs/usr/bin/qemu-system-x86_64"
strip --strip-unneeded "$rootfs/usr/bin/qemu-system-x86_64"
for f in /usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so; do copy_with_libs "$f"; done
for f in /usr/share/seabios/bios-256k.bin /usr/share/qemu/linuxboot_dma.bin /usr/share/qemu/kvmvapic.bin \
         /usr/lib/ipxe/qemu/efi-virtio.rom /usr/share/ovmf/OVMF.fd; do
  [ -f "$f" ] || { log "QEMU firmware $f is missing (Debian: qemu-system-x86, ipxe-qemu, seabios, ovmf)"; exit 1; }
  mkdir -p "$rootfs$(dirname "$f")"
  cp -L "$f" "$rootfs$f"
done
log "QEMU: $(du -sh "$rootfs/usr/bin/qemu-system-x86_64" | cut -f1) binary, firmware and libraries included"
install -m 0755 "$here/init" "$rootfs/init"
install -m 0755 "$here/udhcpc.script" "$rootfs/etc/phost/udhcpc.script"
echo phost > "$rootfs/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\n' > "$rootfs/etc/group"
printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
printf '127.0.0.1 localhost phost\n::1 localhost\n' > "$rootfs/etc/hosts"
cp "$here/appliance.toml" "$rootfs/etc/phost/appliance.toml"
[ "$(id -u)" = 0 ] && mknod -m 600 "$rootfs/dev/console" c 5 1

# ---- Java: a jlink'd runtime with the modules phost uses, the jars, a CDS archive ---------------
mkdir -p "$rootfs/opt/phost/lib"
jars=()
for j in "$dist"/lib/*.jar; do
  case "$(basename "$j")" in jmh-generator-annprocess-*) continue;; esac   # compile time only
  cp -p "$j" "$rootfs/opt/phost/lib/"
  jars+=("/opt/phost/lib/$(basename "$j")")
done
# The modules the jars reference, less two that only unused corners pull in: java.desktop
# (commons-math3's 2-D geometry: java.awt.geom) and java.compiler (Agrona's runtime code generation,
# JMH's annotation processor). Together they would add ~30 MB of runtime and native AWT libraries.
mods=$("$JAVA_HOME/bin/jdeps" --ignore-missing-deps --multi-release 25 --print-module-deps \
  --class-path "$rootfs/opt/phost/lib/*" "$rootfs"/opt/phost/lib/*.jar 2>/dev/null | tail -n 1 \
  | tr ',' '\n' | grep -vxE 'java\.desktop|java\.compiler' | paste -sd, -)
# jdk.unsupported: Agrona (sun.misc.Unsafe); jdk.zipfs: jars
# as file systems; jdk.crypto.ec where this JDK still has it (TLS)
extra=jdk.unsupported,jdk.zipfs
"$JAVA_HOME/bin/java" --list-modules | grep -q '^jdk.crypto.ec@' && extra="$extra,jdk.crypto.ec"
mods=$(echo "$mods,$extra" | tr ',' '\n' | sort -u | paste -sd, -)
log "jlink modules: $mods"
"$JAVA_HOME/bin/jlink" --add-modules "$mods" --output "$rootfs/opt/phost/jre" \
  --strip-debug --no-header-files --no-man-pages --compress=zip-6
rm -rf "$rootfs/opt/phost/jre/legal"
# native debug symbols are most of libjvm.so's size
find "$rootfs/opt/phost/jre" -name '*.so' -exec strip --strip-unneeded {} +
strip --strip-unneeded "$rootfs/opt/phost/jre/bin/"*
for f in "$rootfs"/opt/phost/jre/bin/java $(find "$rootfs/opt/phost/jre/lib" -name '*.so'); do copy_with_libs "$f"; done
cp "$dist/jvm.options" "$rootfs/opt/phost/jvm.options"
cp "$here/image.jvm.options" "$rootfs/opt/phost/image.jvm.options"
cp_list=$(IFS=:; echo "${jars[*]}")
# java @/opt/phost/java.args Main ...: common flags (from the POM), image-only flags, class path
{
  tr -s ' \n' '\n\n' < "$dist/jvm.options" | grep -v '^$'
  grep -v '^#' "$here/image.jvm.options" | tr -s ' \n' '\n\n' | grep -v '^$'
  echo "-cp"
  echo "$cp_list"
} > "$rootfs/opt/phost/java.args"
cat > "$rootfs/bin/phost" <<'EOF'
#!/bin/sh
exec /opt/phost/jre/bin/java @/opt/phost/java.args io.phost.appliance.Main "$@"
EOF
chmod 0755 "$rootfs/bin/phost"
# Start-up: a JDK 25 AOT cache (JEP 483/514: classes loaded and linked ahead of time, plus profiles) from a
# training run of `phost run` in a chroot of the image, so that the runtime and class path paths match
# the booted system exactly. Without root (no chroot) the runtime's default CDS archive is used instead.
aot_train() {
  mkdir -p "$rootfs/tmp/train"
  sed 's#^data_dir *=.*#data_dir = "/tmp/train"#' "$here/appliance.toml" > "$rootfs/tmp/train/appliance.toml"
  # no /proc in the chroot, so the loader cannot resolve $ORIGIN: name the library directory
  LD_LIBRARY_PATH=/opt/phost/jre/lib chroot "$rootfs" /opt/phost/jre/bin/java @/opt/phost/java.args -XX:AOTCacheOutput=/opt/phost/phost.aot \
    -Dphost.runtime.dir=/tmp/train/run io.phost.appliance.Main run --config /tmp/train/appliance.toml \
    --duration 2s --plain >"$work/aot-train.log" 2>&1 || true
  rm -rf "$rootfs/tmp/train"
}
[ "$(id -u)" = 0 ] && aot_train
if [ -f "$rootfs/opt/phost/phost.aot" ]; then
  echo "-XX:AOTCache=/opt/phost/phost.aot" >> "$rootfs/opt/phost/java.args"
  log "AOT cache: $(du -h "$rootfs/opt/phost/phost.aot" | cut -f1)"
else
  [ "$(id -u)" = 0 ] && { log "AOT training run failed:"; cat "$work/aot-train.log" >&2; }
  log "no AOT cache; generating the runtime's default CDS archive instead"
  "$rootfs/opt/phost/jre/bin/java" -Xshare:dump -XX:+UseSerialGC >/dev/null
fi

# ---- initramfs and the unified kernel image ---------------------------------------------------
cmdline="console=tty0 console=ttyS0,115200 quiet loglevel=3 panic=10 ${PHOST_CMDLINE:-}"
(cd "$rootfs" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 --reproducible) \
  | zstd -q -T0 -15 > "$out/initrd.img"
log "initramfs: $(du -h "$out/initrd.img" | cut -f1) compressed, $(du -sh "$rootfs" | cut -f1) unpacked"
stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
printf '%s' "$cmdline" > "$work/cmdline"
printf 'NAME="Partition Host"\nID=phost\nPRETTY_NAME="Partition Host appliance"\n' > "$work/os-release"
align=$((16#$(objdump -p "$stub" | awk '$1 == "SectionAlignment" {print $2}')))
end=0
while read -r size vma; do
  e=$((16#$size + 16#$vma)); [ $e -gt $end ] && end=$e
done < <(objdump -h "$stub" | awk 'NF == 7 && $1 ~ /^[0-9]+$/ {print $3, $4}')
next_at() { local o=$(( $1 + align - 1 )); echo $(( o - o % align )); }
osrel=$(next_at $end)
cmdl=$(next_at $((osrel + $(stat -c%s "$work/os-release"))))
linux=$(next_at $((cmdl + $(stat -c%s "$work/cmdline"))))
initrd=$(next_at $((linux + $(stat -c%s "$out/vmlinuz"))))
objcopy \
  --add-section .osrel="$work/os-release" --change-section-vma .osrel="$(printf 0x%x $osrel)" \
  --add-section .cmdline="$work/cmdline" --change-section-vma .cmdline="$(printf 0x%x $cmdl)" \
  --add-section .linux="$out/vmlinuz" --change-section-vma .linux="$(printf 0x%x $linux)" \
  --add-section .initrd="$out/initrd.img" --change-section-vma .initrd="$(printf 0x%x $initrd)" \
  "$stub" "$out/phost.efi"
log "UKI: $(du -h "$out/phost.efi" | cut -f1)"

# ---- partitions -------------------------------------------------------------------------------
mib=$((1024 * 1024))
ceil_mib() { echo $(( ($1 + mib - 1) / mib )); }
esp_mib=$(( $(ceil_mib "$(stat -c%s "$out/phost.efi")") * 9 / 8 + 2 ))
cfg_mib=8
data_mib=32
rm -f "$work/esp.img"
mkfs.vfat -C -F 32 -n PHOSTBOOT "$work/esp.img" $((esp_mib * 1024)) >/dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$out/phost.efi" ::/EFI/BOOT/BOOTX64.EFI

rm -f "$out/applcfg.img"
mkfs.vfat -C -F 16 -s 1 -n APPLCFG "$out/applcfg.img" $((cfg_mib * 1024)) >/dev/null
mcopy -i "$out/applcfg.img" "${PHOST_IMAGE_CONFIG:-$here/appliance.toml}" ::/appliance.toml
printf 'Partition Host config partition. Edit appliance.toml (reference: docs/config.md) and reboot.\r\n' > "$work/README.TXT"
mcopy -i "$out/applcfg.img" "$work/README.TXT" ::/README.TXT

mkdir -p "$work/data/phost"
rm -f "$work/data.img"
mke2fs -q -t ext4 -L APPLDATA -m 0 -E root_owner=0:0 -d "$work/data" "$work/data.img" "${data_mib}M"

# ---- the raw disk: GPT written by sfdisk on a file, partitions copied in with dd -----------------
total_mib=$((1 + esp_mib + cfg_mib + data_mib + 1))
img="$out/phost.img"
rm -f "$img"; truncate -s "${total_mib}M" "$img"
sfdisk -q "$img" <<EOF
label: gpt
first-lba: 2048
start=1MiB, size=${esp_mib}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="PHOSTBOOT"
size=${cfg_mib}MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="APPLCFG"
size=${data_mib}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="APPLDATA"
EOF
starts=($(sfdisk -d "$img" | sed -n 's/.*start= *\([0-9]*\).*/\1/p'))
dd if="$work/esp.img" of="$img" bs=512 seek="${starts[0]}" conv=notrunc,sparse status=none
dd if="$out/applcfg.img" of="$img" bs=512 seek="${starts[1]}" conv=notrunc,sparse status=none
dd if="$work/data.img" of="$img" bs=512 seek="${starts[2]}" conv=notrunc,sparse status=none
# what `phost image flash` needs to find the APPLCFG partition without parsing GPT again
cat > "$out/image.env" <<EOF
kernel=$kver
applcfg_offset=$((starts[1] * 512))
applcfg_size=$((cfg_mib * mib))
EOF
zstd -q -f -T0 -9 "$img" -o "$img.zst"   # the big parts are compressed already
log "raw disk: $img ($(du -h --apparent-size "$img" | cut -f1), zstd $(du -h "$img.zst" | cut -f1))"

# ---- hybrid ISO (BIOS + UEFI through GRUB) ----------------------------------------------------
if [ "${PHOST_IMAGE_NO_ISO:-0}" != 1 ]; then
  iso="$work/iso"
  mkdir -p "$iso/boot/grub"
  cp "$out/vmlinuz" "$out/initrd.img" "$iso/boot/"
  sed "s#@CMDLINE@#$cmdline#" "$here/grub.cfg" > "$iso/boot/grub/grub.cfg"
  grub-mkrescue -o "$out/phost.iso" "$iso" -- -volid PHOST >"$work/grub-mkrescue.log" 2>&1 \
    || { cat "$work/grub-mkrescue.log" >&2; exit 1; }
  log "ISO: $out/phost.iso ($(du -h "$out/phost.iso" | cut -f1))"
fi
[ "${PHOST_IMAGE_KEEP_WORK:-0}" = 1 ] || rm -rf "$work"
log "done in $(( $(date +%s) - t_start ))s"
