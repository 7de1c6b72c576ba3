package io.phost.perf.vhost;

import io.phost.core.vhost.VhostUserFrontend;
import io.phost.vhdx.RawDisk;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.vhdx.VhdxDisk;
import io.phost.qos.QosFlow;
import io.phost.storage.DiskStats;
import io.phost.storage.backend.MemoryDisk;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiTarget;
import io.phost.storage.vhost.VhostUserBlkExport;
import io.phost.storage.vhost.VhostUserScsiExport;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * Where one vhost-user-blk back-end's time goes per I/O, for attributing {@code phost bench vhost}'s ratios on a
 * loaded machine (issue 14): the same driver ({@link VhostBlkLoad}) against phost's export or qemu-storage-daemon's
 * on one image, and per thread (the back-end's threads, the driver's) over the measured window, per I/O:
 * CPU time and run-queue wait ({@code /proc/.../schedstat}), voluntary and involuntary context switches, and the
 * syscalls a {@code perf stat} of those threads counts (io_uring_enter, eventfd reads and writes, poll, preadv...).
 * The run-queue wait per I/O is what a loaded machine charges a back-end for each of its wake-ups.
 * <pre>
 *   java -cp 'dist/lib/*' io.phost.perf.vhost.VhostBlkProbe phost|qsd raw|vhdx read|write QD SECONDS [DIR]
 * </pre>
 * Needs {@code perf} (tracepoints readable) for the syscall columns; without it they are left out.
 */
public final class VhostBlkProbe {
    private static final String[] EVENTS = {
        "syscalls:sys_enter_io_uring_enter", "syscalls:sys_enter_write", "syscalls:sys_enter_read",
        "syscalls:sys_enter_ppoll", "syscalls:sys_enter_poll", "syscalls:sys_enter_preadv", "syscalls:sys_enter_pwritev",
        "syscalls:sys_enter_sched_yield", "syscalls:sys_enter_futex", "sched:sched_wakeup"};

    /** The timed run's random-offset seed ({@code PHOST_PROBE_SEED}, default 1000 as the bench's first round). */
    private static final long SEED = Long.parseLong(System.getenv().getOrDefault("PHOST_PROBE_SEED", "1000"));

