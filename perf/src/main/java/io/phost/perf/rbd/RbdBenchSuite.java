package io.phost.perf.rbd;

import io.phost.core.partition.Partition;
import io.phost.core.partition.PartitionHost;
import io.phost.core.partition.PartitionSpec;
import io.phost.core.sys.Librbd;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.HandoffSampler;
import io.phost.core.vmbus.SpinGovernor;
import io.phost.core.vmbus.VmbusClient;
import io.phost.core.vhost.VhostUserFrontend;
import io.phost.perf.BenchContext;
import io.phost.perf.BenchResult;
import io.phost.perf.BenchSuite;
import io.phost.perf.storage.HandoffBreakdown;
import io.phost.perf.vhost.VhostBlkLoad;
import io.phost.qos.QosFlow;
import io.phost.storage.StorageVsp;
import io.phost.storage.engine.IoCompletionHandler;
import io.phost.storage.engine.IoEngine;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.engine.IoVecs;
import io.phost.storage.rbd.RbdDisk;
import io.phost.storage.vhost.VhostUserBlkExport;
import io.phost.storage.vmbus.GuestIo;
import io.phost.storage.vmbus.StorvscClient;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * {@code phost bench rbd}: 4 KiB random reads and writes at QD1 and QD32 on one RBD image, four ways in the
 * same run, interleaved round by round: a process partition's guest over VMBus (storvsc → SCSI → storage
 * queue → librbd engine), a vhost-user-blk front-end through phost's export (virtio-blk → storage queue →
 * librbd engine), phost's librbd engine driven directly (the floor under every transport), and fio's own
 * {@code rbd} engine (the peer). Every side runs with the librbd cache off.
 *
 * <p>Cluster: {@code $CEPH_CONF} (pool {@code $PHOST_BENCH_RBD_POOL}, default rbd) when set; else a throwaway
 * one started with {@code tools/ceph-test-cluster/start.sh} (found above the working directory) and removed.
 * {@code $PHOST_BENCH_RBD_ONLY} (for profiling one side) keeps the points and sides whose names it lists, comma
 * separated: {@code 4k-randread-qd32,engine} runs only the engine at read QD32 (sides: vmbus, vhost, engine, fio).
 */
public final class RbdBenchSuite implements BenchSuite {
    private static final Pattern READ_IOPS = Pattern.compile("\"read\"\\s*:\\s*\\{[^{}]*?\"iops\"\\s*:\\s*([0-9.eE+-]+)");
    private static final Pattern WRITE_IOPS = Pattern.compile("\"write\"\\s*:\\s*\\{[^{}]*?\"iops\"\\s*:\\s*([0-9.eE+-]+)");
    private static final long IMAGE_SIZE = 256L << 20;
    private static final String IMAGE = "phost-bench";

    @Override
    public String name() {
        return "rbd";
    }

    @Override
    public String description() {
        return "Ceph RBD: phost over VMBus, over vhost-user and its librbd engine vs fio's rbd engine, 4k random QD1/QD32";
    }

    @Override
    public Duration quickDuration() {
        // 159 s with three sides under load 35 (cluster start included); the VMBus side adds a quarter: 164-269 s
        // measured at load 23-33 on a running cluster
        return Duration.ofSeconds(210);
    }

    private record Point(String name, boolean write, int qd) {
    }

    /**
     * One side's round: IOPS, and CPU µs per I/O over the measured window (the whole process but its JIT threads;
     * for phost's sides that includes the in-process guest or front-end driving the load) and of the queue agent
     * alone (NaN for the engine and fio, which have none).
     */
    /**
     * The VMBus agents' polling mode (the config's {@code polling}); {@code PHOST_BENCH_RBD_POLLING=latency} compares
     * always-spinning agents with the default {@code adaptive} (with {@code -Dphost.guest.adaptivePoll=false} for the
     * guest's side).
     */
    private static final io.phost.core.vmbus.PollingMode AGENT_POLLING = io.phost.core.vmbus.PollingMode.valueOf(
        System.getenv().getOrDefault("PHOST_BENCH_RBD_POLLING", "adaptive").toUpperCase(java.util.Locale.ROOT));

