package io.phost.perf.storage;

import io.phost.storage.engine.InlineEngine;
import io.phost.storage.engine.IoVecs;
import io.phost.vhdx.RawDisk;

import java.lang.foreign.Arena;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Issue 19 (tmpfs QD1): what the engine under the guest costs per 4 KiB I/O on a tmpfs file, with the file's
 * mapping (M: a copy, {@code PageCacheMapping}) and without (S: one preadv/pwritev, the path before), against fio
 * psync on the same file (F), interleaved M S F F S M per round. Prints wall and CPU µs per I/O (the thread's CPU
 * for M and S; fio's usr+sys for F) as min/median/max and the load average.
 * <pre>
 *   java -cp &lt;perf classpath&gt; io.phost.perf.storage.TmpfsCopyProbe [dir=/dev/shm] [millisPerRun=1000] [rounds=3]
 * </pre>
 */
public final class TmpfsCopyProbe {
    private static final int BLOCK = 4096;
    private static final long FILE_BYTES = 256L << 20;

    private TmpfsCopyProbe() {}

    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args.length > 0 ? args[0] : "/dev/shm");
        long millis = args.length > 1 ? Long.parseLong(args[1]) : 1_000;
        int rounds = args.length > 2 ? Integer.parseInt(args[2]) : 3;
        Path file = dir.resolve("tmpfsprobe-" + ProcessHandle.current().pid() + ".raw");
        try {
            RawDisk.createSparse(file, FILE_BYTES);
            EngineQd1Probe.fill(file);
            System.out.println("load before: " + Files.readString(Path.of("/proc/loadavg")).trim());
            for (boolean write : new boolean[] {false, true}) {
                List<double[]>[] res = new List[] {new ArrayList<>(), new ArrayList<>(), new ArrayList<>()};
                for (int r = 0; r < rounds; r++) {
                    for (int arm : new int[] {0, 1, 2, 2, 1, 0}) {
                        res[arm].add(arm == 2 ? fio(file, write, millis) : run(file, write, arm == 0, millis));
                    }
                }
                String what = write ? "randwrite" : "randread ";
                System.out.println(what + "  mapped wall " + stats(res[0], 0) + " cpu " + stats(res[0], 1)
                    + "  |  preadv/pwritev wall " + stats(res[1], 0) + " cpu " + stats(res[1], 1)
                    + "  |  fio psync wall " + stats(res[2], 0) + " cpu " + stats(res[2], 1)
                    + "  |  median cpu mapped/syscall " + String.format(Locale.ROOT, "%.2f", median(res[0], 1) / median(res[1], 1))
                    + ", mapped/fio " + String.format(Locale.ROOT, "%.2f", median(res[0], 1) / median(res[2], 1)));
            }
            System.out.println("load after: " + Files.readString(Path.of("/proc/loadavg")).trim());
        } finally {
            Files.deleteIfExists(file);
        }
    }

    /** {wall µs per I/O, thread CPU µs per I/O} through the VSP's inline engine, as a queue runs it at QD1. */
    private static double[] run(Path file, boolean write, boolean mapped, long millis) throws Exception {
        ThreadMXBean mx = ManagementFactory.getThreadMXBean();
        try (RawDisk disk = RawDisk.openFile(file, false, true); Arena arena = Arena.ofConfined();
             InlineEngine engine = new InlineEngine(disk, 4, mapped)) {
            IoVecs v = IoVecs.of(arena.allocate(BLOCK, BLOCK));
            SplittableRandom rnd = new SplittableRandom(7);
            long blocks = FILE_BYTES / BLOCK;
            long[] got = new long[1];
            long end = System.nanoTime() + millis * 1_000_000L;
            long cpu0 = mx.getCurrentThreadCpuTime();
            long t0 = System.nanoTime();
            long ios = 0;
            while ((ios & 255) != 0 || System.nanoTime() < end) {
                long off = rnd.nextLong(blocks) * BLOCK;
                if (!(write ? engine.tryWrite(off, v, ios) : engine.tryRead(off, v, ios))) {
                    throw new IllegalStateException("engine full at QD1");
                }
                engine.submit();
                engine.poll((u, r) -> got[0] = r);
                if (got[0] != BLOCK) {
                    throw new IllegalStateException("I/O returned " + got[0]);
                }
                ios++;
            }
            double wall = (System.nanoTime() - t0) / 1_000.0 / ios;
            double cpu = (mx.getCurrentThreadCpuTime() - cpu0) / 1_000.0 / ios;
            if (mapped && (disk.pageCacheMapping() == null || disk.pageCacheMapping().mappedIos() < ios)) {
                throw new IllegalStateException("not served by copies: " + disk.pageCacheMapping());
            }
            return new double[] {wall, cpu};
        }
    }

    /** {wall µs per I/O (1e6 / IOPS), usr+sys CPU µs per I/O} of fio psync QD1 on the same file. */
    private static double[] fio(Path file, boolean write, long millis) throws Exception {
        Process p = new ProcessBuilder("fio", "--name=peer", "--filename=" + file, "--rw=" + (write ? "randwrite" : "randread"),
            "--bs=4k", "--ioengine=psync", "--iodepth=1", "--runtime=" + millis + "ms", "--time_based",
            "--norandommap", "--randrepeat=0", "--size=" + FILE_BYTES, "--output-format=json").redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        p.waitFor();
        String job = out.substring(out.indexOf("\"jobs\""));
        String side = write ? "\"write\"" : "\"read\"";
        String part = job.substring(job.indexOf(side));
        double iops = number(part, "iops");
        double ios = number(part, "total_ios");
        double usr = number(job, "usr_cpu");
        double sys = number(job, "sys_cpu");
        double runtimeMs = number(part, "runtime");
        return new double[] {1e6 / iops, (usr + sys) / 100.0 * runtimeMs * 1_000.0 / ios};
    }

    private static double number(String json, String key) {
        Matcher m = Pattern.compile("\"" + key + "\"\\s*:\\s*([-0-9.eE+]+)").matcher(json);
        if (!m.find()) {
            throw new IllegalStateException("fio output has no " + key);
        }
        return Double.parseDouble(m.group(1));
    }

    private static double median(List<double[]> l, int k) {
        double[] s = l.stream().mapToDouble(a -> a[k]).sorted().toArray();
        return s[s.length / 2];
    }

    private static String stats(List<double[]> l, int k) {
        double[] s = l.stream().mapToDouble(a -> a[k]).sorted().toArray();
        return String.format(Locale.ROOT, "%.2f/%.2f/%.2f", s[0], s[s.length / 2], s[s.length - 1]);
    }
}
