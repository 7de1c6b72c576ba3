package io.phost.perf.vhost;

import io.phost.core.vhost.VhostUserDescriptor;
import io.phost.core.vhost.VhostUserFrontend;
import io.phost.core.vmbus.PollingMode;
import io.phost.perf.BenchContext;
import io.phost.perf.BenchResult;
import io.phost.perf.BenchSuite;
import io.phost.perf.Rounds;
import io.phost.vhdx.RawDisk;
import io.phost.storage.backend.MemoryDisk;
import io.phost.storage.vhost.VhostUserBlkExport;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.vhdx.VhdxCreateOptions;
import io.phost.vhdx.vhdx.VhdxDisk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.LongSupplier;

/**
 * {@code phost bench vhost}: phost's vhost-user-blk export against qemu-storage-daemon's
 * ({@code --export type=vhost-user-blk}, {@code aio=io_uring}, {@code cache.direct=on}) on the same file, a
 * raw image and a fully allocated dynamic VHDX, both driven by the same test front-end
 * ({@link VhostUserFrontend}: memfd guest memory, one queue, kicks and calls) standing in for the VMM, so no
 * TCG is in the loop. 4 KiB random read and write at QD1 and QD32; each point runs ours and the peer
 * interleaved (ABBA), three rounds; the result is each side's median, min/median/max in the series. A last point
 * is the QD1 round trip over a disk that moves no data (phost's null disk vs qemu-storage-daemon's null-co).
 * On raw the same phost rounds are also compared with fio on the same file ({@link NativeFio}: psync at QD1, io_uring
 * at QD32), interleaved; the peer's median in the same series gives qemu-storage-daemon's share of native too.
 * The vhost-user-net point (64-byte frames through the switch vs dpdk-testpmd) is {@link VhostNetPoint}.
 * <pre>
 *   qemu-storage-daemon --blockdev driver=file,node-name=f,filename=IMG,cache.direct=on,aio=io_uring \
 *     --blockdev driver=raw|vhdx,node-name=d,file=f \
 *     --export type=vhost-user-blk,id=e,node-name=d,addr.type=unix,addr.path=SOCK,writable=on
 * </pre>
 */
public final class VhostBenchSuite implements BenchSuite {
    private static final int ROUNDS = 3;
    /**
     * Every feature offered but LOG_ALL (a VMM acks it only while migrating: it turns on dirty logging) and
     * RING_PACKED (QEMU 7.2 runs blk on split rings with inflight tracking; qemu-storage-daemon has no packed).
     */
    static final long WANTED = ~((1L << VhostUserDescriptor.F_LOG_ALL) | (1L << VhostUserDescriptor.F_RING_PACKED));

    @Override
    public String name() {
        return "vhost";
    }

    @Override
    public String description() {
        return "vhost-user-blk export vs qemu-storage-daemon's (io_uring, O_DIRECT) on raw and VHDX; vhost-user-net vs dpdk-testpmd; same driver.";
    }

