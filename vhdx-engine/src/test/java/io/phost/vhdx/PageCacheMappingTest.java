package io.phost.vhdx;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 19 (tmpfs at QD1): a raw file on tmpfs is served by copies through its mapping, and no change to the
 * file (growing, punching, a full tmpfs, a truncate from outside) may raise SIGBUS in the JVM or corrupt data.
 * Each case mounts its own 1 MiB tmpfs (root), so "full" is reached in a few hundred pages.
 */
class PageCacheMappingTest {
    private static final int PAGE = 4096;
    @TempDir
    Path dir;
    Path mnt;
    boolean mounted;
    final Arena arena = Arena.ofShared();
    MemorySegment buf;
    MemorySegment iov;

    @BeforeEach
    void mountTinyTmpfs() throws Exception {
        assumeTrue("root".equals(System.getProperty("user.name")), "mounting a tmpfs needs root");
        mnt = Files.createDirectory(dir.resolve("t"));
        Process p = new ProcessBuilder("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt.toString())
            .redirectErrorStream(true).start();
        assertTrue(p.waitFor(10, TimeUnit.SECONDS) && p.exitValue() == 0,
            "mount tmpfs: " + new String(p.getInputStream().readAllBytes()));
        mounted = true;
        buf = arena.allocate(PAGE, PAGE);
        iov = arena.allocate(16, 16);
        iov.set(ValueLayout.JAVA_LONG, 0, buf.address());
        iov.set(ValueLayout.JAVA_LONG, 8, PAGE);
    }

    @AfterEach
    void unmount() throws Exception {
        if (mounted) {
            new ProcessBuilder("umount", "-l", mnt.toString()).start().waitFor(10, TimeUnit.SECONDS);
        }
        arena.close();
    }

    private long read(PageCacheMapping m, long offset) {
        return m.readv(iov.address(), 1, offset, PAGE);
    }

    private long write(PageCacheMapping m, long offset, byte value) {
        buf.fill(value);
        return m.writev(iov.address(), 1, offset, PAGE);
    }

    /** Fills the file system with a second file until a write fails; returns how many bytes it took. */
    private long fillWithAnotherFile(String name) throws IOException {
        long n = 0;
        try (FileChannel ch = FileChannel.open(mnt.resolve(name), StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            ByteBuffer page = ByteBuffer.allocate(PAGE);
            while (true) {
                page.clear();
                ch.write(page, n);
                n += PAGE;
            }
        } catch (IOException full) {
            assertTrue(String.valueOf(full.getMessage()).contains("space"), "expected ENOSPC: " + full);
            return n;
        }
    }

    @Test
    void shouldCopyBackedPagesAndLeaveHolesToPreadvSoTheFileStaysSparse() throws Exception {
        Path file = mnt.resolve("d.raw");
        RawDisk.createSparse(file, 16L << 20);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
            ch.write(ByteBuffer.wrap(new byte[PAGE]).put(0, (byte) 7), 0);
        }
        try (RawDisk disk = RawDisk.openFile(file, false, true)) {
            long allocated = disk.allocatedBytes();
            PageCacheMapping m = disk.pageCacheMapping();
            assertNotNull(m, "a raw file on tmpfs is mapped");
            for (long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(30); m.populated() < 0; ) {
                assertTrue(System.nanoTime() < until, "the background populate did not end in 30 s");
                Thread.sleep(1);
            }
            assertEquals(2 * PAGE, m.populated(), "populated: the data page at 0 and the last page, nothing else");
            assertEquals(allocated, disk.allocatedBytes(), "populating must not allocate holes");
            assertEquals(PAGE, read(m, 0));
            assertEquals(7, buf.get(ValueLayout.JAVA_BYTE, 0));
            assertEquals(1, m.mappedIos(), "a backed page is a copy");
            buf.fill((byte) 1);
            assertEquals(PAGE, read(m, 1L << 20)); // a hole: preadv gives zeros and allocates nothing
            assertEquals(0, buf.get(ValueLayout.JAVA_BYTE, 100));
            assertEquals(1, m.fdIos());
            assertEquals(allocated, disk.allocatedBytes(), "reading a hole must not allocate it");
            assertEquals(PAGE, write(m, 1L << 20, (byte) 9)); // first write to a hole: pwritev, then backed
            assertEquals(2, m.fdIos());
            assertEquals(PAGE, write(m, 1L << 20, (byte) 10)); // now a copy
            assertEquals(2, m.mappedIos());
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) { // the page cache is the file
                ByteBuffer b = ByteBuffer.allocate(1);
                ch.read(b, (1L << 20) + 5);
                assertEquals(10, b.get(0));
            }
            assertEquals(0, m.faults());
        }
    }

