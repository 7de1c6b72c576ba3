package io.phost.vhdx.vhdx;

import static org.junit.jupiter.api.Assertions.*;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.Future;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class VhdxConcurrencyTest {
    @TempDir
    Path dir;

    /**
     * Eight threads write their own 4 KiB stripe of every block at once, so every block is first-written by
     * several threads racing; readers run alongside. Each block must be allocated exactly once and every
     * stripe must read back.
     */
    @Test
    void shouldAllocateEachBlockOnceWhenWritersRaceOnIt() throws Exception {
        Path p = dir.resolve("c.vhdx");
        int threads = 8;
        int blocks = 64;
        int bs = 1 << 20;
        try (VhdxDisk d = VhdxDisk.create(p, VhdxCreateOptions.dynamic((long) blocks * bs).withBlockSize(bs));
             ExecutorService ex = Executors.newFixedThreadPool(threads + 2)) {
            CyclicBarrier start = new CyclicBarrier(threads);
            AtomicBoolean done = new AtomicBoolean();
            List<Future<?>> fs = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int tid = t;
                fs.add(ex.submit(() -> {
                    try (Arena a = Arena.ofConfined()) {
                        MemorySegment buf = a.allocate(4096, 4096);
                        start.await();
                        for (int b = 0; b < blocks; b++) {
                            buf.fill((byte) (tid * 31 + b));
                            d.write((long) b * bs + tid * 4096L, buf);
                        }
                    }
                    return null;
                }));
            }
            for (int r = 0; r < 2; r++) {
                fs.add(ex.submit(() -> {
                    try (Arena a = Arena.ofConfined()) {
                        MemorySegment buf = a.allocate(bs, 4096);
                        while (!done.get()) {
                            for (int b = 0; b < blocks; b++) {
                                d.read((long) b * bs, buf);
                                // Each byte of a stripe reads zero (not yet written) or the stripe's pattern.
                                for (int t = 0; t < threads; t++) {
                                    byte pat = (byte) (t * 31 + b);
                                    byte first = buf.get(ValueLayout.JAVA_BYTE, t * 4096L);
                                    byte last = buf.get(ValueLayout.JAVA_BYTE, t * 4096L + 4095);
                                    assertTrue((first == 0 || first == pat) && (last == 0 || last == pat));
                                }
                            }
                        }
                    }
                    return null;
                }));
            }
            for (int i = 0; i < threads; i++) {
                fs.get(i).get();
            }
            done.set(true);
            for (Future<?> f : fs) {
                f.get();
            }
            assertEquals((long) blocks * bs, d.allocatedBytes());
            d.flush();
        }
        try (VhdxDisk d = VhdxDisk.open(p, true); Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(4096);
            for (int b = 0; b < blocks; b++) {
                for (int t = 0; t < threads; t++) {
                    d.read((long) b * bs + t * 4096L, buf);
                    for (long i = 0; i < 4096; i++) {
                        assertEquals((byte) (t * 31 + b), buf.get(ValueLayout.JAVA_BYTE, i));
                    }
                }
            }
            assertEquals((long) blocks * bs, d.allocatedBytes());
        }
        assertTrue(VhdxCheck.check(p).clean(), () -> {
            try {
                return VhdxCheck.check(p).toString();
            } catch (Exception e) {
                return e.toString();
            }
        });
    }

    /** Writers allocate blocks (dynamic and differencing) while another thread flushes in a loop. */
    @Test
    void shouldFlushWhileWritersAllocate() throws Exception {
        Path base = dir.resolve("b.vhdx");
        VhdxDisk.create(base, VhdxCreateOptions.dynamic(128L << 20).withBlockSize(1 << 20)).close();
        Path parent = dir.resolve("p.vhdx");
        VhdxDisk.create(parent, VhdxCreateOptions.dynamic(128L << 20).withBlockSize(1 << 20)).close();
        Path child = dir.resolve("c.avhdx");
        VhdxDisk.create(child, VhdxCreateOptions.differencing(parent)).close();
        for (Path p : new Path[] {base, child}) {
            int threads = 4;
            try (VhdxDisk d = VhdxDisk.open(p, false); ExecutorService ex = Executors.newFixedThreadPool(threads + 1)) {
                AtomicBoolean done = new AtomicBoolean();
                List<Future<?>> writers = new ArrayList<>();
                for (int t = 0; t < threads; t++) {
                    int tid = t;
                    writers.add(ex.submit(() -> {
                        try (Arena a = Arena.ofConfined()) {
                            MemorySegment buf = a.allocate(4096, 4096);
                            for (int b = tid; b < 128; b += threads) {
                                buf.fill((byte) (b + 1));
                                d.write((long) b << 20, buf);
                                d.write(((long) b << 20) + 8192, buf);
                            }
                        }
                        return null;
                    }));
                }
                Future<?> flusher = ex.submit(() -> {
                    while (!done.get()) {
                        d.flush();
                    }
                    return null;
                });
                for (Future<?> f : writers) {
                    f.get();
                }
                done.set(true);
                flusher.get();
            }
            try (VhdxDisk d = VhdxDisk.open(p, true); Arena a = Arena.ofConfined()) {
                MemorySegment buf = a.allocate(4096);
                for (int b = 0; b < 128; b++) {
                    d.read(((long) b << 20) + 8192, buf);
                    assertEquals((byte) (b + 1), buf.get(ValueLayout.JAVA_BYTE, 4095));
                    d.read(((long) b << 20) + 4096, buf);
                    assertEquals(0, buf.get(ValueLayout.JAVA_BYTE, 0));
                }
            }
            assertTrue(VhdxCheck.check(p).clean());
        }
    }
}