    /**
     * {@code PHOST_BENCH_RBD_PIN}: the VMBus side's queue agent and in-process guest on one CPU ({@code same:N}),
     * on two ({@code apart:A,B}), or wherever the scheduler puts them (unset, the default). On a VM a wake-up across
     * vCPUs is an IPI (tens of µs here); two threads that hand each request to each other on one CPU do not pay it.
     */
    private static final String PIN = System.getenv().getOrDefault("PHOST_BENCH_RBD_PIN", "");

    private static List<Integer> agentCpus() {
        return PIN.isEmpty() ? List.of() : io.phost.core.sys.CpuAffinity.parseList(PIN.substring(PIN.indexOf(':') + 1).split(",")[0]);
    }

    private static List<Integer> guestCpus() {
        if (PIN.isEmpty()) {
            return List.of();
        }
        String[] cpus = PIN.substring(PIN.indexOf(':') + 1).split(",");
        return io.phost.core.sys.CpuAffinity.parseList(cpus[cpus.length - 1]);
    }

    /** {@code PHOST_BENCH_RBD_THREADS=1}: log CPU µs per I/O per thread name of the VMBus side's rounds. */
    private static final boolean THREADS = "1".equals(System.getenv("PHOST_BENCH_RBD_THREADS"));

    private static void logThreads(BenchContext ctx, String what, java.util.Map<String, Long> before, double ios,
                                   long processNanos) {
        StringBuilder b = new StringBuilder(what).append(" CPU µs/IO by thread:");
        long[] alive = {0};
        CpuWindow.byThread().forEach((name, ns) -> {
            long d = ns - before.getOrDefault(name, 0L);
            if (!name.contains("CompilerThre")) {
                alive[0] += d;
            }
            double us = d / 1e3 / ios;
            if (us >= 0.5) {
                b.append(String.format(java.util.Locale.ROOT, " %s=%.1f", name, us));
            }
        });
        // threads that ended within the window: the in-process guest's guest-io-* threads
        b.append(String.format(java.util.Locale.ROOT, " ended(guest)=%.1f", (processNanos - alive[0]) / 1e3 / ios));
        ctx.log(b.toString());
    }

    private record Round(double iops, double cpuUs, double agentUs, double clusterUs) {
        static final Round NONE = new Round(Double.NaN, Double.NaN, Double.NaN, Double.NaN);

        static Round of(double iops, CpuWindow w) {
            double ios = iops * w.wallNanos() / 1e9;
            long cluster = w.clusterNanos();
            return new Round(iops, ios > 0 ? w.cpuNanos() / 1e3 / ios : Double.NaN,
                ios > 0 ? w.agentNanos() / 1e3 / ios : Double.NaN,
                ios > 0 && cluster >= 0 ? cluster / 1e3 / ios : Double.NaN);
        }
    }

    @Override
    public List<BenchResult> run(BenchContext ctx) throws Exception {
        if (!Librbd.available()) {
            throw new IllegalStateException("rbd bench: " + Librbd.unavailableReason());
        }
        Path conf;
        String pool = System.getenv().getOrDefault("PHOST_BENCH_RBD_POOL", "rbd");
        Path started = null;
        Path tools = null;
        if (System.getenv("CEPH_CONF") != null) {
            conf = Path.of(System.getenv("CEPH_CONF"));
        } else {
            tools = tools();
            started = ctx.workDir().resolve("ceph");
            int port;
            try (ServerSocket s = new ServerSocket(0)) {
                port = Math.min(s.getLocalPort(), 65000);
            }
            ctx.log("rbd: starting a throwaway Ceph cluster (" + tools.resolve("start.sh") + " " + started + " " + port + ")");
            String out = exec(List.of("bash", tools.resolve("start.sh").toString(), started.toString(), Integer.toString(port)), null, 180);
            ctx.log(out.lines().reduce((a, b) -> b).orElse(""));
            conf = started.resolve("ceph.conf");
        }
        try {
            return measure(ctx, conf, pool);
        } finally {
            if (started != null) {
                exec(List.of("bash", tools.resolve("stop.sh").toString(), started.toString()), null, 60);
            }
        }
    }

