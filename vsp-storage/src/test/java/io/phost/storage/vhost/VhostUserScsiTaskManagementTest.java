package io.phost.storage.vhost;

import io.phost.core.vhost.VhostUserFrontend;
import io.phost.qos.QosFlow;
import io.phost.storage.backend.MemoryDisk;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiTarget;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.file.Path;

import static io.phost.storage.vhost.VirtioScsiDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * virtio-scsi task management through the control queue onto the core: a READ held by a paused LUN is
 * aborted by ABORT TASK (the command comes back VIRTIO_SCSI_S_ABORTED / TASK ABORTED, the TMF FUNCTION
 * COMPLETE); QUERY TASK answers FUNCTION SUCCEEDED only while the task exists; a missing LUN is INCORRECT LUN.
 */
@Timeout(60)
class VhostUserScsiTaskManagementTest {
    private static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    @TempDir
    Path dir;

    private static void lunAddress(MemorySegment s, long at, int lun) {
        s.set(ValueLayout.JAVA_BYTE, at, (byte) 1);
        s.set(ValueLayout.JAVA_BYTE, at + 2, (byte) (0x40 | (lun >> 8)));
        s.set(ValueLayout.JAVA_BYTE, at + 3, (byte) lun);
    }

    /** Sends one TMF and returns its response byte. */
    private static int tmf(VhostUserFrontend f, VhostUserFrontend.Queue ctrl, int subtype, int lun, long id) {
        long req = f.alloc(TMF_LENGTH, 8);
        long resp = f.alloc(1, 8);
        MemorySegment m = f.at(req, TMF_LENGTH);
        m.fill((byte) 0);
        m.set(LE32, TMF_SUBTYPE_OFFSET, subtype);
        lunAddress(m, TMF_LUN_OFFSET, lun);
        m.set(LE64, TMF_ID_OFFSET, id);
        f.at(resp, 1).set(ValueLayout.JAVA_BYTE, 0, (byte) 0x55);
        ctrl.add(new long[] {req, resp}, new int[] {TMF_LENGTH, 1}, new boolean[] {false, true});
        ctrl.kick();
        assertNotNull(ctrl.awaitUsed(10_000), "TMF answered");
        return f.at(resp, 1).get(ValueLayout.JAVA_BYTE, 0);
    }

    /**
     * Waits until the request queue has taken the command from the ring: the control queue runs on its own thread,
     * so under load a QUERY TASK can overtake the kick, and a task the target has not received does not exist
     * (FUNCTION COMPLETE is then the right answer; it failed this test once). Until then QUERY TASK may only
     * say COMPLETE; anything else, or no SUCCEEDED within 10 s, fails.
     */
    private static void awaitTaskReceived(VhostUserFrontend f, VhostUserFrontend.Queue ctrl, long id) throws InterruptedException {
        long deadline = System.nanoTime() + 10_000_000_000L;
        int answer;
        while ((answer = tmf(f, ctrl, TMF_QUERY_TASK, 0, id)) != S_FUNCTION_SUCCEEDED) {
            assertEquals(S_FUNCTION_COMPLETE, answer, "QUERY TASK before the command arrived");
            assertTrue(System.nanoTime() - deadline < 0, "the held READ never reached the target within 10 s");
            Thread.sleep(20);
        }
    }

    @Test
    void shouldAbortACommandThatHasNotStarted() throws Exception {
        ScsiTarget t = new ScsiTarget();
        ScsiLun lun0 = new ScsiLun("tmf0", MemoryDisk.ram(1 << 20, 512, false), QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO);
        t.add(0, lun0);
        try (VhostUserScsiExport e = VhostUserScsiExport.start("tmf", t, dir.resolve("s.sock"), VhostUserScsiExport.Options.defaults().withRequestQueues(1));
             VhostUserFrontend f = VhostUserFrontend.connect(e.socketPath(), 8 << 20)) {
            f.negotiate(~0L);
            VhostUserFrontend.Queue ctrl = f.startQueue(CONTROL_QUEUE, 16);
            f.startQueue(EVENT_QUEUE, 16);
            VhostUserFrontend.Queue q = f.startQueue(FIRST_REQUEST_QUEUE, 64);

            assertTrue(lun0.pauseIo(1_000));
            long req = f.alloc(REQ_LENGTH, 8);
            long resp = f.alloc(RESP_LENGTH, 8);
            long data = f.alloc(4096, 4096);
            MemorySegment r = f.at(req, REQ_LENGTH);
            r.fill((byte) 0);
            lunAddress(r, REQ_LUN_OFFSET, 0);
            r.set(LE64, REQ_ID_OFFSET, 0x1234_5678_9AL);
            r.set(ValueLayout.JAVA_BYTE, REQ_CDB_OFFSET, (byte) 0x28); // READ(10) of 8 blocks at LBA 0
            r.set(BE32, REQ_CDB_OFFSET + 2, 0);
            r.set(ValueLayout.JAVA_BYTE, REQ_CDB_OFFSET + 8, (byte) 8);
            f.at(resp, RESP_LENGTH).fill((byte) 0x77);
            int head = q.add(new long[] {req, resp, data}, new int[] {REQ_LENGTH, RESP_LENGTH, 4096}, new boolean[] {false, true, true});
            q.kick();
            assertNull(q.awaitUsed(300), "held while the LUN is paused");

            awaitTaskReceived(f, ctrl, 0x1234_5678_9AL);
            assertEquals(S_FUNCTION_SUCCEEDED, tmf(f, ctrl, TMF_QUERY_TASK, 0, 0x1234_5678_9AL), "the task exists");
            assertEquals(S_FUNCTION_COMPLETE, tmf(f, ctrl, TMF_QUERY_TASK, 0, 99), "no task with that id");
            assertEquals(S_INCORRECT_LUN, tmf(f, ctrl, TMF_ABORT_TASK, 7, 0x1234_5678_9AL));
            assertEquals(S_FUNCTION_REJECTED, tmf(f, ctrl, 2, 0, 0), "CLEAR ACA");
            assertEquals(S_FUNCTION_COMPLETE, tmf(f, ctrl, TMF_ABORT_TASK, 0, 0x1234_5678_9AL));
            int[] u = q.awaitUsed(10_000);
            assertNotNull(u, "the aborted command came back");
            assertEquals(head, u[0]);
            MemorySegment s = f.at(resp, RESP_LENGTH);
            assertEquals(S_ABORTED, s.get(ValueLayout.JAVA_BYTE, RESP_RESPONSE_OFFSET));
            assertEquals(0x40, s.get(ValueLayout.JAVA_BYTE, RESP_STATUS_OFFSET) & 0xFF, "TASK ABORTED");
            assertEquals(4096, s.get(LE32, RESP_RESIDUAL_OFFSET), "nothing transferred");
            assertEquals(S_FUNCTION_COMPLETE, tmf(f, ctrl, TMF_QUERY_TASK, 0, 0x1234_5678_9AL), "gone after the abort");
            assertEquals(0, lun0.inFlight());
            lun0.resumeIo();
            assertNull(e.lastError());
        }
    }
}
