package io.phost.perf.vmbus;

import io.phost.core.partition.GuestLauncher;
import io.phost.core.partition.Partition;
import io.phost.core.partition.PartitionHost;
import io.phost.core.partition.PartitionSpec;
import io.phost.perf.BenchContext;
import io.phost.perf.BenchResult;
import io.phost.perf.BenchSuite;
import io.phost.perf.MachineLoad;
import io.phost.perf.Rounds;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.RandomAccessFile;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.agrona.concurrent.UnsafeBuffer;
import org.agrona.concurrent.ringbuffer.RingBuffer;

/**
 * {@code phost bench vmbus}: two processes on this machine.
 * <ul>
 *   <li>ours: a child partition (a second JVM) attached over the real control protocol writes to a VMBus
 *       ring (256 KiB data, double-mapped); the parent's VSP agent reads it in place.</li>
 *   <li>peer: Agrona OneToOneRingBuffer (256 KiB) in a tmpfs file both processes map — the same kind of
 *       shared memory (shmem pages) between the same two processes.</li>
 *   <li>peer: an LMAX Disruptor pipeline inside one process (no process boundary, the in-process bound).</li>
 * </ul>
 * Measured: one-way packets/s at 64 B and 1 KiB, our sender publishing every packet and, in a second row, a
 * sender with a queue publishing once per burst of {@value VmbusPeer#BURST} through the burst API
 * ({@code ClientChannel.tryQueue} + {@code flush}; Agrona publishes per message in both); round trip of a 64 B request + completion with busy polling
 * (p50/p99) and, for VMBus, in interrupt mode (both sides sleep on eventfds); bytes allocated per packet by
 * the host agent thread; single-thread CPU per packet. Every point runs in several rounds, ours and Agrona
 * in ABBA order, reported as the median with min/median/max; no ratio when Agrona's own spread exceeds
 * 20% ({@link Rounds}). The machine's load and steal during the run are reported with the results.
 * Each round runs the VMBus child twice, the host agent publishing read_index after every read batch (the
 * default) and lazily ({@link io.phost.core.vmbus.VmbusRing#publishReadIndexLazily}); the "lazy read_index" rows
 * are the second run, the same child and the same writer.
 * <p>
 * Placement ({@link BenchPinning}): the host side (this JVM: agents, Agrona's server thread, the single-thread
 * probe) is pinned to one CPU and the child process (the writer, VMBus or Agrona alike) to another, so both
 * peers run in the same placement in every round; {@code PHOST_BENCH_VMBUS_PIN=HOST:CHILD} chooses the CPUs,
 * {@code off} turns it off. The in-process Disruptor runs unpinned. The placement is a result of its own.
 */
public final class VmbusBenchSuite implements BenchSuite {
    @Override
    public String name() {
        return "vmbus";
    }

    @Override
    public String description() {
        return "VMBus rings between two processes vs Agrona OneToOne (same shm) and LMAX Disruptor (in-process)";
    }