    private List<BenchResult> measure(BenchContext ctx, Path conf, String pool) throws Exception {
        CpuWindow.watchCluster(conf);
        boolean fio = fioHasRbd();
        if (!fio) {
            ctx.log("rbd: fio has no rbd engine (fio --enghelp); results have no peer");
        }
        double seconds = ctx.quick() ? 1.5 : 5;
        int rounds = 3;
        RbdDisk.Options opts = new RbdDisk.Options(conf, "admin", null, pool, null, IMAGE, IMAGE_SIZE, false, false, 20);
        // Prefill so reads hit written objects (an unwritten RBD object reads as zeros without an OSD read).
        exec(List.of("rbd", "rm", pool + "/" + IMAGE), conf, 120, true);
        exec(List.of("rbd", "create", "--size", (IMAGE_SIZE >> 20) + "M", pool + "/" + IMAGE), conf, 120);
        exec(List.of("rbd", "bench", "--io-type", "write", "--io-size", "4M", "--io-pattern", "seq",
            "--io-total", Long.toString(IMAGE_SIZE), pool + "/" + IMAGE), conf, 300);
        List<Point> points = List.of(new Point("4k-randread-qd1", false, 1), new Point("4k-randread-qd32", false, 32),
            new Point("4k-randwrite-qd1", true, 1), new Point("4k-randwrite-qd32", true, 32));
        List<String> only = System.getenv("PHOST_BENCH_RBD_ONLY") == null ? List.of()
            : List.of(System.getenv("PHOST_BENCH_RBD_ONLY").split(","));
        List<String> onlyPoints = only.stream().filter(o -> o.startsWith("4k-")).toList();
        List<String> onlySides = only.stream().filter(o -> !o.startsWith("4k-")).toList();
        points = points.stream().filter(p -> onlyPoints.isEmpty() || onlyPoints.contains(p.name())).toList();
        List<BenchResult> results = new ArrayList<>();
        int total = points.size() * rounds * 4;
        int step = 0;
        for (Point pt : points) {
            Round[] vmbus = new Round[rounds];
            Round[] vhost = new Round[rounds];
            Round[] engine = new Round[rounds];
            Round[] peer = new Round[rounds];
            for (int r = 0; r < rounds; r++) {
                ctx.progress(step++, total, pt.name() + " vmbus-guest round " + (r + 1));
                vmbus[r] = runs(onlySides, "vmbus") ? viaVmbus(ctx, opts, pt, seconds, r) : Round.NONE;
                ctx.progress(step++, total, pt.name() + " vhost-user round " + (r + 1));
                vhost[r] = runs(onlySides, "vhost") ? viaVhostUser(ctx, opts, pt, seconds, r) : Round.NONE;
                ctx.progress(step++, total, pt.name() + " engine round " + (r + 1));
                engine[r] = runs(onlySides, "engine") ? viaEngine(opts, pt, seconds, r) : Round.NONE;
                ctx.progress(step++, total, pt.name() + " fio rbd round " + (r + 1));
                peer[r] = fio && runs(onlySides, "fio") ? viaFio(ctx, conf, pool, pt, seconds) : Round.NONE;
            }
            String peerName = fio ? "fio rbd engine" : null;
            results.add(result(pt.name() + " vmbus-guest", vmbus, peerName, peer));
            results.add(result(pt.name() + " vhost-user", vhost, peerName, peer));
            results.add(result(pt.name() + " librbd-engine", engine, peerName, peer));
            results.add(cpuResult(pt.name() + " vmbus-guest cpu", vmbus, peerName, peer));
            results.add(cpuResult(pt.name() + " vhost-user cpu", vhost, peerName, peer));
            results.add(cpuResult(pt.name() + " librbd-engine cpu", engine, peerName, peer));
        }
        ctx.progress(total, total, "done");
        exec(List.of("rbd", "rm", pool + "/" + IMAGE), conf, 120, true);
        return results;
    }

