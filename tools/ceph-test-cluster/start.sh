#!/usr/bin/env bash
# Starts a throwaway single-node Ceph cluster (one ceph-mon, one memstore ceph-osd, no manager, no
# systemd) with everything under DIR, and a pool of size 1. Installs nothing: needs Debian's ceph-mon,
# ceph-osd and ceph-common (the `ceph`, `rbd` and `rados` commands).
#
#   tools/ceph-test-cluster/start.sh DIR [MON_PORT]      # MON_PORT default 3300; OSD ports MON_PORT+1..+99
#   export CEPH_CONF=DIR/ceph.conf; rbd -p rbd ls
#   tools/ceph-test-cluster/stop.sh DIR
#
# Env: CEPH_POOL (default rbd), CEPH_OSD_BYTES (memstore capacity, default 1 GiB; pages are allocated
# only when written). Prints "ready in N.N s" and writes it to DIR/start-seconds. Exit 0 once the pool
# takes writes; on failure the daemons' logs are in DIR/log and the cluster is left for inspection.
set -euo pipefail
dir=${1:?usage: start.sh DIR [MON_PORT]}
port=${2:-3300}
pool=${CEPH_POOL:-rbd}
osd_bytes=${CEPH_OSD_BYTES:-1073741824}
for cmd in ceph-mon ceph-osd ceph rbd rados monmaptool ceph-authtool uuidgen; do
  command -v "$cmd" >/dev/null || { echo "start.sh: $cmd missing (apt-get install ceph-mon ceph-osd ceph-common uuid-runtime)" >&2; exit 2; }
done
if [ -e "$dir/ceph.conf" ]; then
  echo "start.sh: $dir already holds a cluster; run stop.sh $dir first" >&2
  exit 2
fi
t0=$(date +%s.%N)
mkdir -p "$dir"/{mon.a,osd.0,run,log}
dir=$(cd "$dir" && pwd)
fsid=$(uuidgen)
cat > "$dir/ceph.conf" <<CONF
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$port
mon_initial_members = a
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_bind_msgr1 = false
ms_bind_port_min = $((port + 1))
ms_bind_port_max = $((port + 99))
public_addr = 127.0.0.1
run_dir = $dir/run
admin_socket = $dir/run/\$name.asok
pid_file = $dir/run/\$name.pid
log_file = $dir/log/\$name.log
keyring = $dir/keyring
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 1
mon_data_avail_crit = 0
[mon]
mon_data = $dir/mon.\$id
[osd]
osd_data = $dir/osd.\$id
osd_objectstore = memstore
memstore_device_bytes = $osd_bytes
memstore_page_set = true
memstore_page_size = 4096
osd_max_object_name_len = 256
osd_max_object_namespace_len = 64
CONF
export CEPH_CONF=$dir/ceph.conf
ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$dir/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$dir/monmap" >/dev/null
ceph-mon --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring"
ceph-mon -i a
osd_uuid=$(uuidgen)
osd_id=$(timeout 30 ceph osd new "$osd_uuid")
[ "$osd_id" = 0 ] || { echo "start.sh: expected osd id 0, got $osd_id" >&2; exit 1; }
ceph-osd -i 0 --mkfs --osd-uuid "$osd_uuid" 2>"$dir/log/osd-mkfs.err" || { cat "$dir/log/osd-mkfs.err" >&2; exit 1; }
ceph-osd -i 0
timeout 30 ceph osd pool create "$pool" 8 8 >/dev/null 2>&1
timeout 30 ceph osd pool set "$pool" size 1 --yes-i-really-mean-it >/dev/null 2>&1
timeout 30 ceph osd pool application enable "$pool" rbd >/dev/null 2>&1
deadline=$((SECONDS + 120))
until timeout 10 rados -p "$pool" put .phost-ready /dev/null 2>/dev/null; do
  if [ $SECONDS -ge $deadline ]; then
    echo "start.sh: pool $pool takes no writes after 120 s; logs in $dir/log" >&2
    exit 1
  fi
  sleep 0.5
done
secs=$(echo "$(date +%s.%N) - $t0" | bc)
printf '%.1f\n' "$secs" > "$dir/start-seconds"
echo "ceph test cluster ready in $(cat "$dir/start-seconds") s: CEPH_CONF=$dir/ceph.conf pool=$pool mon=127.0.0.1:$port"
