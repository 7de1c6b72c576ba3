package io.phost.vhdx.ops;

import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.Tools;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Merge throughput of a checkpoint delete ({@link OnlineMerge} prepare + apply) against {@code qemu-img commit}.
 * qemu-img cannot open differencing VHDX, so its chain is qcow2 with the same data: a 512 MiB base and a
 * child holding 128 MiB (every other MiB). Three rounds, each tool first in one of them (the order rotates);
 * run with {@code -Dphost.bench=true}.
 * <p>Every timed part starts from the same page-cache state ({@link #recyclePageCache}): each tool writes
 * 128 MiB of new page cache, and on a VM whose untouched guest memory is backed lazily the first touch of a
 * page costs more than the copy itself (a plain pread/pwrite copy of the same 128 MiB: ~30 ms into just-freed
 * pages, ~250 ms into untouched ones), so with a fixed order the tool whose turn came after a large free won.
 * <pre>
 *   qemu-img create -f qcow2 base.qcow2 512M; qemu-img create -f qcow2 -b base.qcow2 -F qcow2 child.qcow2
 *   qemu-io -f qcow2 child.qcow2 -c "write -P 85 0 1M" -c "write -P 85 2M 1M" ...; qemu-img commit child.qcow2
 * </pre>
 */
class MergeThroughputBench {
    private static final long SIZE = 512L << 20;
    private static final int MIB = 1 << 20;
    private static final int CHUNKS = 128;

    @TempDir
    Path dir;

    @Test
    void shouldMeasureOnlineMergeAgainstQemuImgCommit() throws Exception {
        Assumptions.assumeTrue(Boolean.getBoolean("phost.bench"), "benchmark: -Dphost.bench=true");
        Tools.assumeTool("qemu-img");
        List<Double> ours = new ArrayList<>();
        List<Double> offline = new ArrayList<>();
        List<Double> qemu = new ArrayList<>();
        for (int round = 1; round <= 3; round++) {
            for (int k = 0; k < 3; k++) {
                switch ((round - 1 + k) % 3) {
                    case 0 -> ours.add(vhdxMerge(round));
                    case 1 -> offline.add(vhdxOfflineMerge(round));
                    default -> qemu.add(qcow2Commit(round));
                }
            }
            System.out.printf("merge round %d: phost online merge %.1f MiB/s, phost vhd merge %.1f MiB/s, qemu-img commit (qcow2) "
                + "%.1f MiB/s%n", round, ours.getLast(), offline.getLast(), qemu.getLast());
        }
        System.out.println("merge phost MiB/s min/median/max = " + summary(ours) + "; phost vhd merge = " + summary(offline)
            + "; qemu-img commit = " + summary(qemu));
    }

    /** {@code phost vhd merge CHILD} (DiskOps.mergeIntoParent: journal, copy once, flush, child deleted). */
    private double vhdxOfflineMerge(int round) throws Exception {
        Path child = chain("o" + round);
        recyclePageCache();
        long t0 = System.nanoTime();
        DiskOps.mergeIntoParent(child, false, Progress.NONE);
        return CHUNKS / ((System.nanoTime() - t0) / 1e9);
    }

    private double vhdxMerge(int round) throws Exception {
        Path child = chain("n" + round);
        recyclePageCache();
        long t0 = System.nanoTime();
        OnlineMerge.prepare(child, Progress.NONE);
        OnlineMerge.apply(child, Progress.NONE);
        double s = (System.nanoTime() - t0) / 1e9;
        OnlineMerge.finish(child);
        return CHUNKS / s;
    }

    /** A 512 MiB VHDX base (1 MiB blocks) and a child holding every other MiB; returns the child. */
    private Path chain(String name) throws Exception {
        Path base = dir.resolve(name + ".vhdx");
        Path child = dir.resolve(name + ".avhdx");
        VirtualDisks.create(base, CreateOptions.of(DiskFormat.VHDX, DiskType.DYNAMIC, SIZE).withBlockSize(MIB)).close();
        try (VirtualDisk c = VirtualDisks.create(child, CreateOptions.differencing(DiskFormat.VHDX, base));
             Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(MIB, 4096);
            buf.fill((byte) 85);
            for (int i = 0; i < CHUNKS; i++) {
                c.write(2L * i * MIB, buf);
            }
            c.flush();
        }
        return child;
    }

    private double qcow2Commit(int round) throws Exception {
        Path base = dir.resolve("b" + round + ".qcow2");
        Path child = dir.resolve("c" + round + ".qcow2");
        Tools.runOk("qemu-img", "create", "-q", "-f", "qcow2", base.toString(), Long.toString(SIZE));
        Tools.runOk("qemu-img", "create", "-q", "-f", "qcow2", "-b", base.toString(), "-F", "qcow2", child.toString());
        List<String> cmd = new ArrayList<>(List.of("qemu-io", "-f", "qcow2", child.toString()));
        for (int i = 0; i < CHUNKS; i++) {
            cmd.add("-c");
            cmd.add("write -q -P 85 " + (2L * i * MIB) + " " + MIB);
        }
        Tools.runOk(cmd.toArray(String[]::new));
        recyclePageCache();
        long t0 = System.nanoTime();
        Tools.runOk("qemu-img", "commit", "-q", "-f", "qcow2", child.toString());
        return CHUNKS / ((System.nanoTime() - t0) / 1e9);
    }

    /** Writes and deletes 256 MiB, so the next tool's new page cache lands on just-freed, already backed pages. */
    private void recyclePageCache() throws Exception {
        Path scratch = dir.resolve("scratch");
        try (FileChannel ch = FileChannel.open(scratch, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            ByteBuffer b = ByteBuffer.allocateDirect(MIB);
            for (int i = 0; i < 2 * CHUNKS; i++) {
                ch.write(b.clear(), (long) i * MIB);
            }
        }
        Files.delete(scratch);
    }

    private static String summary(List<Double> v) {
        double[] a = v.stream().mapToDouble(Double::doubleValue).toArray();
        Arrays.sort(a);
        return String.format("%.1f/%.1f/%.1f", a[0], a[a.length / 2], a[a.length - 1]);
    }
}
