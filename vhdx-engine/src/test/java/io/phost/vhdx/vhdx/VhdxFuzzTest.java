package io.phost.vhdx.vhdx;

import static org.junit.jupiter.api.Assertions.*;

import io.phost.vhdx.Crc32c;
import io.phost.vhdx.VhdxFormatException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Property test: mutate valid images (headers, region tables, metadata table and items, parent locator,
 * BAT, log entries; plus truncation) thousands of times. Mutations of checksummed structures usually
 * get their CRC fixed afterwards so that they reach the validation behind the checksum. Every mutant
 * must either open and read (and check) without error, or be refused with {@link VhdxFormatException} -
 * never another exception, a hang, or an out-of-memory error.
 */
class VhdxFuzzTest {
    @TempDir
    Path tempDir;
    Path dir;

    @org.junit.jupiter.api.BeforeEach
    void useTempDir() {
        dir = tempDir;
    }

    enum Crc { NONE, HEADER, REGION_TABLE, LOG_ENTRY }

    record Target(String name, long offset, int length, Crc crc) {}

    @Test
    void shouldOpenOrRefuseEveryMutatedImageWithVhdxFormatException() throws Exception {
        Path shm = Path.of("/dev/shm");
        if (Files.isDirectory(shm) && Files.isWritable(shm)) {
            dir = Files.createTempDirectory(shm, "vhdx-fuzz");
        }
        try {
            run();
        } finally {
            if (dir.startsWith(shm)) {
                try (var files = Files.list(dir)) {
                    for (Path f : files.toList()) {
                        Files.deleteIfExists(f);
                    }
                }
                Files.deleteIfExists(dir);
            }
        }
    }

    private void run() throws Exception {
        int iterations = Integer.getInteger("phost.fuzz.rounds", Boolean.getBoolean("phost.soak") ? 100_000 : 3000);
        List<Path> seeds = new ArrayList<>();
        seeds.add(dynamicSeed());
        seeds.add(differencingSeed());
        seeds.add(dirtyLogSeed());
        if (Files.isExecutable(Path.of("/usr/bin/qemu-io"))) {
            seeds.add(qemuSeed());
        }
        int[] outcomes = new int[2];
        assertTimeoutPreemptively(Duration.ofMinutes(Boolean.getBoolean("phost.soak") ? 240 : 3), () -> {
            Random r = new Random(7);
            for (int i = 0; i < iterations; i++) {
                Path seed = seeds.get(i % seeds.size());
                outcomes[fuzzOnce(seed, r, i)]++;
            }
        });
        System.out.println("fuzz: " + iterations + " mutants, " + outcomes[0] + " opened, " + outcomes[1] + " refused");
        assertTrue(outcomes[0] > iterations / 20, "some mutants must still open (mutations too destructive?)");
        assertTrue(outcomes[1] > iterations / 20, "some mutants must be refused (mutations not reaching validation?)");
    }

    private Path dynamicSeed() throws Exception {
        Path p = dir.resolve("dyn.vhdx");
        try (VhdxDisk d = VhdxDisk.create(p, VhdxCreateOptions.dynamic(8L << 20).withBlockSize(1 << 20))) {
            d.write(0, MemorySegment.ofArray(VhdxDiskTest.pattern(1, 1 << 20)));
            d.write(5L << 20, MemorySegment.ofArray(VhdxDiskTest.pattern(2, 4096)));
        }
        return p;
    }

    private Path differencingSeed() throws Exception {
        Path base = dir.resolve("base.vhdx");
        try (VhdxDisk d = VhdxDisk.create(base, VhdxCreateOptions.dynamic(8L << 20).withBlockSize(1 << 20))) {
            d.write(0, MemorySegment.ofArray(VhdxDiskTest.pattern(3, 2 << 20)));
        }
        Path child = dir.resolve("child.avhdx");
        try (VhdxDisk d = VhdxDisk.create(child, VhdxCreateOptions.differencing(base))) {
            d.write(4096, MemorySegment.ofArray(VhdxDiskTest.pattern(4, 8192)));
        }
        return child;
    }

    /** An image copied while open after a flush: header LogGuid set, a valid log entry present. */
    private Path dirtyLogSeed() throws Exception {
        Path p = dir.resolve("live.vhdx");
        Path copy = dir.resolve("dirty.vhdx");
        try (VhdxDisk d = VhdxDisk.create(p, VhdxCreateOptions.dynamic(8L << 20).withBlockSize(1 << 20))) {
            d.write(2L << 20, MemorySegment.ofArray(VhdxDiskTest.pattern(5, 1 << 20)));
            d.flush();
            d.write(6L << 20, MemorySegment.ofArray(VhdxDiskTest.pattern(6, 4096)));
            d.flush();
            Files.copy(p, copy);
        }
        try (VhdxDisk d = VhdxDisk.open(copy, true)) {
            assertEquals(VhdxDisk.LogState.REPLAYED_IN_MEMORY, d.logState());
        }
        return copy;
    }

