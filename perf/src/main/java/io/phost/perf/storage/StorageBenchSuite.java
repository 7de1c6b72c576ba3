package io.phost.perf.storage;

import io.phost.core.partition.Partition;
import io.phost.core.sys.DirectFile;
import io.phost.core.partition.PartitionHost;
import io.phost.core.partition.PartitionSpec;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.HandoffSampler;
import io.phost.core.vmbus.PollingMode;
import io.phost.core.vmbus.SpinGovernor;
import io.phost.core.vmbus.VmbusClient;
import io.phost.perf.BenchContext;
import io.phost.perf.BenchResult;
import io.phost.perf.BenchSuite;
import io.phost.perf.MachineLoad;
import io.phost.perf.Rounds;
import io.phost.perf.Schedstat;
import io.phost.qos.QosFlow;
import io.phost.storage.StorageVsp;
import io.phost.vhdx.RawDisk;
import io.phost.storage.backend.MemoryDisk;
import io.phost.storage.engine.IoEngine;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.engine.IoVecs;
import io.phost.storage.nbd.NbdServer;
import io.phost.storage.vmbus.GuestIo;
import io.phost.storage.vmbus.StorvscClient;
import io.phost.storage.vmbus.StorvscQueue;
import io.phost.vhdx.vhdx.VhdxCreateOptions;
import io.phost.vhdx.vhdx.VhdxDisk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadInfo;
import java.lang.management.ThreadMXBean;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
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
 * {@code phost bench storage}: the guest's I/O over the VMBus SCSI path (storvsc-style client in a
 * partition attached to this process, real rings in a memfd, the VSP on its channel agent) against native
 * fio with io_uring on the same file in the same run; the io_uring engine called directly; a null backend
 * for the cost of the path itself; and our NBD export against qemu-nbd serving the same VHDX, both driven
 * by fio's nbd engine.
 *
 * <pre>
 *   backends: disk = file with O_DIRECT in the work dir; tmpfs = file in /dev/shm; null = no data at all
 *   points:   4k randread/randwrite at QD1 and QD32, 1 MiB sequential read/write at QD4 (full mode)
 * </pre>
 *
 * <p>Why one class of about 600 lines: one method per benchmark point of one suite, all using the same run,
 * pinning and median helpers.
 */
public final class StorageBenchSuite implements BenchSuite {
    private static final Pattern READ_IOPS = Pattern.compile("\"read\"\\s*:\\s*\\{[^{}]*?\"iops\"\\s*:\\s*([0-9.eE+-]+)");
    private static final Pattern WRITE_IOPS = Pattern.compile("\"write\"\\s*:\\s*\\{[^{}]*?\"iops\"\\s*:\\s*([0-9.eE+-]+)");

    record Point(String name, String rw, int bs, int qd) {
    }

    /** Guest-over-VMBus points run 3 interleaved rounds against fio; ~110 s measured on 2 shared cores. */
    @Override
    public java.time.Duration quickDuration() {
        return java.time.Duration.ofSeconds(110);
    }

    @Override
    public String name() {
        return "storage";
    }

    @Override
    public String description() {
        return "Guest I/O over VMBus SCSI vs native fio io_uring (disk O_DIRECT, tmpfs, null); NBD export vs qemu-nbd.";
    }

    @Override
    public List<BenchResult> run(BenchContext ctx) throws Exception {
        boolean quick = ctx.quick();
        // Interleaved rounds (ABBA: ours and the native peers alternate who goes first) and medians: this
        // machine's throughput drifts by tens of percent from second to second, and a ratio must compare like
        // with like. Load and steal during the run are reported with the results.
        MachineLoad load = MachineLoad.start();
        int rounds = quick ? 3 : 6;
        double seconds = quick ? 0.5 : 2.0;
        long fileSize = quick ? 64L << 20 : 512L << 20;
        List<Point> points = new ArrayList<>(List.of(
            new Point("4k-randread-qd1", "randread", 4096, 1),
            new Point("4k-randread-qd32", "randread", 4096, 32),
            new Point("4k-randwrite-qd1", "randwrite", 4096, 1),
            new Point("4k-randwrite-qd32", "randwrite", 4096, 32)));
        if (!quick) {
            points.add(new Point("1m-read-qd4", "read", 1 << 20, 4));
            points.add(new Point("1m-write-qd4", "write", 1 << 20, 4));
        }
        boolean fio = exists("fio");
        if (!fio) {
            ctx.log("fio not installed: no native peer; install Debian package fio");
        }
        List<BenchResult> out = new ArrayList<>();
        int total = points.size() * 3 + (quick ? 4 : 8);
        int step = 0;
        // PHOST_BENCH_STORAGE_ONLY=vmbus|vhdx|nbd (or -Dphost.bench.storage.only): one part alone, for repeated runs.
        String only = System.getProperty("phost.bench.storage.only", System.getenv("PHOST_BENCH_STORAGE_ONLY"));
        if (only != null && !only.isBlank() && !List.of("vmbus", "vhdx", "nbd").contains(only)) {
            throw new IllegalArgumentException("PHOST_BENCH_STORAGE_ONLY must be vmbus, vhdx or nbd: " + only);
        }
        if (only == null || only.isBlank() || only.equals("vmbus")) {
            step = vmbusGuest(ctx, points, fio, rounds, seconds, fileSize, out, step, total);
        }
        if (only == null || only.isBlank() || only.equals("vhdx")) {
            vhdxVsRaw(ctx, out, points, seconds, fileSize);
        }
        if (only == null || only.isBlank() || only.equals("nbd")) {
            step = nbdVsQemuNbd(ctx, quick, fio, seconds, fileSize, out, step, total);
        }
        out.addAll(load.results("machine: "));
        ctx.progress(total, total, "done");
        return out;
    }