    @Test
    void shouldAnswerAFullTmpfsWithEnospcAndKeepServingBackedPages() throws Exception {
        Path file = mnt.resolve("d.raw");
        RawDisk.createSparse(file, 4L << 20); // 4 MiB sparse file in a 1 MiB file system
        try (RawDisk disk = RawDisk.openFile(file, false, true)) {
            PageCacheMapping m = disk.pageCacheMapping();
            long r = 0;
            long at = 0;
            for (; at < (4L << 20) - PAGE; at += PAGE) {
                r = write(m, at, (byte) (at >>> 12));
                if (r != PAGE) {
                    break;
                }
            }
            assertEquals(-28, r, "a full tmpfs is ENOSPC from pwritev, not SIGBUS from a copy (" + m + ")");
            assertTrue(at > 0, "something fitted");
            for (long p = 0; p < at; p += PAGE) { // every page written is still served, by copies now
                assertEquals(PAGE, write(m, p, (byte) 0x5a));
                assertEquals(PAGE, read(m, p));
                assertEquals(0x5a, buf.get(ValueLayout.JAVA_BYTE, PAGE - 1));
            }
            assertEquals(2 * (at / PAGE), m.mappedIos());
            assertEquals(0, m.faults(), "no copy faulted");
            assertTrue(m.live());
        }
    }

    @Test
    void shouldNeverCopyIntoAPagePunchedWhileTheFileSystemIsFull() throws Exception {
        Path file = mnt.resolve("d.raw");
        RawDisk.createSparse(file, 512L << 10);
        try (RawDisk disk = RawDisk.openFile(file, false, true)) {
            PageCacheMapping m = disk.pageCacheMapping();
            for (long p = 0; p < (256L << 10); p += PAGE) {
                assertEquals(PAGE, write(m, p, (byte) 1));
            }
            fillWithAnotherFile("filler");
            disk.unmap(8 * PAGE, 4 * PAGE); // the guest discards: the pages go back to the (full) file system
            fillWithAnotherFile("filler2"); // and someone else takes them
            assertFalse(m.backed(8 * PAGE, PAGE));
            assertEquals(-28, write(m, 9 * PAGE, (byte) 2), "a punched page on a full tmpfs: ENOSPC, not a copy");
            buf.fill((byte) 3);
            assertEquals(PAGE, read(m, 10 * PAGE)); // a hole reads zeros through preadv
            assertEquals(0, buf.get(ValueLayout.JAVA_BYTE, 0));
            disk.writeZeroes(20 * PAGE, PAGE);
            assertFalse(m.backed(20 * PAGE, PAGE), "write-zeroes may free pages too");
            assertEquals(PAGE, write(m, 30 * PAGE, (byte) 4), "an untouched backed page is still a copy");
            assertEquals(0, m.faults());
        }
    }

    @Test
    void shouldServeAGrownDiskThroughANewMappingAndStopTheOldOne() throws Exception {
        Path file = mnt.resolve("d.raw");
        RawDisk.createSparse(file, 64L << 10);
        RawDisk disk = RawDisk.openFile(file, false, true);
        PageCacheMapping old = disk.pageCacheMapping();
        assertEquals(PAGE, write(old, 0, (byte) 1));
        RawDisk grown = disk.grownTo(256L << 10);
        try (grown) {
            assertFalse(old.live(), "the old disk's mapping is unmapped by the grow");
            assertEquals(PAGE, read(old, 0), "a late request on the old disk goes to the fd");
            PageCacheMapping m = grown.pageCacheMapping();
            assertEquals(256L << 10, m.size());
            assertEquals(PAGE, write(m, 200L << 10, (byte) 6)); // past the old end: pwritev, then a copy
            assertEquals(PAGE, write(m, 200L << 10, (byte) 7));
            assertEquals(PAGE, read(m, 200L << 10));
            assertEquals(7, buf.get(ValueLayout.JAVA_BYTE, 0));
            assertEquals(PAGE, read(m, 0));
            assertEquals(1, buf.get(ValueLayout.JAVA_BYTE, 0));
            assertEquals(0, m.faults());
        }
    }

