#!/usr/bin/env bash
# Boot test of the appliance image in qemu-system-x86_64 (TCG: no KVM needed).
#   uefi    the raw disk (grown to 1 GiB first) under OVMF, config written by `phost image flash`:
#           waits for the ready line on the serial console, queries /health and /status through a
#           host-forwarded loopback port, checks the configured disk and switch, powers off through ACPI
#           and checks the clean shutdown and the grown data partition
#   iso     the hybrid ISO under SeaBIOS with the config on a second disk labelled APPLCFG
#   broken  the raw disk with a broken appliance.toml: the FILE:LINE:COL errors must reach the console and
#           GET /health on the network port (503), with nothing started
#   vm      the raw disk with a VM partition (the test guest, tools/test-guest, copied to the data partition)
#           inside the appliance: QEMU in the image must start it up to QMP ready (state running), then the
#           guest under nested TCG should print its marker on the partition's console (time reported;
#           PHOST_NESTED_TIMEOUT, default 900 s, bounds the wait: nested TCG is slow, so not reaching the
#           marker is reported as a note, not a failure)
# Usage: boot-test.sh [uefi] [iso] [broken] [vm]   (default: all four). Exit 0 only if every step passed.
# Guest networking is qemu's user mode with restrict=on: the guest reaches nothing outside qemu; the only
# path in is the forwarded port on 127.0.0.1.
set -uo pipefail
trap "" PIPE   # writing to the monitor fifo of a qemu that already exited must not kill the script
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
img_dir="${PHOST_IMAGE_OUT:-$root/appliance-image/target/image}"
timeout_s=${PHOST_BOOT_TIMEOUT:-420}
tests=("$@"); [ ${#tests[@]} -gt 0 ] || tests=(uefi iso broken vm)

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || need+=(ovmf)
command -v mcopy >/dev/null || need+=(mtools)
command -v curl >/dev/null || need+=(curl)
command -v debugfs >/dev/null || need+=(e2fsprogs)
command -v sfdisk >/dev/null || need+=(fdisk)
if [ ${#need[@]} -gt 0 ]; then
  echo "boot-test: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || exit 1
fi
[ -f "$img_dir/phost.img" ] || { echo "boot-test: no $img_dir/phost.img; build it: ./mvnw -B -Pimage -pl appliance-image -am package"; exit 1; }

tmp=$(mktemp -d /tmp/phost-boot.XXXXXX)
qpid=
cleanup() { [ -n "$qpid" ] && kill "$qpid" 2>/dev/null; exec 9>&- 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
passed=0 failed=0
ok() { echo "boot-test: ok   $*"; passed=$((passed + 1)); }
bad() { echo "boot-test: FAIL $*"; failed=$((failed + 1)); }
free_port() { local p; while :; do p=$(shuf -i 20000-45000 -n 1); ! (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null && { echo $p; return; }; done; }
token=boot-test-$RANDOM$RANDOM
printf '%s\n' "$token" > "$tmp/token"
printf '8443:8444\n' > "$tmp/expose"   # the init relays the NIC's port 8443 to phost's loopback endpoint

test_config() { # $1: host name
  cat <<EOF
[host]
name = "$1"
data_dir = "/data/phost"
management = "tcp://127.0.0.1:8444"
management_token_file = "/config/token"

[[disk]]
name = "scratch"
path = "scratch.vhdx"
format = "vhdx"
[disk.create]
type = "dynamic"
size = "64MiB"

[[switch]]
name = "lan"
type = "private"
EOF
}

# start_qemu NAME ARGS...: qemu in the background, serial console to $tmp/NAME.log, monitor on fd 9
start_qemu() {
  local name=$1; shift
  port=$(free_port)
  rm -f "$tmp/mon"; mkfifo "$tmp/mon"
  t_boot=$(date +%s.%N)
  qemu-system-x86_64 -m "${appliance_mib:-768}" -smp 2 -display none -serial "file:$tmp/$name.log" -monitor stdio \
    -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:8443" -device virtio-net-pci,netdev=n0 \
    "$@" < "$tmp/mon" > "$tmp/$name.qemu.log" 2>&1 &
  qpid=$!
  exec 9>"$tmp/mon"
}
# wait_for NAME REGEX: until the console shows REGEX (0), qemu exits or the timeout passes (1)
wait_for() {
  local i=0
  while [ $i -lt $((timeout_s * 2)) ]; do
    grep -aqE "$2" "$tmp/$1.log" 2>/dev/null && return 0
    kill -0 "$qpid" 2>/dev/null || return 1
    sleep 0.5; i=$((i + 1))
  done
  return 1
}
stop_qemu() {
  echo quit >&9 2>/dev/null; exec 9>&-
  for _ in $(seq 20); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.5; done
  kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null; qpid=
}
elapsed() { echo "$(date +%s.%N) $t_boot" | awk '{printf "%.1f", $1 - $2}'; }
show_console() { echo "---- console ($1) ----"; tr -d '\r' < "$tmp/$1.log" | grep -av '^\s*$' | tail -n "${2:-40}"; echo "----"; }

check_http() { # NAME: /health without a token, /status with it; status must name the disk and the switch
  local h s
  h=$(curl -s --max-time 20 "http://127.0.0.1:$port/v1/health") && ok "$1: GET /health -> $h" || bad "$1: GET /health failed"
  s=$(curl -s --max-time 20 -H "Authorization: Bearer $token" "http://127.0.0.1:$port/v1/status")
  if [ -n "$s" ]; then
    echo "$s" > "$tmp/$1.status.json"
    echo "$s" | grep -q '"scratch"' && ok "$1: /status lists disk scratch" || bad "$1: /status does not list disk scratch: $s"
    echo "$s" | grep -q '"lan"' && ok "$1: /status lists switch lan" || bad "$1: /status does not list switch lan"
  else
    bad "$1: GET /status failed"
  fi
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 20 "http://127.0.0.1:$port/v1/status")" = 401 ] \
    && ok "$1: /status without the token is refused (401)" || bad "$1: /status without the token was not refused"
}

# The numbers docs/image.md records: sizes, boot-to-ready (wall clock from qemu start, and kernel
# uptime at ready), the JVM's part (phost start to ready) and phost's memory, from the init's log lines.
report_numbers() {
  local c="$tmp/$1.log" start ready
  start=$(tr -d '\r' < "$c" | sed -n 's/.*starting phost run.*(t=\([0-9.]*\)s).*/\1/p' | head -n 1)
  ready=$(tr -d '\r' < "$c" | sed -n 's/.*phost ready (t=\([0-9.]*\)s).*/\1/p' | head -n 1)
  echo "boot-test: numbers ($1, TCG): ready ${ready_wall}s after qemu start; kernel uptime at ready ${ready:-?}s;" \
    "init->phost start ${start:-?}s; JVM start to ready $(echo "${ready:-0} ${start:-0}" | awk '{printf "%.1f", $1 - $2}')s"
  tr -d '\r' < "$c" | grep -a 'phost ready (t=\|phost after 30s' | sed 's/^/boot-test: numbers: /'
  echo "boot-test: numbers: image $(du -h --apparent-size "$img_dir/phost.img" | cut -f1) raw" \
    "($(du -h "$img_dir/phost.img" | cut -f1) allocated), $(du -h "$img_dir/phost.img.zst" | cut -f1) zstd," \
    "ISO $(du -h "$img_dir/phost.iso" 2>/dev/null | cut -f1)"
}

run_uefi() {
  test_config uefi-test > "$tmp/appliance.toml"
  "$root/phost" image flash --config "$tmp/appliance.toml" --add "$tmp/token" --add "$tmp/expose" --image "$img_dir/phost.img" \
    --to "$tmp/disk.img" && ok "uefi: phost image flash wrote the image and the config" || { bad "uefi: flash failed"; return; }
  truncate -s 1G "$tmp/disk.img"
  cp /usr/share/OVMF/OVMF_VARS_4M.fd "$tmp/vars.fd"
  start_qemu uefi -machine q35 \
    -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
    -drive "if=pflash,format=raw,file=$tmp/vars.fd" -drive "file=$tmp/disk.img,format=raw,if=virtio"
  if wait_for uefi 'phost: ready'; then
    ready_wall=$(elapsed)
    ok "uefi: ready line after ${ready_wall}s (TCG, from qemu start)"
    check_http uefi
    wait_for uefi 'phost after 30s' || true
    report_numbers uefi
  else
    bad "uefi: no ready line within ${timeout_s}s"; show_console uefi
  fi
  echo system_powerdown >&9
  if wait_for uefi 'phost-init: poweroff now'; then ok "uefi: ACPI power button -> clean stop"; else bad "uefi: no clean shutdown"; show_console uefi 15; fi
  for _ in $(seq 60); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$qpid" 2>/dev/null && bad "uefi: qemu still running after poweroff" || ok "uefi: machine powered off"
  stop_qemu
  local size
  size=$(sfdisk -d "$tmp/disk.img" 2>/dev/null | awk -F'size= *' '/APPLDATA/ {split($2, a, ","); print a[1]}')
  [ -n "$size" ] && [ "$size" -gt $((512 * 2048)) ] && ok "uefi: data partition grown to $((size / 2048)) MiB" \
    || bad "uefi: data partition not grown (sectors: ${size:-?})"
  local start
  start=$(sfdisk -d "$tmp/disk.img" 2>/dev/null | awk -F'start= *' '/APPLDATA/ {split($2, a, ","); print a[1]}')
  dd if="$tmp/disk.img" of="$tmp/data.img" bs=1M skip=$((start / 2048)) status=none
  if debugfs -R 'ls -l /phost' "$tmp/data.img" 2>/dev/null | grep -q 'scratch.vhdx'; then
    ok "uefi: /data/phost/scratch.vhdx exists on the data partition"
  else
    echo "boot-test: note: /data/phost has no scratch.vhdx (disk creation is not wired into phost run yet):"
    debugfs -R 'ls -l /phost' "$tmp/data.img" 2>/dev/null | head -5
  fi
}

run_iso() {
  [ -f "$img_dir/phost.iso" ] || { bad "iso: no $img_dir/phost.iso"; return; }
  test_config iso-test > "$tmp/appliance.toml"
  cp "$img_dir/applcfg.img" "$tmp/cfg.img"
  MTOOLS_SKIP_CHECK=1 mcopy -o -i "$tmp/cfg.img" "$tmp/appliance.toml" ::/appliance.toml
  MTOOLS_SKIP_CHECK=1 mcopy -o -i "$tmp/cfg.img" "$tmp/token" "$tmp/expose" ::/
  start_qemu iso -cdrom "$img_dir/phost.iso" -boot d -drive "file=$tmp/cfg.img,format=raw,if=virtio"
  if wait_for iso 'phost: ready'; then
    ok "iso: SeaBIOS + GRUB, ready line after $(elapsed)s, config from the second disk"
    grep -a 'config:' "$tmp/iso.log" | tr -d '\r'
    check_http iso
  else
    bad "iso: no ready line within ${timeout_s}s"; show_console iso
  fi
  stop_qemu
}

run_broken() {
  cp --sparse=always "$img_dir/phost.img" "$tmp/broken.img"
  printf '[host]\nname = "broken"\ndata_dir = "/data/phost"\n\n[[switch]]\nname = "lan"\ntype = "bogus"\n' > "$tmp/broken.toml"
  off=$(sed -n 's/^applcfg_offset=//p' "$img_dir/image.env")
  MTOOLS_SKIP_CHECK=1 mcopy -o -i "$tmp/broken.img@@$off" "$tmp/broken.toml" ::/appliance.toml
  cp /usr/share/OVMF/OVMF_VARS_4M.fd "$tmp/vars.fd"
  start_qemu broken -machine q35 \
    -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
    -drive "if=pflash,format=raw,file=$tmp/vars.fd" -drive "file=$tmp/broken.img,format=raw,if=virtio"
  if wait_for broken 'appliance\.toml:[0-9]+:[0-9]+'; then
    sleep 1   # let the console line finish before quoting it
    ok "broken: the console shows the error: $(grep -ao 'appliance\.toml:[0-9]*:[0-9]*[^\r]*' "$tmp/broken.log" | head -n 1)"
  else
    bad "broken: no FILE:LINE:COL error on the console"; show_console broken
  fi
  # /init passes --on-config-error: the same lines are served on GET /health (503) at network port 8443
  wait_for broken 'phost: config-error management=' && ok "broken: nothing started; phost serves the errors instead" \
    || bad "broken: no config-error endpoint"
  local code body
  body=$(curl -s --max-time 20 -w '\n%{http_code}' "http://127.0.0.1:$port/v1/health")
  code=${body##*$'\n'}
  if [ "$code" = 503 ] && echo "$body" | grep -q 'appliance.toml:[0-9]*:[0-9]*'; then
    ok "broken: GET /health from the network -> 503 $(echo "$body" | head -n 1)"
  else
    bad "broken: GET /health answered $code: $body"
  fi
  stop_qemu
}

# The VM partition path: the image's own QEMU starts a tiny VM partition (nested TCG under this TCG).
run_vm() {
  local kit
  kit=$(bash "$root/tools/test-guest/build.sh" | tail -n 1) && [ -f "$kit/vmlinuz" ] || { bad "vm: no test guest (tools/test-guest/build.sh)"; return; }
  test_config vm-test > "$tmp/appliance.toml"
  cat >> "$tmp/appliance.toml" <<EOF

[[partition]]
name = "tiny"
kind = "vm"
memory = "256MiB"
kernel = "/data/phost/guest/vmlinuz"
initrd = "/data/phost/guest/initramfs.gz"
cmdline = "console=ttyS0 quiet phost.script=$(printf 'echo PHOST-IMAGE-VM-OK\n' | base64 -w0)"
disk = [{ disk = "scratch" }]
EOF
  "$root/phost" image flash --config "$tmp/appliance.toml" --add "$tmp/token" --add "$tmp/expose" --image "$img_dir/phost.img" \
    --to "$tmp/vm.img" >/dev/null || { bad "vm: flash failed"; return; }
  # the guest's kernel and initramfs into /data/phost/guest on the (not yet grown) data partition
  local start size
  start=$(sfdisk -d "$tmp/vm.img" | awk -F'start= *' '/APPLDATA/ {split($2, a, ","); print a[1]}')
  size=$(sfdisk -d "$tmp/vm.img" | awk -F'size= *' '/APPLDATA/ {split($2, a, ","); print a[1]}')
  dd if="$tmp/vm.img" of="$tmp/vmdata.img" bs=512 skip="$start" count="$size" status=none
  printf 'mkdir /phost/guest\nwrite %s /phost/guest/vmlinuz\nwrite %s /phost/guest/initramfs.gz\n' \
    "$kit/vmlinuz" "$kit/initramfs.gz" > "$tmp/debugfs.cmds"
  debugfs -w -f "$tmp/debugfs.cmds" "$tmp/vmdata.img" >/dev/null 2>&1
  debugfs -R 'ls -l /phost/guest' "$tmp/vmdata.img" 2>/dev/null | grep -q initramfs.gz || { bad "vm: could not copy the guest"; return; }
  dd if="$tmp/vmdata.img" of="$tmp/vm.img" bs=512 seek="$start" conv=notrunc status=none
  truncate -s 1G "$tmp/vm.img"
  cp /usr/share/OVMF/OVMF_VARS_4M.fd "$tmp/vars.fd"
  appliance_mib=1536 start_qemu vm -machine q35 \
    -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
    -drive "if=pflash,format=raw,file=$tmp/vars.fd" -drive "file=$tmp/vm.img,format=raw,if=virtio"
  if ! wait_for vm 'phost: ready'; then bad "vm: no ready line within ${timeout_s}s"; show_console vm; stop_qemu; return; fi
  ok "vm: appliance ready after $(elapsed)s"
  local t0 state="" i=0 auth=(-H "Authorization: Bearer $token")
  t0=$(date +%s.%N)
  while [ $i -lt "$timeout_s" ]; do
    state=$(curl -s --max-time 10 "${auth[@]}" "http://127.0.0.1:$port/v1/partitions" | tr ',{}' '\n\n\n' \
      | awk '/"name": *"tiny"/ {f=1} f && /"state"/ {gsub(/[" ]/, ""); split($0, a, ":"); print a[2]; exit}')
    case "$state" in running|stopped|crashed|faulted) break;; esac
    sleep 2; i=$((i + 2))
  done
  local qmp_s
  qmp_s=$(echo "$(date +%s.%N) $t0" | awk '{printf "%.1f", $1 - $2}')
  case "$state" in
    running|stopped) ok "vm: VM partition tiny reached $state (QEMU in the image, QMP ready) ${qmp_s}s after the ready line";;
    *) bad "vm: VM partition tiny is '${state:-?}' after ${qmp_s}s"; show_console vm
       curl -s --max-time 10 "${auth[@]}" "http://127.0.0.1:$port/v1/partitions"; echo; stop_qemu; return;;
  esac
  local console="" nested=${PHOST_NESTED_TIMEOUT:-900}
  i=0
  while [ $i -lt "$nested" ]; do
    console=$(curl -s --max-time 10 "${auth[@]}" "http://127.0.0.1:$port/v1/partitions/console?name=tiny")
    echo "$console" | grep -q 'PHOST-GUEST-DONE' && break
    sleep 5; i=$((i + 5))
  done
  local marker_s
  marker_s=$(echo "$(date +%s.%N) $t0" | awk '{printf "%.1f", $1 - $2}')
  if echo "$console" | grep -q 'PHOST-IMAGE-VM-OK'; then
    ok "vm: the guest ran its script under nested TCG: marker ${marker_s}s after the ready line"
  else
    echo "boot-test: note: vm: no guest marker within ${nested}s of nested TCG (QMP ready took ${qmp_s}s); console tail:"
    echo "$console" | tail -n 5
  fi
  echo "boot-test: numbers: vm: QMP ready ${qmp_s}s, guest marker ${marker_s}s after phost ready (nested TCG)"
  stop_qemu
}

for t in "${tests[@]}"; do
  echo "boot-test: == $t =="
  "run_$t"
done
echo "boot-test: $passed passed, $failed failed"
[ "$failed" = 0 ]