    @Override
    public List<BenchResult> run(BenchContext ctx) throws Exception {
        double seconds = ctx.quick() ? 0.5 : 2.0;
        long size = ctx.quick() ? 64L << 20 : 256L << 20;
        boolean qsd = exists("qemu-storage-daemon");
        if (!qsd) {
            ctx.log("qemu-storage-daemon not installed (Debian: qemu-system-common): no peer");
        }
        boolean fio = exists("fio");
        if (!fio) {
            ctx.log("fio not installed (Debian: fio): no native baseline at QD32");
        }
        ctx.log("phost's queue workers poll in " + POLLING.name().toLowerCase(java.util.Locale.ROOT)
            + " mode (PHOST_BENCH_POLLING=adaptive|latency|efficiency)");
        List<BenchResult> out = new ArrayList<>();
        String[] formats = {"raw", "vhdx"};
        int total = formats.length * 4 + 2; // + the null round trip and the net point
        int step = 0;
        for (String format : formats) {
            Path ours = ctx.workDir().resolve("vhost-bench-ours." + format);
            Path peer = ctx.workDir().resolve("vhost-bench-qsd." + format);
            prefill(ours, format, size);
            Files.copy(ours, peer);
            for (boolean write : new boolean[] {false, true}) {
                for (int qd : new int[] {1, 32}) {
                    String point = "4k-rand" + (write ? "write" : "read") + "-qd" + qd + " " + format;
                    ctx.progress(step++, total, point);
                    if (!point.matches(POINTS)) {
                        continue;
                    }
                    double[] a = new double[ROUNDS];
                    double[] b = new double[ROUNDS];
                    double[] c = new double[ROUNDS];
                    double[] cpuA = new double[ROUNDS];
                    double[] cpuB = new double[ROUNDS];
                    boolean vsNative = fio && format.equals("raw");
                    for (int r = 0; r < ROUNDS; r++) { // ABBA: ours, qsd, fio / qsd, fio, ours / …
                        if (Rounds.oursFirst(r)) {
                            Rate o = ours(ctx, ours, format, write, qd, size, seconds, r);
                            a[r] = o.perSecond();
                            cpuA[r] = o.cpuNsPerIo();
                        }
                        Rate pr = qsd ? peer(ctx, peer, format, write, qd, size, seconds, r) : new Rate(Double.NaN, Double.NaN);
                        b[r] = pr.perSecond();
                        cpuB[r] = pr.cpuNsPerIo();
                        c[r] = vsNative ? NativeFio.run(ours, write, 4096, qd, seconds) : Double.NaN;
                        if (!Rounds.oursFirst(r)) {
                            Rate o = ours(ctx, ours, format, write, qd, size, seconds, r);
                            a[r] = o.perSecond();
                            cpuA[r] = o.cpuNsPerIo();
                        }
                    }
                    if (vsNative) {
                        out.add(Rounds.compare(point + " vs native", "IOPS", a,
                            "native fio (" + NativeFio.engine(qd) + ", O_DIRECT, same file)", c, false));
                    }
                    Map<String, Double> series = new LinkedHashMap<>();
                    Arrays.sort(a);
                    Arrays.sort(b);
                    series.put("phost_min", a[0]);
                    series.put("phost_median", a[ROUNDS / 2]);
                    series.put("phost_max", a[ROUNDS - 1]);
                    if (qsd) {
                        series.put("qsd_min", b[0]);
                        series.put("qsd_median", b[ROUNDS / 2]);
                        series.put("qsd_max", b[ROUNDS - 1]);
                        put(series, "qsd_cpu_ns_per_io", cpuB);
                    }
                    put(series, "phost_cpu_ns_per_io", cpuA);
                    out.add(BenchResult.vsPeer(point, a[ROUNDS / 2], "IOPS", qsd ? "qemu-storage-daemon" : null,
                        qsd ? b[ROUNDS / 2] : Double.NaN).withSeries("IOPS", series));
                }
            }
        }
        ctx.progress(step++, total, "4k-read-qd1 round trip null");
        if ("4k-read-qd1 round trip null".matches(POINTS)) {
            nullLatency(out, ctx, qsd, seconds, size);
        }
        ctx.progress(step, total, "64B-frames vhost-user-net");
        if ("64B-frames vhost-user-net".matches(POINTS)) {
            out.add(VhostNetPoint.run(ctx, ROUNDS, seconds));
        }
        ctx.progress(total, total, "done");
        return out;
    }

