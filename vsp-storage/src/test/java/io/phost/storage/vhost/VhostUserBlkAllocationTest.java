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
            // Three windows, judged by the best. Seen once under heavy load: a single 10,000-I/O window with
            // exactly 40 B/IO, 0 B in every rerun; the likely cause is the JIT recompiling the path mid-window
            // (not proven). A steady per-I/O allocation shows in every window and still fails.
            int ios = 5_000;
            long best = Long.MAX_VALUE;
            for (int w = 0; w < 3; w++) {
                long before = mx.getThreadAllocatedBytes(worker.threadId());
                run(blk, buf, ios);
                long after = mx.getThreadAllocatedBytes(worker.threadId());
                System.out.println(name + " worker: " + (after - before) + " bytes for " + ios + " I/Os");
                best = Math.min(best, after - before);
            }
            double perIo = best / (double) ios;
            assertTrue(perIo < 16 + FFM_ERRNO_SLICE_BYTES, "worker allocated at best " + best + " bytes for " + ios + " I/Os (" + perIo + " B/IO)");
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
