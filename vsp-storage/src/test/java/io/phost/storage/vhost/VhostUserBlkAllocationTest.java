package io.phost.storage.vhost;

import io.phost.core.vhost.VhostUserFrontend;
import io.phost.core.tools.AllocationWindows;
import io.phost.storage.backend.MemoryDisk;
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
 * before and after, judged as {@link AllocationWindows} says.
 */
@Timeout(120)
class VhostUserBlkAllocationTest {
    @Test
    void shouldNotAllocatePerIoOnTheQueueWorkerThread() throws Exception {
        measure(~0L, "vhost-alloc");
    }

    @Test
    void shouldNotAllocatePerIoOnAPackedQueue() throws Exception {
        measure(~(1L << io.phost.core.vhost.VhostUserDescriptor.F_LOG_ALL), "vhost-palloc");
    }

    /**
     * The path of the bench's "latency added by phost" point (phost bench vhost): a null disk, whose engine moves no
     * data, so everything measured is the vhost-user and core hand-off itself.
     */
    @Test
    void shouldNotAllocatePerIoOverANullDisk() throws Exception {
        measure(~0L, "vhost-nalloc", MemoryDisk.nullDisk(16L << 20));
    }

    private static void measure(long wanted, String name) throws Exception {
        Path file = Files.createTempFile(Path.of("/dev/shm"), "vhost-alloc", ".raw");
        RawDisk.createSparse(file, 16L << 20);
        try {
            measure(wanted, name, RawDisk.openFile(file, false, true));
        } finally {
            Files.deleteIfExists(file);
        }
    }

    /** Measures over {@code disk} (closed at the end). */
    private static void measure(long wanted, String name, io.phost.vhdx.VirtualDisk disk) throws Exception {
        Path sock = Files.createTempDirectory("vhost-alloc").resolve("alloc.sock");
        try (disk;
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
            // Judged by the best window the JIT stayed out of, tolerating the JDK's own errno-capture slice (AllocationWindows)
            AllocationWindows.Result r = AllocationWindows.measure(5_000, () -> run(blk, buf, 5_000),
                () -> mx.getThreadAllocatedBytes(worker.threadId()));
            System.out.println(name + " worker bytes per 5000-I/O window:" + r.windows());
            assertTrue(r.withinJdkSlice(), "worker " + r.describe("I/Os"));
        }
    }

    private static void run(VhostUserBlkTest.Blk blk, long buf, int n) {
        for (int i = 0; i < n; i++) {
            int type = (i & 1) == 0 ? T_IN : T_OUT;
            assertEquals(S_OK, blk.request(type, (i % 4000) * 8L, buf, 4096, type == T_IN)[0]);
        }
    }
}
