package io.phost.perf.storage;

import io.phost.storage.engine.IoUringEngine;
import io.phost.storage.engine.IoVecs;
import io.phost.vhdx.RawDisk;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Issue 19: which QD1 path an io_uring engine should take per device type. Runs 4 KiB random reads and writes
 * at QD1 on one thread through {@link IoUringEngine} with the lone request as psync (P: one preadv/pwritev in
 * submit) and through the ring (U: submit, then io_uring_enter waiting for the completion), interleaved P U U P
 * per round, on a file opened with O_DIRECT and on the same file buffered. Prints wall and thread-CPU µs per
 * I/O, min / median / max over the rounds, and the load average.
 * <pre>
 *   java -cp &lt;perf classpath&gt; io.phost.perf.storage.EngineQd1Probe [dir] [millisPerRun] [rounds]
 * </pre>
 */
public final class EngineQd1Probe {
    private static final int BLOCK = 4096;
    private static final long FILE_BYTES = 256L << 20;

    private EngineQd1Probe() {}

    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args.length > 0 ? args[0] : System.getProperty("java.io.tmpdir"));
        long millis = args.length > 1 ? Long.parseLong(args[1]) : 1_000;
        int rounds = args.length > 2 ? Integer.parseInt(args[2]) : 3;
        Path file = dir.resolve("qd1probe-" + ProcessHandle.current().pid() + ".raw");
        try {
            RawDisk.createSparse(file, FILE_BYTES);
            fill(file);
            System.out.println("load before: " + Files.readString(Path.of("/proc/loadavg")).trim());
            for (boolean direct : new boolean[] {true, false}) {
                for (boolean write : new boolean[] {false, true}) {
                    double[][] wall = new double[2][2 * rounds];
                    double[][] cpu = new double[2][2 * rounds];
                    int[] n = new int[2];
                    for (int r = 0; r < rounds; r++) {
                        for (boolean lone : new boolean[] {true, false, false, true}) {
                            int k = lone ? 0 : 1;
                            double[] res = run(file, direct, write, lone, millis);
                            wall[k][n[k]] = res[0];
                            cpu[k][n[k]++] = res[1];
                        }
                    }
                    String what = (direct ? "O_DIRECT" : "buffered") + (write ? " randwrite" : " randread");
                    System.out.println(what + "  psync wall " + stats(wall[0]) + "  cpu " + stats(cpu[0])
                        + "  |  io_uring wall " + stats(wall[1]) + "  cpu " + stats(cpu[1])
                        + "  |  median wall ratio uring/psync " + String.format(Locale.ROOT, "%.2f",
                        median(wall[1]) / median(wall[0])));
                }
            }
            System.out.println("load after: " + Files.readString(Path.of("/proc/loadavg")).trim());
        } finally {
            Files.deleteIfExists(file);
        }
    }

    /** Fills {@code file} ({@value #FILE_BYTES} bytes) with random data, so every page is backed. */
    static void fill(Path file) throws Exception {
        try (RawDisk disk = RawDisk.openFile(file, false, false); Arena arena = Arena.ofConfined()) {
            MemorySegment chunk = arena.allocate(1 << 20, BLOCK);
            SplittableRandom rnd = new SplittableRandom(19);
            for (long at = 0; at < FILE_BYTES; at += chunk.byteSize()) {
                for (long b = 0; b < chunk.byteSize(); b += 8) {
                    chunk.set(java.lang.foreign.ValueLayout.JAVA_LONG, b, rnd.nextLong());
                }
                disk.write(at, chunk);
            }
            disk.flush();
        }
    }

    /** {wall µs per I/O, thread CPU µs per I/O} of one timed run. */
    private static double[] run(Path file, boolean direct, boolean write, boolean lone, long millis) throws Exception {
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        try (RawDisk disk = RawDisk.openFile(file, false, direct); Arena arena = Arena.ofConfined();
             IoUringEngine engine = new IoUringEngine(disk.fd(), 4, lone)) {
            if (direct && !disk.direct()) {
                throw new IllegalStateException(file + ": O_DIRECT refused by this file system");
            }
            IoVecs v = IoVecs.of(arena.allocate(BLOCK, BLOCK));
            SplittableRandom rnd = new SplittableRandom(7);
            long blocks = FILE_BYTES / BLOCK;
            long[] got = new long[1];
            long end = System.nanoTime() + millis * 1_000_000L;
            long cpu0 = mx.getCurrentThreadCpuTime();
            long t0 = System.nanoTime();
            long ios = 0;
            while ((ios & 63) != 0 || System.nanoTime() < end) {
                long off = rnd.nextLong(blocks) * BLOCK;
                boolean ok = write ? engine.tryWrite(off, v, ios) : engine.tryRead(off, v, ios);
                if (!ok) {
                    throw new IllegalStateException("engine full at QD1");
                }
                engine.submit();
                while (engine.poll((u, r) -> got[0] = r) == 0) {
                    engine.await((u, r) -> got[0] = r, 1_000_000_000L);
                    if (engine.inFlight() == 0) {
                        break;
                    }
                }
                if (got[0] != BLOCK) {
                    throw new IllegalStateException("I/O returned " + got[0]);
                }
                ios++;
            }
            double wall = (System.nanoTime() - t0) / 1_000.0 / ios;
            double cpu = (mx.getCurrentThreadCpuTime() - cpu0) / 1_000.0 / ios;
            return new double[] {wall, cpu};
        }
    }

    private static double median(double[] a) {
        double[] s = a.clone();
        Arrays.sort(s);
        return s[s.length / 2];
    }

    private static String stats(double[] a) {
        double[] s = a.clone();
        Arrays.sort(s);
        return String.format(Locale.ROOT, "%.1f/%.1f/%.1f", s[0], s[s.length / 2], s[s.length - 1]);
    }
}
