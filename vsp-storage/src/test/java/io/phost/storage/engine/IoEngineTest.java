package io.phost.storage.engine;

import io.phost.core.tools.AllocationWindows;
import io.phost.vhdx.RawDisk;
import io.phost.storage.backend.MemoryDisk;
import io.phost.vhdx.DiskCapabilities;
import io.phost.vhdx.VirtualDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

class IoEngineTest {
    @TempDir
    Path dir;

    @Test
    void shouldWriteAndReadBackScatteredBuffersThroughIoUringWithODirect() throws Exception {
        assumeTrue(IoEngines.ioUringAvailable(), "io_uring unavailable on this kernel");
        Path file = dir.resolve("disk.raw");
        RawDisk.createSparse(file, 8 << 20);
        try (RawDisk disk = RawDisk.openFile(file, false, true);
             IoEngine engine = IoEngines.open(disk, IoEngines.Kind.IO_URING, 32)) {
            assertEquals("io_uring", engine.name());
            roundTrip(disk, engine);
        }
    }

    @Test
    void shouldWriteAndReadBackScatteredBuffersThroughThreadPoolOnFile() throws Exception {
        Path file = dir.resolve("disk2.raw");
        RawDisk.createSparse(file, 8 << 20);
        try (RawDisk disk = RawDisk.openFile(file, false, true);
             IoEngine engine = IoEngines.open(disk, IoEngines.Kind.THREADS, 32)) {
            roundTrip(disk, engine);
        }
    }

    @Test
    void shouldWriteAndReadBackThroughThreadPoolOnAnyVirtualDisk() throws Exception {
        try (MemoryDisk disk = MemoryDisk.ram(8 << 20, 512, false);
             IoEngine engine = IoEngines.open(disk, IoEngines.Kind.THREADS, 16)) {
            assertEquals("threads", engine.name());
            roundTrip(disk, engine);
        }
    }

    @Test
    void shouldRunTmpfsFileIoInlineWithVectoredSyscalls() throws Exception {
        Path file = java.nio.file.Files.createTempFile(Path.of("/dev/shm"), "inline", ".raw");
        try {
            RawDisk.createSparse(file, 8 << 20);
            try (RawDisk disk = RawDisk.openFile(file, false, true);
                 IoEngine engine = IoEngines.open(disk, IoEngines.Kind.AUTO, 32)) {
                assertTrue(disk.memoryBacked(), "a file in /dev/shm is on tmpfs");
                assertEquals("inline", engine.name());
                roundTrip(disk, engine); // writes to holes go to pwritev, reads of what they wrote are copies
                io.phost.vhdx.PageCacheMapping m = disk.pageCacheMapping();
                assertTrue(m != null && m.mappedIos() == 1, "issue 19: the read of backed tmpfs pages is a copy: " + m);
                roundTrip(disk, engine, 0x5a5a_0000_0000_5a5aL); // the pages are backed now: scattered writes are copies
                // 15 writes and the read are copies; the first write's page 0 was punched by the first round's unmap
                assertEquals(17, m.mappedIos(), "the second round is served by copies except over the punched page");
                assertEquals(0, m.faults());
            }
        } finally {
            java.nio.file.Files.deleteIfExists(file);
        }
    }

    @Test
    void shouldMoveDataThroughARegisteredFixedBufferWithODirect() throws Exception {
        assumeTrue(IoEngines.ioUringAvailable(), "io_uring unavailable on this kernel");
        Path file = dir.resolve("fixed.raw");
        RawDisk.createSparse(file, 1 << 20);
        try (RawDisk disk = RawDisk.openFile(file, false, true);
             IoUringEngine engine = (IoUringEngine) IoEngines.open(disk, IoEngines.Kind.IO_URING, 8);
             Arena arena = Arena.ofConfined()) {
            MemorySegment region = arena.allocate(64 << 10, 4096);
            assertTrue(engine.registerBuffer(region), "the kernel registers 64 KiB of our memory");
            assertTrue(engine.hasFixedBuffer());
            MemorySegment out = region.asSlice(0, 4096);
            MemorySegment in = region.asSlice(8192, 4096);
            for (int b = 0; b < 4096; b += 8) {
                out.set(ValueLayout.JAVA_LONG, b, 0x5EED0000L + b);
            }
            long[] result = {Long.MIN_VALUE};
            assertTrue(engine.tryWrite(12288, IoVecs.of(out), 1));
            engine.submit();
            engine.await((u, r) -> result[0] = r, 1_000_000_000L);
            assertEquals(4096, result[0]);
            assertTrue(engine.tryRead(12288, IoVecs.of(in), 2));
            engine.submit();
            engine.await((u, r) -> result[0] = r, 1_000_000_000L);
            assertEquals(4096, result[0]);
            assertEquals(-1, in.mismatch(out), "READ_FIXED returns what WRITE_FIXED stored");
            MemorySegment check = arena.allocate(4096, 4096);
            disk.read(12288, check);
            assertEquals(-1, check.mismatch(out), "the bytes are in the file");
        }
    }