    /** The guest over VMBus on the O_DIRECT disk, tmpfs and the null backend. Returns the next progress step. */
    private static int vmbusGuest(BenchContext ctx, List<Point> points, boolean fio, int rounds, double seconds,
                                  long fileSize, List<BenchResult> out, int step, int total) throws Exception {
        Path diskFile = ctx.workDir().resolve("bench-disk.raw");
        Path shmFile = ctx.tmpfsDir().resolve("bench-tmpfs.raw");
        prefill(diskFile, fileSize);
        prefill(shmFile, fileSize);
        Path dataDir = Files.createDirectories(ctx.workDir().resolve("host"));
        try (RawDisk disk = RawDisk.openFile(diskFile, false, true);
             RawDisk shm = RawDisk.openFile(shmFile, false, true);
             MemoryDisk nul = MemoryDisk.nullDisk(fileSize);
             PartitionHost host = new PartitionHost(dataDir, spec -> List.of("false"), PartitionHost.Options.defaults()
                 .withAgentCpus(PIN ? List.of(PIN_AGENT_CPU) : List.of()).withPolling(POLLING))) {
            if (!disk.direct()) {
                ctx.log("the work dir's file system refused O_DIRECT: 'disk' runs buffered");
            }
            StorageVsp vsp = new StorageVsp("bench", 0);
            vsp.attach(0, "disk", disk, QosFlow.UNLIMITED, false);
            vsp.attach(1, "tmpfs", shm, QosFlow.UNLIMITED, false);
            vsp.attach(2, "null", nul, QosFlow.UNLIMITED, false);
            Partition p = host.create(PartitionSpec.external("bench", 1, 96L << 20));
            p.offer(vsp);
            p.start();
            try (GuestRam ram = GuestRam.create("bench-guest", 96L << 20);
                 VmbusClient bus = VmbusClient.attach(host.socketPath(), "bench", HexFormat.of().parseHex(p.credentialHex()), ram);
                 StorvscClient client = StorvscClient.connect(bus, vsp.instance(), 1, 32, 1 << 20)) {
                String[] names = {"disk-odirect", "tmpfs", "null"};
                Path[] files = {diskFile, shmFile, null};
                RawDisk[] disks = {disk, shm, null};
                for (int qd : new int[] {1, 32}) { // warm-up (JIT) on the null disk, not recorded
                    GuestIo.run(client, new GuestIo.Options("randread", 4096, qd, 1, 0.5, 0, 2, false, 1, 50, 0, fileSize));
                }
                for (int lun = 0; lun < 3; lun++) {
                    for (Point pt : points) {
                        if (!(pt.name() + " " + names[lun]).matches(POINTS)) {
                            step++;
                            continue;
                        }
                        ctx.progress(step++, total, pt.name() + " " + names[lun]);
                        out.addAll(vmbusPoint(ctx, client, pt, lun, names[lun], files[lun], disks[lun], fio, rounds,
                            seconds, fileSize));
                    }
                }
            }
        }
        return step;
    }

    /**
     * Our NBD export against qemu-nbd on the same VHDX (qemu-nbd gets a byte copy so both can be up at
     * once), both driven by fio's nbd engine. Each point runs ours, qemu-nbd, qemu-nbd, ours (ABBA) so load that
     * drifts during the run hits both sides alike; the result is the mean of each side's two runs, which go
     * into the series.
     * Returns the next progress step.
     */
    /** Rounds of each NBD point, ours and qemu-nbd in ABBA order (also with --quick: one pair has no spread). */
    private static final int NBD_ROUNDS = 3;

