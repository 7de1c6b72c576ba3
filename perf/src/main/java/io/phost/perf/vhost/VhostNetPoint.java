package io.phost.perf.vhost;

import io.phost.core.vhost.VhostUserFrontend;
import io.phost.network.vhost.VhostUserNetPort;
import io.phost.perf.BenchContext;
import io.phost.perf.BenchResult;
import io.phost.perf.Rounds;
import io.phost.vswitch.ManagedSwitch;
import io.phost.vswitch.PortConfig;
import io.phost.vswitch.SwitchSpec;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * The vhost-user-net point of {@code phost bench vhost}: 64-byte frames from one vhost-user-net port to another
 * through phost's switch (a private switch, two {@link VhostUserNetPort}s) against dpdk-testpmd forwarding
 * between two {@code net_vhost} ports in io mode, the same {@link VhostNetLoad} driving both as the two
 * guests' VMMs. One untimed phost run (three rounds long) first lets the JIT compile the data path (testpmd is
 * native code); then rounds interleave ABBA. Per round: frames per second received by B; the forwarder's CPU time per frame (phost:
 * this process's CPU minus the driver thread's; testpmd: its /proc stat, which includes its busy-polling core);
 * for phost, the bytes allocated per frame by the threads it started (switch, ports' control threads, queue
 * workers).
 * <pre>
 *   dpdk-testpmd -l 0-1 --no-huge -m 256 --no-pci --no-shconf \
 *     --vdev net_vhost0,iface=A.sock,queues=1 --vdev net_vhost1,iface=B.sock,queues=1 \
 *     -- --forward-mode=io --auto-start --nb-cores=1 --total-num-mbufs=16384
 * </pre>
 */
final class VhostNetPoint {
    static final String TESTPMD = "dpdk-testpmd";
    static final long MAC_A = 0x02_00_00_00_14_0AL;
    static final long MAC_B = 0x02_00_00_00_14_0BL;
    private static final long GUEST_MEMORY = 16L << 20;
    private static final long CLOCK_TICK_NANOS = 10_000_000L; // USER_HZ 100 on Linux

    /**
     * One round of one side: frames per second, CPU nanoseconds per frame, allocated bytes per frame, and (phost)
     * CPU nanoseconds per frame of only the threads phost started (switch agent, queue workers: the data path
     * without the JVM's JIT and GC threads); NaN: not measured.
     */
    record Round(double pps, double cpuNsPerFrame, double allocBytesPerFrame, double threadCpuNsPerFrame, double framesPerTxBurst) {
        Round(double pps, double cpuNsPerFrame, double allocBytesPerFrame, double threadCpuNsPerFrame) {
            this(pps, cpuNsPerFrame, allocBytesPerFrame, threadCpuNsPerFrame, Double.NaN);
        }

        Round(double pps, double cpuNsPerFrame, double allocBytesPerFrame) {
            this(pps, cpuNsPerFrame, allocBytesPerFrame, Double.NaN);
        }

        /** The same round with phost's mean transmit burst (frames per poll of port A's queue that took any). */
        Round withFramesPerTxBurst(double f) {
            return new Round(pps, cpuNsPerFrame, allocBytesPerFrame, threadCpuNsPerFrame, f);
        }
    }

    private VhostNetPoint() {}

    /** Runs {@code rounds} interleaved rounds (no peer when testpmd is missing: said on the log). */
    static BenchResult run(BenchContext ctx, int rounds, double seconds) throws Exception {
        boolean peer = VhostBenchSuite.exists(TESTPMD);
        if (!peer) {
            ctx.log(TESTPMD + " not installed (Debian: dpdk-dev): the vhost-user-net point runs without its peer");
        }
        Round[] ours = new Round[rounds];
        Round[] theirs = new Round[rounds];
        ours(ctx, 3 * seconds, -1); // untimed: lets the JIT compile phost's data path (testpmd is native code)
        for (int r = 0; r < rounds; r++) {
            if (Rounds.oursFirst(r) || !peer) {
                ours[r] = ours(ctx, seconds, r);
            }
            if (peer) {
                theirs[r] = testpmd(ctx, seconds);
            }
            if (ours[r] == null) {
                ours[r] = ours(ctx, seconds, r);
            }
        }
        return result(ours, peer ? theirs : null);
    }

    /** The comparison of frames per second, with CPU and allocation per frame of both sides as extra series. */
    static BenchResult result(Round[] ours, Round[] theirs) {
        BenchResult r = Rounds.compare("64B-frames vhost-user-net A->B", "pps", pick(ours, Round::pps),
            theirs == null ? null : "dpdk-testpmd io (net_vhost x2)", theirs == null ? new double[0] : pick(theirs, Round::pps), false);
        Map<String, Double> series = new LinkedHashMap<>(r.series());
        put(series, "ours_cpu_ns_per_frame", pick(ours, Round::cpuNsPerFrame));
        put(series, "ours_alloc_bytes_per_frame", pick(ours, Round::allocBytesPerFrame));
        put(series, "ours_thread_cpu_ns_per_frame", pick(ours, Round::threadCpuNsPerFrame));
        double[] bursts = pick(ours, Round::framesPerTxBurst);
        if (java.util.Arrays.stream(bursts).allMatch(Double::isFinite)) {
            put(series, "ours_frames_per_tx_burst", bursts); // how full the agent's bursts were (at most 32)
        }
        if (theirs != null) {
            put(series, "peer_cpu_ns_per_frame", pick(theirs, Round::cpuNsPerFrame));
        }
        return r.withSeries(series);
    }