    @Test
    void shouldKeepIoUringForFilesOnARealFileSystem() throws Exception {
        assumeTrue(IoEngines.ioUringAvailable(), "io_uring unavailable on this kernel");
        Path file = dir.resolve("auto.raw");
        RawDisk.createSparse(file, 1 << 20);
        try (RawDisk disk = RawDisk.openFile(file, false, true);
             IoEngine engine = IoEngines.open(disk, IoEngines.Kind.AUTO, 8)) {
            assumeTrue(!disk.memoryBacked(), "the temp dir is on tmpfs here");
            assertEquals("io_uring", engine.name());
        }
    }

    @Test
    void shouldRunRamDiskIoInlineOnTheSubmittingThread() throws Exception {
        try (MemoryDisk disk = MemoryDisk.ram(8 << 20, 512, false);
             IoEngine engine = IoEngines.open(disk, IoEngines.Kind.AUTO, 16)) {
            assertEquals("inline", engine.name());
            roundTrip(disk, engine);
        }
    }

    @Test
    void shouldReportMinusErrnoForIoPastTheEndOfAFile() throws Exception {
        assumeTrue(IoEngines.ioUringAvailable(), "io_uring unavailable on this kernel");
        Path file = dir.resolve("small.raw");
        RawDisk.createSparse(file, 1 << 20);
        try (Arena arena = Arena.ofConfined(); RawDisk disk = RawDisk.openFile(file, false, true);
             IoEngine engine = IoEngines.open(disk, IoEngines.Kind.IO_URING, 4)) {
            IoVecs v = IoVecs.of(arena.allocate(4096, 4096));
            assertTrue(engine.tryRead(2L << 20, v, 7));
            engine.submit();
            long[] res = {Long.MIN_VALUE};
            while (engine.await((u, r) -> res[0] = r, 1_000_000_000L) == 0) { }
            assertEquals(0, res[0], "read at EOF transfers nothing");
        }
    }

    /** Issue 19: a lone read or write runs as one preadv/pwritev in submit; poll delivers it without a wait. */
    @Test
    void shouldRunALoneRequestAsPsyncAndDeliverItAtTheNextPoll() throws Exception {
        assumeTrue(IoEngines.ioUringAvailable(), "io_uring unavailable on this kernel");
        Path file = dir.resolve("lone.raw");
        RawDisk.createSparse(file, 1 << 20);
        try (Arena arena = Arena.ofConfined(); RawDisk disk = RawDisk.openFile(file, false, true);
             IoUringEngine engine = new IoUringEngine(disk.fd(), 8, true)) {
            MemorySegment out = arena.allocate(4096, 4096);
            out.fill((byte) 0x5A);
            long[] res = {Long.MIN_VALUE, -1};
            IoCompletionHandler h = (u, r) -> { res[0] = r; res[1] = u; };
            assertTrue(engine.tryWrite(8192, IoVecs.of(out), 11));
            assertTrue(engine.hasUnsubmitted(), "the lone request waits for submit");
            assertEquals(1, engine.submit());
            assertEquals(1, engine.loneRuns(), "a lone write runs as pwritev");
            assertEquals(1, engine.inFlight(), "in flight until delivered");
            assertEquals(1, engine.poll(h), "delivered by poll, no wait needed");
            assertEquals(4096, res[0]);
            assertEquals(11, res[1]);
            assertEquals(0, engine.inFlight());
            MemorySegment in = arena.allocate(4096, 4096);
            assertTrue(engine.tryRead(8192, IoVecs.of(in), 12));
            assertEquals(1, engine.await(h, 1_000_000_000L), "await runs and delivers a held lone request");
            assertEquals(2, engine.loneRuns());
            assertEquals(4096, res[0]);
            assertEquals(-1, in.mismatch(out), "the lone read returns what the lone write stored");
            assertTrue(engine.tryRead(2L << 20, IoVecs.of(in), 13));
            engine.submit();
            assertEquals(1, engine.poll(h));
            assertEquals(0, res[0], "a lone read at EOF transfers nothing, as on the ring");
        }
    }