    private static boolean runs(List<String> onlySides, String side) {
        return onlySides.isEmpty() || onlySides.contains(side);
    }

    private static double median(double[] v) {
        double[] s = v.clone();
        Arrays.sort(s);
        return s[s.length / 2];
    }

    private static double[] column(Round[] rounds, java.util.function.ToDoubleFunction<Round> f) {
        double[] v = new double[rounds.length];
        for (int i = 0; i < rounds.length; i++) {
            v[i] = f.applyAsDouble(rounds[i]);
        }
        return v;
    }

    private static BenchResult result(String name, Round[] ours, String peer, Round[] theirs) {
        return result(name, column(ours, Round::iops), peer, column(theirs, Round::iops));
    }

    /** CPU µs per I/O (lower is better), min/median/max per side, and the queue agent's share for phost's sides. */
    private static BenchResult cpuResult(String name, Round[] ours, String peer, Round[] theirs) {
        double[] o = column(ours, Round::cpuUs);
        double[] t = column(theirs, Round::cpuUs);
        double[] a = column(ours, Round::agentUs);
        double[] co = column(ours, Round::clusterUs);
        double[] ct = column(theirs, Round::clusterUs);
        Arrays.sort(o);
        Arrays.sort(t);
        Arrays.sort(a);
        Arrays.sort(co);
        Arrays.sort(ct);
        Map<String, Double> series = new LinkedHashMap<>();
        series.put("phost min", o[0]);
        series.put("phost median", o[o.length / 2]);
        series.put("phost max", o[o.length - 1]);
        series.put("agent min", a[0]);
        series.put("agent median", a[a.length / 2]);
        series.put("agent max", a[a.length - 1]);
        // the cluster's daemons (OSD, monitor) during the same windows: a spinning side must not starve them
        series.put("cluster min", co[0]);
        series.put("cluster median", co[co.length / 2]);
        series.put("cluster max", co[co.length - 1]);
        if (peer != null) {
            series.put("fio min", t[0]);
            series.put("fio median", t[t.length / 2]);
            series.put("fio max", t[t.length - 1]);
            series.put("fio cluster min", ct[0]);
            series.put("fio cluster median", ct[ct.length / 2]);
            series.put("fio cluster max", ct[ct.length - 1]);
        }
        return new BenchResult(name, o[o.length / 2], "us CPU/IO", peer, peer == null ? Double.NaN : t[t.length / 2],
            true, Map.of()).withSeries("us CPU/IO", series);
    }

    private static BenchResult result(String name, double[] ours, String peer, double[] theirs) {
        Map<String, Double> series = new LinkedHashMap<>();
        double[] o = ours.clone();
        double[] t = theirs.clone();
        Arrays.sort(o);
        Arrays.sort(t);
        series.put("phost min", o[0]);
        series.put("phost median", o[o.length / 2]);
        series.put("phost max", o[o.length - 1]);
        if (peer != null) {
            series.put("fio min", t[0]);
            series.put("fio median", t[t.length / 2]);
            series.put("fio max", t[t.length - 1]);
        }
        return new BenchResult(name, median(ours), "IOPS", peer, peer == null ? Double.NaN : median(theirs), false,
            Map.of()).withSeries("IOPS", series);
    }

    private static Round viaVhostUser(BenchContext ctx, RbdDisk.Options opts, Point pt, double seconds, int round)
        throws IOException {
        Path sock = ctx.workDir().resolve("rbd-vhost.sock");
        Files.deleteIfExists(sock);
        try (RbdDisk disk = RbdDisk.open(opts);
             VhostUserBlkExport e = VhostUserBlkExport.start("bench", disk, sock, VhostUserBlkExport.Options.defaults().withQueues(1));
             VhostUserFrontend f = VhostUserFrontend.connect(sock, 16L << 20)) {
            f.negotiate(~0L);
            VhostUserFrontend.Queue q = f.startQueue(0, 128);
            VhostBlkLoad.run(f, q, pt.write(), 4096, pt.qd(), IMAGE_SIZE, Math.min(0.3, seconds / 2), 7 + round); // warm-up
            CpuWindow w = CpuWindow.self();
            return Round.of(VhostBlkLoad.run(f, q, pt.write(), 4096, pt.qd(), IMAGE_SIZE, seconds, 1000 + round), w);
        }
    }

