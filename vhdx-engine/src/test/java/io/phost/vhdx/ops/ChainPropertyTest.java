package io.phost.vhdx.ops;

import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.Tools;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.Stream;

import static io.phost.vhdx.Tools.runOk;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Issue 21's property test: random differencing chains (depth 1-10; VHD or VHDX; block sizes mixed within a
 * chain; VHDX logical sectors 512 or 4096; random writes, zero writes and unmaps at every layer through
 * phost, and into the base through {@code qemu-io} where qemu can write: a VHD or VHDX without parent,
 * {@code qemu-io -f vpc|vhdx -c "write -P 0xNN OFF LEN" base}) checked against a reference byte array built
 * independently of the engine. Every flattening path must yield the reference exactly: convert (to raw, VHD,
 * VHDX), merge --into, compare against the reference, map (no reference byte outside a data extent), and
 * finally merge into the parent or into a random ancestor (commit). Every refusal (an existing target without --force, a chain file as target
 * with --force, a shrink without --shrink, a file as its own parent, a rebase onto a descendant or onto an
 * image of another size, convert -n into the chain, convert -B onto an image of another size) must leave
 * every input byte-identical: size, times and a SHA-256 of every layer, in every chain.
 *
 * <p>A failure prints the chain's seed; rerun one with {@code -Dphost.chainSeed=N}. The default suite runs
 * {@value #DEFAULT_CHAINS} chains; {@code -Dphost.soak=true} runs {@value #SOAK_CHAINS}.
 */
class ChainPropertyTest {
    static final int DEFAULT_CHAINS = 200;
    static final int SOAK_CHAINS = 3000;

    @TempDir
    Path dir;

    @Test
    void shouldFlattenRandomChainsExactlyAndRefuseWithoutTouchingInputs() throws Exception {
        Tools.assumeTool("qemu-io");
        String one = System.getProperty("phost.chainSeed");
        int chains = one != null ? 1 : Boolean.getBoolean("phost.soak") ? SOAK_CHAINS : DEFAULT_CHAINS;
        long base = one != null ? Long.parseLong(one) : System.nanoTime();
        // tmpfs when there is one: the engine's fsyncs would otherwise dominate (the logic under test is the same)
        Path shm = Path.of("/dev/shm");
        Path root = Files.isDirectory(shm) && Files.isWritable(shm) ? Files.createTempDirectory(shm, "phost-chains-") : dir;
        // a soak keeps going past a failure (and says how far it got), so one run lists every failing seed
        boolean soak = chains == SOAK_CHAINS;
        List<String> failures = new ArrayList<>();
        long start = System.nanoTime();
        try {
            for (int i = 0; i < chains && failures.size() < 10; i++) {
                long seed = one != null ? base : base + i * 0x9E3779B97F4A7C15L;
                Path d = Files.createDirectory(root.resolve("c" + i));
                try {
                    new Chain(d, new SplittableRandom(seed), i % 8 == 0).run();
                } catch (Throwable t) {
                    AssertionError e = new AssertionError("chain seed " + seed + " (rerun with -Dphost.chainSeed=" + seed + "): " + t, t);
                    if (!soak) {
                        throw e;
                    }
                    e.printStackTrace();
                    failures.add(e.getMessage());
                }
                clear(d);
                if (soak && (i + 1) % 100 == 0) {
                    System.err.printf("ChainPropertyTest: %d chains (base seed %d), %d failed, %d s%n",
                        i + 1, base, failures.size(), (System.nanoTime() - start) / 1_000_000_000L);
                }
            }
            assertTrue(failures.isEmpty(), "failing chains: " + failures);
        } finally {
            if (!root.equals(dir)) {
                try (Stream<Path> s = Files.list(root)) {
                    for (Path d : s.toList()) {
                        clear(d);
                    }
                }
                Files.delete(root);
            }
        }
    }

    private static void clear(Path d) throws IOException {
        try (Stream<Path> s = Files.list(d)) {
            for (Path p : s.toList()) {
                Files.delete(p);
            }
        }
        Files.delete(d);
    }

    /** One random chain and every check on it. */
    private static final class Chain {
        private final Path dir;
        private final SplittableRandom rnd;
        private final boolean useQemu;
        private final DiskFormat format;
        private final int logical;
        private final long size;
        private final byte[] reference;
        private final List<Path> layers = new ArrayList<>();

        Chain(Path dir, SplittableRandom rnd, boolean useQemu) {
            this.dir = dir;
            this.rnd = rnd;
            this.useQemu = useQemu;
            this.format = rnd.nextBoolean() ? DiskFormat.VHD : DiskFormat.VHDX;
            this.logical = format == DiskFormat.VHDX && rnd.nextInt(3) == 0 ? 4096 : 512;
            this.size = (long) (2 + rnd.nextInt(7)) << 20 | (rnd.nextBoolean() ? 0 : (long) rnd.nextInt(1, 256) * 4096);
            this.reference = new byte[(int) size];
        }

        private long blockSize() {
            return format == DiskFormat.VHDX ? 1L << (20 + rnd.nextInt(3)) : 1L << (16 + rnd.nextInt(6));
        }

        void run() throws Exception {
            int depth = 1 + rnd.nextInt(10);
            String ext = format == DiskFormat.VHD ? ".vhd" : ".vhdx";
            Path basePath = dir.resolve("l0" + ext);
            int physical = format == DiskFormat.VHDX ? (logical == 4096 || rnd.nextBoolean() ? 4096 : 512) : 512;
            DiskType baseType = rnd.nextInt(5) == 0 ? DiskType.FIXED : DiskType.DYNAMIC;
            try (VirtualDisk d = VirtualDisks.create(basePath,
                new CreateOptions(format, baseType, size, null, blockSize(), logical, physical))) {
                writes(d);
            }
            if (useQemu && logical == 512) { // qemu's vhdx driver refuses 4096-byte logical sectors
                qemuWrites(basePath);
            }
            layers.add(basePath);
            for (int k = 1; k < depth; k++) {
                Path p = dir.resolve("l" + k + ext);
                long bs = blockSize();
                try (VirtualDisk d = VirtualDisks.create(p, new CreateOptions(format, DiskType.DIFFERENCING, 0,
                    layers.getLast(), bs, logical, physical))) {
                    writes(d);
                }
                layers.add(p);
            }
            Path top = layers.getLast();
            try (VirtualDisk d = VirtualDisks.open(top, true)) {
                assertArrayEquals(reference, Tools.readAll(d), "the chain reads as the reference");
            }
            refusals(top);
            flatten(top);
        }

        /** A few random writes, zero writes and unmaps, mirrored into the reference. */
        private void writes(VirtualDisk d) throws IOException {
            int n = rnd.nextInt(6);
            long sectors = size / logical;
            for (int i = 0; i < n; i++) {
                long first = rnd.nextLong(sectors);
                int count = (int) Math.min(sectors - first, 1 + rnd.nextInt(rnd.nextBoolean() ? 8 : 600));
                long off = first * logical;
                int len = count * logical;
                switch (rnd.nextInt(6)) {
                    case 0 -> {
                        d.writeZeroes(off, len);
                        java.util.Arrays.fill(reference, (int) off, (int) off + len, (byte) 0);
                    }
                    case 1 -> {
                        d.unmap(off, len);
                        java.util.Arrays.fill(reference, (int) off, (int) off + len, (byte) 0);
                    }
                    default -> {
                        byte[] b = new byte[len];
                        Tools.pattern(MemorySegment.ofArray(b), off, rnd.nextInt());
                        d.write(off, MemorySegment.ofArray(b));
                        System.arraycopy(b, 0, reference, (int) off, len);
                    }
                }
            }
        }

        /** Writes into the base by qemu-io (qemu cannot open differencing images of either format). */
        private void qemuWrites(Path base) throws Exception {
            List<String> args = new ArrayList<>(List.of("qemu-io", "-f", format == DiskFormat.VHD ? "vpc" : "vhdx"));
            int n = 1 + rnd.nextInt(3);
            for (int i = 0; i < n; i++) {
                long sectors = size / logical;
                long first = rnd.nextLong(sectors);
                int count = (int) Math.min(sectors - first, 1 + rnd.nextInt(300));
                long off = first * logical;
                int len = count * logical;
                int pat = 1 + rnd.nextInt(255);
                args.add("-c");
                args.add("write -P " + pat + " " + off + " " + len);
                java.util.Arrays.fill(reference, (int) off, (int) off + len, (byte) pat);
            }
            args.add(base.toString());
            runOk(args.toArray(String[]::new));
        }

        private void refusals(Path top) throws Exception {
            List<String> before = hashes();
            Path existing = dir.resolve("existing.vhdx");
            Files.write(existing, new byte[] {1, 2, 3});
            assertThrows(java.nio.file.FileAlreadyExistsException.class,
                () -> DiskOps.convert(top, existing, DiskFormat.VHDX, DiskType.DYNAMIC, 0, Progress.NONE));
            assertArrayEquals(new byte[] {1, 2, 3}, Files.readAllBytes(existing), "an existing target is untouched");
            Files.delete(existing);
            Path victim = layers.get(rnd.nextInt(layers.size()));
            assertThrows(IllegalArgumentException.class,
                () -> DiskOps.mergeInto(top, victim, DiskFormat.RAW, DiskType.DYNAMIC, true, Progress.NONE));
            assertThrows(IllegalArgumentException.class,
                () -> DiskOps.resize(layers.getFirst(), size - logical, false, Progress.NONE));
            if (layers.size() > 1) {
                assertThrows(IOException.class, () -> DiskOps.setParent(top, top, false));
                // rebase onto a descendant-or-self, or onto an image of another size; convert -n into the chain
                assertThrows(IllegalArgumentException.class,
                    () -> ImageRebase.rebase(layers.get(layers.size() - 2), top, rnd.nextBoolean(), Progress.NONE));
                assertThrows(IllegalArgumentException.class,
                    () -> ImageConvert.into(top, null, victim, null, rnd.nextBoolean(), 4096, Progress.NONE));
            }
            Path other = dir.resolve("other." + format.id());
            DiskOps.create(other, new CreateOptions(format, DiskType.DYNAMIC, size + (1 << 20), null, 0, logical,
                Math.max(logical, format == DiskFormat.VHDX ? 4096 : 512)), false);
            if (layers.size() > 1) {
                assertThrows(IllegalArgumentException.class, () -> ImageRebase.rebase(top, other, false, Progress.NONE));
            }
            assertThrows(IllegalArgumentException.class, () -> ImageConvert.toNew(top, null, dir.resolve("b." + format.id()),
                format, DiskType.DYNAMIC, 0, other, 4096, false, Progress.NONE));
            Files.delete(other);
            assertEquals(before, hashes(), "every refusal leaves every input byte-identical");
            try (Stream<Path> s = Files.list(dir)) {
                assertEquals(layers.size(), s.count(), "no temporary file is left behind");
            }
        }

        private void flatten(Path top) throws Exception {
            Path raw = dir.resolve("flat.raw");
            DiskOps.convert(top, raw, DiskFormat.RAW, DiskType.DYNAMIC, 0, Progress.NONE);
            assertArrayEquals(reference, Files.readAllBytes(raw), "convert to raw");
            DiskFormat other = rnd.nextBoolean() ? DiskFormat.VHDX : DiskFormat.VHD;
            if (other == DiskFormat.VHD && logical != 512) {
                other = DiskFormat.VHDX;
            }
            Path conv = dir.resolve("conv." + other.id());
            DiskOps.convert(top, conv, other, rnd.nextBoolean() ? DiskType.FIXED : DiskType.DYNAMIC, 0, Progress.NONE);
            assertArrayEquals(reference, readAll(conv), "convert to " + other.id());
            Path merged = dir.resolve("merged.vhdx");
            DiskOps.mergeInto(top, merged, DiskFormat.VHDX, DiskType.DYNAMIC, Progress.NONE);
            assertArrayEquals(reference, readAll(merged), "merge --into");
            try (VirtualDisk a = VirtualDisks.open(top, true); VirtualDisk b = VirtualDisks.open(raw, true)) {
                assertTrue(ImageCompare.compare(a, b, true, Progress.NONE).identical(), "compare with the reference");
                for (ImageMap.Extent e : ImageMap.of(a)) {
                    if (!e.data()) {
                        for (long o = e.start(); o < e.start() + e.length(); o++) {
                            if (reference[(int) o] != 0) {
                                fail("map calls [" + e.start() + ", +" + e.length() + ") zero but byte " + o + " is data");
                            }
                        }
                    }
                }
            }
            if (layers.size() > 2 && rnd.nextBoolean()) {
                Path ancestor = layers.get(rnd.nextInt(layers.size() - 1));
                DiskOps.mergeIntoAncestor(top, ancestor, Progress.NONE);
                assertFalse(Files.exists(top));
                assertArrayEquals(reference, readAll(ancestor), "merge --to an ancestor (commit)");
            } else if (layers.size() > 1) {
                Path parent = layers.get(layers.size() - 2);
                DiskOps.mergeIntoParent(top, false, Progress.NONE);
                assertFalse(Files.exists(top));
                assertArrayEquals(reference, readAll(parent), "merge into the parent");
            }
        }

        private static byte[] readAll(Path p) throws IOException {
            try (VirtualDisk d = VirtualDisks.open(p, true)) {
                return Tools.readAll(d);
            }
        }

        /**
         * A fingerprint of every layer: size, mtime, ctime and a SHA-256 of the whole file, in every chain
         * (a write that restored size and times would still change the digest).
         */
        private List<String> hashes() throws Exception {
            List<String> out = new ArrayList<>();
            for (Path p : layers) {
                Map<String, Object> a = Files.readAttributes(p, "unix:size,lastModifiedTime,ctime");
                String content = "/" + java.util.HexFormat.of().formatHex(
                    java.security.MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(p)));
                out.add(p.getFileName() + "=" + a.get("size") + "/" + a.get("lastModifiedTime") + "/" + a.get("ctime") + content);
            }
            return out;
        }
    }
}