    /** Issue 19: a second request before submit sends both through io_uring (QD > 1 keeps the ring). */
    @Test
    void shouldSendEverythingThroughTheRingWhenASecondRequestJoinsBeforeSubmit() throws Exception {
        assumeTrue(IoEngines.ioUringAvailable(), "io_uring unavailable on this kernel");
        Path file = dir.resolve("pair.raw");
        RawDisk.createSparse(file, 1 << 20);
        try (Arena arena = Arena.ofConfined(); RawDisk disk = RawDisk.openFile(file, false, true);
             IoUringEngine engine = new IoUringEngine(disk.fd(), 8, true)) {
            MemorySegment a = arena.allocate(4096, 4096);
            MemorySegment b = arena.allocate(4096, 4096);
            a.fill((byte) 1);
            b.fill((byte) 2);
            assertTrue(engine.tryWrite(0, IoVecs.of(a), 1));
            assertTrue(engine.tryWrite(4096, IoVecs.of(b), 2));
            assertTrue(engine.tryFlush(3));
            engine.submit();
            long[] res = new long[4];
            int[] seen = {0};
            while (seen[0] < 3) {
                engine.await((u, r) -> { res[(int) u] = r; seen[0]++; }, 1_000_000_000L);
            }
            assertEquals(0, engine.loneRuns(), "none of the three was alone");
            assertEquals(4096, res[1]);
            assertEquals(4096, res[2]);
            assertEquals(0, res[3]);
            MemorySegment check = arena.allocate(8192, 4096);
            disk.read(0, check);
            assertEquals(-1, check.asSlice(0, 4096).mismatch(a));
            assertEquals(-1, check.asSlice(4096, 4096).mismatch(b));
            assertTrue(engine.tryRead(0, IoVecs.of(a), 5));
            assertTrue(engine.tryFlush(6));
            engine.submit();
            seen[0] = 0;
            while (seen[0] < 2) {
                engine.await((u, r) -> seen[0]++, 1_000_000_000L);
            }
            assertEquals(0, engine.loneRuns(), "a flush behind a held read sends the read to the ring too");
        }
        try (RawDisk disk = RawDisk.openFile(file, false, true);
             IoUringEngine off = new IoUringEngine(disk.fd(), 32, false)) {
            roundTrip(disk, off);
            assertEquals(0, off.loneRuns(), "switched off, nothing runs as psync");
        }
    }

