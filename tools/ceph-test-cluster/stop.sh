#!/usr/bin/env bash
# Stops the cluster start.sh made in DIR (its daemons by their pid files) and removes DIR.
#   tools/ceph-test-cluster/stop.sh DIR
set -uo pipefail
dir=${1:?usage: stop.sh DIR}
[ -e "$dir/ceph.conf" ] || { echo "stop.sh: no cluster in $dir" >&2; exit 2; }
pids=()
for f in "$dir"/run/*.pid; do
  [ -e "$f" ] && pids+=("$(cat "$f")")
done
for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
for _ in $(seq 50); do
  alive=0
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  sleep 0.1
done
for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
rm -rf "$dir"
