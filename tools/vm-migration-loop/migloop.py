#!/usr/bin/env python3
"""Ping-pong live migration of the test guest between two local QEMU (TCG) processes, N rounds, without phost:
virtio-blk on a raw file and a user netdev instead of phost's vhost-user devices, otherwise phost's QEMU options
(q35, -cpu max, memfd memory, vectors=0 NIC). Counts target guests that oops or panic (docs/cluster.md).

  python3 tools/vm-migration-loop/migloop.py ROUNDS OUTDIR KITDIR      (KITDIR: tools/test-guest/build.sh prints it)
  EARLY=0: wait 2-8 s before each migration; REBOOT=1: boot afresh and migrate right after the first tick."""
import json, os, socket, subprocess, sys, time, base64, random
N = int(sys.argv[1]); out = sys.argv[2]; kit = sys.argv[3]
early = os.environ.get("EARLY", "1") == "1"   # migrate right after the first tick (as RunVmMoveTest does)
os.makedirs(out, exist_ok=True)
script = """ip link set eth0 up
echo V20-UP
boot=$(head -c 4 /dev/urandom | md5sum | cut -c1-8)
i=0
while :; do i=$((i+1)); echo "V20-TICK $boot $i"; sleep 1; done
"""
cmdline = "console=ttyS0 quiet phost.script=" + base64.b64encode(script.encode()).decode() + " phost.hold=1 phost.agent=0"
disk = os.path.join(out, "disk.raw")
subprocess.run(["truncate", "-s", "8M", disk], check=True)
def qemu(tag, incoming=None):
    qmp = os.path.join(out, tag + ".qmp"); log = os.path.join(out, tag + ".log")
    for p in (qmp,):
        if os.path.exists(p): os.unlink(p)
    a = ["qemu-system-x86_64", "-no-user-config", "-nodefaults", "-display", "none",
         "-machine", "q35,memory-backend=ram0", "-accel", "tcg,tb-size=64", "-cpu", "max", "-smp", "1", "-m", "256M",
         "-object", "memory-backend-memfd,id=ram0,size=256M,share=on",
         "-qmp", "unix:%s,server=on,wait=off" % qmp, "-serial", "file:" + log,
         "-kernel", kit + "/vmlinuz", "-initrd", kit + "/initramfs.gz", "-append", cmdline,
         "-device", "pcie-root-port,id=p1,chassis=1",
         "-drive", "if=none,id=d0,format=raw,file=%s,file.locking=off,cache=none,aio=threads" % disk,
         "-device", "virtio-blk-pci,drive=d0,bus=p1",
         "-device", "pcie-root-port,id=p2,chassis=2",
         "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:20:00:01,vectors=0,bus=p2",
         "-device", "virtio-serial-pci,id=vser0", "-S"]
    if incoming: a += ["-incoming", incoming]
    p = subprocess.Popen(a, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(log + ".err", "w"))
    for _ in range(200):
        if os.path.exists(qmp): break
        time.sleep(0.05)
    s = socket.socket(socket.AF_UNIX); s.connect(qmp); f = s.makefile("rw")
    f.readline(); cmd(f, "qmp_capabilities")
    return p, f, log
def cmd(f, c, **args):
    f.write(json.dumps({"execute": c, "arguments": args}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r: return r
def wait_for(log, text, timeout, start=0):
    end = time.time() + timeout
    while time.time() < end:
        s = open(log, errors="replace").read()
        if text in s[start:]: return s
        time.sleep(0.1)
    return None
BAD = ("Kernel panic", "BUG:", "Oops", "general protection", "corruption", "Call Trace")
fails = 0; rounds = 0
src, sf, slog = qemu("q0"); cmd(sf, "cont")
assert wait_for(slog, "V20-TICK", 300), "no first tick"
reboot = os.environ.get("REBOOT", "0") == "1"  # a fresh boot before every migration (the CI run's moment)
for r in range(N):
    if not early: time.sleep(random.uniform(2, 8))
    if reboot and r > 0:
        src.kill(); src.wait()
        src, sf, slog = qemu("q%db" % r); cmd(sf, "cont")
        assert wait_for(slog, "V20-TICK", 300), "no first tick"

    port = 45200 + r % 50
    tag = "q%d" % (r + 1)
    dst, df, dlog = qemu(tag, "tcp:127.0.0.1:%d" % port)
    t0 = time.time()
    print(cmd(sf, "migrate", uri="tcp:127.0.0.1:%d" % port), flush=True)
    while True:
        m = cmd(sf, "query-migrate")["return"]
        if m.get("status") in ("completed", "failed", "cancelled"): break
        time.sleep(0.05)
    src.kill(); src.wait()
    cmd(df, "cont")
    # the target must print more ticks and nothing bad for 10 s
    time.sleep(10)
    s = open(dlog, errors="replace").read()
    bad = [b for b in BAD if b in s]
    ticks = s.count("V20-TICK")
    rounds += 1
    ok = m.get("status") == "completed" and not bad and ticks >= 3
    if not ok: fails += 1
    print("round %d status=%s downtime=%s total=%s ticks=%d bad=%s %s" % (r, m.get("status"), m.get("downtime"), m.get("total-time"), ticks, bad, "OK" if ok else "FAIL"), flush=True)
    if not ok:
        # reboot a fresh source
        dst.kill(); dst.wait()
        dst, df, dlog = qemu(tag + "b"); cmd(df, "cont"); wait_for(dlog, "V20-TICK", 300)
    src, sf, slog = dst, df, dlog
src.kill()
print("RESULT rounds=%d fails=%d load=%s" % (rounds, fails, open("/proc/loadavg").read().strip()), flush=True)