    /** A process partition's guest: storvsc over VMBus, one channel of depth 32, SCSI, storage queue, engine. */
    private static Round viaVmbus(BenchContext ctx, RbdDisk.Options opts, Point pt, double seconds, int round)
        throws Exception {
        Path dataDir = Files.createDirectories(ctx.workDir().resolve("rbd-host"));
        try (RbdDisk disk = RbdDisk.open(opts);
             PartitionHost host = new PartitionHost(dataDir, spec -> List.of("false"),
                 PartitionHost.Options.defaults().withPolling(AGENT_POLLING).withAgentCpus(agentCpus()))) {
            StorageVsp vsp = new StorageVsp("rbd-bench", 0);
            vsp.attach(0, "rbd", disk, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO);
            Partition p = host.create(PartitionSpec.external("rbd-bench", 1, 32L << 20));
            p.offer(vsp);
            p.start();
            try (GuestRam ram = GuestRam.create("rbd-bench-guest", 32L << 20);
                 VmbusClient bus = VmbusClient.attach(host.socketPath(), "rbd-bench",
                     HexFormat.of().parseHex(p.credentialHex()), ram);
                 StorvscClient client = StorvscClient.connect(bus, vsp.instance(), 1, 32, 64 << 10)) {
                String rw = pt.write() ? "randwrite" : "randread";
                List<Integer> benchCpus = io.phost.core.sys.CpuAffinity.current();
                if (!guestCpus().isEmpty()) {
                    io.phost.core.sys.CpuAffinity.pin(guestCpus()); // the guest's threads inherit it
                }
                try {
                    GuestIo.run(client, new GuestIo.Options(rw, 4096, pt.qd(), 1, Math.min(0.3, seconds / 2), 0, 0, false,
                        7 + round, 50, 0, IMAGE_SIZE)); // warm-up
                    if (HandoffSampler.ENABLED) {
                        HandoffSampler.drainAll(); // drop the warm-up's samples
                    }
                    SpinGovernor.Totals host0 = SpinGovernor.totals(true);
                    SpinGovernor.Totals guest0 = SpinGovernor.totals(false);
                    java.util.Map<String, Long> threads0 = THREADS ? CpuWindow.byThread() : null;
                    CpuWindow w = CpuWindow.self();
                    Round r = Round.of(GuestIo.run(client, new GuestIo.Options(rw, 4096, pt.qd(), 1, seconds, 0, 0, false,
                        1000 + round, 50, 0, IMAGE_SIZE)).iops(), w);
                    if (THREADS) {
                        logThreads(ctx, pt.name() + " vmbus-guest round " + (round + 1), threads0, r.iops() * w.wallNanos() / 1e9,
                            w.cpuNanos());
                    }
                    // whether the adaptive governors let the agent and the guest spin in this round (share of time)
                    SpinGovernor.Totals agentGov = SpinGovernor.totals(true).minus(host0);
                    SpinGovernor.Totals guest = SpinGovernor.totals(false).minus(guest0);
                    ctx.log(String.format(java.util.Locale.ROOT, "%s vmbus-guest round %d: %.0f IOPS, spin share agent %.2f"
                            + " (stops: %d contended, %d missed; %d trials) guest %.2f (%d contended, %d missed; %d trials)",
                        pt.name(), round + 1, r.iops(), agentGov.spinShare(), agentGov.contendedStops(), agentGov.missStops(),
                        agentGov.trials(), guest.spinShare(), guest.contendedStops(), guest.missStops(), guest.trials()));
                    if (HandoffSampler.ENABLED) {
                        // -Dphost.handoff.sample=N: where a request's time goes between guest, agent and librbd
                        ctx.log(pt.name() + " vmbus-guest round " + (round + 1) + " hand-off: "
                            + HandoffBreakdown.of(HandoffSampler.drainAll()));
                    }
                    return r;
                } finally {
                    io.phost.core.sys.CpuAffinity.pin(benchCpus);
                }
            }
        }
    }

