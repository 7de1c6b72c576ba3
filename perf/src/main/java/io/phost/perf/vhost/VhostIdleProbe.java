package io.phost.perf.vhost;

import io.phost.core.vhost.VhostUserFrontend;
import io.phost.core.vmbus.PollingMode;
import io.phost.storage.backend.MemoryDisk;
import io.phost.storage.vhost.VhostUserBlkExport;
import io.phost.vhdx.VirtualDisk;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.LongSupplier;

/**
 * The CPU an idle vhost-user-blk device costs in each {@code [host] polling} mode (issue 19 item 6 for vhost-user):
 * a null disk exported with one queue, a connected driver that ran 2,000 QD1 reads and then sends nothing; the
 * export's threads' CPU time over {@code SECONDS} of idleness, as a share of one core. Then the same device at a
 * light load (one request every {@code GAP_MS} ms). Run: {@code java -cp 'dist/lib/*' io.phost.perf.vhost.VhostIdleProbe
 * [SECONDS] [GAP_MS]}.
 */
public final class VhostIdleProbe {
    private VhostIdleProbe() {}

    public static void main(String[] args) throws Exception {
        double seconds = args.length > 0 ? Double.parseDouble(args[0]) : 5;
        int gapMs = args.length > 1 ? Integer.parseInt(args[1]) : 10;
        Path dir = Files.createTempDirectory("vhost-idle");
        for (PollingMode mode : PollingMode.values()) {
            Path sock = dir.resolve(mode.name().toLowerCase(java.util.Locale.ROOT) + ".sock");
            long[] existing = BackendCpu.existingThreads();
            try (VirtualDisk disk = MemoryDisk.nullDisk(64L << 20);
                 VhostUserBlkExport e = VhostUserBlkExport.start("idle-" + mode, disk, sock,
                     VhostUserBlkExport.Options.defaults().withQueues(1).withPolling(mode));
                 VhostUserFrontend f = VhostBenchSuite.connect(sock, 16L << 20)) {
                f.negotiate(VhostBenchSuite.WANTED);
                VhostUserFrontend.Queue q = f.startQueue(0, 128);
                VhostBlkLoad.run(f, q, false, 4096, 1, 64L << 20, 0.2, 1);
                LongSupplier cpu = BackendCpu.threadsStartedAfter(existing);
                long c0 = cpu.getAsLong();
                long t0 = System.nanoTime();
                Thread.sleep((long) (seconds * 1000));
                double idle = (cpu.getAsLong() - c0) / (double) (System.nanoTime() - t0);
                c0 = cpu.getAsLong();
                t0 = System.nanoTime();
                long n = 0;
                while (System.nanoTime() - t0 < (long) (seconds * 1e9)) {
                    VhostBlkLoad.run(f, q, false, 4096, 1, 64L << 20, 0, n);
                    n++;
                    Thread.sleep(gapMs);
                }
                double light = (cpu.getAsLong() - c0) / (double) (System.nanoTime() - t0);
                System.out.printf("%-10s idle %.4f%% of a core; one request per %d ms: %.3f%% of a core (%d requests)%n",
                    mode.name().toLowerCase(java.util.Locale.ROOT), idle * 100, gapMs, light * 100, n);
            }
        }
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }
}
