package io.phost.vhdx.ops;

import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Chain {@code base ← mid ← leaf}; the leaf is open read-write (the running partition) and keeps writing
 * while {@code mid} is merged into {@code base} underneath it, and a reader checks what the leaf shows of
 * mid's blocks during the whole merge. Afterwards the leaf is re-linked to base and mid is gone: every
 * value reads back.
 */
class OnlineMergeTest {
    private static final long SIZE = 64L << 20;
    private static final int BLOCK = 64 << 10;
    /** base: blocks 0..1023 = 1; mid: blocks 0..511 = 2 (every other one) ; leaf: blocks 512..1023 keep changing. */
    private static final int BLOCKS = (int) (SIZE / BLOCK);

    @TempDir
    Path dir;

    private static void fill(VirtualDisk d, int block, long value, MemorySegment buf) throws Exception {
        for (long o = 0; o < BLOCK; o += 8) {
            buf.set(ValueLayout.JAVA_LONG, o, value ^ (block * 0x9E3779B97F4A7C15L));
        }
        d.write((long) block * BLOCK, buf);
    }

    private static long valueOf(VirtualDisk d, int block, MemorySegment buf) throws Exception {
        d.read((long) block * BLOCK, buf);
        long v = buf.get(ValueLayout.JAVA_LONG, 0);
        long last = buf.get(ValueLayout.JAVA_LONG, BLOCK - 8);
        if (v != last) {
            throw new AssertionError("torn block " + block);
        }
        return v == 0 ? 0 : v ^ (block * 0x9E3779B97F4A7C15L);
    }

    @Test
    void shouldMergeAMiddleImageWhileTheLeafAboveItIsWrittenAndRead() throws Exception {
        mergeAMiddleImageOnline(DiskFormat.VHDX, "base.vhdx", "mid.avhdx", "leaf.avhdx");
    }

    /** The same for a differencing VHD chain (checkpoints of a VHD disk): no stage or journal, apply simply reruns. */
    @Test
    void shouldMergeAMiddleVhdWhileTheLeafAboveItIsWrittenAndRead() throws Exception {
        mergeAMiddleImageOnline(DiskFormat.VHD, "base.vhd", "mid.vhd", "leaf.vhd");
    }

    private void mergeAMiddleImageOnline(DiskFormat format, String baseName, String midName, String leafName) throws Exception {
        Path base = dir.resolve(baseName);
        Path mid = dir.resolve(midName);
        Path leaf = dir.resolve(leafName);
        long[] expected = new long[BLOCKS];
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(BLOCK, 4096);
            try (VirtualDisk d = VirtualDisks.create(base, CreateOptions.of(format, DiskType.DYNAMIC, SIZE).withBlockSize(1 << 20))) {
                for (int b = 0; b < BLOCKS; b++) {
                    fill(d, b, 1, buf);
                    expected[b] = 1;
                }
            }
            try (VirtualDisk d = VirtualDisks.create(mid, CreateOptions.differencing(format, base))) {
                for (int b = 0; b < BLOCKS / 2; b += 2) {
                    fill(d, b, 2, buf);
                    expected[b] = 2;
                }
                d.writeZeroes((long) (BLOCKS / 2 - 1) * BLOCK, BLOCK); // a zeroed range in mid too
                expected[BLOCKS / 2 - 1] = 0;
            }
        }
        VirtualDisk running = VirtualDisks.create(leaf, CreateOptions.differencing(format, mid));
        AtomicBoolean stop = new AtomicBoolean();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        AtomicLong writes = new AtomicLong();
        AtomicLong reads = new AtomicLong();
        Thread writer = Thread.ofPlatform().start(() -> {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment buf = arena.allocate(BLOCK, 4096);
                for (long seq = 10; !stop.get(); seq++) {
                    int b = BLOCKS / 2 + (int) (seq % (BLOCKS / 2));
                    fill(running, b, seq, buf);
                    expected[b] = seq;
                    writes.incrementAndGet();
                }
            } catch (Throwable t) {
                failure.set(t);
            }
        });
        Thread reader = Thread.ofPlatform().start(() -> {
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment buf = arena.allocate(BLOCK, 4096);
                while (!stop.get()) {
                    for (int b = 0; b < BLOCKS / 2; b++) {
                        long want = b == BLOCKS / 2 - 1 ? 0 : b % 2 == 0 ? 2 : 1;
                        assertEquals(want, valueOf(running, b, buf), "block " + b + " read during the merge");
                        reads.incrementAndGet();
                    }
                }
            } catch (Throwable t) {
                failure.set(t);
            }
        });
        Thread.sleep(50);
        OnlineMerge.prepare(mid, Progress.NONE);
        if (format == DiskFormat.VHDX) {
            assertTrue(OnlineMerge.committed(mid));
            assertEquals(base.toAbsolutePath(), OnlineMerge.parentOf(mid));
        }
        long written = OnlineMerge.apply(mid, Progress.NONE);
        assertEquals(OnlineMerge.apply(mid, Progress.NONE), written, "apply repeats the same way (a rerun after a kill)");
        stop.set(true);
        writer.join();
        reader.join();
        assertNull(failure.get());
        assertTrue(writes.get() > 0 && reads.get() > 0);
        running.close(); // the caller's short pause: close, re-link, reopen
        OnlineMerge.relink(leaf, base);
        OnlineMerge.finish(mid);
        assertFalse(Files.exists(mid));
        assertFalse(OnlineMerge.committed(mid));
        try (VirtualDisk d = VirtualDisks.open(leaf, false); Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(BLOCK, 4096);
            for (int b = 0; b < BLOCKS; b++) {
                assertEquals(expected[b], valueOf(d, b, buf), "block " + b + " after the merge");
            }
        }
        assertEquals(0, DiskOps.check(leaf, false).exitCode());
    }

    @Test
    void shouldDiscardAStageWithoutJournalAndRefuseApplyBeforePrepare() throws Exception {
        Path base = dir.resolve("base.vhdx");
        Path mid = dir.resolve("mid.avhdx");
        VirtualDisks.create(base, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, SIZE)).close();
        VirtualDisks.create(mid, CreateOptions.differencing(DiskFormat.VHDX, base)).close();
        Files.writeString(VhdxMerge.stageOf(mid), "half a stage");
        assertFalse(OnlineMerge.committed(mid));
        OnlineMerge.discardUncommitted(mid);
        assertFalse(Files.exists(VhdxMerge.stageOf(mid)));
        assertThrows(IllegalStateException.class, () -> OnlineMerge.apply(mid, Progress.NONE));
        assertThrows(IllegalArgumentException.class, () -> OnlineMerge.prepare(base, Progress.NONE));
    }
}