    private static void put(Map<String, Double> series, String key, double[] v) {
        Rounds.Stats s = Rounds.Stats.of(v);
        series.put(key + "_min", s.min());
        series.put(key + "_median", s.median());
        series.put(key + "_max", s.max());
    }

    private static double[] pick(Round[] rounds, java.util.function.ToDoubleFunction<Round> f) {
        double[] v = new double[rounds.length];
        for (int i = 0; i < rounds.length; i++) {
            v[i] = f.applyAsDouble(rounds[i]);
        }
        return v;
    }

    static Round ours(BenchContext ctx, double seconds, int round) throws Exception {
        Path a = ctx.workDir().resolve("phost-net-a.sock");
        Path b = ctx.workDir().resolve("phost-net-b.sock");
        String name = "vb" + ProcessHandle.current().pid() % 100000 + "r" + round;
        long[] existing = ManagementFactory.getThreadMXBean().getAllThreadIds();
        try (ManagedSwitch sw = ManagedSwitch.create(SwitchSpec.privateSwitch(name));
             VhostUserNetPort pa = VhostUserNetPort.start("bench/a", sw, PortConfig.vnic(MAC_A), a, List.of());
             VhostUserNetPort pb = VhostUserNetPort.start("bench/b", sw, PortConfig.vnic(MAC_B), b, List.of())) {
            Round r = drive(a, b, seconds, Cpu.thisProcess(), existing);
            var c = pa.counters(); // the whole run, warm-up included: a mean burst, not a rate
            return r.withFramesPerTxBurst(c.txBursts() == 0 ? Double.NaN : c.txFrames() / (double) c.txBursts());
        }
    }

    /**
     * What two connected, idle vhost-user-net VMs cost phost: both ports' queues started (EVENT_IDX, receive
     * buffers posted, no frame sent), then CPU time over {@code seconds} after a 1 s settle, as fractions of one
     * core: {whole JVM (an upper bound: JIT, GC, the idle driver), the threads phost started (switch agent,
     * control threads, queue workers)}.
     */
    static double[] idleCoreFraction(BenchContext ctx, double seconds) throws Exception {
        var threads = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        long[] existing = threads.getAllThreadIds();
        Path a = ctx.workDir().resolve("phost-idle-a.sock");
        Path b = ctx.workDir().resolve("phost-idle-b.sock");
        try (ManagedSwitch sw = ManagedSwitch.create(SwitchSpec.privateSwitch("vbidle" + ProcessHandle.current().pid() % 100000));
             VhostUserNetPort pa = VhostUserNetPort.start("bench/a", sw, PortConfig.vnic(MAC_A), a, List.of());
             VhostUserNetPort pb = VhostUserNetPort.start("bench/b", sw, PortConfig.vnic(MAC_B), b, List.of());
             VhostUserFrontend fa = VhostBenchSuite.connect(a, GUEST_MEMORY);
             VhostUserFrontend fb = VhostBenchSuite.connect(b, GUEST_MEMORY)) {
            for (VhostUserFrontend f : List.of(fa, fb)) {
                f.negotiate(VhostNetLoad.FEATURES);
                VhostUserFrontend.Queue rx = f.startQueue(VhostNetLoad.RX_QUEUE, VhostNetLoad.RING);
                f.startQueue(VhostNetLoad.TX_QUEUE, VhostNetLoad.RING);
                for (int i = 0; i < 64; i++) {
                    rx.add(new long[] {f.alloc(2048, 64)}, new int[] {2048}, new boolean[] {true});
                }
                VhostNetLoad.driverOk(f);
                rx.kick();
            }
            Thread.sleep(1000);
            Cpu cpu = Cpu.thisProcess();
            long[] started = startedSince(threads.getAllThreadIds(), existing);
            long c0 = cpu.nanos();
            long p0 = sum(threads.getThreadCpuTime(started));
            long t0 = System.nanoTime();
            Thread.sleep((long) (seconds * 1000));
            double wall = System.nanoTime() - t0;
            return new double[] {(cpu.nanos() - c0) / wall, (sum(threads.getThreadCpuTime(started)) - p0) / wall};
        }
    }