    /**
     * Round-trip time of one 4 KiB read at QD1 over a disk that moves no data (phost's null disk,
     * qemu-storage-daemon's null-co): what the back-end, the eventfds and the thread wake-ups cost per I/O; and,
     * from the same rounds, the part of it phost adds ({@link #addedLatency}).
     */
    private static void nullLatency(List<BenchResult> out, BenchContext ctx, boolean qsd, double seconds, long size) throws Exception {
        Rate[] ours = new Rate[ROUNDS];
        Rate[] peer = new Rate[ROUNDS];
        Rate[] floor = new Rate[ROUNDS];
        for (int r = 0; r < ROUNDS; r++) { // ABBA
            if (Rounds.oursFirst(r)) {
                ours[r] = oursNull(ctx, size, seconds, r);
            }
            peer[r] = qsd ? peerNull(ctx, size, seconds, r) : new Rate(Double.NaN, Double.NaN);
            floor[r] = trivial(ctx, size, seconds, r);
            if (!Rounds.oursFirst(r)) {
                ours[r] = oursNull(ctx, size, seconds, r);
            }
        }
        double[] a = roundTripUs(ours);
        double[] b = roundTripUs(peer);
        BenchResult added = addedLatency(ours, floor, peer);
        Arrays.sort(a);
        Arrays.sort(b);
        Map<String, Double> series = new LinkedHashMap<>();
        series.put("phost_min", a[0]);
        series.put("phost_median", a[ROUNDS / 2]);
        series.put("phost_max", a[ROUNDS - 1]);
        if (qsd) {
            series.put("qsd_min", b[0]);
            series.put("qsd_median", b[ROUNDS / 2]);
            series.put("qsd_max", b[ROUNDS - 1]);
        }
        out.add(BenchResult.vsPeerLowerIsBetter("4k-read-qd1 round trip null", a[ROUNDS / 2], "us",
            qsd ? "qemu-storage-daemon null-co" : null, qsd ? b[ROUNDS / 2] : Double.NaN).withSeries("us", series));
        out.add(added);
    }

    /**
     * The latency phost adds per 4 KiB read at QD1 over a null disk: per round, phost's round trip minus the same
     * driver's round trip against {@link TrivialBlkResponder} (the same kick and call wake-ups, no back-end work),
     * measured next to each other; min / median / max of those differences, both round trips in the series. The
     * same for the back-end's CPU time per request (phost's threads against the responder's), which holds still
     * under load better than wall time; qemu-storage-daemon's CPU per request for comparison.
     */
    static BenchResult addedLatency(Rate[] phost, Rate[] floor, Rate[] qsd) {
        double[] p = roundTripUs(phost);
        double[] t = roundTripUs(floor);
        double[] added = new double[p.length];
        double[] addedCpu = new double[p.length];
        for (int r = 0; r < added.length; r++) {
            added[r] = p[r] - t[r];
            addedCpu[r] = phost[r].cpuNsPerIo() - floor[r].cpuNsPerIo();
        }
        Map<String, Double> series = new LinkedHashMap<>();
        put(series, "added_us", added);
        put(series, "phost_round_trip_us", p);
        put(series, "trivial_round_trip_us", t);
        put(series, "added_cpu_ns_per_io", addedCpu);
        put(series, "phost_cpu_ns_per_io", Arrays.stream(phost).mapToDouble(Rate::cpuNsPerIo).toArray());
        put(series, "trivial_cpu_ns_per_io", Arrays.stream(floor).mapToDouble(Rate::cpuNsPerIo).toArray());
        put(series, "qsd_cpu_ns_per_io", Arrays.stream(qsd).mapToDouble(Rate::cpuNsPerIo).toArray());
        return new BenchResult("4k-read-qd1 latency added by phost null", Rounds.Stats.of(added).median(), "us", null, Double.NaN,
            true, Map.of()).withSeries(series);
    }

    private static void put(Map<String, Double> series, String key, double[] v) {
        Rounds.Stats s = Rounds.Stats.of(v);
        series.put(key + "_min", s.min());
        series.put(key + "_median", s.median());
        series.put(key + "_max", s.max());
    }

    private static double[] roundTripUs(Rate[] rounds) {
        return Arrays.stream(rounds).mapToDouble(r -> 1e6 / r.perSecond()).toArray();
    }

    private static Rate oursNull(BenchContext ctx, long size, double seconds, int round) throws Exception {
        Path sock = ctx.workDir().resolve("phost-null.sock");
        long[] existing = BackendCpu.existingThreads();
        try (VirtualDisk disk = MemoryDisk.nullDisk(size);
             VhostUserBlkExport e = VhostUserBlkExport.start("null", disk, sock, exportOptions())) {
            return drive(sock, false, 1, size, seconds, round, BackendCpu.threadsStartedAfter(existing));
        }
    }