    @Override
    public List<BenchResult> run(BenchContext ctx) throws Exception {
        // quick: 4 ABBA rounds of 0.5 s points (~30 s); full: 6 rounds of 1.5 s points
        long millis = ctx.quick() ? 500 : 1_500;
        int rtt = ctx.quick() ? 20_000 : 200_000;
        int rounds = ctx.quick() ? 4 : 6;
        MachineLoad load = MachineLoad.start();
        BenchPinning pin = BenchPinning.fromEnvironment();
        ctx.log("placement: " + pin.describe());
        List<Map<String, Double>> ours = new ArrayList<>();
        List<Map<String, Double>> agrona = new ArrayList<>();
        // the same child against a host agent publishing read_index lazily (a separate run, so that no third
        // busy agent spins beside the measured pair on a 2-vCPU machine)
        List<Map<String, Double>> oursLazy = new ArrayList<>();
        List<double[]> cost64 = new ArrayList<>();
        List<double[]> cost1k = new ArrayList<>();
        Map<Integer, Double> singleMapped = new HashMap<>();
        int steps = rounds + 1;
        pin.pinHostSide(); // every two-process point and the single-thread probe; the in-process Disruptor runs unpinned
        try {
            // single-thread CPU per packet (ours and Agrona interleaved inside the probe), `rounds` times, before any
            // two-process point: the host agents' completions copy from shared-arena ring segments (PayloadCopy's
            // checked path), and once that path is compiled into the ring's write methods they no longer fit C2's
            // inlining limit; a sender's own JVM (the child, a guest) never takes it for its own buffers
            for (int round = 0; round < rounds; round++) {
                cost64.add(RingCostProbe.measure(64, ctx.quick() ? 500_000 : 2_000_000));
                cost1k.add(RingCostProbe.measure(1024, ctx.quick() ? 500_000 : 2_000_000));
            }
            for (int round = 0; round < rounds; round++) {
                ctx.progress(round, steps, "round " + (round + 1) + "/" + rounds + ": vmbus child partition (host agent eager, then lazy read_index) and agrona child process (ABBA)");
                if (Rounds.oursFirst(round)) {
                    ours.add(runVmbus(ctx, millis, rtt, false, pin));
                    oursLazy.add(runVmbus(ctx, millis, rtt, true, pin));
                    agrona.add(runAgrona(ctx, millis, rtt, pin));
                } else {
                    agrona.add(runAgrona(ctx, millis, rtt, pin));
                    oursLazy.add(runVmbus(ctx, millis, rtt, true, pin));
                    ours.add(runVmbus(ctx, millis, rtt, false, pin));
                }
            }
            // after every compared measurement: the single-mapped loop would pollute the compared loops' profiles
            singleMapped.put(64, RingCostProbe.measureSingleMapped(64, ctx.quick() ? 500_000 : 2_000_000));
            singleMapped.put(1024, RingCostProbe.measureSingleMapped(1024, ctx.quick() ? 500_000 : 2_000_000));
        } finally {
            pin.release();
        }
        ctx.progress(rounds, steps, "disruptor: in-process");
        Map<String, Double> disruptor = new HashMap<>();
        for (int size : new int[] {64, 1024}) {
            disruptor.put("oneway-" + size, DisruptorPeer.oneWay(size, millis));
        }
        double[] drtt = DisruptorPeer.roundTrip(rtt);
        ctx.progress(steps, steps, "done");
        List<BenchResult> out = new ArrayList<>();
        // Each point twice: our sender publishing every packet (tryWrite), and a sender with a queue publishing
        // once per burst (tryQueue + flush); Agrona publishes per message in both rows (no signalling rule, so
        // no fence; no batch API). See docs/benchmarks.md, issue 19 tenth session.
        for (int size : new int[] {64, 1024}) {
            List<double[]> c = size == 64 ? cost64 : cost1k;
            BenchResult r = Rounds.compare("cpu per packet " + size + "B write+read, publish per packet", "ns", column(c, 0),
                "agrona OneToOne", column(c, 2), true);
            out.add(withExtra(r, Map.of("vmbus-single-mapped-ns", singleMapped.get(size))));
            out.add(Rounds.compare("cpu per packet " + size + "B write+read, burst of 16", "ns", column(c, 3),
                "agrona OneToOne", column(c, 2), true));
        }
        for (int size : new int[] {64, 1024}) {
            BenchResult r = Rounds.compare("oneway-" + size + "B 2-process, publish per packet", "Mpps", scaled(ours, "vmbus-oneway-" + size, 1e-6),
                "agrona OneToOne", scaled(agrona, "agrona-oneway-" + size, 1e-6), false);
            out.add(withExtra(r, Map.of("disruptor-in-process-Mpps", disruptor.get("oneway-" + size) / 1e6)));
            out.add(Rounds.compare("oneway-" + size + "B 2-process, burst of " + VmbusPeer.BURST, "Mpps",
                scaled(ours, "vmbus-oneway-burst" + VmbusPeer.BURST + "-" + size, 1e-6),
                "agrona OneToOne", scaled(agrona, "agrona-oneway-" + size, 1e-6), false));
            // the same two senders to a host agent that publishes read_index lazily (VmbusRing.publishReadIndexLazily)
            out.add(Rounds.compare("oneway-" + size + "B 2-process, publish per packet, lazy read_index", "Mpps",
                scaled(oursLazy, "vmbus-oneway-" + size, 1e-6), "agrona OneToOne", scaled(agrona, "agrona-oneway-" + size, 1e-6), false));
            out.add(Rounds.compare("oneway-" + size + "B 2-process, burst of " + VmbusPeer.BURST + ", lazy read_index", "Mpps",
                scaled(oursLazy, "vmbus-oneway-burst" + VmbusPeer.BURST + "-" + size, 1e-6),
                "agrona OneToOne", scaled(agrona, "agrona-oneway-" + size, 1e-6), false));
        }
        out.add(withExtra(Rounds.compare("rtt-64B busy-poll p50", "us", scaled(ours, "vmbus-rtt-busy-p50-us", 1),
            "agrona OneToOne", scaled(agrona, "agrona-rtt-busy-p50-us", 1), true), Map.of("disruptor-in-process-p50-us", drtt[0])));
        out.add(withExtra(Rounds.compare("rtt-64B busy-poll p99", "us", scaled(ours, "vmbus-rtt-busy-p99-us", 1),
            "agrona OneToOne", scaled(agrona, "agrona-rtt-busy-p99-us", 1), true), Map.of("disruptor-in-process-p99-us", drtt[1])));
        // the lazy agent against the eager one directly (same child, adjacent runs in every round)
        for (String key : new String[] {"vmbus-oneway-64", "vmbus-oneway-1024", "vmbus-oneway-burst" + VmbusPeer.BURST + "-64",
            "vmbus-oneway-burst" + VmbusPeer.BURST + "-1024"}) {
            out.add(Rounds.compare(key.replace("vmbus-", "") + " 2-process, lazy vs eager read_index", "Mpps", scaled(oursLazy, key, 1e-6),
                "vmbus eager read_index", scaled(ours, key, 1e-6), false));
        }
        out.add(Rounds.compare("rtt-64B busy-poll p50, lazy read_index", "us", scaled(oursLazy, "vmbus-rtt-busy-p50-us", 1),
            "agrona OneToOne", scaled(agrona, "agrona-rtt-busy-p50-us", 1), true));
        out.add(alone("rtt-64B interrupt (eventfd) p50", scaled(ours, "vmbus-rtt-irq-p50-us", 1), "us"));
        out.add(alone("rtt-64B interrupt (eventfd) p99", scaled(ours, "vmbus-rtt-irq-p99-us", 1), "us"));
        out.add(alone("host agent allocation per packet", scaled(ours, "alloc-bytes-per-packet", 1), "B"));
        out.add(alone("host agent allocation per packet, lazy read_index", scaled(oursLazy, "alloc-bytes-per-packet", 1), "B"));
        out.add(pinning(pin));
        out.addAll(load.results("machine: "));
        return out;
    }