    static Round testpmd(BenchContext ctx, double seconds) throws Exception {
        Path a = ctx.workDir().resolve("testpmd-a.sock");
        Path b = ctx.workDir().resolve("testpmd-b.sock");
        Files.deleteIfExists(a);
        Files.deleteIfExists(b);
        Path log = ctx.workDir().resolve("testpmd.log");
        Process p = new ProcessBuilder(testpmdCommand(a, b)).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        try {
            for (int i = 0; i < 1000 && !(Files.exists(a) && Files.exists(b)); i++) {
                if (!p.isAlive()) {
                    throw new IllegalStateException(TESTPMD + " exited: " + Files.readString(log));
                }
                Thread.sleep(10);
            }
            return drive(a, b, seconds, Cpu.process(p.pid()), null);
        } catch (RuntimeException e) {
            throw new IllegalStateException(e.getMessage() + "; " + TESTPMD + " log: " + tail(log), e);
        } finally {
            p.destroy(); // SIGTERM: testpmd stops its ports and exits
            if (!p.waitFor(10, TimeUnit.SECONDS)) {
                p.destroyForcibly();
            }
        }
    }

    static List<String> testpmdCommand(Path a, Path b) {
        return List.of(TESTPMD, "-l", "0-1", "--no-huge", "-m", "256", "--no-pci", "--no-shconf",
            "--vdev", "net_vhost0,iface=" + a + ",queues=1", "--vdev", "net_vhost1,iface=" + b + ",queues=1",
            "--", "--forward-mode=io", "--auto-start", "--nb-cores=1", "--total-num-mbufs=16384");
    }

    /**
     * Connects the two front-ends and pumps; {@code existing} (the threads that ran before phost's switch and
     * ports started, null for another process) leaves the threads phost started whose allocation is counted.
     */
    private static Round drive(Path a, Path b, double seconds, Cpu cpu, long[] existing) throws InterruptedException {
        try (VhostUserFrontend fa = VhostBenchSuite.connect(a, GUEST_MEMORY);
             VhostUserFrontend fb = VhostBenchSuite.connect(b, GUEST_MEMORY)) {
            fa.negotiate(VhostNetLoad.FEATURES);
            fb.negotiate(VhostNetLoad.FEATURES);
            VhostNetLoad load = new VhostNetLoad(fa, fb, MAC_A, MAC_B);
            if (!load.awaitFirstFrame(10)) {
                throw new IllegalStateException("no frame reached B within 10 s");
            }
            load.pump(Math.min(0.5, seconds / 2)); // warm-up
            var threads = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
            long cpu0 = cpu.nanos() - (cpu.includesDriver() ? threads.getCurrentThreadCpuTime() : 0);
            long[] started = existing == null ? new long[0] : startedSince(threads.getAllThreadIds(), existing);
            long alloc0 = sum(threads.getThreadAllocatedBytes(started));
            long thread0 = sum(threads.getThreadCpuTime(started));
            long t0 = System.nanoTime();
            long frames = load.pump(seconds);
            long t1 = System.nanoTime();
            long cpu1 = cpu.nanos() - (cpu.includesDriver() ? threads.getCurrentThreadCpuTime() : 0);
            long alloc1 = sum(threads.getThreadAllocatedBytes(started));
            long thread1 = sum(threads.getThreadCpuTime(started));
            return new Round(frames / ((t1 - t0) / 1e9), (cpu1 - cpu0) / (double) frames,
                existing == null ? Double.NaN : (alloc1 - alloc0) / (double) frames,
                existing == null ? Double.NaN : (thread1 - thread0) / (double) frames);
        }
    }

    /** The ids in {@code now} that are not in {@code before}: the switch's, the ports' and their queue workers' threads. */
    static long[] startedSince(long[] now, long[] before) {
        java.util.Set<Long> old = java.util.Arrays.stream(before).boxed().collect(java.util.stream.Collectors.toSet());
        return java.util.Arrays.stream(now).filter(id -> !old.contains(id)).toArray();
    }

    private static long sum(long[] v) {
        long s = 0;
        for (long x : v) {
            s += Math.max(0, x); // -1: the thread ended
        }
        return s;
    }

    private static String tail(Path log) {
        try {
            String s = Files.readString(log);
            return s.length() > 2000 ? s.substring(s.length() - 2000) : s;
        } catch (IOException e) {
            return "(unreadable: " + e.getMessage() + ")";
        }
    }

    /** CPU time of the forwarder: this JVM (which also runs the driver) or another process. */
    record Cpu(long pid, boolean includesDriver) {
        static Cpu thisProcess() {
            return new Cpu(-1, true);
        }

        static Cpu process(long pid) {
            return new Cpu(pid, false);
        }

        long nanos() {
            if (pid < 0) {
                return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean()).getProcessCpuTime();
            }
            try {
                return statTicks(Files.readString(Path.of("/proc/" + pid + "/stat"))) * CLOCK_TICK_NANOS;
            } catch (IOException e) {
                throw new IllegalStateException("cannot read the CPU time of " + pid + ": " + e.getMessage(), e);
            }
        }
    }

    /** utime + stime (fields 14 and 15) of a /proc/PID/stat line; the command name may hold spaces and parentheses. */
    static long statTicks(String stat) {
        String[] f = stat.substring(stat.lastIndexOf(')') + 2).trim().split(" ");
        return Long.parseLong(f[11]) + Long.parseLong(f[12]); // f[0] is field 3 (state)
    }
}