    private static int nbdVsQemuNbd(BenchContext ctx, boolean quick, boolean fio, double seconds, long fileSize,
                                    List<BenchResult> out, int step, int total) throws Exception {
        if (!fio || !exists("qemu-nbd") || !fioHasEngine("nbd")) {
            ctx.log("NBD comparison skipped: needs fio with the nbd engine and qemu-nbd (qemu-utils)");
            return step;
        }
        Path vhdx = ctx.workDir().resolve("bench.vhdx");
        Path peerVhdx = ctx.workDir().resolve("bench-qemu.vhdx");
        try (VhdxDisk d = VhdxDisk.create(vhdx, VhdxCreateOptions.dynamic(fileSize))) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment chunk = a.allocate(1 << 20, 4096);
                chunk.fill((byte) 0x5A);
                for (long off = 0; off < fileSize; off += chunk.byteSize()) {
                    d.write(off, chunk);
                }
                d.flush();
            }
        }
        Files.copy(vhdx, peerVhdx);
        List<Point> nbdPoints = quick
            ? List.of(new Point("4k-randread-qd1", "randread", 4096, 1), new Point("4k-randread-qd32", "randread", 4096, 32))
            : List.of(new Point("4k-randread-qd1", "randread", 4096, 1), new Point("4k-randread-qd32", "randread", 4096, 32),
                new Point("4k-randwrite-qd1", "randwrite", 4096, 1), new Point("4k-randwrite-qd32", "randwrite", 4096, 32));
        Path sock = ctx.workDir().resolve("nbd.sock");
        Path qsock = ctx.workDir().resolve("qemu-nbd.sock");
        Process q = new ProcessBuilder("qemu-nbd", "--format=vhdx", "--socket=" + qsock, "--persistent", "--shared=8",
            peerVhdx.toString()).redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        try (VhdxDisk d = VhdxDisk.open(vhdx, false);
             NbdServer server = NbdServer.unix(sock, List.of(new NbdServer.Export("", d, false)))) {
            long deadline = System.nanoTime() + 10_000_000_000L;
            while (!Files.exists(qsock) && System.nanoTime() < deadline) {
                Thread.sleep(20);
            }
            List<String> oursTarget = List.of("--ioengine=nbd", "--uri=" + server.uri(""), "--size=" + fileSize);
            List<String> peerTarget = List.of("--ioengine=nbd", "--uri=nbd+unix:///?socket=" + qsock, "--size=" + fileSize);
            // Warm-up, not recorded: JIT-compiles our request path (qemu-nbd is compiled ahead of time) and reads
            // both images into the page cache.
            Point warmUp = new Point("warm-up", "randread", 4096, 8);
            fioIops(ctx, oursTarget, warmUp, seconds);
            fioIops(ctx, peerTarget, warmUp, seconds);
            for (Point pt : nbdPoints) {
                ctx.progress(step++, total, pt.name() + " nbd (phost and qemu-nbd, 3 ABBA rounds)");
                double[] ours = new double[NBD_ROUNDS];
                double[] peer = new double[NBD_ROUNDS];
                for (int r = 0; r < NBD_ROUNDS; r++) { // ABBA: a drift in the machine's load hits both alike
                    if (Rounds.oursFirst(r)) {
                        ours[r] = fioIops(ctx, oursTarget, pt, seconds);
                        peer[r] = fioIops(ctx, peerTarget, pt, seconds);
                    } else {
                        peer[r] = fioIops(ctx, peerTarget, pt, seconds);
                        ours[r] = fioIops(ctx, oursTarget, pt, seconds);
                    }
                }
                step++;
                out.add(Rounds.compare(pt.name() + " vhdx nbd-export", "IOPS", ours, "qemu-nbd", peer, false));
            }
        } finally {
            q.destroy();
            if (!q.waitFor(5, TimeUnit.SECONDS)) {
                q.destroyForcibly();
            }
        }
        return step;
    }

    /**
     * VHDX vs raw over VMBus in the same run: a fully allocated dynamic VHDX and a raw file, both on the
     * work-dir disk and opened O_DIRECT, as LUNs of one VSP. The VHDX runs on the mapped engine (io_uring on
     * the image file for FULLY_PRESENT blocks); series {@code threads_engine_iops} is the same point on a
     * second VHDX forced onto the thread-pool engine (the path before mapped I/O; the disk's own fd is
     * buffered, so on an image that fits in RAM it is served from the host page cache: a different cache
     * mode, not a like-for-like peer). 4 KiB points only.
     */
    /** Rounds of each VHDX-vs-raw point (also with --quick). */
    private static final int VHDX_ROUNDS = 3;

    private static void vhdxVsRaw(BenchContext ctx, List<BenchResult> out, List<Point> points, double seconds,
                                  long fileSize) throws Exception {
        Path raw = ctx.workDir().resolve("bench-vhdx-peer.raw");
        Path mapped = ctx.workDir().resolve("bench-mapped.vhdx");
        Path threads = ctx.workDir().resolve("bench-threads.vhdx");
        // Raw and mapped VHDX are filled with O_DIRECT writes, so neither starts with its data in the host
        // page cache (an O_DIRECT write over cached pages is punted to an io_uring worker). The VHDX gets
        // one buffered sector per block (allocation through the disk), the rest through its mapped fd.
        RawDisk.createSparse(raw, fileSize);
        try (Arena a = Arena.ofConfined();
             RawDisk r = RawDisk.openFile(raw, false, true);
             VhdxDisk m = VhdxDisk.create(mapped, VhdxCreateOptions.dynamic(fileSize));
             VhdxDisk t = VhdxDisk.create(threads, VhdxCreateOptions.dynamic(fileSize))) {
            MemorySegment chunk = a.allocate(1 << 20, 4096);
            SplittableRandom rnd = new SplittableRandom(11);
            for (long i = 0; i < chunk.byteSize(); i += 8) {
                chunk.set(java.lang.foreign.ValueLayout.JAVA_LONG, i, rnd.nextLong());
            }
            int fd = m.mappedFd();
            for (long off = 0; off < fileSize; off += chunk.byteSize()) {
                r.write(off, chunk);
                t.write(off, chunk);
                long at = m.mapWrite(off, chunk.byteSize());
                if (at < 0) {
                    m.write(off, chunk.asSlice(0, 4096)); // allocates the block (and starts the session)
                    at = m.mapWrite(off, chunk.byteSize());
                }
                DirectFile.pwrite(fd, chunk.address(), chunk.byteSize(), at);
            }
            r.flush();
            m.flush();
            t.flush();
        }
        ctx.log("vhdx vs raw over VMBus: " + fileSize / (1 << 20) + " MiB images on the work-dir disk");
        Path dataDir = Files.createDirectories(ctx.workDir().resolve("host-vhdx"));
        try (RawDisk rawDisk = RawDisk.openFile(raw, false, true);
             VhdxDisk mappedDisk = VhdxDisk.open(mapped, false);
             VhdxDisk threadsDisk = VhdxDisk.open(threads, false);
             PartitionHost host = new PartitionHost(dataDir, spec -> List.of("false"), PartitionHost.Options.defaults())) {
            StorageVsp vsp = new StorageVsp("bench-vhdx", 0);
            vsp.attach(0, "raw", rawDisk, QosFlow.UNLIMITED, false);
            vsp.attach(1, "vhdx", mappedDisk, QosFlow.UNLIMITED, false);
            vsp.attach(2, "vhdx-threads", threadsDisk, QosFlow.UNLIMITED, false, IoEngines.Kind.THREADS);
            Partition p = host.create(PartitionSpec.external("bench-vhdx", 1, 96L << 20));
            p.offer(vsp);
            p.start();
            try (GuestRam ram = GuestRam.create("bench-vhdx-guest", 96L << 20);
                 VmbusClient bus = VmbusClient.attach(host.socketPath(), "bench-vhdx", HexFormat.of().parseHex(p.credentialHex()), ram);
                 StorvscClient client = StorvscClient.connect(bus, vsp.instance(), 1, 32, 1 << 20)) {
                for (int lun = 0; lun < 3; lun++) { // warm-up: JIT, agents, engines opened
                    GuestIo.run(client, new GuestIo.Options("randread", 4096, 4, 1, 0.3, 0, lun, false, 1, 50, 0, fileSize));
                }
                for (Point pt : points) {
                    if (pt.bs() != 4096) {
                        continue;
                    }
                    // 3 rounds, raw and VHDX in ABBA order (the threads-engine LUN last), half the time each: a
                    // drift in the machine's load between the two LUNs the ratio compares hits both alike.
                    double[][] rounds = new double[3][VHDX_ROUNDS];
                    double[] lat = new double[3];
                    double p99 = 0;
                    for (int r = 0; r < VHDX_ROUNDS; r++) {
                        for (int lun : Rounds.oursFirst(r) ? new int[] {1, 0, 2} : new int[] {0, 1, 2}) {
                            GuestIo.Result g = GuestIo.run(client, new GuestIo.Options(pt.rw(), pt.bs(), pt.qd(), 1, seconds / 2, 0,
                                lun, false, 1, 50, 0, fileSize));
                            rounds[lun][r] = g.iops();
                            lat[lun] += g.latMeanUs() / VHDX_ROUNDS;
                            if (lun == 1) {
                                p99 = Math.max(p99, g.latP99Us());
                            }
                        }
                    }
                    double[] iops = {Rounds.Stats.of(rounds[0]).median(), Rounds.Stats.of(rounds[1]).median(),
                        Rounds.Stats.of(rounds[2]).median()};
                    Map<String, Double> series = new LinkedHashMap<>();
                    series.put("lat_mean_us", lat[1]);
                    series.put("lat_p99_us", p99);
                    series.put("raw_lat_mean_us", lat[0]);
                    series.put("threads_engine_iops", iops[2]);
                    series.put("mapped_vs_threads", iops[1] / Math.max(1e-9, iops[2]));
                    BenchResult r = Rounds.compare(pt.name() + " vhdx vmbus-guest", "IOPS", rounds[1], "raw vmbus-guest",
                        rounds[0], false);
                    series.putAll(r.series());
                    out.add(r.withSeries(series));
                }
            }
        }
    }

    /**
     * One point on one LUN: the guest over VMBus against native fio on the same file, {@code rounds} times
     * interleaved, medians reported. The native peer is the better of fio's io_uring and (at QD1) psync
     * engines: on tmpfs io_uring hands every read to a kernel worker thread and psync is ~40x faster.
     */
    private static List<BenchResult> vmbusPoint(BenchContext ctx, StorvscClient client, Point pt, int lun, String lunName,
                                                Path file, RawDisk disk, boolean fio, int rounds, double seconds,
                                                long fileSize) throws Exception {
        GuestIo.Options options = new GuestIo.Options(pt.rw(), pt.bs(), pt.qd(), 1, seconds, 0, lun, false, 1, 50, 0,
            fileSize, GUEST_POLL_MICROS);
        boolean native_ = file != null && fio;
        double[] guest = new double[rounds];
        double[] uring = new double[rounds];
        double[] psync = new double[rounds];
        // per round: mean and p50 of the whole I/O (fio's lat_ns: submit to completion), µs
        double[][] uringLat = {new double[rounds], new double[rounds]};
        double[][] psyncLat = {new double[rounds], new double[rounds]};
        double[][] guestLat = {new double[rounds], new double[rounds]};
        double[] vspWait = new double[rounds];
        double[] guestSleeps = new double[rounds];
        double[] guestWait = new double[rounds];
        long[] handoff = new long[0];
        GuestIo.Result last = null;
        long cpu = 0;
        SpinGovernor.Totals host0 = SpinGovernor.totals(true);
        SpinGovernor.Totals guest0 = SpinGovernor.totals(false);
        for (int i = 0; i < rounds; i++) {
            // ABBA: guest first in rounds 0 and 3, natives first in rounds 1 and 2, so load drift hits both
            boolean guestFirst = Rounds.oursFirst(i);
            for (int half = 0; half < 2; half++) {
                if ((half == 0) == guestFirst) {
                    long cpu0 = vspCpuNanos();
                    long vspWait0 = Schedstat.waitNanos("vsp-storage");
                    if (HandoffSampler.ENABLED) {
                        HandoffSampler.drainAll(); // drop the previous point's and the warm-up's samples
                    }
                    long sleeps0 = client.queue(0).doorbellSleeps();
                    last = PIN ? pinnedRun(client, options) : GuestIo.run(client, options);
                    guestSleeps[i] = (client.queue(0).doorbellSleeps() - sleeps0) / (double) Math.max(1, last.ios());
                    if (HandoffSampler.ENABLED) {
                        handoff = concat(handoff, HandoffSampler.drainAll());
                    }
                    guestWait[i] = last.runqueueWaitUsPerIo();
                    guestLat[0][i] = last.latMeanUs();
                    guestLat[1][i] = last.latP50Us();
                    cpu += vspCpuNanos() - cpu0;
                    guest[i] = last.iops();
                    // run-queue delay per I/O of the VSP agents (schedstat; the guest-io threads exit with the
                    // run, so theirs cannot be read afterwards): time woken but waiting for a CPU
                    long ios = Math.max(1, Math.round(last.iops() * seconds));
                    vspWait[i] = (Schedstat.waitNanos("vsp-storage") - vspWait0) / 1e3 / ios;
                } else if (native_) {
                    List<String> target = List.of("--filename=" + file, "--direct=" + (disk.direct() ? 1 : 0),
                        "--size=" + fileSize);
                    double[] lat = new double[2];
                    uring[i] = fioIops(ctx, concat(concat(target, "--ioengine=io_uring"), "--lat_percentiles=1"), pt, seconds, lat);
                    uringLat[0][i] = lat[0];
                    uringLat[1][i] = lat[1];
                    psync[i] = pt.qd() == 1
                        ? fioIops(ctx, concat(concat(target, "--ioengine=psync"), "--lat_percentiles=1"), pt, seconds, lat) : Double.NaN;
                    psyncLat[0][i] = pt.qd() == 1 ? lat[0] : Double.NaN;
                    psyncLat[1][i] = pt.qd() == 1 ? lat[1] : Double.NaN;

                }
            }
        }
        String name = pt.name() + " " + lunName + " vmbus-guest";
        Map<String, Double> series = new LinkedHashMap<>();
        series.put("lat_mean_us", last.latMeanUs());
        series.put("lat_p50_us", last.latP50Us());
        series.put("lat_p99_us", last.latP99Us());
        series.put("mib_s", last.mibps());
        series.put("rounds", (double) rounds);
        series.put("vsp_runqueue_wait_us_per_io", median(vspWait));
        series.put("guest_runqueue_wait_us_per_io", median(guestWait));
        // share of the guest's waits that ended asleep on the doorbell (a wake-up) rather than polling
        series.put("guest_doorbell_sleeps_per_io", median(guestSleeps));
        // what the adaptive governors decided during this point (all rounds): share of governed time allowed to
        // spin, stops (run-queue wait > 5% / spins that missed), trials of spinning again, run-queue wait share
        putGovernor(series, "governor_host_", SpinGovernor.totals(true).minus(host0));
        putGovernor(series, "governor_guest_", SpinGovernor.totals(false).minus(guest0));
        if (HandoffSampler.ENABLED) {
            Map<String, Double> h = HandoffBreakdown.of(handoff);
            series.putAll(h);
            ctx.log(pt.name() + " " + lunName + " hand-off: " + h);
        }
        // host CPU time per I/O (agent threads' CPU clocks: time preempted by other processes is not counted)
        series.put("vsp_cpu_us_per_io", cpu / 1e3 / Math.max(1.0, Arrays.stream(guest).sum() * seconds));
        series.put("guest_iops_min", Arrays.stream(guest).min().orElse(0));
        series.put("guest_iops_max", Arrays.stream(guest).max().orElse(0));
        double ours = median(guest);
        List<BenchResult> out = new ArrayList<>();
        if (disk != null) {
            series.put("engine_direct_iops", engineDirect(disk, pt, seconds, fileSize));
        }
        if (!native_) {
            series.put("ios_per_vsp_cpu_second", Arrays.stream(guest).sum() * seconds / Math.max(1e-9, cpu / 1e9));
            out.add(BenchResult.alone(name, ours, "IOPS").withSeries(series));
            if (pt.qd() == 1) {
                out.add(BenchResult.alone(pt.name() + " " + lunName + " vmbus-guest latency per I/O", last.latMeanUs(), "us"));
            }
            return out;
        }
        double u = median(uring);
        double p = pt.qd() == 1 ? median(psync) : Double.NaN;
        series.put("fio_io_uring_iops", u);
        if (pt.qd() == 1) {
            series.put("fio_psync_iops", p);
        }
        boolean psyncBetter = p > u;
        // Whole-I/O latency, median over rounds, guest (submit to handler) and the better fio engine (submit to
        // completion): equal p50s with unequal means put the gap in the tail.
        double[][] peerLat = psyncBetter ? psyncLat : uringLat;
        series.put("guest_lat_mean_us_median", median(guestLat[0]));
        series.put("guest_lat_p50_us_median", median(guestLat[1]));
        series.put("fio_lat_mean_us", median(peerLat[0]));
        series.put("fio_lat_p50_us", median(peerLat[1]));
        Rounds.Stats peerStats = Rounds.Stats.of(psyncBetter ? psync : uring);
        series.put("peer_min", peerStats.min());
        series.put("peer_max", peerStats.max());
        series.put("peer_spread", peerStats.spread());
        // no ratio when the native peer's own rounds disagree by more than 20%: it would measure the machine
        boolean trusted = Rounds.trustworthy(Rounds.Stats.of(guest), peerStats);
        series.put("ratio_refused", trusted ? 0.0 : 1.0);
        if (!trusted) {
            ctx.log(String.format(java.util.Locale.ROOT, "%s: no ratio, the native peer's rounds spread %.0f%% (limit %.0f%%) or fewer than 3 rounds",
                name, 100 * peerStats.spread(), 100 * Rounds.MAX_PEER_SPREAD));
        }
        out.add(new BenchResult(name, ours, "IOPS", psyncBetter ? "fio psync" : "fio io_uring",
            trusted ? (psyncBetter ? p : u) : Double.NaN, false, Map.of()).withSeries(series));
        return out;
    }

    private static void putGovernor(Map<String, Double> series, String prefix, SpinGovernor.Totals t) {
        long governed = t.spinNanos() + t.sleepNanos();
        series.put(prefix + "spin_share", t.spinShare());
        series.put(prefix + "governed_ms", governed / 1e6);
        series.put(prefix + "contended_stops", (double) t.contendedStops());
        series.put(prefix + "miss_stops", (double) t.missStops());
        series.put(prefix + "trials", (double) t.trials());
        series.put(prefix + "runqueue_share", governed == 0 ? Double.NaN : (double) t.waitNanos() / governed);
    }

    // PHOST_BENCH_PIN pins the VSP agents and the guest thread: "AGENT:GUEST" CPUs (e.g. "0:1"); any other value
    // means "1:0" (the agents on CPU 1, which takes this VM's disk interrupt, the guest on CPU 0).
    private static final String PIN_SPEC = System.getenv("PHOST_BENCH_PIN");
    private static final boolean PIN = PIN_SPEC != null;
    private static final int PIN_AGENT_CPU = pinCpu(0, 1);
    private static final int PIN_GUEST_CPU = pinCpu(1, 0);

    private static int pinCpu(int field, int otherwise) {
        if (PIN_SPEC == null || !PIN_SPEC.matches("\\d+:\\d+")) {
            return otherwise;
        }
        return Integer.parseInt(PIN_SPEC.split(":")[field]);
    }
    // For repeated experiments on one point (issue 19): which "point lun" names run (a regex, e.g.
    // "4k-randread-qd1 (null|disk-odirect)"), the host's polling mode and the guest's poll budget.
    private static final String POINTS = System.getenv().getOrDefault("PHOST_BENCH_STORAGE_POINTS", ".*");
    private static final PollingMode POLLING = PollingMode.valueOf(
        System.getenv().getOrDefault("PHOST_BENCH_POLLING", "adaptive").toUpperCase(java.util.Locale.ROOT));
    private static final int GUEST_POLL_MICROS = Integer.parseInt(
        System.getenv().getOrDefault("PHOST_BENCH_GUEST_POLL_US", String.valueOf(StorvscQueue.DEFAULT_POLL_MICROS)));

    private static GuestIo.Result pinnedRun(StorvscClient client, GuestIo.Options options) throws Exception {
        GuestIo.Result[] r = new GuestIo.Result[1];
        Exception[] err = new Exception[1];
        Thread t = new Thread(() -> {
            io.phost.core.sys.CpuAffinity.pin(List.of(PIN_GUEST_CPU));
            try {
                r[0] = GuestIo.run(client, options);
            } catch (Exception e) {
                err[0] = e;
            }
        });
        t.start();
        t.join();
        if (err[0] != null) {
            throw err[0];
        }
        return r[0];
    }

    private static long[] concat(long[] a, long[] b) {
        long[] c = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, c, a.length, b.length);
        return c;
    }

    private static List<String> concat(List<String> a, String b) {
        List<String> l = new ArrayList<>(a);
        l.add(b);
        return l;
    }

    private static double median(double[] v) {
        double[] s = Arrays.stream(v).filter(x -> !Double.isNaN(x)).sorted().toArray();
        return s.length == 0 ? Double.NaN : s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }

    /** CPU time of the storage VSP's channel agents (threads {@code vsp-storage-*}): the cost of the host side. */
    private static long vspCpuNanos() {
        ThreadMXBean threads = ManagementFactory.getThreadMXBean();
        long sum = 0;
        for (ThreadInfo t : threads.getThreadInfo(threads.getAllThreadIds())) {
            if (t != null && t.getThreadName().startsWith("vsp-storage-")) {
                sum += Math.max(0, threads.getThreadCpuTime(t.getThreadId()));
            }
        }
        return sum;
    }

    private static void prefill(Path file, long size) throws IOException {
        RawDisk.createSparse(file, size);
        try (RawDisk d = RawDisk.openFile(file, false, false); Arena a = Arena.ofConfined()) {
            MemorySegment chunk = a.allocate(1 << 20, 4096);
            SplittableRandom r = new SplittableRandom(7);
            for (long i = 0; i < chunk.byteSize(); i += 8) {
                chunk.set(java.lang.foreign.ValueLayout.JAVA_LONG, i, r.nextLong());
            }
            for (long off = 0; off < size; off += chunk.byteSize()) {
                d.write(off, chunk);
            }
            d.flush();
        }
    }

    /** The engine the VSP picks for this disk, called directly (no VMBus, no SCSI): the floor under the guest path. */
    private static double engineDirect(RawDisk disk, Point pt, double seconds, long fileSize) {
        try (IoEngine e = IoEngines.open(disk, IoEngines.Kind.AUTO, Math.max(2, pt.qd())); Arena a = Arena.ofConfined()) {
            IoVecs[] v = new IoVecs[pt.qd()];
            for (int i = 0; i < pt.qd(); i++) {
                v[i] = IoVecs.of(a.allocate(pt.bs(), 4096));
            }
            boolean write = pt.rw().contains("write");
            boolean rand = pt.rw().startsWith("rand");
            long units = fileSize / pt.bs();
            SplittableRandom r = new SplittableRandom(3);
            long[] seq = {0};
            long[] done = {0};
            int[] freeSlots = new int[pt.qd()];
            int[] free = {0};
            for (int i = 0; i < pt.qd(); i++) {
                freeSlots[free[0]++] = i;
            }
            long end = System.nanoTime() + (long) (seconds * 1e9);
            long t0 = System.nanoTime();
            while (System.nanoTime() < end) {
                while (free[0] > 0) {
                    int s = freeSlots[--free[0]];
                    long off = (rand ? r.nextLong(units) : seq[0]++ % units) * pt.bs();
                    boolean ok = write ? e.tryWrite(off, v[s], s) : e.tryRead(off, v[s], s);
                    if (!ok) {
                        free[0]++;
                        break;
                    }
                }
                e.submit();
                e.await((u, res) -> {
                    freeSlots[free[0]++] = (int) u;
                    done[0]++;
                }, 1_000_000L);
            }
            double el = (System.nanoTime() - t0) / 1e9;
            while (e.inFlight() > 0) {
                e.await((u, res) -> { }, 1_000_000L);
            }
            return done[0] / el;
        }
    }

    private static double fioIops(BenchContext ctx, List<String> target, Point pt, double seconds) throws Exception {
        return fioIops(ctx, target, pt, seconds, new double[2]);
    }

    /** As above; {@code lat} receives fio's whole-I/O latency (lat_ns) mean and p50 in µs, NaN when absent. */
    private static double fioIops(BenchContext ctx, List<String> target, Point pt, double seconds, double[] lat)
        throws Exception {
        lat[0] = Double.NaN;
        lat[1] = Double.NaN;
        List<String> cmd = new ArrayList<>(List.of("fio", "--name=peer", "--rw=" + pt.rw(), "--bs=" + pt.bs(),
            "--iodepth=" + pt.qd(), "--runtime=" + seconds, "--time_based", "--output-format=json", "--norandommap",
            "--randrepeat=0"));
        cmd.addAll(target);
        Process p = new ProcessBuilder(cmd).redirectErrorStream(false).start();
        byte[] outBytes = p.getInputStream().readAllBytes();
        p.waitFor(60, TimeUnit.SECONDS);
        String json = new String(outBytes, StandardCharsets.UTF_8);
        Matcher m = (pt.rw().contains("write") ? WRITE_IOPS : READ_IOPS).matcher(json);
        if (p.exitValue() != 0 || !m.find()) {
            String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
            ctx.log("fio failed (" + String.join(" ", cmd) + "): " + err.lines().findFirst().orElse(""));
            return Double.NaN;
        }
        try {
            Object doc = io.phost.core.text.Json.parse(json.substring(json.indexOf('{')));
            Object job = ((List<?>) ((Map<?, ?>) doc).get("jobs")).get(0);
            Map<?, ?> side = (Map<?, ?>) ((Map<?, ?>) job).get(pt.rw().contains("write") ? "write" : "read");
            Map<?, ?> latNs = (Map<?, ?>) side.get("lat_ns");
            lat[0] = ((Number) latNs.get("mean")).doubleValue() / 1e3;
            Object pcts = latNs.get("percentile");
            if (pcts instanceof Map<?, ?> pm && pm.get("50.000000") instanceof Number p50) {
                lat[1] = p50.doubleValue() / 1e3;
            }
        } catch (RuntimeException e) {
            // an older fio's layout: IOPS alone
        }
        return Double.parseDouble(m.group(1));
    }

    private static boolean fioHasEngine(String engine) {
        try {
            Process p = new ProcessBuilder("fio", "--enghelp").redirectErrorStream(true).start();
            String s = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            p.waitFor();
            return s.lines().anyMatch(l -> l.trim().equals(engine));
        } catch (Exception e) {
            return false;
        }
    }

    private static boolean exists(String tool) {
        for (String d : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
            if (Files.isExecutable(Path.of(d, tool))) {
                return true;
            }
        }
        return false;
    }
}
