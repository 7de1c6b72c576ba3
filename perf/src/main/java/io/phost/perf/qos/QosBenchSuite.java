package io.phost.perf.qos;

import io.phost.perf.BenchContext;
import io.phost.perf.BenchResult;
import io.phost.perf.BenchSuite;
import io.phost.qos.ManagedQosFlow;
import io.phost.qos.QosConfig;
import io.phost.qos.QosFlow;
import io.phost.qos.QosPolicy;
import io.phost.qos.QosService;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.locks.LockSupport;

/**
 * {@code phost bench qos}: QoS accuracy and cost against a real device path. Worker threads do 4 KiB
 * positional reads and writes (75/25) on a file in the tmpfs scratch directory, each I/O admitted
 * through a {@link QosFlow}; completions are counted per 1-second window.
 *
 * <ul>
 *   <li>limits 100 / 1 000 / 10 000 / 50 000 normalized IOPS at QD1 and QD32 (threads): every window
 *       after the first must be within ±2% of the limit;</li>
 *   <li>reservation under contention: a flow with a feasible minimum against an unlimited neighbour
 *       with four times its threads, with QoS and without (the peer);</li>
 *   <li>cost: IOPS with QoS enabled (a policy whose limits never bind) over IOPS with QoS disabled
 *       ({@link QosFlow#UNLIMITED}), alternating rounds in the same run.</li>
 * </ul>
 */
public final class QosBenchSuite implements BenchSuite {
    private static final int BLOCK = 4096;
    private static final long FILE_SIZE = 64L << 20;
    private static final long SECOND = 1_000_000_000L;

    @Override
    public String name() {
        return "qos";
    }

    @Override
    public String description() {
        return "Storage QoS accuracy (limits at QD1/QD32, reservations under contention) and cost, on real 4 KiB I/O";
    }