    /** The same driver and load against the trivial in-process responder. */
    static Rate trivial(BenchContext ctx, long size, double seconds, int round) throws Exception {
        Path sock = ctx.workDir().resolve("trivial.sock");
        Files.deleteIfExists(sock);
        long[] existing = BackendCpu.existingThreads();
        // the floor waits as phost's workers do: polling ~50 µs after each answer unless phost runs in efficiency
        TrivialBlkResponder t = TrivialBlkResponder.listen(sock, POLLING == PollingMode.EFFICIENCY ? 0 : 50_000L);
        VhostUserFrontend f = null;
        try {
            f = VhostUserFrontend.connect(sock, 16L << 20);
            VhostUserFrontend.Queue q = t.serve(f, ff -> {
                ff.negotiate(WANTED);
                return ff.startQueue(0, 128);
            });
            return load(f, q, false, 1, size, seconds, round, BackendCpu.threadsStartedAfter(existing));
        } finally {
            t.close(); // its worker reads the rings through f's mapping: stop it before f unmaps guest memory
            if (f != null) {
                f.close();
            }
        }
    }

    private static Rate peerNull(BenchContext ctx, long size, double seconds, int round) throws Exception {
        Path sock = ctx.workDir().resolve("qsd-null.sock");
        Files.deleteIfExists(sock);
        Process p = new ProcessBuilder("qemu-storage-daemon",
            "--blockdev", "driver=null-co,node-name=d,size=" + size,
            "--export", "type=vhost-user-blk,id=e,node-name=d,addr.type=unix,addr.path=" + sock + ",writable=on,num-queues=1")
            .redirectErrorStream(true).redirectOutput(ctx.workDir().resolve("qsd-null.log").toFile()).start();
        try {
            for (int i = 0; i < 500 && !Files.exists(sock); i++) {
                if (!p.isAlive()) {
                    throw new IllegalStateException("qemu-storage-daemon exited: " + Files.readString(ctx.workDir().resolve("qsd-null.log")));
                }
                Thread.sleep(10);
            }
            return drive(sock, false, 1, size, seconds, round, BackendCpu.process(p.pid()));
        } finally {
            p.destroy();
            if (!p.waitFor(10, TimeUnit.SECONDS)) {
                p.destroyForcibly();
            }
        }
    }

    /**
     * phost's polling mode in this bench ({@code PHOST_BENCH_POLLING=adaptive|latency|efficiency}, default
     * {@code adaptive} as the product's {@code [host] polling}).
     */
    static final PollingMode POLLING = PollingMode.valueOf(
        System.getenv().getOrDefault("PHOST_BENCH_POLLING", "adaptive").toUpperCase(java.util.Locale.ROOT));

    /** Which points run (a regex over their names, e.g. {@code 4k-rand.*-qd1 .*}; {@code PHOST_BENCH_VHOST_POINTS}, default all). */
    static final String POINTS = System.getenv().getOrDefault("PHOST_BENCH_VHOST_POINTS", ".*");

    static VhostUserBlkExport.Options exportOptions() {
        return VhostUserBlkExport.Options.defaults().withQueues(1).withPolling(POLLING);
    }

    private static Rate ours(BenchContext ctx, Path image, String format, boolean write, int qd, long size, double seconds,
                               int round) throws Exception {
        Path sock = ctx.workDir().resolve("phost-vhost.sock");
        long[] existing = BackendCpu.existingThreads();
        try (VirtualDisk disk = format.equals("raw") ? RawDisk.openFile(image, false, true) : VhdxDisk.open(image, false);
             VhostUserBlkExport e = VhostUserBlkExport.start("bench", disk, sock, exportOptions())) {
            return drive(sock, write, qd, size, seconds, round, BackendCpu.threadsStartedAfter(existing));
        }
    }