    private Path qemuSeed() throws Exception {
        Path p = dir.resolve("qemu.vhdx");
        Qemu.ok("qemu-img", "create", "-q", "-f", "vhdx", "-o", "subformat=dynamic,block_size=1M", p.toString(), "8M");
        Qemu.ok("qemu-io", "-f", "vhdx", "-c", "write -P 0x11 0 1M", "-c", "write -P 0x22 3M 4k", p.toString());
        return p;
    }

    private static List<Target> targets(Path img) throws Exception {
        List<Target> t = new ArrayList<>();
        t.add(new Target("file identifier", 0, 64, Crc.NONE));
        t.add(new Target("header 1", VhdxHeaderDescriptor.HEADER_1_FILE_OFFSET, 4096, Crc.HEADER));
        t.add(new Target("header 2", VhdxHeaderDescriptor.HEADER_2_FILE_OFFSET, 4096, Crc.HEADER));
        t.add(new Target("region table 1", RegionTableDescriptor.TABLE_1_FILE_OFFSET, 65536, Crc.REGION_TABLE));
        t.add(new Target("region table 2", RegionTableDescriptor.TABLE_2_FILE_OFFSET, 65536, Crc.REGION_TABLE));
        try (VhdxDisk d = VhdxDisk.open(img, true)) {
            t.add(new Target("log", d.logOffset(), 16384, Crc.LOG_ENTRY));
            long meta = 0;
            for (VhdxParser.Region reg : d.regions()) {
                if (reg.guid().equals(RegionTableDescriptor.METADATA_REGION)) {
                    meta = reg.fileOffset();
                }
            }
            t.add(new Target("metadata table", meta, 256, Crc.NONE));
            t.add(new Target("metadata items", meta + 65536, 1024, Crc.NONE));
            t.add(new Target("BAT", d.batOffset(), 4096, Crc.NONE));
        }
        return t;
    }

    private final java.util.Map<Path, List<Target>> targetCache = new java.util.HashMap<>();
    private final java.util.Map<Path, byte[]> originals = new java.util.HashMap<>();
    /** One mutable copy per seed; only the target ranges change, and they are restored after each mutant. */
    private final java.util.Map<Path, byte[]> working = new java.util.HashMap<>();

