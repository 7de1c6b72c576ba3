package io.phost.vhdx.vhd;

import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The steady path (I/O inside allocated blocks) allocates nothing per request once compiled: measured with
 * the JVM's per-thread allocation counter over many requests after a warm-up, for raw and VHD (dynamic,
 * differencing), 4 KiB native buffers.
 */
class VhdSteadyPathTest {
    private static final long FFM_ERRNO_SLICE_BYTES = 40;

    @TempDir
    Path dir;

    @Test
    void shouldNotAllocatePerRequestOnTheSteadyPath() throws Exception {
        Path base = dir.resolve("base.vhd");
        Path child = dir.resolve("child.vhd");
        Path raw = dir.resolve("r.raw");
        long size = 8L << 20;
        try (VirtualDisk b = VirtualDisks.create(base, CreateOptions.of(DiskFormat.VHD, DiskType.DYNAMIC, size))) {
            b.write(0, MemorySegment.ofArray(new byte[(int) size]));
        }
        try (VirtualDisk c = VirtualDisks.create(child, CreateOptions.differencing(DiskFormat.VHD, base))) {
            c.write(0, MemorySegment.ofArray(new byte[(int) size]));
        }
        VirtualDisks.create(raw, CreateOptions.of(DiskFormat.RAW, DiskType.DYNAMIC, size)).close();
        for (Path p : new Path[] {raw, base, child}) {
            try (VirtualDisk d = VirtualDisks.open(p, false); Arena a = Arena.ofConfined()) {
                MemorySegment buf = a.allocate(4096, 4096);
                run(d, buf, 60_000); // warm-up: let C2 compile and inline the path
                long perOp = Long.MAX_VALUE;
                for (int attempt = 0; attempt < 3 && perOp > 0; attempt++) {
                    long before = allocated();
                    run(d, buf, 20_000);
                    perOp = (allocated() - before) / 20_000;
                }
                // The JDK's own errno-capture slice (40 B per downcall, normally scalar-replaced by C2) is sometimes
                // left in for a whole run, depending on what else the JVM ran (a clean-clone CI run: r.raw 40 B);
                // anything of ours on top of it (an object is at least 16 bytes) still fails. See vsp-storage's
                // AllocationWindows.FFM_ERRNO_SLICE_BYTES.
                assertTrue(perOp == 0 || perOp == FFM_ERRNO_SLICE_BYTES,
                    p.getFileName() + " allocates per request: " + perOp + " B");
            }
        }
    }

    private static void run(VirtualDisk d, MemorySegment buf, int n) throws Exception {
        long slots = d.size() / 4096;
        long x = 88172645463325252L;
        for (int i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >>> 7;
            x ^= x << 17;
            long off = Long.remainderUnsigned(x, slots) * 4096;
            if ((i & 1) == 0) {
                d.read(off, buf);
            } else {
                d.write(off, buf);
            }
        }
    }

    private static long allocated() {
        return ((com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean()).getCurrentThreadAllocatedBytes();
    }
}
