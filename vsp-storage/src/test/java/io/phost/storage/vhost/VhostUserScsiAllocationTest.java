package io.phost.storage.vhost;

import io.phost.core.vhost.VhostUserFrontend;
import io.phost.core.tools.AllocationWindows;
import io.phost.qos.QosFlow;
import io.phost.vhdx.RawDisk;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiTarget;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.management.ManagementFactory;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;

import static io.phost.storage.vhost.VirtioScsiDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The vhost-user-scsi request queue worker allocates nothing per command once warm: READ(16)/WRITE(16) of
 * 4 KiB through the whole path, with INFLIGHT_SHMFD tracking on (the front-end took an inflight region).
 */
@Timeout(120)
class VhostUserScsiAllocationTest {
    private static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    @Test
    void shouldNotAllocatePerCommandOnTheRequestQueueWorker() throws Exception {
        Path file = Files.createTempFile(Path.of("/dev/shm"), "vhost-scsi-alloc", ".raw");
        Path sock = Files.createTempDirectory("vhost-scsi-alloc").resolve("alloc.sock");
        RawDisk.createSparse(file, 16L << 20);
        try (RawDisk disk = RawDisk.openFile(file, false, true)) {
            ScsiTarget t = new ScsiTarget();
            t.add(0, new ScsiLun("alloc", disk, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO));
            try (VhostUserScsiExport e = VhostUserScsiExport.start("vhost-scsi-alloc", t, sock, VhostUserScsiExport.Options.defaults().withRequestQueues(1));
                 VhostUserFrontend f = VhostUserFrontend.connect(sock, 8 << 20)) {
                f.negotiate(~0L);
                f.getInflight(3, 64);
                f.startQueue(CONTROL_QUEUE, 16);
                f.startQueue(EVENT_QUEUE, 16);
                VhostUserFrontend.Queue q = f.startQueue(FIRST_REQUEST_QUEUE, 64);
                long req = f.alloc(REQ_LENGTH, 8);
                long resp = f.alloc(RESP_LENGTH, 8);
                long buf = f.alloc(4096, 4096);
                MemorySegment r = f.at(req, REQ_LENGTH);
                r.fill((byte) 0);
                r.set(ValueLayout.JAVA_BYTE, 0, (byte) 1);
                run(f, q, r, req, resp, buf, 20_000); // warm-up
                var mx = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
                Thread worker = Thread.getAllStackTraces().keySet().stream()
                    .filter(th -> th.getName().equals("vhost-scsi-alloc-q2")).findFirst()
                    .orElseThrow(() -> new AssertionError("no request queue worker"));
                AllocationWindows.Result w = AllocationWindows.measure(5_000, () -> run(f, q, r, req, resp, buf, 5_000),
                    () -> mx.getThreadAllocatedBytes(worker.threadId()));
                System.out.println("vhost-user-scsi worker bytes per 5000-command window:" + w.windows());
                assertTrue(w.withinJdkSlice(), "worker " + w.describe("commands"));
                assertEquals(null, e.lastError());
            }
        } finally {
            Files.deleteIfExists(file);
        }
    }

    private static void run(VhostUserFrontend f, VhostUserFrontend.Queue q, MemorySegment r, long req, long resp, long buf, int n) {
        for (int i = 0; i < n; i++) {
            boolean read = (i & 1) == 0;
            r.set(ValueLayout.JAVA_BYTE, REQ_CDB_OFFSET, (byte) (read ? 0x88 : 0x8A));
            r.set(BE64, REQ_CDB_OFFSET + 2, (i % 4000) * 8L);
            r.set(BE32, REQ_CDB_OFFSET + 10, 8);
            if (read) {
                q.add(new long[] {req, resp, buf}, new int[] {REQ_LENGTH, RESP_LENGTH, 4096}, new boolean[] {false, true, true});
            } else {
                q.add(new long[] {req, buf, resp}, new int[] {REQ_LENGTH, 4096, RESP_LENGTH}, new boolean[] {false, false, true});
            }
            q.kick();
            assertNotNull(q.awaitUsed(10_000));
            assertEquals(0, f.at(resp, RESP_LENGTH).get(ValueLayout.JAVA_BYTE, RESP_STATUS_OFFSET), "GOOD");
        }
    }
}