    @Test
    void shouldSurviveATruncateFromOutsideAndFallBackToTheFd() throws Exception {
        Path file = mnt.resolve("d.raw");
        RawDisk.createSparse(file, 256L << 10);
        try (RawDisk disk = RawDisk.openFile(file, false, true)) {
            PageCacheMapping m = disk.pageCacheMapping();
            for (long p = 0; p < (256L << 10); p += PAGE) {
                assertEquals(PAGE, write(m, p, (byte) 1));
            }
            try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
                ch.truncate(PAGE); // another process would do this; advisory locks do not stop it
            }
            long r = read(m, 128L << 10); // the copy faults; the JVM turns it into an error, caught
            assertEquals(0, r, "preadv past the new end reads nothing: a short read for the guest");
            assertEquals(1, m.faults(), "the fault is counted");
            assertFalse(m.live(), "and the mapping is off from then on");
            assertEquals(PAGE, write(m, 0, (byte) 2), "the fd still serves what is left");
        }
    }

    @Test
    void shouldKeepCopiesAndPunchesApartUnderConcurrency() throws Exception {
        Path file = mnt.resolve("d.raw");
        RawDisk.createSparse(file, 512L << 10);
        try (RawDisk disk = RawDisk.openFile(file, false, true)) {
            PageCacheMapping m = disk.pageCacheMapping();
            for (long p = 0; p < 128L * PAGE; p += PAGE) {
                assertEquals(PAGE, write(m, p, (byte) 1));
            }
            long room = fillWithAnotherFile("filler"); // full from the start: a copy into a freed page would fault
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
            AtomicReference<Throwable> failed = new AtomicReference<>();
            Thread puncher = Thread.ofPlatform().start(() -> {
                try (FileChannel filler = FileChannel.open(mnt.resolve("filler"), StandardOpenOption.WRITE)) {
                    for (int i = 0; System.nanoTime() < deadline; i++) {
                        long at = (i * 7L % 120) * PAGE;
                        disk.unmap(at, 2 * PAGE); // the guest discards two pages...
                        try {
                            filler.write(ByteBuffer.allocate(2 * PAGE), room); // ...and another file takes them
                        } catch (IOException full) {
                            // the copier's pwritev got them first
                        }
                        for (long until = System.nanoTime() + 50_000; System.nanoTime() < until; ) {
                            Thread.onSpinWait(); // the window in which a stale "backed" bit would fault
                        }
                        filler.truncate(room); // give the space back so the copier's pwritev can re-back pages
                    }
                } catch (Throwable t) {
                    failed.set(t);
                }
            });
            long copies = 0;
            try (Arena own = Arena.ofConfined()) {
                MemorySegment b = own.allocate(PAGE, PAGE);
                MemorySegment v = own.allocate(16, 16);
                v.set(ValueLayout.JAVA_LONG, 0, b.address());
                v.set(ValueLayout.JAVA_LONG, 8, PAGE);
                for (int i = 0; System.nanoTime() < deadline; i++) {
                    long at = (i % 128) * (long) PAGE;
                    long r = (i & 1) == 0 ? m.writev(v.address(), 1, at, PAGE) : m.readv(v.address(), 1, at, PAGE);
                    assertTrue(r == PAGE || r == -28, "request at " + at + ": " + r);
                    copies++;
                }
            }
            puncher.join();
            assertNull(failed.get());
            assertEquals(0, m.faults(), "a copy ran over a page being freed (" + copies + " requests, " + m.mappedIos()
                + " copies, " + m.fdIos() + " by the fd)");
            assumeTrue(m.mappedIos() > 1000, "too few copies to race the punches (" + m.mappedIos() + " of " + copies
                + " requests): the machine is too busy to judge");
            assertTrue(m.live());
        }
    }
}
