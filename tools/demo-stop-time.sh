#!/bin/bash
# SIGTERM -> exit of the demo host (docs/security.md, Stopping). Usage: tools/demo-stop-time.sh WORKTREE N LOGS [SIGNAL]
# (SIGNAL: TERM by default, or HUP, INT).
# One demo at a time: it waits until no phost-demo-* namespace exists. Each run: ./phost run --plain, wait for
# "phost: ready" + 4 s, kill -TERM, time until the process has exited; stderr kept as LOGS/runN.err.
wt=$1; n=${2:-3}; logs=$3; sig=${4:-TERM}
mkdir -p "$logs"; cd "$wt"
for i in $(seq 1 "$n"); do
  while ip netns list | grep -q phost-demo; do sleep 2; done
  out=$logs/run$i.out; err=$logs/run$i.err
  ./phost run --plain >"$out" 2>"$err" &
  pid=$!
  for _ in $(seq 1 1800); do grep -q "phost: ready" "$out" && break; sleep 0.1; done
  sleep 4
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  t0=$(date +%s.%N)
  kill -"$sig" $pid
  wait $pid; rc=$?
  t1=$(date +%s.%N)
  echo "run $i: $(echo "$t1 - $t0" | bc) s exit=$rc load=[$load] signal_at=$(date -d @$t0 +%H:%M:%S.%N | cut -c1-12)"
  sleep 2
done
