package io.phost.storage.engine;

import io.phost.core.tools.AllocationWindows;
import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.MappedDisk;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.vhd.VhdDisk;
import io.phost.vhdx.vhdx.VhdxCreateOptions;
import io.phost.vhdx.vhdx.VhdxDisk;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * {@link MappedDiskEngine}: mapped requests on io_uring, the rest on the workers, retries when the ring
 * fails, and mapped I/O racing slow-path allocations of the same blocks on another thread.
 */
@Timeout(60)
class MappedDiskEngineTest {
    private static final int MIB = 1 << 20;

    @TempDir
    Path dir;

    @BeforeEach
    void needsIoUring() {
        assumeTrue(IoEngines.ioUringAvailable(), "io_uring unavailable on this kernel");
    }

    /** Fills {@code seg} with a pattern that names its disk offset and a version. */
    static void pattern(MemorySegment seg, long diskOffset, long version) {
        for (long i = 0; i < seg.byteSize(); i += 8) {
            seg.set(ValueLayout.JAVA_LONG, i, (diskOffset + i) * 31 + version);
        }
    }

    static boolean matches(MemorySegment seg, long diskOffset, long version) {
        for (long i = 0; i < seg.byteSize(); i += 8) {
            if (seg.get(ValueLayout.JAVA_LONG, i) != (diskOffset + i) * 31 + version) {
                return false;
            }
        }
        return true;
    }

    /** Runs one queued request to completion and returns its result. */
    static long run(IoEngine e, boolean queued) {
        assertTrue(queued, "engine refused a request with slots free");
        e.submit();
        long[] res = {Long.MIN_VALUE};
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (res[0] == Long.MIN_VALUE && System.nanoTime() < deadline) {
            e.await((u, r) -> res[0] = r, 1_000_000L);
        }
        return res[0];
    }