    /** Returns 0 if the mutant opened, 1 if it was refused. */
    private int fuzzOnce(Path seed, Random r, int iteration) throws Exception {
        List<Target> targets = targetCache.get(seed);
        if (targets == null) {
            targets = targets(seed);
            targetCache.put(seed, targets);
            originals.put(seed, Files.readAllBytes(seed));
        }
        byte[] original = originals.get(seed);
        Path mutant = dir.resolve("mutant.vhdx");
        Path m = seed.resolveSibling("m-" + seed.getFileName());
        if (!Files.exists(m)) {
            Files.write(m, original);
        }
        byte[] img = working.computeIfAbsent(seed, k -> original.clone());
        int mutations = 1 + r.nextInt(3);
        String what = "";
        long truncateTo = -1;
        for (int k = 0; k < mutations; k++) {
            Target t = targets.get(r.nextInt(targets.size()));
            what += t.name() + " ";
            mutate(img, t, r);
            if (r.nextInt(10) < 7) {
                fixCrc(img, t);
            }
        }
        if (r.nextInt(20) == 0) {
            truncateTo = r.nextInt(img.length);
            what += "truncate " + truncateTo;
        }
        // Write only the structures that may have changed (the images are MiBs; the structures are not).
        boolean readWrite = r.nextInt(25) == 0;
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(m, java.nio.file.StandardOpenOption.WRITE)) {
            for (Target t : targets) {
                int len = (int) Math.min(t.length(), img.length - t.offset());
                if (len > 0) {
                    ch.write(java.nio.ByteBuffer.wrap(img, (int) t.offset(), len), t.offset());
                }
            }
            if (truncateTo >= 0) {
                ch.truncate(truncateTo);
            }
        }
        try {
            return openAndRead(m, r, readWrite);
        } catch (Throwable t) {
            Files.write(mutant, truncateTo >= 0 ? java.util.Arrays.copyOf(img, (int) truncateTo) : img);
            throw new AssertionError("iteration " + iteration + " (" + seed.getFileName() + ": " + what + ") threw "
                + t + "; mutant kept at " + mutant, t);
        } finally {
            for (Target t : targets) {
                int len = (int) Math.min(t.length(), original.length - t.offset());
                if (len > 0) {
                    System.arraycopy(original, (int) t.offset(), img, (int) t.offset(), len);
                }
            }
            if (readWrite || truncateTo >= 0) {
                Files.write(m, original);
            } else {
                try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(m, java.nio.file.StandardOpenOption.WRITE)) {
                    for (Target t : targets) {
                        int len = (int) Math.min(t.length(), original.length - t.offset());
                        if (len > 0) {
                            ch.write(java.nio.ByteBuffer.wrap(original, (int) t.offset(), len), t.offset());
                        }
                    }
                }
            }
        }
    }

    private static int openAndRead(Path m, Random r, boolean readWrite) throws Throwable {
        try {
            try (VhdxDisk d = VhdxDisk.open(m, !readWrite); Arena arena = Arena.ofConfined()) {
                MemorySegment buf = arena.allocate(64 << 10, 4096);
                for (int k = 0; k < 4; k++) {
                    long len = Math.min(buf.byteSize(), d.size()) & ~(long) (d.logicalSectorSize() - 1);
                    long max = (d.size() - len) / d.logicalSectorSize();
                    long off = (max <= 0 ? 0 : Math.floorMod(r.nextLong(), max + 1)) * d.logicalSectorSize();
                    d.read(off, buf, 0, len);
                    if (readWrite && k == 0) {
                        d.write(off, buf, 0, Math.min(len, 8192));
                    }
                }
                if (readWrite) {
                    d.flush();
                }
            }
            if (r.nextInt(10) == 0) {
                VhdxCheck.check(m);
            }
            return 0;
        } catch (VhdxFormatException e) {
            assertNotNull(e.reason());
            return 1;
        }
    }

    private static final long[] INTERESTING = {0, 1, -1, 0x7FFF_FFFFL, 0x8000_0000L, 0xFFFF_FFFFL, 1L << 20, 1L << 32,
        (64L << 40) + 512, 1L << 62, Long.MAX_VALUE, Long.MIN_VALUE, 4096, 512, 65536, 3L << 20, 2047, 2048};

    private static void mutate(byte[] img, Target t, Random r) {
        if (t.offset() + t.length() > img.length) {
            return;
        }
        int base = (int) t.offset();
        switch (r.nextInt(5)) {
            case 4 -> { // an allocated state with a FileOffsetMB past 2^43: scaled to bytes it overflows a long
                int at = base + 8 * r.nextInt(Math.min(t.length(), 256) / 8);
                long mb = (1L << 43) | (r.nextLong() & ((1L << 43) - 1));
                Le.put64(img, at, (mb << 20) | (r.nextBoolean() ? 6 : 7));
            }
            case 0 -> { // bit flip anywhere in the structure
                int at = base + r.nextInt(t.length());
                img[at] ^= (byte) (1 << r.nextInt(8));
            }
            case 1 -> { // an interesting value in an aligned field near the start (where the fields are)
                int at = base + 4 * r.nextInt(Math.min(t.length(), 256) / 4);
                long v = INTERESTING[r.nextInt(INTERESTING.length)];
                if (r.nextBoolean() && at + 8 <= img.length) {
                    Le.put64(img, at, v);
                } else {
                    Le.put32(img, at, (int) v);
                }
            }
            case 2 -> { // random bytes
                int at = base + r.nextInt(t.length());
                int n = Math.min(1 + r.nextInt(16), img.length - at);
                for (int i = 0; i < n; i++) {
                    img[at + i] = (byte) r.nextInt();
                }
            }
            default -> { // a plausible-looking BAT/offset value: a state and a 1 MiB-unit offset
                int at = base + 8 * r.nextInt(Math.min(t.length(), 256) / 8);
                long v = ((long) r.nextInt(64) << 20) | r.nextInt(8);
                Le.put64(img, at, v);
            }
        }
    }

    private static void fixCrc(byte[] img, Target t) {
        int base = (int) t.offset();
        switch (t.crc()) {
            case HEADER -> Le.put32(img, base + 4, Crc32c.compute(img, base, 4096, 4));
            case REGION_TABLE -> Le.put32(img, base + 4, Crc32c.compute(img, base, 65536, 4));
            case LOG_ENTRY -> {
                for (int p = base; p < base + t.length(); p += 4096) {
                    if (Le.i32(img, p) == LogDescriptor.ENTRY_SIGNATURE) {
                        long len = Le.u32(img, p + 8);
                        if (len > 0 && len % 4096 == 0 && p + len <= img.length && len <= (1 << 20)) {
                            Le.put32(img, p + 4, Crc32c.compute(img, p, (int) len, 4));
                        }
                    }
                }
            }
            case NONE -> { }
        }
    }

}