    @Override
    public List<BenchResult> run(BenchContext ctx) throws Exception {
        boolean quick = ctx.quick();
        int windows = quick ? 3 : 6;
        Path dir = ctx.tmpfsDir() != null && Files.isDirectory(ctx.tmpfsDir()) ? ctx.tmpfsDir() : ctx.workDir();
        Path file = dir.resolve("qos-bench.img");
        List<BenchResult> results = new ArrayList<>();
        long[] limits = {100, 1_000, 10_000, 50_000};
        int[] depths = {1, 32};
        int steps = limits.length * depths.length + 3;
        int step = 0;
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.READ,
            StandardOpenOption.WRITE)) {
            fill(ch);
            int cpus = Runtime.getRuntime().availableProcessors();

            ctx.progress(step++, steps, "calibrating the device (unthrottled, 4 threads)");
            double capacity = mean(runFlows(ch, List.of(new Load(QosFlow.UNLIMITED, 4)), 2).getFirst(), 1, 2);
            ctx.log(String.format(Locale.ROOT, "device: %s, %.0f IOPS unthrottled at 4 threads", dir, capacity));

            for (long limit : System.getProperty("qos.bench.skipLimits") != null ? new long[0] : limits) {
                for (int qd : depths) {
                    ctx.progress(step++, steps, "limit " + limit + " IOPS at QD" + qd);
                    QosService qos = new QosService(QosConfig.defaults().withNormalizationSize(BLOCK).withDevice((long) capacity, 32),
                        io.phost.qos.NanoClock.SYSTEM);
                    qos.updatePolicy(QosPolicy.dedicated("cap", 0, limit));
                    long[] w = runFlows(ch, List.of(new Load(qos.createFlow("bench", "file", "cap"), qd)), windows).getFirst();
                    double worst = 0;
                    Map<String, Double> series = new LinkedHashMap<>();
                    for (int s = 1; s < windows; s++) {
                        double err = (w[s] - limit) * 100.0 / limit;
                        worst = Math.abs(err) > Math.abs(worst) ? err : worst;
                        series.put("window" + s, (double) w[s]);
                    }
                    String name = "limit-" + limit + "-qd" + qd;
                    ctx.log(String.format(Locale.ROOT, "%s: windows %s worst %+.2f%%", name, series, worst));
                    results.add(BenchResult.vsPeer(name, mean(w, 1, windows), "IOPS", "policy maximum", limit).withSeries("IOPS", series));
                    results.add(BenchResult.alone(name + " worst-window-error", worst, "%"));
                }
            }

            ctx.progress(step++, steps, "reservation under contention");
            results.addAll(reservation(ch, capacity, cpus, windows + 1, ctx));

            if (System.getProperty("qos.bench.skipCost") == null) {
                ctx.progress(step++, steps, "cost: QoS enabled (unconstrained) vs disabled");
                results.add(overhead(ch, quick ? 7 : 15, ctx));
            }
            ctx.progress(steps, steps, "done");
        } finally {
            Files.deleteIfExists(file);
        }
        return results;
    }

    private List<BenchResult> reservation(FileChannel ch, double capacity, int cpus, int windows, BenchContext ctx)
        throws InterruptedException {
        int goldThreads = 2;
        int noisyThreads = 12;
        // Without QoS the gold flow gets about goldThreads / (goldThreads + noisyThreads) of the device;
        // its minimum is 20% of the calibrated capacity: more than it gets unprotected (~14%), and feasible
        // with margin on a machine whose throughput swings with other load. The neighbour's weight is 10x
        // gold's, so gold's weighted share (~9%) is below its minimum: what gold gets above 9% is the
        // reservation at work, not proportional sharing.
        long min = Math.max(100, (long) (capacity * 0.20));
        // A page-cache file is a CPU-bound device: one I/O in flight already means the CPUs are busy with it,
        // so its useful queue depth is 1 (an NVMe namespace would be configured with its real depth).
        QosService qos = new QosService(QosConfig.defaults().withNormalizationSize(BLOCK).withDevice((long) capacity, 1),
            io.phost.qos.NanoClock.SYSTEM);
        qos.updatePolicy(QosPolicy.dedicated("gold", min, 0));
        qos.updatePolicy(QosPolicy.dedicated("bulk", 0, 0).withWeight(1000));
        ManagedQosFlow gold = qos.createFlow("gold", "file", "gold");
        ManagedQosFlow noisy = qos.createFlow("noisy", "file", "bulk");
        List<long[]> with = runFlows(ch, List.of(new Load(gold, goldThreads), new Load(noisy, noisyThreads)), windows);
        List<long[]> without = runFlows(ch, List.of(new Load(QosFlow.UNLIMITED, goldThreads),
            new Load(QosFlow.UNLIMITED, noisyThreads)), windows);
        double worstGold = Double.MAX_VALUE;
        Map<String, Double> series = new LinkedHashMap<>();
        for (int s = 2; s < windows; s++) {
            worstGold = Math.min(worstGold, with.get(0)[s]);
            series.put("gold.window" + s, (double) with.get(0)[s]);
            series.put("noisy.window" + s, (double) with.get(1)[s]);
        }
        double unprotected = mean(without.get(0), 2, windows);
        series.put("minimum", (double) min);
        series.put("goldWithoutQos", unprotected);
        series.put("noisyWithoutQos", mean(without.get(1), 2, windows));
        series.put("capacityEstimate", qos.devices().getFirst().capacityIops());
        ctx.log(String.format(Locale.ROOT, "reservation: min %d, gold worst window %.0f (%.1f%% of min), without QoS %.0f; %s",
            min, worstGold, worstGold * 100 / min, unprotected, series));
        List<BenchResult> out = new ArrayList<>();
        out.add(BenchResult.vsPeer("reservation-under-contention gold worst window / minimum", worstGold / min * 100, "% of min",
            "no QoS", unprotected / min * 100).withSeries("IOPS", series));
        out.add(BenchResult.alone("reservation-under-contention total IOPS with QoS",
            mean(with.get(0), 2, windows) + mean(with.get(1), 2, windows), "IOPS"));
        return out;
    }

    private BenchResult overhead(FileChannel ch, int rounds, BenchContext ctx) throws InterruptedException {
        int threads = 4;
        QosService qos = new QosService(QosConfig.defaults().withNormalizationSize(BLOCK), io.phost.qos.NanoClock.SYSTEM);
        // A maximum far above what the device does: the limit tag is checked and charged on every I/O, never binds.
        qos.updatePolicy(QosPolicy.dedicated("roomy", 0, 100_000_000));
        ManagedQosFlow enabled = qos.createFlow("bench", "file", "roomy");
        long on = 0;
        long off = 0;
        double[] ratios = new double[rounds];
        for (int r = 0; r < rounds; r++) {
            // Alternate the order so drift in the machine's load hits both sides alike; one-second rounds
            // back to back, and the median of the per-pair ratios, because this host's load swings.
            boolean onFirst = (r & 1) == 0;
            long a = runFlows(ch, List.of(new Load(onFirst ? enabled : QosFlow.UNLIMITED, threads)), 1).getFirst()[0];
            long b = runFlows(ch, List.of(new Load(onFirst ? QosFlow.UNLIMITED : enabled, threads)), 1).getFirst()[0];
            long withQos = onFirst ? a : b;
            long withoutQos = onFirst ? b : a;
            on += withQos;
            off += withoutQos;
            ratios[r] = (double) withQos / Math.max(1, withoutQos);
        }
        java.util.Arrays.sort(ratios);
        double median = ratios[rounds / 2];
        ctx.log(String.format(Locale.ROOT, "cost: enabled %.0f IOPS, disabled %.0f IOPS, ratio of sums %.4f, median pair ratio %.4f, pairs %s",
            (double) on / rounds, (double) off / rounds, (double) on / off, median, java.util.Arrays.toString(ratios)));
        return BenchResult.vsPeer("qos-enabled-unconstrained 4k 4 threads", (double) on / rounds, "IOPS", "qos disabled",
            (double) off / rounds).withSeries(Map.of("medianPairRatio", median, "ratioOfSums", (double) on / off));
    }

    /** One flow driven by {@code threads} closed-loop workers (queue depth = threads). */
    record Load(QosFlow flow, int threads) {
    }

    /** Runs the loads together for {@code windows} seconds; returns completions per 1-second window per load. */
    static List<long[]> runFlows(FileChannel ch, List<Load> loads, int windows) throws InterruptedException {
        long start = System.nanoTime() + 20_000_000L;
        long end = start + windows * SECOND;
        List<Worker> workers = new ArrayList<>();
        List<long[]> perLoad = new ArrayList<>();
        int seed = 1;
        for (Load l : loads) {
            long[] counts = new long[windows];
            perLoad.add(counts);
            for (int t = 0; t < l.threads(); t++) {
                workers.add(new Worker(ch, l.flow(), start, end, windows, seed++));
            }
        }
        workers.forEach(Thread::start);
        for (Worker w : workers) {
            w.join();
            if (w.failure != null) {
                throw new IllegalStateException("bench worker failed", w.failure);
            }
        }
        int i = 0;
        for (int li = 0; li < loads.size(); li++) {
            for (int t = 0; t < loads.get(li).threads(); t++) {
                long[] c = workers.get(i++).counts;
                for (int s = 0; s < windows; s++) {
                    perLoad.get(li)[s] += c[s];
                }
            }
        }
        return perLoad;
    }

    static final class Worker extends Thread {
        private final FileChannel ch;
        private final QosFlow flow;
        private final long start;
        private final long end;
        final long[] counts;
        private final SplittableRandom random;
        Throwable failure;

        Worker(FileChannel ch, QosFlow flow, long start, long end, int windows, int seed) {
            super("qos-bench-" + seed);
            setDaemon(true);
            this.ch = ch;
            this.flow = flow;
            this.start = start;
            this.end = end;
            this.counts = new long[windows];
            this.random = new SplittableRandom(seed * 0x9E3779B97F4A7C15L);
        }

        @Override
        public void run() {
            try {
                ByteBuffer buf = ByteBuffer.allocateDirect(BLOCK);
                long blocks = FILE_SIZE / BLOCK;
                waitUntil(start);
                for (;;) {
                    long now = System.nanoTime();
                    if (now >= end) {
                        return;
                    }
                    long wait = flow.tryAdmit(BLOCK, now);
                    if (wait > 0) {
                        waitUntil(now + wait);
                        continue;
                    }
                    long offset = random.nextLong(blocks) * BLOCK;
                    buf.clear();
                    if (random.nextInt(4) == 0) {
                        ch.write(buf, offset);
                    } else {
                        ch.read(buf, offset);
                    }
                    long done = System.nanoTime();
                    flow.completed(BLOCK, done - now, done);
                    long s = (done - start) / SECOND;
                    if (s >= 0 && s < counts.length) {
                        counts[(int) s]++;
                    }
                }
            } catch (Throwable e) {
                failure = e;
            }
        }

        /**
         * Like a VSP queue worker: park for waits longer than ~50 us (the flow's backlog credit absorbs the
         * oversleep), yield-spin for shorter ones.
         */
        private static void waitUntil(long deadline) {
            long remaining = deadline - System.nanoTime();
            if (remaining > 50_000) {
                LockSupport.parkNanos(remaining);
                return;
            }
            while (System.nanoTime() < deadline) {
                Thread.yield();
            }
        }
    }

    private static void fill(FileChannel ch) throws IOException {
        ByteBuffer b = ByteBuffer.allocateDirect(1 << 20);
        for (long off = 0; off < FILE_SIZE; off += b.capacity()) {
            b.clear();
            while (b.hasRemaining()) {
                ch.write(b, off + b.position());
            }
        }
    }

    private static double mean(long[] w, int from, int to) {
        long sum = 0;
        for (int s = from; s < to; s++) {
            sum += w[s];
        }
        return (double) sum / Math.max(1, to - from);
    }

    /** Runs the suite without the appliance: {@code java -cp ... io.phost.perf.qos.QosBenchSuite [--quick]}. */
    public static void main(String[] args) throws Exception {
        boolean quick = List.of(args).contains("--quick");
        Path work = Files.createTempDirectory("qos-bench");
        Path shm = Path.of("/dev/shm");
        Path tmpfs = Files.isDirectory(shm) ? Files.createTempDirectory(shm, "qos-bench") : work;
        long t0 = System.nanoTime();
        List<BenchResult> results;
        try {
            results = new QosBenchSuite().run(BenchContext.of(quick, work, tmpfs, BenchContext.STDERR));
        } finally {
            Files.deleteIfExists(tmpfs);
            Files.deleteIfExists(work);
        }
        System.out.printf(Locale.ROOT, "%-60s %14s %-10s %14s %s%n", "name", "value", "unit", "peer value", "ratio");
        for (BenchResult r : results) {
            System.out.printf(Locale.ROOT, "%-60s %14.2f %-10s %14.2f %.4f%n", r.name(), r.value(), r.unit(), r.peerValue(), r.ratio());
        }
        System.out.printf(Locale.ROOT, "suite took %.1f s%n", (System.nanoTime() - t0) / 1e9);
    }
}