    private static Rate peer(BenchContext ctx, Path image, String format, boolean write, int qd, long size, double seconds,
                               int round) throws Exception {
        Path sock = ctx.workDir().resolve("qsd-vhost.sock");
        Files.deleteIfExists(sock);
        Process p = new ProcessBuilder("qemu-storage-daemon",
            "--blockdev", "driver=file,node-name=f,filename=" + image + ",cache.direct=on,aio=io_uring",
            "--blockdev", "driver=" + format + ",node-name=d,file=f",
            "--export", "type=vhost-user-blk,id=e,node-name=d,addr.type=unix,addr.path=" + sock + ",writable=on,num-queues=1")
            .redirectErrorStream(true).redirectOutput(ctx.workDir().resolve("qsd.log").toFile()).start();
        try {
            for (int i = 0; i < 500 && !Files.exists(sock); i++) {
                if (!p.isAlive()) {
                    throw new IllegalStateException("qemu-storage-daemon exited: " + Files.readString(ctx.workDir().resolve("qsd.log")));
                }
                Thread.sleep(10);
            }
            return drive(sock, write, qd, size, seconds, round, BackendCpu.process(p.pid()));
        } finally {
            p.destroy();
            if (!p.waitFor(10, TimeUnit.SECONDS)) {
                p.destroyForcibly();
            }
        }
    }

    private static Rate drive(Path sock, boolean write, int qd, long size, double seconds, int round, LongSupplier backendCpu)
        throws InterruptedException {
        try (VhostUserFrontend f = connect(sock, 16L << 20)) {
            f.negotiate(WANTED);
            return load(f, f.startQueue(0, 128), write, qd, size, seconds, round, backendCpu);
        }
    }

    /**
     * Connects, retrying for up to 5 s while the socket is refused: a peer process's socket file appears at
     * bind(2), a moment before it listens (qemu-storage-daemon was caught in that window once).
     */
    static VhostUserFrontend connect(Path sock, long memory) throws InterruptedException {
        long deadline = System.nanoTime() + 5_000_000_000L;
        while (true) {
            try {
                return VhostUserFrontend.connect(sock, memory);
            } catch (RuntimeException e) {
                if (System.nanoTime() - deadline > 0 || e.getMessage() == null || !e.getMessage().contains("Connection refused")) {
                    throw e;
                }
                Thread.sleep(10);
            }
        }
    }

    /** Requests per second, and the back-end's CPU nanoseconds per request (NaN when not measured). */
    record Rate(double perSecond, double cpuNsPerIo) {}

    private static Rate load(VhostUserFrontend f, VhostUserFrontend.Queue q, boolean write, int qd, long size, double seconds, int round,
                             LongSupplier backendCpu) {
        VhostBlkLoad.run(f, q, write, 4096, qd, size, Math.min(0.3, seconds / 2), 7 + round); // warm-up
        long c0 = backendCpu == null ? 0 : backendCpu.getAsLong();
        long t0 = System.nanoTime();
        double rate = VhostBlkLoad.run(f, q, write, 4096, qd, size, seconds, 1000 + round);
        double ios = rate * ((System.nanoTime() - t0) / 1e9);
        return new Rate(rate, backendCpu == null ? Double.NaN : (backendCpu.getAsLong() - c0) / ios);
    }

    /** A raw file or a dynamic VHDX with every block written (steady state: no allocation during the run). */
    static void prefill(Path path, String format, long size) throws IOException {
        Files.deleteIfExists(path);
        try (Arena a = Arena.ofConfined();
             VirtualDisk d = format.equals("raw") ? rawCreate(path, size) : VhdxDisk.create(path, VhdxCreateOptions.dynamic(size))) {
            MemorySegment chunk = a.allocate(1 << 20, 4096);
            chunk.fill((byte) 0x5A);
            for (long off = 0; off < size; off += chunk.byteSize()) {
                d.write(off, chunk);
            }
            d.flush();
        }
    }

    private static VirtualDisk rawCreate(Path path, long size) throws IOException {
        RawDisk.createSparse(path, size);
        return RawDisk.openFile(path, false, false);
    }

    static boolean exists(String tool) {
        for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
            if (Files.isExecutable(Path.of(dir, tool))) {
                return true;
            }
        }
        return false;
    }
}