    private VhostBlkProbe() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 5) {
            System.err.println("usage: VhostBlkProbe phost|phost-scsi|qsd raw|vhdx|null read|write QD SECONDS [DIR]");
            System.exit(2);
        }
        boolean qsd = args[0].equals("qsd");
        boolean scsi = args[0].equals("phost-scsi");
        String format = args[1];
        boolean write = args[2].equals("write");
        int qd = Integer.parseInt(args[3]);
        double seconds = Double.parseDouble(args[4]);
        Path dir = args.length > 5 ? Path.of(args[5]) : Files.createTempDirectory("vhost-probe");
        Files.createDirectories(dir);
        long size = 256L << 20;
        Path image = dir.resolve("probe-" + (qsd ? "qsd" : "phost") + "." + format);
        if (!format.equals("null") && !Files.exists(image)) {
            VhostBenchSuite.prefill(image, format, size);
        }
        Path sock = dir.resolve("probe-" + args[0] + ".sock");
        Files.deleteIfExists(sock);
        Process peer = null;
        VirtualDisk disk = null;
        VhostUserBlkExport export = null;
        VhostUserScsiExport scsiExport = null;
        int lba = 512;
        try {
            long backendPid;
            if (qsd) {
                List<String> cmd = format.equals("null")
                    ? List.of("qemu-storage-daemon", "--blockdev", "driver=null-co,node-name=d,size=" + size)
                    : List.of("qemu-storage-daemon",
                    "--blockdev", "driver=file,node-name=f,filename=" + image + ",cache.direct=on,aio=io_uring",
                    "--blockdev", "driver=" + format + ",node-name=d,file=f");
                peer = new ProcessBuilder(concat(cmd, List.of(
                    "--export", "type=vhost-user-blk,id=e,node-name=d,addr.type=unix,addr.path=" + sock + ",writable=on,num-queues=1")))
                    .redirectErrorStream(true).redirectOutput(dir.resolve("probe-qsd.log").toFile()).start();
                for (int i = 0; i < 500 && !Files.exists(sock); i++) {
                    Thread.sleep(10);
                }
                backendPid = peer.pid();
            } else {
                disk = switch (format) {
                    case "raw" -> RawDisk.openFile(image, false, true);
                    case "null" -> MemoryDisk.nullDisk(size);
                    default -> VhdxDisk.open(image, false);
                };
                if (scsi) {
                    ScsiLun lun = new ScsiLun("probe", disk, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO);
                    lba = lun.blockSize();
                    ScsiTarget target = new ScsiTarget();
                    target.add(0, lun);
                    scsiExport = VhostUserScsiExport.start("probe", target, sock,
                        VhostUserScsiExport.Options.defaults().withRequestQueues(1).withPolling(VhostBenchSuite.POLLING));
                } else {
                    export = VhostUserBlkExport.start("probe", disk, sock, VhostBenchSuite.exportOptions());
                }
                backendPid = ProcessHandle.current().pid();
            }
            try (VhostUserFrontend f = VhostBenchSuite.connect(sock, 16L << 20)) {
                f.negotiate(VhostBenchSuite.WANTED);
                VhostUserFrontend.Queue q;
                if (scsi) {
                    f.startQueue(0, 16); // control
                    f.startQueue(1, 8); // events
                    q = f.startQueue(2, 128);
                    VhostScsiLoad.settle(f, q, lba);
                } else {
                    q = f.startQueue(0, 128);
                }
                int lbaSize = lba;
                Load load = (secs, seed) -> scsi
                    ? VhostScsiLoad.run(f, q, write, 4096, lbaSize, qd, size, secs, seed)
                    : VhostBlkLoad.run(f, q, write, 4096, qd, size, secs, seed);
                load.run(1.0, 7); // warm-up (and the workers exist now)
                String driver = Files.readSymbolicLink(Path.of("/proc/thread-self")).getFileName().toString();
                List<String> backend = qsd ? tasks(backendPid, null) : tasks(backendPid, "probe");
                List<String> all = new ArrayList<>(backend);
                all.add(driver);
                Map<String, long[]> before = snapshot(backendPid, all);
                DiskStats stats = export != null ? export.stats() : scsiExport != null ? scsiExport.target().lun(0).stats() : null;
                long lat0 = stats == null ? 0 : stats.latencyNanosTotal();
                long n0 = stats == null ? 0 : stats.reads() + stats.writes();
                io.phost.core.vmbus.SpinGovernor.Totals gov0 = io.phost.core.vmbus.SpinGovernor.totals(true);
                Process perf = startPerf(all, seconds);
                UsedSampler sampler = new UsedSampler(q);
                sampler.start();
                long t0 = System.nanoTime();
                double rate = load.run(seconds, SEED);
                double ios = rate * ((System.nanoTime() - t0) / 1e9);
                sampler.interrupt();
                sampler.join();
                Map<String, long[]> after = snapshot(backendPid, all);
                Map<String, Map<String, Long>> counts = perf == null ? Map.of() : readPerf(perf);
                if (stats != null) {
                    long n = stats.reads() + stats.writes() - n0;
                    double lat = (stats.latencyNanosTotal() - lat0) / (double) Math.max(1, n) / 1e3;
                    // Little's law: requests in the core on average = rate x time each spends there; the driver keeps qd.
                    System.out.printf(Locale.ROOT, "phost core: mean latency %.1f us, %.1f of %d requests in the core on average; driver's view %.1f us%n",
                        lat, rate * lat / 1e6, qd, qd / rate * 1e6);
                }
                if (!qsd) {
                    var g = io.phost.core.vmbus.SpinGovernor.totals(true).minus(gov0);
                    System.out.printf(Locale.ROOT, "governor (host side): allowed to spin %.1f%% of governed time, %d trials, %d stops (contended %d, misses %d)%n",
                        g.spinShare() * 100, g.trials(), g.contendedStops() + g.missStops(), g.contendedStops(), g.missStops());
                }
                System.out.printf(Locale.ROOT, "used ring: %.1f completions wait for the driver on average (%d samples)%n",
                    sampler.mean(), sampler.samples);
                System.out.printf(Locale.ROOT, "%s %s %s qd%d: %.0f IOPS over %.1f s (load %s)%n", args[0], format, args[2], qd, rate,
                    seconds, Files.readString(Path.of("/proc/loadavg")).trim());
                System.out.printf(Locale.ROOT, "%-22s %8s %8s %7s %7s %7s", "per I/O", "cpu_us", "rqwait_us", "slices", "volcs", "invcs");
                for (String e : EVENTS) {
                    System.out.printf(Locale.ROOT, " %8s", shortName(e));
                }
                System.out.println();
                for (String tid : all) {
                    long[] a = before.get(tid);
                    long[] b = after.get(tid);
                    if (a == null || b == null) {
                        continue;
                    }
                    String label = (tid.equals(driver) ? "driver " : "") + comm(backendPid, tid) + "/" + tid;
                    System.out.printf(Locale.ROOT, "%-22s %8.2f %8.2f %7.3f %7.3f %7.3f", label, (b[0] - a[0]) / ios / 1e3,
                        (b[1] - a[1]) / ios / 1e3, (b[2] - a[2]) / ios, (b[3] - a[3]) / ios, (b[4] - a[4]) / ios);
                    Map<String, Long> c = counts.getOrDefault(tid, Map.of());
                    for (String e : EVENTS) {
                        Long v = c.get(e);
                        System.out.printf(Locale.ROOT, " %8s", v == null ? "-" : String.format(Locale.ROOT, "%.3f", v / ios));
                    }
                    System.out.println();
                }
            }
        } finally {
            if (export != null) {
                export.close();
            }
            if (scsiExport != null) {
                scsiExport.close();
            }
            if (disk != null) {
                disk.close();
            }
            if (peer != null) {
                peer.destroy();
                peer.waitFor(10, TimeUnit.SECONDS);
            }
        }
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }

    @FunctionalInterface
    private interface Load {
        double run(double seconds, long seed);
    }

    private static List<String> concat(List<String> a, List<String> b) {
        List<String> out = new ArrayList<>(a);
        out.addAll(b);
        return out;
    }

    /** Samples how many completions sit in the used ring not yet taken by the driver, every ~20 µs. */
    private static final class UsedSampler extends Thread {
        private final VhostUserFrontend.Queue q;
        private long sum;
        long samples;

        UsedSampler(VhostUserFrontend.Queue q) {
            super("used-sampler");
            setDaemon(true);
            this.q = q;
        }

        @Override
        public void run() {
            while (!isInterrupted()) {
                sum += (q.usedIndex() - q.consumedUsedIndex()) & 0xFFFF;
                samples++;
                java.util.concurrent.locks.LockSupport.parkNanos(20_000);
            }
        }

        double mean() {
            return samples == 0 ? Double.NaN : sum / (double) samples;
        }
    }

    private static String shortName(String event) {
        String s = event.substring(event.indexOf(':') + 1).replace("sys_enter_", "");
        return s.length() > 8 ? s.substring(0, 8) : s;
    }

    /** The tasks of {@code pid} whose comm starts with {@code prefix} (all of them for null). */
    private static List<String> tasks(long pid, String prefix) throws IOException {
        List<String> out = new ArrayList<>();
        try (var s = Files.list(Path.of("/proc/" + pid + "/task"))) {
            for (Path t : s.sorted().toList()) {
                String tid = t.getFileName().toString();
                if (prefix == null || comm(pid, tid).startsWith(prefix)) {
                    out.add(tid);
                }
            }
        }
        return out;
    }

    private static String comm(long pid, String tid) {
        try {
            return Files.readString(Path.of("/proc/" + tid + "/comm")).trim();
        } catch (IOException e) {
            return "?";
        }
    }

    /** Per task: run ns, run-queue wait ns, timeslices (schedstat), voluntary and involuntary switches (status). */
    private static Map<String, long[]> snapshot(long pid, List<String> tids) {
        Map<String, long[]> out = new LinkedHashMap<>();
        for (String tid : tids) {
            try {
                String base = "/proc/" + tid + "/"; // a thread's own /proc entry: the driver's is in this JVM, not the peer's
                String[] ss = Files.readString(Path.of(base + "schedstat")).trim().split("\\s+");
                long vol = 0;
                long inv = 0;
                for (String line : Files.readAllLines(Path.of(base + "status"))) {
                    if (line.startsWith("voluntary_ctxt_switches:")) {
                        vol = Long.parseLong(line.substring(line.indexOf(':') + 1).trim());
                    } else if (line.startsWith("nonvoluntary_ctxt_switches:")) {
                        inv = Long.parseLong(line.substring(line.indexOf(':') + 1).trim());
                    }
                }
                out.put(tid, new long[] {Long.parseLong(ss[0]), Long.parseLong(ss[1]), Long.parseLong(ss[2]), vol, inv});
            } catch (IOException | RuntimeException e) {
                // the task ended
            }
        }
        return out;
    }

    private static Process startPerf(List<String> tids, double seconds) {
        List<String> cmd = new ArrayList<>(List.of("perf", "stat", "-x", ",", "--per-thread", "-t", String.join(",", tids)));
        for (String e : EVENTS) {
            cmd.add("-e");
            cmd.add(e);
        }
        cmd.addAll(List.of("--", "sleep", String.format(Locale.ROOT, "%.3f", seconds)));
        try {
            return new ProcessBuilder(cmd).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        } catch (IOException e) {
            System.err.println("perf not available: " + e.getMessage());
            return null;
        }
    }

    /** perf stat -x, --per-thread lines: {@code comm-tid,count,,event,...}. */
    private static Map<String, Map<String, Long>> readPerf(Process perf) throws Exception {
        String err = new String(perf.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        perf.waitFor(10, TimeUnit.SECONDS);
        Map<String, Map<String, Long>> out = new LinkedHashMap<>();
        for (String line : err.split("\n")) {
            String[] f = line.split(",");
            if (f.length < 4 || !f[1].matches("[0-9]+")) {
                continue;
            }
            String task = f[0].trim();
            String tid = task.substring(task.lastIndexOf('-') + 1);
            out.computeIfAbsent(tid, k -> new LinkedHashMap<>()).put(f[3], Long.parseLong(f[1]));
        }
        return out;
    }
}