    /** The engine the storage queue picks for an RBD disk, driven directly (no transport, no SCSI). */
    private static Round viaEngine(RbdDisk.Options opts, Point pt, double seconds, int round) throws IOException {
        try (RbdDisk disk = RbdDisk.open(opts); Arena a = Arena.ofConfined();
             IoEngine e = IoEngines.open(disk, IoEngines.Kind.AUTO, Math.max(2, pt.qd()))) {
            // warm-up, as the transports' loads and fio's ramp_time have (it ran JIT-cold before)
            engineLoad(e, a, pt, Math.min(0.3, seconds / 2), 7 + round);
            CpuWindow w = CpuWindow.self();
            double iops = engineLoad(e, a, pt, seconds, 100 + round);
            Round r = Round.of(iops, w);
            return new Round(r.iops(), r.cpuUs(), Double.NaN, r.clusterUs());
        }
    }

    /** QD requests kept in flight on {@code e} for {@code seconds}; returns IOPS. One handler, no allocation per I/O. */
    private static double engineLoad(IoEngine e, Arena a, Point pt, double seconds, int seed) {
        int qd = pt.qd();
        IoVecs[] v = new IoVecs[qd];
        for (int i = 0; i < qd; i++) {
            v[i] = IoVecs.of(a.allocate(4096, 4096));
        }
        long units = IMAGE_SIZE / 4096;
        SplittableRandom r = new SplittableRandom(seed);
        int[] freeSlots = new int[qd];
        int[] free = {0};
        long[] done = {0};
        long[] errors = {0};
        for (int i = 0; i < qd; i++) {
            freeSlots[free[0]++] = i;
        }
        IoCompletionHandler onDone = (u, res) -> {
            freeSlots[free[0]++] = (int) u;
            done[0]++;
            if (res != 4096) {
                errors[0]++;
            }
        };
        long t0 = System.nanoTime();
        long end = t0 + (long) (seconds * 1e9);
        while (System.nanoTime() < end) {
            while (free[0] > 0) {
                int s = freeSlots[--free[0]];
                long off = r.nextLong(units) * 4096;
                if (!(pt.write() ? e.tryWrite(off, v[s], s) : e.tryRead(off, v[s], s))) {
                    free[0]++;
                    break;
                }
            }
            e.submit();
            e.await(onDone, 1_000_000L);
        }
        double iops = done[0] / ((System.nanoTime() - t0) / 1e9);
        while (e.inFlight() > 0) {
            e.await(onDone, 1_000_000L); // the next load reuses the buffers
        }
        if (errors[0] > 0) {
            throw new IllegalStateException("rbd bench: " + errors[0] + " engine requests failed");
        }
        return iops;
    }

    private static Round viaFio(BenchContext ctx, Path conf, String pool, Point pt, double seconds) throws Exception {
        List<String> cmd = List.of("fio", "--name=peer", "--ioengine=rbd", "--clientname=admin", "--pool=" + pool,
            "--rbdname=" + IMAGE, "--rw=" + (pt.write() ? "randwrite" : "randread"), "--bs=4k", "--iodepth=" + pt.qd(),
            "--ramp_time=0.3", "--runtime=" + seconds, "--time_based", "--output-format=json", "--norandommap",
            "--randrepeat=0");
        List<long[]> samples = new ArrayList<>(); // {nanoTime, fio's CPU ns}
        String json = exec(cmd, conf, 120, false, samples);
        Matcher m = (pt.write() ? WRITE_IOPS : READ_IOPS).matcher(json);
        if (!m.find()) {
            ctx.log("rbd: no IOPS in fio's output: " + json.lines().findFirst().orElse(""));
            return Round.NONE;
        }
        double iops = Double.parseDouble(m.group(1));
        return new Round(iops, fioCpuUs(samples, seconds, iops, 1), Double.NaN, fioCpuUs(samples, seconds, iops, 2));
    }