    /** One key of every round's map, times {@code scale} (NaN where a round lacks it). */
    private static double[] scaled(List<Map<String, Double>> rounds, String key, double scale) {
        return rounds.stream().mapToDouble(m -> m.getOrDefault(key, Double.NaN) * scale).toArray();
    }

    private static double[] column(List<double[]> rows, int i) {
        return rows.stream().mapToDouble(r -> r[i]).toArray();
    }

    private static BenchResult withExtra(BenchResult r, Map<String, Double> extra) {
        Map<String, Double> all = new LinkedHashMap<>(r.series());
        all.putAll(extra);
        return r.withSeries(all);
    }

    /** Ours alone (no peer): the median of the rounds, min/median/max in the series. */
    private static BenchResult alone(String name, double[] rounds, String unit) {
        Rounds.Stats s = Rounds.Stats.of(rounds);
        return BenchResult.alone(name, s.median(), unit).withSeries(unit, Map.of("min", s.min(), "median", s.median(), "max", s.max()));
    }

    private static GuestLauncher launcher() {
        return GuestLauncher.sameJvm(VmbusPeer.class.getName(), List.of("-Xmx256m"));
    }

    /** The placement as a result of its own: CPU numbers in the series (-1: not pinned), the words in the name. */
    private static BenchResult pinning(BenchPinning pin) {
        Map<String, Double> cpus = new LinkedHashMap<>();
        cpus.put("host-cpu", (double) pin.hostCpu());
        cpus.put("child-cpu", (double) pin.childCpu());
        return BenchResult.alone("placement: " + pin.describe(), pin.pinned() ? 1 : 0, "pinned").withSeries("cpu", cpus);
    }

    private static Map<String, Double> runVmbus(BenchContext ctx, long millis, int rtt, boolean lazyReadIndex, BenchPinning pin)
        throws Exception {
        Path dir = Files.createTempDirectory(ctx.tmpfsDir(), "vmbus");
        BenchVsp busy = new BenchVsp(true, lazyReadIndex);
        BenchVsp irq = new BenchVsp(false);
        // the agents on the host side's CPU (already this whole process's), the child partition on the child's
        PartitionHost.Options options = pin.pinned() ? PartitionHost.Options.defaults().withAgentCpus(List.of(pin.hostCpu()))
            : PartitionHost.Options.defaults();
        try (PartitionHost host = new PartitionHost(dir, launcher(), options)) {
            Partition p = host.create(PartitionSpec.builtin("bench", 1, 64L << 20, "vmbus:" + millis + ":" + rtt)
                .withCpus(pin.childCpus()));
            p.offer(busy);
            p.offer(irq);
            p.start();
            Path log = dir.resolve("bench.log");
            com.sun.management.ThreadMXBean mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
            long deadline = System.nanoTime() + Duration.ofMinutes(5).toNanos();
            AllocationWindow eagerAlloc = new AllocationWindow(busy, mx);
            while (System.nanoTime() < deadline) {
                eagerAlloc.startOnceWarm();
                String text = Files.exists(log) ? Files.readString(log) : "";
                if (text.contains("DONE") || !p.state().live()) {
                    break;
                }
                Thread.sleep(20);
            }
            Map<String, Double> r = parse(Files.exists(log) ? Files.readAllLines(log) : List.of(), ctx);
            eagerAlloc.report(r, "alloc-bytes-per-packet", "alloc-packets");
            return r;
        }
    }