    /**
     * Issue 19: the lone psync path allocates nothing per I/O, judged as {@link AllocationWindows} says (the best
     * window the JIT stayed out of, tolerating the JDK's own errno-capture slice per downcall).
     */
    @Test
    void shouldNotAllocatePerLoneRequest() throws Exception {
        assumeTrue(IoEngines.ioUringAvailable(), "io_uring unavailable on this kernel");
        Path file = dir.resolve("alloc.raw");
        RawDisk.createSparse(file, 4 << 20);
        try (Arena arena = Arena.ofConfined(); RawDisk disk = RawDisk.openFile(file, false, true);
             IoUringEngine engine = new IoUringEngine(disk.fd(), 8, true)) {
            IoVecs v = IoVecs.of(arena.allocate(4096, 4096));
            long[] done = {0};
            IoCompletionHandler h = (u, r) -> done[0]++;
            var mx = (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
            int warm = 4000;
            int measured = 4000;
            long[] next = {0};
            loneIos(engine, v, h, next, warm);
            AllocationWindows.Result r = AllocationWindows.measure(measured, () -> loneIos(engine, v, h, next, measured),
                mx::getCurrentThreadAllocatedBytes);
            System.out.println("lone psync bytes per " + measured + "-I/O window:" + r.windows());
            assertEquals(next[0], done[0]);
            assertEquals(done[0], engine.loneRuns(), "every request ran alone");
            assertTrue(r.withinJdkSlice(), r.describe("lone I/Os"));
        }
    }

    /** {@code n} lone 4 KiB requests, reads and writes alternating, each submitted and polled alone. */
    private static void loneIos(IoUringEngine engine, IoVecs v, IoCompletionHandler h, long[] next, int n) {
        for (int k = 0; k < n; k++) {
            long i = next[0]++;
            long off = ((i * 37L) & 1023) * 4096;
            assertTrue((i & 1) == 0 ? engine.tryRead(off, v, i) : engine.tryWrite(off, v, i));
            engine.submit();
            engine.poll(h);
        }
    }

    /** A lone write that fills the file system reports -ENOSPC, not a short count (as the inline engine does). */
    @Test
    void shouldReportEnospcForALoneWriteThatFillsTheFileSystem() throws Exception {
        assumeTrue(IoEngines.ioUringAvailable(), "io_uring unavailable on this kernel");
        assumeTrue("root".equals(System.getProperty("user.name")), "mounting a tmpfs needs root");
        Path mnt = java.nio.file.Files.createDirectory(dir.resolve("full"));
        Process p = new ProcessBuilder("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt.toString())
            .redirectErrorStream(true).start();
        assertTrue(p.waitFor(10, java.util.concurrent.TimeUnit.SECONDS) && p.exitValue() == 0, "mount a 1 MiB tmpfs");
        try {
            Path file = mnt.resolve("d.raw");
            RawDisk.createSparse(file, 4 << 20);
            try (Arena arena = Arena.ofConfined(); RawDisk disk = RawDisk.openFile(file, false, true);
                 IoUringEngine engine = new IoUringEngine(disk.fd(), 4, true)) {
                MemorySegment big = arena.allocate(2 << 20, 4096);
                big.fill((byte) 7);
                long[] res = {Long.MIN_VALUE};
                assertTrue(engine.tryWrite(0, IoVecs.of(big), 1));
                engine.submit();
                assertEquals(1, engine.poll((u, r) -> res[0] = r));
                assertEquals(1, engine.loneRuns());
                assertEquals(-28, res[0], "2 MiB into a 1 MiB file system: ENOSPC");
            }
        } finally {
            new ProcessBuilder("umount", "-l", mnt.toString()).start().waitFor(10, java.util.concurrent.TimeUnit.SECONDS);
        }
    }

    /** Issue 19: the automatic choice: lone psync on an O_DIRECT fd, the ring on a buffered fd. */
    @Test
    void shouldRunLoneRequestsAsPsyncOnlyOnODirectFds() throws Exception {
        assumeTrue(IoEngines.ioUringAvailable(), "io_uring unavailable on this kernel");
        Path file = dir.resolve("choice.raw");
        RawDisk.createSparse(file, 1 << 20);
        for (boolean direct : new boolean[] {true, false}) {
            try (Arena arena = Arena.ofConfined(); RawDisk disk = RawDisk.openFile(file, false, direct);
                 IoEngine engine = IoEngines.open(disk, IoEngines.Kind.IO_URING, 4)) {
                assumeTrue(disk.direct() == direct, "O_DIRECT as asked on this file system");
                assertTrue(engine.tryWrite(0, IoVecs.of(arena.allocate(4096, 4096)), 1));
                engine.submit();
                while (engine.await((u, r) -> assertEquals(4096, r), 1_000_000_000L) == 0) { }
                assertEquals(direct ? 1 : 0, ((IoUringEngine) engine).loneRuns(), direct ? "O_DIRECT" : "buffered");
            }
        }
    }

    /** A disk kind the engines have never heard of chooses its engine by what it declares (issue 13). */
    @Test
    void shouldChooseTheEngineFromDeclaredCapabilitiesNotFromTheDiskClass() throws Exception {
        Path file = dir.resolve("declared.raw");
        RawDisk.createSparse(file, 8 << 20);
        try (RawDisk raw = RawDisk.openFile(file, false, true)) {
            VirtualDisk fdDisk = new DeclaredDisk(raw, DiskCapabilities.fd(raw.fd(), raw.directAlignment(), false));
            try (IoEngine engine = IoEngines.open(fdDisk, IoEngines.Kind.AUTO, 16)) {
                assertEquals(IoEngines.ioUringAvailable() ? "io_uring" : "threads", engine.name());
                roundTrip(fdDisk, engine);
            }
            VirtualDisk memory = new DeclaredDisk(raw, DiskCapabilities.memory(-1));
            try (IoEngine engine = IoEngines.open(memory, IoEngines.Kind.AUTO, 16)) {
                assertEquals("inline", engine.name());
                roundTrip(memory, engine);
            }
            VirtualDisk plain = new DeclaredDisk(raw, DiskCapabilities.OWN_CODE);
            try (IoEngine engine = IoEngines.open(plain, IoEngines.Kind.AUTO, 16)) {
                assertEquals("threads", engine.name());
                roundTrip(plain, engine);
            }
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> IoEngines.open(plain, IoEngines.Kind.IO_URING, 16));
            assertTrue(e.getMessage().contains("has no fd"), e.getMessage());
        }
    }

    /** Forwards I/O to another disk and declares the capabilities it is given. */
    private record DeclaredDisk(VirtualDisk inner, DiskCapabilities capabilities) implements VirtualDisk {
        @Override public long size() { return inner.size(); }
        @Override public int logicalSectorSize() { return inner.logicalSectorSize(); }
        @Override public int physicalSectorSize() { return inner.physicalSectorSize(); }
        @Override public boolean readOnly() { return inner.readOnly(); }
        @Override public void read(long offset, MemorySegment dst) throws java.io.IOException { inner.read(offset, dst); }
        @Override public void write(long offset, MemorySegment src) throws java.io.IOException { inner.write(offset, src); }
        @Override public void flush() throws java.io.IOException { inner.flush(); }
        @Override public void writeZeroes(long offset, long length) throws java.io.IOException { inner.writeZeroes(offset, length); }
        @Override public String format() { return "declared"; }
        @Override public void close() {}
    }

    private static void roundTrip(VirtualDisk disk, IoEngine engine) {
        roundTrip(disk, engine, 0);
    }

    /** As above, with {@code salt} in every word so that a second round's data differs from the first's. */
    private static void roundTrip(VirtualDisk disk, IoEngine engine, long salt) {
        try (Arena arena = Arena.ofConfined()) {
            int ops = 16;
            List<IoVecs> writes = new ArrayList<>();
            for (int i = 0; i < ops; i++) {
                IoVecs v = new IoVecs(4);
                for (int s = 0; s < 3; s++) {
                    MemorySegment seg = arena.allocate(4096, 4096);
                    for (int b = 0; b < 4096; b += 8) {
                        seg.set(ValueLayout.JAVA_LONG, b, (((long) i << 32) | (s << 16) | b) ^ salt);
                    }
                    v.add(seg);
                    arena.allocate(4096, 4096); // a gap, so entries do not merge
                }
                writes.add(v);
                assertTrue(engine.tryWrite((long) i * 3 * 4096, v, i));
            }
            engine.submit();
            long[] results = new long[ops];
            int[] seen = {0};
            while (seen[0] < ops) {
                engine.await((u, r) -> { results[(int) u] = r; seen[0]++; }, 1_000_000_000L);
            }
            for (long r : results) {
                assertEquals(3 * 4096, r);
            }
            assertTrue(engine.tryFlush(99));
            engine.submit();
            long[] flush = {-1};
            while (engine.await((u, r) -> flush[0] = r, 1_000_000_000L) == 0) { }
            assertEquals(0, flush[0]);
            MemorySegment back = arena.allocate((long) ops * 3 * 4096, 4096);
            IoVecs rv = IoVecs.of(back);
            assertTrue(engine.tryRead(0, rv, 1000));
            engine.submit();
            long[] rr = {-1};
            while (engine.await((u, r) -> rr[0] = r, 1_000_000_000L) == 0) { }
            assertEquals(back.byteSize(), rr[0]);
            for (int i = 0; i < ops; i++) {
                for (int s = 0; s < 3; s++) {
                    long at = ((long) i * 3 + s) * 4096;
                    assertEquals((((long) i << 32) | (s << 16) | 8) ^ salt, back.get(ValueLayout.JAVA_LONG, at + 8));
                }
            }
            assertTrue(engine.tryUnmap(0, 4096, 5));
            engine.submit();
            long[] um = {-1};
            while (engine.await((u, r) -> um[0] = r, 1_000_000_000L) == 0) { }
            assertEquals(0, um[0]);
            MemorySegment one = arena.allocate(4096, 4096);
            one.fill((byte) 1);
            assertTrue(engine.tryRead(0, IoVecs.of(one), 6));
            engine.submit();
            while (engine.await((u, r) -> { }, 1_000_000_000L) == 0) { }
            assertEquals(0L, one.get(ValueLayout.JAVA_LONG, 0), "unmapped range reads zeros");
        }
    }
}