    @Test
    void shouldServeSteadyStateVhdxAndVhdIoOnTheRingAndTheRestOnTheWorkers() throws Exception {
        try (VhdxDisk vhdx = VhdxDisk.create(dir.resolve("a.vhdx"), VhdxCreateOptions.dynamic(8L * MIB).withBlockSize(MIB));
             VhdDisk vhd = VhdDisk.create(dir.resolve("a.vhd"), CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 8L * MIB))) {
            for (MappedDisk raw : new MappedDisk[] {vhdx, vhd}) {
                CountingMappedDisk disk = new CountingMappedDisk(raw);
                try (IoEngine threads = IoEngines.open(disk, IoEngines.Kind.THREADS, 8)) {
                    assertEquals("threads", threads.name(), "THREADS still means threads");
                }
                try (Arena a = Arena.ofConfined(); IoEngine any = IoEngines.open(disk, IoEngines.Kind.AUTO, 8)) {
                    assertEquals("io_uring-mapped", any.name());
                    MappedDiskEngine e = (MappedDiskEngine) any;
                    MemorySegment buf = a.allocate(64 << 10, 4096);
                    // Two scattered entries: the second write of the same range is mapped.
                    IoVecs v = new IoVecs(4);
                    v.add(buf.asSlice(0, 16 << 10));
                    v.add(a.allocate(4096, 4096)); // a gap so entries do not merge
                    v.add(buf.asSlice(32 << 10, 16 << 10));
                    pattern(buf, 0, 0);
                    assertEquals(v.totalLength(), run(e, e.tryWrite(MIB, v, 1)), raw.format());
                    assertEquals(0, disk.mappedWrites(), "the first write allocates (and starts the session)");
                    for (int s = 0; s < 2; s++) {
                        pattern(buf, 0, 7);
                        assertEquals(v.totalLength(), run(e, e.tryWrite(MIB, v, 2)));
                    }
                    assertEquals(2, disk.mappedWrites(), raw.format());
                    buf.fill((byte) 0);
                    assertEquals(v.totalLength(), run(e, e.tryRead(MIB, v, 3)));
                    assertEquals(1, disk.mappedReads());
                    MemorySegment expected = a.allocate(64 << 10, 4096);
                    pattern(expected, 0, 7);
                    assertEquals(-1, buf.asSlice(0, 16 << 10).mismatch(expected.asSlice(0, 16 << 10)));
                    assertEquals(-1, buf.asSlice(32 << 10, 16 << 10).mismatch(expected.asSlice(32 << 10, 16 << 10)));
                    // Not mapped: an unallocated block (zeros), a range across a block boundary; then flush, unmap.
                    MemorySegment z = a.allocate(8192, 4096);
                    z.fill((byte) 9);
                    assertEquals(8192, run(e, e.tryRead(6L * MIB, IoVecs.of(z), 4)));
                    assertEquals(-1, z.mismatch(a.allocate(8192)), "unallocated reads zeros");
                    assertEquals(0, run(e, e.tryFlush(5)));
                    boolean isVhd = raw.format().equals("vhd"); // 2 MiB blocks: releasing block 0 covers the range
                    assertEquals(0, run(e, e.tryUnmap(isVhd ? 0 : MIB, isVhd ? 2L * MIB : MIB, 6)));
                    assertEquals(8192, run(e, e.tryRead(MIB, IoVecs.of(z), 7)));
                    assertEquals(-1, z.mismatch(a.allocate(8192)), "unmapped reads zeros");
                    assertEquals(1, disk.mappedReads(), "nothing after the unmap was mapped");
                    assertTrue(e.fastIos() >= 3 && e.slowIos() >= 3, "fast " + e.fastIos() + " slow " + e.slowIos());
                    assertEquals(0, e.retried());
                    assertEquals(0, e.inFlight());
                }
            }
        }
    }

    @Test
    @Timeout(150)
    void shouldNotAllocatePerMappedIo() throws Exception {
        try (VhdxDisk vhdx = VhdxDisk.create(dir.resolve("z.vhdx"), VhdxCreateOptions.dynamic(4L * MIB).withBlockSize(MIB));
             Arena a = Arena.ofConfined()) {
            MemorySegment all = a.allocate(4L * MIB, 4096);
            vhdx.write(0, all);
            try (MappedDiskEngine e = MappedDiskEngine.open(vhdx, 8)) {
                IoVecs[] v = new IoVecs[8];
                for (int i = 0; i < 8; i++) {
                    v[i] = IoVecs.of(a.allocate(4096, 4096));
                }
                long[] done = {0};
                IoCompletionHandler h = (u, r) -> done[0]++;
                var mx = (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
                // Once compiled, the path allocates nothing; on a loaded machine the JIT may need longer: judged by
                // the best window it stayed out of, tolerating the JDK's own errno-capture slice (AllocationWindows).
                int warm = 4000;
                int measured = 4000;
                long[] next = {warm};
                mappedIos(e, v, h, 0, warm);
                AllocationWindows.Result r = AllocationWindows.measure(measured, () -> {
                    mappedIos(e, v, h, next[0], measured);
                    next[0] += measured;
                }, mx::getCurrentThreadAllocatedBytes);
                System.out.println("mapped engine bytes per " + measured + "-I/O window:" + r.windows());
                assertEquals(next[0], done[0]);
                assertEquals(next[0], e.fastIos(), "every request was mapped");
                assertTrue(r.withinJdkSlice(), r.describe("mapped I/Os"));
            }
        }
    }

    /** I/Os {@code from} to {@code from + n} of the allocation test: 4 KiB, reads and writes alternating, QD1. */
    private static void mappedIos(MappedDiskEngine e, IoVecs[] v, IoCompletionHandler h, long from, int n) {
        for (long i = from; i < from + n; i++) {
            long off = ((i * 37L) & 1023) * 4096;
            int slot = (int) (i & 7);
            boolean ok = (i & 1) == 0 ? e.tryRead(off, v[slot], slot) : e.tryWrite(off, v[slot], slot);
            assertTrue(ok);
            e.submit();
            while (e.inFlight() > 0) {
                e.await(h, 1_000_000L);
            }
        }
    }

    @Test
    void shouldRedoOnTheSlowPathWhatTheRingRefusedOrReadShort() throws Exception {
        try (VhdxDisk vhdx = VhdxDisk.create(dir.resolve("r.vhdx"), VhdxCreateOptions.dynamic(8L * MIB).withBlockSize(MIB));
             Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(MIB, 4096);
            pattern(buf, 0, 3);
            vhdx.write(0, buf);
            vhdx.flush();
            assumeTrue(vhdx.mappedFd() >= 0 && vhdx.mappedAlignment() == 512, "needs an O_DIRECT image fd");
            MemorySegment got = a.allocate(4096, 4096);
            // A short read: the ring is pointed past the end of the file.
            CountingMappedDisk pastEnd = new CountingMappedDisk(vhdx).twistReads((off, at) -> 1L << 40);
            try (MappedDiskEngine e = MappedDiskEngine.open(pastEnd, 4)) {
                assertEquals(4096, run(e, e.tryRead(8192, IoVecs.of(got), 1)));
                assertTrue(matches(got, 8192, 3));
                assertEquals(1, e.retried());
            }
            // EINVAL: O_DIRECT at an unaligned file offset; the engine then stops using the ring.
            CountingMappedDisk unaligned = new CountingMappedDisk(vhdx).twistReads((off, at) -> at + 1).claimAlignment(1);
            try (MappedDiskEngine e = MappedDiskEngine.open(unaligned, 4)) {
                got.fill((byte) 0);
                assertEquals(4096, run(e, e.tryRead(4096, IoVecs.of(got), 1)));
                assertTrue(matches(got, 4096, 3));
                assertEquals(1, e.retried());
                long fast = e.fastIos();
                assertEquals(4096, run(e, e.tryRead(12288, IoVecs.of(got), 2)));
                assertTrue(matches(got, 12288, 3));
                assertEquals(fast, e.fastIos(), "fast path off after EINVAL at the smallest alignment");
            }
            // Buffers the O_DIRECT fd cannot take go to the workers without trying the ring.
            try (MappedDiskEngine e = MappedDiskEngine.open(vhdx, 4)) {
                MemorySegment odd = a.allocate(8192, 4096).asSlice(256, 4096);
                assertEquals(4096, run(e, e.tryRead(0, IoVecs.of(odd), 1)));
                assertTrue(matches(odd, 0, 3));
                assertEquals(0, e.fastIos());
                assertEquals(0, e.retried());
            }
        }
    }

    /**
     * Slow-path allocations on another thread (buffered writes through the disk, BAT published with
     * release) race mapped O_DIRECT reads and writes on other sectors of the same blocks. Even 4 KiB sectors
     * belong to the engine, sectors 1 mod 4 to the allocator thread, sectors 3 mod 4 to nobody (the parent's
     * bytes, or zeros); every sector must hold its owner's last write, and the engine must read back every
     * allocator sector already published.
     */
    @Test
    void shouldKeepMappedIoAndConcurrentAllocationsOfTheSameBlocksCoherent() throws Exception {
        Path parent = dir.resolve("parent.vhdx");
        try (VhdxDisk p = VhdxDisk.create(parent, VhdxCreateOptions.dynamic(16L * MIB).withBlockSize(MIB));
             Arena a = Arena.ofConfined()) {
            MemorySegment fill = a.allocate(16L * MIB, 4096);
            pattern(fill, 0, 99);
            p.write(0, fill);
        }
        VhdxDisk dynamic = VhdxDisk.create(dir.resolve("race.vhdx"), VhdxCreateOptions.dynamic(16L * MIB).withBlockSize(MIB));
        race(dynamic, -1);
        VhdxDisk diff = VhdxDisk.create(dir.resolve("race-diff.vhdx"), VhdxCreateOptions.differencing(parent));
        race(diff, 99);
        VhdDisk vhd = VhdDisk.create(dir.resolve("race.vhd"), CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, 16L * MIB));
        race(vhd, -1);
    }

    private void race(MappedDisk disk, long parentVersion) throws Exception {
        final int sector = 4096;
        final int blocks = 16;
        final int perBlock = MIB / sector;
        final int depth = 16;
        AtomicLongArray published = new AtomicLongArray(blocks * perBlock / 64);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        CountingMappedDisk counting = new CountingMappedDisk(disk);
        Thread allocator = new Thread(() -> {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment s = a.allocate(sector, 4096);
                SplittableRandom r = new SplittableRandom(5);
                int[] order = new int[blocks * perBlock / 4];
                for (int i = 0; i < order.length; i++) {
                    order[i] = i * 4 + 1;
                }
                for (int i = order.length - 1; i > 0; i--) {
                    int j = r.nextInt(i + 1);
                    int t = order[i];
                    order[i] = order[j];
                    order[j] = t;
                }
                for (int idx : order) {
                    long off = (long) idx * sector;
                    pattern(s, off, 1);
                    disk.write(off, s);
                    published.getAndAccumulate(idx >>> 6, 1L << (idx & 63), (x, y) -> x | y);
                }
            } catch (Throwable t) {
                failure.set(t);
            }
        }, "allocator");
        try (Arena a = Arena.ofConfined(); MappedDiskEngine e = MappedDiskEngine.open(counting, depth)) {
            MemorySegment[] bufs = new MemorySegment[depth];
            IoVecs[] vecs = new IoVecs[depth];
            for (int i = 0; i < depth; i++) {
                bufs[i] = a.allocate(sector, 4096);
                vecs[i] = IoVecs.of(bufs[i]);
            }
            long[] slotOffset = new long[depth];
            boolean[] slotRead = new boolean[depth];
            int[] free = new int[depth];
            int[] nFree = {depth};
            for (int i = 0; i < depth; i++) {
                free[i] = i;
            }
            String[] bad = {null};
            IoCompletionHandler h = (u, res) -> {
                int s = (int) u;
                if (res != sector && bad[0] == null) {
                    bad[0] = "slot " + s + " result " + res;
                }
                if (slotRead[s] && !matches(bufs[s], slotOffset[s], 1) && bad[0] == null) {
                    bad[0] = "read of published sector at " + slotOffset[s] + " saw stale data";
                }
                free[nFree[0]++] = s;
            };
            allocator.start();
            SplittableRandom r = new SplittableRandom(11);
            int rounds = 2;
            for (int round = 0; round < rounds; round++) {
                // Each round writes every engine sector once (version = round), interleaved with reads of
                // published allocator sectors.
                for (int idx = 0; idx < blocks * perBlock; idx += 2) {
                    while (nFree[0] == 0) {
                        e.submit();
                        e.await(h, 1_000_000L);
                    }
                    int s = free[--nFree[0]];
                    long off = (long) idx * sector;
                    slotOffset[s] = off;
                    slotRead[s] = false;
                    pattern(bufs[s], off, 10 + round);
                    assertTrue(e.tryWrite(off, vecs[s], s));
                    int probe = r.nextInt(blocks * perBlock / 4) * 4 + 1;
                    if ((published.get(probe >>> 6) & (1L << (probe & 63))) != 0 && nFree[0] > 0) {
                        int rs = free[--nFree[0]];
                        slotOffset[rs] = (long) probe * sector;
                        slotRead[rs] = true;
                        assertTrue(e.tryRead(slotOffset[rs], vecs[rs], rs));
                    }
                    e.submit();
                    e.poll(h);
                }
                while (e.inFlight() > 0) {
                    e.await(h, 1_000_000L);
                }
            }
            allocator.join(30_000);
            assertNull(failure.get());
            assertNull(bad[0], bad[0]);
            // At least every rewrite (round >= 1) is mapped; in a differencing child first writes set bitmap bits.
            assertTrue(counting.mappedWrites() >= blocks * perBlock / 2, disk.format() + ": mapped writes " + counting.mappedWrites());
            assertEquals(0, e.retried());
            // Every sector, read through the disk's own path: the owner's last version.
            MemorySegment s = a.allocate(sector, 4096);
            for (int idx = 0; idx < blocks * perBlock; idx++) {
                long off = (long) idx * sector;
                disk.read(off, s);
                String what = disk.format() + (parentVersion >= 0 ? " differencing" : "") + " sector " + idx;
                if (idx % 4 == 3) {
                    assertTrue(parentVersion >= 0 ? matches(s, off, parentVersion) : s.mismatch(a.allocate(sector)) == -1,
                        what + ": never written, must show " + (parentVersion >= 0 ? "the parent" : "zeros"));
                } else {
                    long v = idx % 2 == 0 ? 10 + rounds - 1 : 1;
                    assertTrue(matches(s, off, v), what + " expected version " + v);
                }
            }
        } finally {
            disk.close();
        }
    }
}
