package io.phost.vhdx.vhd;

import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Property test: a VHD with mutated footer, footer copy, dynamic header, BAT, parent locators or bitmaps either
 * opens and serves reads and writes, or fails with {@link VhdFormatException} / {@link IOException}: never
 * another exception, never a hang. Mutations re-seal the checksums half of the time so they reach the deeper
 * checks. Allocation is bounded by construction (the BAT array is limited by the file's own size).
 */
class VhdFuzzTest {
    static final int ROUNDS = Integer.getInteger("phost.fuzz.rounds", Boolean.getBoolean("phost.soak") ? 100_000 : 3_000);

    @TempDir
    Path diskDir;

    @Test
    void shouldOnlyEverThrowVhdFormatOrIoExceptionsOnMutatedImages() throws Exception {
        // tmpfs when there is one: thousands of write+fdatasync rounds on a shared disk are slow for nothing.
        Path shm = Path.of("/dev/shm");
        Path dir = Files.isDirectory(shm) && Files.isWritable(shm) ? Files.createTempDirectory(shm, "vhdfuzz") : diskDir;
        try {
            run(dir);
        } finally {
            if (dir != diskDir) {
                try (var s = Files.list(dir)) {
                    for (Path p : s.toList()) {
                        Files.deleteIfExists(p);
                    }
                }
                Files.deleteIfExists(dir);
            }
        }
    }

    private void run(Path dir) throws Exception {
        Path parent = dir.resolve("parent.vhd");
        Path dynamic = dir.resolve("dyn.vhd");
        Path child = dir.resolve("child.vhd");
        long size = 256 << 10;
        CreateOptions dyn = CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, size).withBlockSize(4096);
        try (VirtualDisk p = VirtualDisks.create(parent, dyn)) {
            p.write(0, MemorySegment.ofArray(new byte[8192]));
        }
        try (VirtualDisk d = VirtualDisks.create(dynamic, dyn)) {
            byte[] b = new byte[4096];
            java.util.Arrays.fill(b, (byte) 1);
            for (long off = 0; off < size; off += 5 * 4096) {
                d.write(off, MemorySegment.ofArray(b));
            }
        }
        try (VirtualDisk c = VirtualDisks.create(child, CreateOptions.differencing(DiskFormat.VHD, parent))) {
            c.write(4096 + 512, MemorySegment.ofArray(new byte[1024]));
            c.write(64 << 10, MemorySegment.ofArray(new byte[4096]));
        }
        Path fixed = dir.resolve("fixed.vhd");
        VirtualDisks.create(fixed, CreateOptions.of(DiskFormat.VHD, DiskType.FIXED, 64 << 10)).close();

        byte[][] bases = {Files.readAllBytes(dynamic), Files.readAllBytes(child), Files.readAllBytes(fixed)};
        Path target = dir.resolve("fuzz.vhd"); // same directory: the child's locators still find the parent
        Random rnd = new Random(0x5eed);
        int opened = 0;
        int refused = 0;
        int rounds = 0;
        long t0 = System.nanoTime();
        long deadline = System.nanoTime() + Duration.ofSeconds(Boolean.getBoolean("phost.soak") ? 4 * 3600 : 30).toNanos();
        for (int round = 0; round < ROUNDS && System.nanoTime() < deadline; round++) {
            rounds++;
            byte[] img = bases[round % bases.length].clone();
            mutate(img, rnd);
            Files.write(target, img);
            try (VirtualDisk d = VirtualDisks.open(target, (round & 1) == 0)) {
                exercise(d, rnd);
                opened++;
            } catch (VhdFormatException e) {
                assertNotNull(e.reason());
                refused++;
            } catch (IOException e) {
                refused++; // e.g. a locator naming a directory or a short read: still a typed, checked failure
            } catch (Throwable t) {
                Files.write(dir.resolve("crash.vhd"), img);
                throw new AssertionError("round " + round + " threw " + t, t);
            }
        }
        System.out.println("VhdFuzzTest: rounds=" + rounds + " opened=" + opened + " refused=" + refused + " in "
            + (System.nanoTime() - t0) / 1_000_000 + " ms");
        assertTrue(rounds >= 1000, "too few rounds in the time budget: " + rounds);
        assertTrue(opened > 100 && refused > 100, "opened=" + opened + " refused=" + refused);
    }

    private static void exercise(VirtualDisk d, Random rnd) throws IOException {
        long size = d.size();
        byte[] buf = new byte[8192];
        long sectors = size / 512;
        for (int i = 0; i < 8 && sectors > 16; i++) {
            long off = (Math.floorMod(rnd.nextLong(), sectors - 16)) * 512;
            d.read(off, MemorySegment.ofArray(buf));
            if (!d.readOnly() && i < 2) {
                d.write(off, MemorySegment.ofArray(buf));
            }
        }
        if (size >= buf.length) {
            d.read(size - buf.length, MemorySegment.ofArray(buf));
        }
    }

    static final long[] INTERESTING = {0, 1, -1, 0x7fffffffL, 0x80000000L, 0xffffffffL, 512, 1536, 4096,
        1L << 32, Long.MAX_VALUE, Long.MIN_VALUE, 2040L << 30, (2040L << 30) + 512, 0x100000000L * 512};

    private static void mutate(byte[] img, Random rnd) {
        int footer = img.length - 512;
        boolean dynamicImage = img[0] == 'c';
        int metaEnd = dynamicImage ? Math.min(img.length, 512 + 1024 + 512 + 2048) : 0;
        int n = 1 + rnd.nextInt(4);
        for (int i = 0; i < n; i++) {
            int region = rnd.nextInt(dynamicImage ? 4 : 1);
            int at = switch (region) {
                case 0 -> footer + rnd.nextInt(100);
                case 1 -> 512 + rnd.nextInt(1024);                      // dynamic header + locator entries
                case 2 -> 1536 + rnd.nextInt(Math.max(1, metaEnd - 1536)); // BAT, locator data
                default -> rnd.nextInt(img.length);                     // anywhere (bitmaps, copy)
            };
            switch (rnd.nextInt(3)) {
                case 0 -> img[at] ^= (byte) (1 << rnd.nextInt(8));
                case 1 -> img[at] = (byte) rnd.nextInt(256);
                default -> {
                    long v = INTERESTING[rnd.nextInt(INTERESTING.length)];
                    int width = rnd.nextBoolean() ? 4 : 8;
                    at &= ~(width - 1);
                    if (at + width <= img.length) {
                        ByteBuffer bb = ByteBuffer.wrap(img, at, width);
                        if (width == 4) {
                            bb.putInt((int) v);
                        } else {
                            bb.putLong(v);
                        }
                    }
                }
            }
        }
        if (rnd.nextBoolean()) {
            reseal(img, footer, 512, 64);
            if (dynamicImage) {
                reseal(img, 0, 512, 64);
                reseal(img, 512, 1024, 36);
            }
        }
    }

    private static void reseal(byte[] img, int base, int length, int checksumOffset) {
        int sum = 0;
        for (int i = 0; i < length; i++) {
            if (i < checksumOffset || i >= checksumOffset + 4) {
                sum += img[base + i] & 0xff;
            }
        }
        ByteBuffer.wrap(img, base + checksumOffset, 4).putInt(~sum);
    }
}
