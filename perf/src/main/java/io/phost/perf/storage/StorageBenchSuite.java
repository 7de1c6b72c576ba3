package io.phost.perf.storage;

import io.phost.core.partition.Partition;
import io.phost.core.partition.PartitionHost;
import io.phost.core.partition.PartitionSpec;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.VmbusClient;
import io.phost.perf.BenchContext;
import io.phost.perf.BenchResult;
import io.phost.perf.BenchSuite;
import io.phost.qos.QosFlow;
import io.phost.storage.StorageVsp;
import io.phost.storage.backend.FileDisk;
import io.phost.storage.backend.MemoryDisk;
import io.phost.storage.engine.IoEngine;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.engine.IoVecs;
import io.phost.storage.nbd.NbdServer;
import io.phost.storage.vmbus.GuestIo;
import io.phost.storage.vmbus.StorvscClient;
import io.phost.vhdx.vhdx.VhdxCreateOptions;
import io.phost.vhdx.vhdx.VhdxDisk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
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
 */
public final class StorageBenchSuite implements BenchSuite {
    private static final Pattern READ_IOPS = Pattern.compile("\"read\"\\s*:\\s*\\{[^{}]*?\"iops\"\\s*:\\s*([0-9.eE+-]+)");
    private static final Pattern WRITE_IOPS = Pattern.compile("\"write\"\\s*:\\s*\\{[^{}]*?\"iops\"\\s*:\\s*([0-9.eE+-]+)");

    record Point(String name, String rw, int bs, int qd) {
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
        double seconds = quick ? 1.0 : 5.0;
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
        if ("nbd".equals(System.getProperty("phost.bench.storage.only", System.getenv("PHOST_BENCH_STORAGE_ONLY")))) {
            // Only the NBD comparison (PHOST_BENCH_STORAGE_ONLY=nbd): the noisy QD1 ratio needs several runs.
            nbdVsQemuNbd(ctx, quick, fio, seconds, fileSize, out, 0, quick ? 4 : 8);
            return out;
        }

        Path diskFile = ctx.workDir().resolve("bench-disk.raw");
        Path shmFile = ctx.tmpfsDir().resolve("bench-tmpfs.raw");
        prefill(diskFile, fileSize);
        prefill(shmFile, fileSize);
        Path dataDir = Files.createDirectories(ctx.workDir().resolve("host"));
        try (FileDisk disk = FileDisk.openFile(diskFile, false, true);
             FileDisk shm = FileDisk.openFile(shmFile, false, true);
             MemoryDisk nul = MemoryDisk.nullDisk(fileSize);
             PartitionHost host = new PartitionHost(dataDir, spec -> List.of("false"), PartitionHost.Options.defaults())) {
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
                FileDisk[] disks = {disk, shm, null};
                for (int lun = 0; lun < 3; lun++) {
                    for (Point pt : points) {
                        ctx.progress(step++, total, pt.name() + " " + names[lun]);
                        GuestIo.Result g = GuestIo.run(client, new GuestIo.Options(pt.rw(), pt.bs(), pt.qd(), 1, seconds,
                            0, lun, false, 1, 50, 0, fileSize));
                        Map<String, Double> series = new LinkedHashMap<>();
                        series.put("lat_mean_us", g.latMeanUs());
                        series.put("lat_p50_us", g.latP50Us());
                        series.put("lat_p99_us", g.latP99Us());
                        series.put("mib_s", g.mibps());
                        if (disks[lun] != null && IoEngines.ioUringAvailable()) {
                            series.put("engine_direct_iops", engineDirect(disks[lun], pt, seconds / 2, fileSize));
                        }
                        String name = pt.name() + " " + names[lun] + " vmbus-guest";
                        if (files[lun] != null && fio) {
                            double native_ = fioIops(ctx, List.of("--filename=" + files[lun], "--ioengine=io_uring",
                                "--direct=" + (lun == 0 && disk.direct() ? 1 : 0), "--size=" + fileSize), pt, seconds);
                            out.add(BenchResult.vsPeer(name, g.iops(), "IOPS", "fio io_uring", native_).withSeries(series));
                        } else {
                            long cpu0 = processCpuNanos();
                            GuestIo.Result again = lun == 2 && pt.qd() == 32
                                ? GuestIo.run(client, new GuestIo.Options(pt.rw(), pt.bs(), pt.qd(), 1, seconds / 2, 0, lun,
                                false, 1, 50, 0, fileSize)) : null;
                            if (again != null) {
                                double cpuSeconds = (processCpuNanos() - cpu0) / 1e9;
                                series.put("ios_per_host_cpu_second", again.ios() / Math.max(1e-9, cpuSeconds));
                            }
                            out.add(BenchResult.alone(name, g.iops(), "IOPS").withSeries(series));
                            if (lun == 2 && pt.qd() == 1) {
                                out.add(BenchResult.alone(pt.name() + " null vmbus-guest latency per I/O", g.latMeanUs(), "us"));
                            }
                        }
                    }
                }
            }
        }
        step = nbdVsQemuNbd(ctx, quick, fio, seconds, fileSize, out, step, total);
        ctx.progress(total, total, "done");
        return out;
    }

    /**
     * Our NBD export against qemu-nbd on the same VHDX (qemu-nbd gets a byte copy so both can be up at
     * once), both driven by fio's nbd engine. Each point runs ours, qemu-nbd, qemu-nbd, ours (ABBA) so load that
     * drifts during the run hits both sides alike; the result is the mean of each side's two runs, which go
     * into the series.
     * Returns the next progress step.
     */
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
                ctx.progress(step++, total, pt.name() + " nbd (phost, qemu-nbd)");
                double oursA = fioIops(ctx, oursTarget, pt, seconds);
                double peerA = fioIops(ctx, peerTarget, pt, seconds);
                ctx.progress(step++, total, pt.name() + " nbd (qemu-nbd, phost)");
                double peerB = fioIops(ctx, peerTarget, pt, seconds);
                double oursB = fioIops(ctx, oursTarget, pt, seconds);
                Map<String, Double> series = new LinkedHashMap<>();
                series.put("phost_iops_run1", oursA);
                series.put("phost_iops_run2", oursB);
                series.put("qemu_nbd_iops_run1", peerA);
                series.put("qemu_nbd_iops_run2", peerB);
                out.add(BenchResult.vsPeer(pt.name() + " vhdx nbd-export", (oursA + oursB) / 2, "IOPS", "qemu-nbd",
                    (peerA + peerB) / 2).withSeries(series));
            }
        } finally {
            q.destroy();
            if (!q.waitFor(5, TimeUnit.SECONDS)) {
                q.destroyForcibly();
            }
        }
        return step;
    }

    private static long processCpuNanos() {
        var os = ManagementFactory.getOperatingSystemMXBean();
        return os instanceof com.sun.management.OperatingSystemMXBean s ? s.getProcessCpuTime() : 0;
    }

    private static void prefill(Path file, long size) throws IOException {
        FileDisk.createSparse(file, size);
        try (FileDisk d = FileDisk.openFile(file, false, false); Arena a = Arena.ofConfined()) {
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

    /** Our io_uring engine on the same disk, without VMBus or SCSI: the floor under the guest path. */
    private static double engineDirect(FileDisk disk, Point pt, double seconds, long fileSize) {
        try (IoEngine e = IoEngines.open(disk, IoEngines.Kind.IO_URING, Math.max(2, pt.qd())); Arena a = Arena.ofConfined()) {
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