    /**
     * fio's CPU µs per I/O in its steady state: CPU rate over the last 70% of its measured run (ending 0.1 s
     * before it exits: its start, rbd connection and ramp are left out as phost's sides leave theirs out),
     * divided by its IOPS.
     */
    private static double fioCpuUs(List<long[]> samples, double seconds, double iops, int column) {
        if (samples.size() < 3 || !(iops > 0)) {
            return Double.NaN;
        }
        long endAt = samples.get(samples.size() - 1)[0] - 100_000_000L;
        long startAt = endAt - (long) (0.7 * seconds * 1e9);
        long[] first = null;
        long[] last = null;
        for (long[] s : samples) {
            if (s[1] <= 0 || s[column] < 0) {
                continue; // the process was gone, or the cluster's daemons are unknown
            }
            if (first == null && s[0] >= startAt) {
                first = s;
            }
            if (s[0] <= endAt) {
                last = s;
            }
        }
        if (first == null || last == null || last[0] - first[0] < 200_000_000L) {
            return Double.NaN;
        }
        double rate = (double) (last[column] - first[column]) / (last[0] - first[0]);
        return rate / iops * 1e6;
    }

    private static boolean fioHasRbd() {
        try {
            return exec(List.of("fio", "--enghelp"), null, 30).lines().anyMatch(l -> l.trim().equals("rbd"));
        } catch (Exception e) {
            return false;
        }
    }

    private static Path tools() {
        Path root = Path.of("").toAbsolutePath();
        while (root != null && !Files.isRegularFile(root.resolve("tools/ceph-test-cluster/start.sh"))) {
            root = root.getParent();
        }
        if (root == null) {
            throw new IllegalStateException("rbd bench: set CEPH_CONF to a cluster's ceph.conf, or run from the phost "
                + "source tree (tools/ceph-test-cluster/start.sh starts a throwaway one)");
        }
        return root.resolve("tools/ceph-test-cluster");
    }

    private static String exec(List<String> cmd, Path conf, int timeoutSeconds) throws IOException, InterruptedException {
        return exec(cmd, conf, timeoutSeconds, false);
    }

    /** Runs a command with CEPH_CONF (and the librbd cache off, for fio); returns stdout; fails unless {@code mayFail}. */
    private static String exec(List<String> cmd, Path conf, int timeoutSeconds, boolean mayFail)
        throws IOException, InterruptedException {
        return exec(cmd, conf, timeoutSeconds, mayFail, null);
    }

    /**
     * As above; a non-null {@code cpuSamples} gets {nanoTime, the child's CPU ns, the cluster daemons' CPU ns (-1:
     * unknown)} every 50 ms while it runs.
     */
    private static String exec(List<String> cmd, Path conf, int timeoutSeconds, boolean mayFail, List<long[]> cpuSamples)
        throws IOException, InterruptedException {
        ProcessBuilder pb = new ProcessBuilder(cmd);
        if (conf != null) {
            pb.environment().put("CEPH_CONF", conf.toString());
            pb.environment().put("CEPH_ARGS", "--rbd_cache=false");
        }
        Path err = Files.createTempFile("phost-rbd-bench", ".err");
        try {
            pb.redirectError(err.toFile());
            Process p = pb.start();
            Thread sampler = null;
            if (cpuSamples != null) {
                sampler = Thread.ofPlatform().daemon().name("rbd-bench-cpu").start(() -> {
                    while (p.isAlive()) {
                        cpuSamples.add(new long[] {System.nanoTime(), CpuWindow.processCpu(p.pid()), CpuWindow.clusterCpu()});
                        try {
                            Thread.sleep(50);
                        } catch (InterruptedException e) {
                            return;
                        }
                    }
                });
            }
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new IOException(String.join(" ", cmd) + ": no answer in " + timeoutSeconds + " s");
            }
            if (sampler != null) {
                sampler.join();
            }
            if (p.exitValue() != 0 && !mayFail) {
                throw new IOException(String.join(" ", cmd) + " exited " + p.exitValue() + ": " + Files.readString(err));
            }
            return out;
        } finally {
            Files.deleteIfExists(err);
        }
    }
}