    /** Bytes the agent thread of one bench channel allocates per packet, from 100,000 packets on (after warm-up). */
    private static final class AllocationWindow {
        private final BenchVsp vsp;
        private final com.sun.management.ThreadMXBean mx;
        private long bytesStart = -1;
        private long packetsStart;

        AllocationWindow(BenchVsp vsp, com.sun.management.ThreadMXBean mx) {
            this.vsp = vsp;
            this.mx = mx;
        }

        void startOnceWarm() {
            Thread agent = vsp.agentThread;
            if (bytesStart < 0 && agent != null && vsp.packets > 100_000) {
                bytesStart = mx.getThreadAllocatedBytes(agent.threadId());
                packetsStart = vsp.packets;
            }
        }

        void report(Map<String, Double> r, String bytesKey, String packetsKey) {
            Thread agent = vsp.agentThread;
            if (bytesStart >= 0 && agent != null) {
                long bytes = mx.getThreadAllocatedBytes(agent.threadId()) - bytesStart;
                long packets = vsp.packets - packetsStart;
                r.put(bytesKey, packets > 0 ? bytes / (double) packets : Double.NaN);
                r.put(packetsKey, (double) packets);
            }
        }
    }

    private static Map<String, Double> runAgrona(BenchContext ctx, long millis, int rtt, BenchPinning pin) throws Exception {
        Path file = Files.createTempFile(ctx.tmpfsDir(), "agrona", ".ring");
        int len = VmbusPeer.AGRONA_CAPACITY + org.agrona.concurrent.ringbuffer.RingBufferDescriptor.TRAILER_LENGTH;
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(2L * len);
        }
        RingBuffer[] rings = VmbusPeer.agronaRings(file.toString());
        RingBuffer toParent = rings[0];
        RingBuffer toChild = rings[1];
        UnsafeBuffer reply = new UnsafeBuffer(new byte[64]);
        Thread server = new Thread(() -> {
            org.agrona.concurrent.MessageHandler h = (type, b, i, l) -> {
                if (type == VmbusPeer.MSG_REQUEST) {
                    while (!toChild.write(VmbusPeer.MSG_REQUEST, b, i, l)) {
                        Thread.onSpinWait();
                    }
                }
            };
            while (!Thread.currentThread().isInterrupted()) {
                if (toParent.read(h) == 0) {
                    Thread.onSpinWait();
                }
            }
        }, "agrona-peer-server");
        server.setDaemon(true);
        server.start();
        try {
            List<String> cmd = launcher().command(PartitionSpec.builtin("agrona", 1, 64 * 1024, "agrona:" + file + ":" + millis + ":" + rtt));
            Process proc = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            pin.pinChild(proc.pid()); // as the VMBus child partition (PartitionSpec.withCpus pins it the same way)
            List<String> lines = new ArrayList<>();
            try (BufferedReader rd = new BufferedReader(new InputStreamReader(proc.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = rd.readLine()) != null) {
                    lines.add(line);
                }
            }
            proc.waitFor();
            return parse(lines, ctx);
        } finally {
            server.interrupt();
            server.join(2000);
            Files.deleteIfExists(file);
        }
    }

    private static Map<String, Double> parse(List<String> lines, BenchContext ctx) {
        Map<String, Double> r = new LinkedHashMap<>();
        for (String l : lines) {
            if (l.startsWith("RESULT ")) {
                String[] p = l.split(" ");
                r.put(p[1], Double.parseDouble(p[2]));
            } else if (!l.equals("DONE") && !l.isBlank()) {
                ctx.log("peer: " + l);
            }
        }
        return r;
    }

    /** Standalone: {@code java <jvm flags> -cp <perf classpath> io.phost.perf.vmbus.VmbusBenchSuite [--quick]}. */
    public static void main(String[] args) throws Exception {
        boolean quick = List.of(args).contains("--quick");
        Path work = Files.createTempDirectory("phost-bench");
        Path shm = Files.createTempDirectory(Path.of("/dev/shm"), "phost-bench");
        BenchContext ctx = BenchContext.of(quick, work, shm, BenchContext.STDERR);
        for (BenchResult r : new VmbusBenchSuite().run(ctx)) {
            System.out.printf(java.util.Locale.ROOT, "%-36s %12.3f %-5s peer %-16s %12.3f ratio %6.2f %s%n", r.name(), r.value(), r.unit(),
                r.peer(), r.peerValue(), r.ratio(), r.series());
        }
    }
}
