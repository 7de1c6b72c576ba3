package io.phost.perf.vhdx;

import io.phost.perf.BenchContext;
import io.phost.perf.BenchResult;
import io.phost.perf.BenchSuite;
import io.phost.perf.Rounds;
import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.ops.DiskOps;
import io.phost.vhdx.ops.Progress;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * {@code phost bench vhdx}: the VHDX engine against a raw file and against qemu-img, in the same run.
 * <ul>
 *   <li>4 KiB random read, 4 KiB random write, 1 MiB sequential read and write (QD1, one thread, buffered)
 *       through an allocated dynamic VHDX vs the same I/O through {@link io.phost.vhdx.RawDisk} on a raw file,
 *       on tmpfs and on the work disk; ours and raw alternate in short rounds so drift hits both alike;</li>
 *   <li>first-write allocation: 4 KiB into each block of a fresh dynamic VHDX/VHD, then one flush, vs the
 *       same writes and flush into a fresh sparse raw file (see {@link #firstWrite});</li>
 *   <li>{@code convert} of a 4 GiB sparse raw image with scattered data to dynamic VHDX: ours
 *       ({@link DiskOps#convert}) vs {@code qemu-img convert -O vhdx}; ratio = qemu time / our time.</li>
 * </ul>
 * Higher ratio is better; 1.0 means as fast as the peer.
 */
public final class VhdxSuite implements BenchSuite {
    @Override
    public String name() {
        return "vhdx";
    }

    @Override
    public String description() {
        return "VHDX I/O vs raw file (tmpfs and disk), first-write allocation, convert vs qemu-img";
    }

    @Override
    public List<BenchResult> run(BenchContext ctx) throws Exception {
        boolean quick = ctx.quick();
        long diskSize = quick ? 128L << 20 : 1L << 30;
        long roundNanos = TimeUnit.MILLISECONDS.toNanos(quick ? 150 : 1000);
        int rounds = quick ? 3 : 5;
        List<BenchResult> results = new ArrayList<>();
        Path[] media = {ctx.tmpfsDir(), ctx.workDir()};
        String[] mediaNames = {"tmpfs", "disk"};
        int steps = media.length * 2 * 5 + 1;
        int step = 0;
        for (int m = 0; m < media.length; m++) {
            Path dir = media[m];
            String where = mediaNames[m];
            Path raw = dir.resolve("bench.raw");
            for (DiskFormat format : new DiskFormat[] {DiskFormat.VHDX, DiskFormat.VHD}) {
                Path image = dir.resolve("bench." + format.id());
                String label = format.id() + "-dynamic";
                ctx.progress(step++, steps, "prepare " + label + " " + where);
                results.add(firstWrite(dir, format, where + " " + label, quick));
                try (VirtualDisk x = VirtualDisks.create(image, CreateOptions.of(format, DiskType.DYNAMIC, diskSize));
                     VirtualDisk r = VirtualDisks.create(raw, CreateOptions.of(DiskFormat.RAW, DiskType.DYNAMIC, diskSize));
                     Arena arena = Arena.ofConfined()) {
                    MemorySegment big = arena.allocate(1 << 20, 4096);
                    MemorySegment small = arena.allocate(4096, 4096);
                    big.fill((byte) 0x5a);
                    small.fill((byte) 0x3c);
                    // Allocate (fill) everything so the steady-state runs never allocate.
                    for (long off = 0; off < diskSize; off += big.byteSize()) {
                        x.write(off, big);
                        r.write(off, big);
                    }
                    x.flush();
                    r.flush();
                    String[] kinds = {"4k-randread", "4k-randwrite", "1m-seqread", "1m-seqwrite"};
                    for (String kind : kinds) {
                        ctx.progress(step++, steps, kind + " " + label + " " + where);
                        boolean seq = kind.startsWith("1m");
                        boolean write = kind.endsWith("write");
                        MemorySegment buf = seq ? big : small;
                        long oursOps = 0;
                        long oursNs = 0;
                        long peerOps = 0;
                        long peerNs = 0;
                        for (int round = 0; round < rounds; round++) {
                            long[] o = loop(x, buf, diskSize, seq, write, roundNanos, round);
                            long[] p = loop(r, buf, diskSize, seq, write, roundNanos, round);
                            oursOps += o[0];
                            oursNs += o[1];
                            peerOps += p[0];
                            peerNs += p[1];
                        }
                        String unit = seq ? "MiB/s" : "IOPS";
                        double scale = seq ? (buf.byteSize() / (double) (1 << 20)) : 1;
                        double ov = oursOps * scale / (oursNs / 1e9);
                        double pv = peerOps * scale / (peerNs / 1e9);
                        results.add(BenchResult.vsPeer(kind + " qd1 " + where + " " + label, ov, unit, "raw file", pv));
                    }
                } finally {
                    Files.deleteIfExists(image);
                    Files.deleteIfExists(raw);
                }
            }
        }
        ctx.progress(step++, steps, "convert 4 GiB sparse vs qemu-img");
        results.addAll(convert(ctx, quick));
        ctx.progress(steps, steps, "done");
        return results;
    }

    /**
     * First-write allocation: one 4 KiB write into each block of a fresh dynamic image (VHDX 32 MiB, VHD
     * 2 MiB blocks; 256 blocks, 64 with --quick), then one flush, as a guest's first writes followed by
     * its FLUSH; vs the same writes and one fdatasync into a fresh sparse raw file. Both sides first run
     * fresh pairs until each has made 2048 first writes (not counted: otherwise the measurement is the JIT
     * compiling our longer path while the kernel's is always warm), then 5 (9) counted pairs in ABBA
     * order ({@link Rounds#oursFirst}); allocations per second per pair, compared with
     * {@link Rounds#compare}, and the per-pair ratio's min/median/max in the series.
     */
    private static BenchResult firstWrite(Path dir, DiskFormat format, String label, boolean quick) throws IOException {
        long blockBytes = format == DiskFormat.VHDX ? 32L << 20 : 2L << 20;
        int blocks = quick ? 64 : 256;
        long size = blockBytes * blocks;
        int warmup = (2048 + blocks - 1) / blocks;
        int counted = quick ? 5 : 9;
        double[] ours = new double[counted];
        double[] raw = new double[counted];
        double[] ratio = new double[counted];
        CreateOptions image = CreateOptions.of(format, DiskType.DYNAMIC, size);
        CreateOptions sparse = CreateOptions.of(DiskFormat.RAW, DiskType.DYNAMIC, size);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment small = arena.allocate(4096, 4096);
            small.fill((byte) 0x3c);
            for (int pair = 0; pair < warmup + counted; pair++) {
                boolean oursFirst = Rounds.oursFirst(pair);
                long o = 0;
                long r = 0;
                if (oursFirst) {
                    o = timedFirstWrites(dir.resolve("first." + format.id()), image, small, blockBytes);
                }
                r = timedFirstWrites(dir.resolve("first.raw"), sparse, small, blockBytes);
                if (!oursFirst) {
                    o = timedFirstWrites(dir.resolve("first." + format.id()), image, small, blockBytes);
                }
                int k = pair - warmup;
                if (k >= 0) {
                    ours[k] = blocks / (o / 1e9);
                    raw[k] = blocks / (r / 1e9);
                    ratio[k] = ours[k] / raw[k];
                }
            }
        }
        Rounds.Stats rs = Rounds.Stats.of(ratio);
        Map<String, Double> perPair = new LinkedHashMap<>();
        perPair.put("pair_ratio_min", rs.min());
        perPair.put("pair_ratio_median", rs.median());
        perPair.put("pair_ratio_max", rs.max());
        perPair.put("warmup_pairs", (double) warmup);
        BenchResult result = Rounds.compare("first-write-alloc 4k+flush " + label, "allocs/s", ours,
            "raw file first write", raw, false);
        Map<String, Double> series = new LinkedHashMap<>(result.series());
        series.putAll(perPair);
        return result.withSeries(series);
    }

    private static long timedFirstWrites(Path file, CreateOptions opts, MemorySegment buf, long blockBytes) throws IOException {
        Files.deleteIfExists(file);
        try (VirtualDisk d = VirtualDisks.create(file, opts)) {
            d.flush(); // creation's own syncs are not part of the guest's first writes
            long t0 = System.nanoTime();
            for (long off = 0; off < d.size(); off += blockBytes) {
                d.write(off, buf);
            }
            d.flush();
            return System.nanoTime() - t0;
        } finally {
            Files.deleteIfExists(file);
        }
    }

    /** One timed loop; returns {ops, nanos}. Offsets come from an inline xorshift: nothing allocated. */
    private static long[] loop(VirtualDisk d, MemorySegment buf, long size, boolean seq, boolean write,
                               long nanos, int seed) throws IOException {
        long len = buf.byteSize();
        long slots = size / len;
        long state = 0x9E3779B97F4A7C15L * (seed + 1);
        long ops = 0;
        long pos = (seed * 7919L % slots) * len;
        long start = System.nanoTime();
        long deadline = start + nanos;
        long now = start;
        while (now < deadline) {
            for (int i = 0; i < 64; i++) {
                long off;
                if (seq) {
                    off = pos;
                    pos += len;
                    if (pos >= size) {
                        pos = 0;
                    }
                } else {
                    state ^= state << 13;
                    state ^= state >>> 7;
                    state ^= state << 17;
                    off = Long.remainderUnsigned(state, slots) * len;
                }
                if (write) {
                    d.write(off, buf);
                } else {
                    d.read(off, buf);
                }
                ops++;
            }
            now = System.nanoTime();
        }
        return new long[] {ops, now - start};
    }

    /**
     * Converts of a 4 GiB sparse raw image with scattered 1 MiB extents: raw->vhdx (the target), raw->vhd, and
     * vhdx->raw (reading a VHDX through its BAT). Best of N after a warm-up, ours and qemu-img alternating.
     */
    private static List<BenchResult> convert(BenchContext ctx, boolean quick) throws Exception {
        Path dir = ctx.workDir();
        Path src = dir.resolve("sparse.raw");
        Path srcVhdx = dir.resolve("sparse.vhdx");
        long size = 4L << 30;
        long dataEvery = quick ? 64L << 20 : 32L << 20;
        List<BenchResult> out = new ArrayList<>();
        try {
            try (VirtualDisk r = VirtualDisks.create(src, CreateOptions.of(DiskFormat.RAW, DiskType.DYNAMIC, size));
                 Arena arena = Arena.ofConfined()) {
                MemorySegment chunk = arena.allocate(1 << 20, 4096);
                for (long off = 0; off < size; off += dataEvery) {
                    for (long i = 0; i < chunk.byteSize(); i += 8) {
                        chunk.set(java.lang.foreign.ValueLayout.JAVA_LONG, i, (off + i) * 0x9E3779B97F4A7C15L);
                    }
                    r.write(off, chunk);
                }
                r.flush();
            }
            DiskOps.convert(src, srcVhdx, DiskFormat.VHDX, DiskType.DYNAMIC, 0, Progress.NONE);
            long dataBytes = size / dataEvery * (1 << 20);
            int reps = quick ? 3 : 5;
            // Warm-up (JIT, class loading) on a small sparse image so the timed runs measure steady code.
            Path warm = dir.resolve("warm.raw");
            Path warmOut = dir.resolve("warm.out");
            try (VirtualDisk w = VirtualDisks.create(warm, CreateOptions.of(DiskFormat.RAW, DiskType.DYNAMIC, 256L << 20))) {
                MemorySegment m = MemorySegment.ofArray(new byte[1 << 20]).fill((byte) 1);
                for (long off = 0; off < (256L << 20); off += 16L << 20) {
                    w.write(off, m);
                }
            }
            for (DiskFormat f : new DiskFormat[] {DiskFormat.VHDX, DiskFormat.VHD, DiskFormat.VHDX, DiskFormat.VHD}) {
                DiskOps.convert(warm, warmOut, f, DiskType.DYNAMIC, 0, Progress.NONE);
                Files.delete(warmOut);
            }
            Files.delete(warm);
            boolean haveQemu = Files.isExecutable(Path.of("/usr/bin/qemu-img"));
            if (!haveQemu) {
                ctx.log("qemu-img not found (apt-get install qemu-utils): convert has no peer");
            }
            // qemu-img convert writes its output with cache=unsafe by default (no fdatasync of the data); ours
            // ends with a flush. The main comparison gives qemu the same durability (-t writeback, which
            // flushes at the end); the "qemu default" lines show the unsynced default too.
            Object[][] cases = {
                {"convert 4g-sparse raw->vhdx", src, "raw", DiskFormat.VHDX, "vhdx", "writeback"},
                {"convert 4g-sparse raw->vhd", src, "raw", DiskFormat.VHD, "vpc", "writeback"},
                {"convert 4g-sparse vhdx->raw", srcVhdx, "vhdx", DiskFormat.RAW, "raw", "writeback"},
                {"convert 4g-sparse raw->vhdx (qemu default, no sync)", src, "raw", DiskFormat.VHDX, "vhdx", "unsafe"},
            };
            for (Object[] c : cases) {
                Path from = (Path) c[1];
                double bestOurs = Double.MAX_VALUE;
                double bestQemu = Double.MAX_VALUE;
                for (int rep = 0; rep < reps; rep++) {
                    Path ours = dir.resolve("ours.out");
                    Path theirs = dir.resolve("qemu.out");
                    Files.deleteIfExists(ours);
                    Files.deleteIfExists(theirs);
                    long t0 = System.nanoTime();
                    DiskOps.convert(from, ours, (DiskFormat) c[3], DiskType.DYNAMIC, 0, Progress.NONE);
                    bestOurs = Math.min(bestOurs, (System.nanoTime() - t0) / 1e9);
                    if (haveQemu) {
                        t0 = System.nanoTime();
                        Process p = new ProcessBuilder("qemu-img", "convert", "-t", (String) c[5], "-f", (String) c[2], "-O", (String) c[4],
                            from.toString(), theirs.toString()).redirectErrorStream(true).start();
                        String text = new String(p.getInputStream().readAllBytes());
                        if (p.waitFor() != 0) {
                            throw new IOException("qemu-img convert failed: " + text);
                        }
                        bestQemu = Math.min(bestQemu, (System.nanoTime() - t0) / 1e9);
                    }
                    Files.deleteIfExists(ours);
                    Files.deleteIfExists(theirs);
                }
                Map<String, Double> series = new LinkedHashMap<>();
                series.put("dataMiB", dataBytes / (double) (1 << 20));
                series.put("virtualGiB", 4.0);
                out.add(BenchResult.vsPeerLowerIsBetter((String) c[0], bestOurs, "s", "qemu-img convert -t " + c[5],
                    haveQemu ? bestQemu : Double.NaN).withSeries(series));
            }
            return out;
        } finally {
            Files.deleteIfExists(src);
            Files.deleteIfExists(srcVhdx);
        }
    }

    /** Runs the suite without the phost launcher: {@code java -cp … io.phost.perf.vhdx.VhdxSuite [--quick]}. */
    public static void main(String[] args) throws Exception {
        boolean quick = List.of(args).contains("--quick");
        Path work = Files.createTempDirectory(Path.of(System.getProperty("java.io.tmpdir")), "vhdxbench");
        Path shm = Path.of("/dev/shm");
        Path tmpfs = Files.isDirectory(shm) ? Files.createTempDirectory(shm, "vhdxbench") : work;
        BenchContext ctx = BenchContext.of(quick, work, tmpfs, BenchContext.STDERR);
        try {
            for (BenchResult r : new VhdxSuite().run(ctx)) {
                System.out.println(String.format(Locale.ROOT, "%-40s %12.1f %-9s peer(%s) %12.1f  ratio %.3f",
                    r.name(), r.value(), r.unit(), r.peer(), r.peerValue(), r.ratio()));
            }
        } finally {
            Files.deleteIfExists(work);
            if (tmpfs != work) {
                Files.deleteIfExists(tmpfs);
            }
        }
    }
}
