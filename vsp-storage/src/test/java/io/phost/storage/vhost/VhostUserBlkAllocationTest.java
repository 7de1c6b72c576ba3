package io.phost.storage.vhost;

import io.phost.core.vhost.VhostUserFrontend;
import io.phost.vhdx.RawDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;

import static io.phost.storage.vhost.VirtioBlkDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The vhost-user-blk queue worker allocates nothing per I/O once warm: 4 KiB reads and writes through the
 * whole path (avail ring, chain walk and translation, virtio-blk decode, SCSI command, engine on a tmpfs
 * file, status byte, used ring, call eventfd), with the worker thread's allocated-bytes counter read
 * before and after.
 */
@Timeout(120)
class VhostUserBlkAllocationTest {
    /**
     * What the JDK itself may allocate per downcall that captures errno: {@code SharedUtils.checkCaptureSegment}
     * slices the capture segment (a 40-byte {@code NativeMemorySegmentImpl}), normally scalar-replaced by C2.
     * In some JVMs of the same build it is not, for the whole run (seen in 2 of 4 clean-clone runs, with 20,000
     * and with 150,000 warm-up I/Os alike; async-profiler alloc mode names only that site, in the preadv/pwritev,
     * poll and eventfd downcalls). Tolerated here, so that anything of ours on top of it still fails.
     */
    static final int FFM_ERRNO_SLICE_BYTES = 40;

    @Test
    void shouldNotAllocatePerIoOnTheQueueWorkerThread() throws Exception {
        measure(~0L, "vhost-alloc");
    }

    @Test
    void shouldNotAllocatePerIoOnAPackedQueue() throws Exception {
        measure(~(1L << io.phost.core.vhost.VhostUserDescriptor.F_LOG_ALL), "vhost-palloc");
    }

    private static void measure(long wanted, String name) throws Exception {
        Path file = Files.createTempFile(Path.of("/dev/shm"), "vhost-alloc", ".raw");
        Path sock = Files.createTempDirectory("vhost-alloc").resolve("alloc.sock");
        RawDisk.createSparse(file, 16L << 20);
        try (RawDisk disk = RawDisk.openFile(file, false, true);
             VhostUserBlkExport e = VhostUserBlkExport.start(name, disk, sock, VhostUserBlkExport.Options.defaults().withQueues(1));
             VhostUserFrontend f = VhostUserFrontend.connect(sock, 8 << 20)) {
            long features = f.negotiate(wanted);
            assertEquals(wanted != ~0L, (features & (1L << io.phost.core.vhost.VhostUserDescriptor.F_RING_PACKED)) != 0);
            if (wanted != ~0L) {
                f.getInflight(1, 64); // the packed ring with inflight tracking, as QEMU 7.2 runs packed=on
            }
            VhostUserBlkTest.Blk blk = new VhostUserBlkTest.Blk(f, f.startQueue(0, 64));
            long buf = f.alloc(4096, 4096);
            run(blk, buf, 20_000); // warm-up: JIT, engine setup
            var mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
            Thread worker = Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().equals(name + "-q0")).findFirst()
                .orElseThrow(() -> new AssertionError("no queue worker: " + Thread.getAllStackTraces().keySet()));
            // Windows judged by the best one the JIT stayed out of. Under load (2 vCPUs, load 30) C2 runs late:
            // seen 65-90 B/IO in all of three windows right after the warm-up, and 328 B in one window of an
            // otherwise clean run (also one 744 B window with no compilation: a one-off, not per I/O; its path is
            // not identified). The likely cause of the 65-90 B/IO (not proven): until the downcall paths (preadv/pwritev, poll, eventfd) are C2-compiled,
            // FFM's capture-segment slice is not scalar-replaced, and a recompilation mid-window allocates on
            // the worker too. So measure until a window passes with no compilation anywhere in the JVM
            // (CompilationMXBean time unchanged); a steady per-I/O allocation of ours shows in that window too.
            var jit = ManagementFactory.getCompilationMXBean();
            int ios = 5_000;
            long best = Long.MAX_VALUE;
            boolean quiet = false;
            StringBuilder seen = new StringBuilder();
            long deadline = System.nanoTime() + 60_000_000_000L;
            for (int w = 0; w < 3 || (!quiet && w < 40 && System.nanoTime() - deadline < 0); w++) {
                long jitBefore = jit.getTotalCompilationTime();
                long before = mx.getThreadAllocatedBytes(worker.threadId());
                run(blk, buf, ios);
                long after = mx.getThreadAllocatedBytes(worker.threadId());
                boolean windowQuiet = jit.getTotalCompilationTime() == jitBefore;
                seen.append(' ').append(after - before).append(windowQuiet ? "" : "(jit)");
                if (windowQuiet && !quiet) {
                    best = Long.MAX_VALUE; // from now on judge only windows the JIT stayed out of
                }
                if (windowQuiet || !quiet) {
                    best = Math.min(best, after - before);
                }
                quiet |= windowQuiet;
            }
            System.out.println(name + " worker bytes per " + ios + "-I/O window:" + seen);
            double perIo = best / (double) ios;
            assertTrue(perIo < 16 + FFM_ERRNO_SLICE_BYTES, "worker allocated at best " + best + " bytes for " + ios
                + " I/Os (" + perIo + " B/IO" + (quiet ? "" : ", no window without JIT activity") + "); windows:" + seen);
        } finally {
            Files.deleteIfExists(file);
        }
    }

    private static void run(VhostUserBlkTest.Blk blk, long buf, int n) {
        for (int i = 0; i < n; i++) {
            int type = (i & 1) == 0 ? T_IN : T_OUT;
            assertEquals(S_OK, blk.request(type, (i % 4000) * 8L, buf, 4096, type == T_IN)[0]);
        }
    }
}
