package io.phost.storage.vhost;

import io.phost.core.vhost.VhostUserFrontend;
import io.phost.core.vhost.VhostUserRequest;
import io.phost.qos.QosFlow;
import io.phost.vhdx.RawDisk;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiTarget;
import io.phost.storage.tools.Proc;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;

import static io.phost.storage.vhost.ScsiTestDriver.BE64;
import static io.phost.storage.vhost.ScsiTestDriver.INQUIRY;
import static io.phost.storage.vhost.ScsiTestDriver.READ_CAPACITY_16;
import static io.phost.storage.vhost.ScsiTestDriver.rw16;
import static io.phost.storage.vhost.VirtioScsiDescriptor.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * vhost-user-scsi with the test front-end standing in for QEMU: INQUIRY, READ CAPACITY, WRITE/READ through
 * guest memory on two LUNs of a raw file each, a missing LUN, another target, a command without room for
 * the response, and the control queue's TMF; then qemu-io checks the images.
 */
@Timeout(60)
class VhostUserScsiTest {
    @TempDir
    Path dir;

    /** A grown LUN raises VIRTIO_SCSI_T_PARAM_CHANGE (asc/ascq 0x2A/0x09) in a buffer of the event queue. */
    @Test
    void shouldRaiseAParameterChangeEventWhenALunGrows() throws Exception {
        Path a = dir.resolve("grow.raw");
        RawDisk.createSparse(a, 8L << 20);
        try (RawDisk da = RawDisk.openFile(a, false, false)) {
            ScsiTarget t = new ScsiTarget();
            t.add(3, new ScsiLun("grow", da, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO));
            try (VhostUserScsiExport e = VhostUserScsiExport.start("scsi", t, dir.resolve("s.sock"), VhostUserScsiExport.Options.defaults().withRequestQueues(1));
                 ScsiTestDriver d = ScsiTestDriver.connect(e, 8 << 20, ~0L, 16, 16)) {
                VhostUserFrontend f = d.f;
                VhostUserFrontend.Queue events = d.events;
                long ev = f.alloc(EVENT_LENGTH, 8);
                f.at(ev, EVENT_LENGTH).fill((byte) 0x77);
                int head = events.add(new long[] {ev}, new int[] {EVENT_LENGTH}, new boolean[] {true});
                events.kick();
                Thread.sleep(100); // the worker holds the buffer; nothing to report yet
                assertEquals(0, events.usedIndex(), "no event before a change");

                assertTrue(e.capacityChanged(3));
                int[] u = events.awaitUsed(5_000);
                assertNotNull(u, "the event buffer came back");
                assertArrayEquals(new int[] {head, EVENT_LENGTH}, u);
                MemorySegment m = f.at(ev, EVENT_LENGTH);
                assertEquals(3, m.get(LE32, 0), "VIRTIO_SCSI_T_PARAM_CHANGE");
                // lun[2] without the flat-space 0x40 below LUN 256, as QEMU sends it: Linux's virtio_scsi reads lun[2] << 8 | lun[3]
                assertArrayEquals(new byte[] {1, 0, 0, 3, 0, 0, 0, 0}, m.asSlice(4, 8).toArray(ValueLayout.JAVA_BYTE), "LUN 3 of target 0");
                assertEquals(0x2A, m.get(ValueLayout.JAVA_BYTE, 12), "asc CAPACITY DATA HAS CHANGED");
                assertEquals(0x09, m.get(ValueLayout.JAVA_BYTE, 13), "ascq");

                // A change while the driver has no buffer posted waits for the next buffer.
                assertTrue(e.capacityChanged(3));
                Thread.sleep(100);
                long ev2 = f.alloc(EVENT_LENGTH, 8);
                int head2 = events.add(new long[] {ev2}, new int[] {EVENT_LENGTH}, new boolean[] {true});
                events.kick();
                assertArrayEquals(new int[] {head2, EVENT_LENGTH}, events.awaitUsed(5_000));
                assertEquals(3, f.at(ev2, EVENT_LENGTH).get(LE32, 0));
                assertNull(e.lastError());
            }
        }
    }

    @Test
    void shouldServeScsiCommandsOnTwoLunsAndTheControlQueue() throws Exception {
        Path a = dir.resolve("a.raw");
        Path b = dir.resolve("b.raw");
        RawDisk.createSparse(a, 8L << 20);
        RawDisk.createSparse(b, 16L << 20);
        try (RawDisk da = RawDisk.openFile(a, false, false); RawDisk db = RawDisk.openFile(b, false, false)) {
            ScsiTarget t = new ScsiTarget();
            t.add(0, new ScsiLun("a", da, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO));
            t.add(1, new ScsiLun("b", db, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO));
            try (VhostUserScsiExport e = VhostUserScsiExport.start("scsi", t, dir.resolve("s.sock"), VhostUserScsiExport.Options.defaults().withRequestQueues(1));
                 ScsiTestDriver d = ScsiTestDriver.connect(e, 8 << 20, ~0L, 16, 64)) {
                VhostUserFrontend f = d.f;
                assertEquals(3, f.getU64(VhostUserRequest.GET_QUEUE_NUM), "control, event, one request queue");
                VhostUserFrontend.Queue ctrl = d.control;
                VhostUserFrontend.Queue q = d.requests;

                long buf = f.alloc(64 << 10, 4096);
                int[] r = d.command(0, INQUIRY, buf, 96, true);
                assertEquals(S_OK, r[0]);
                assertEquals(0, r[1], "GOOD");
                assertEquals(0, f.at(buf, 1).get(ValueLayout.JAVA_BYTE, 0) & 0x1F, "direct-access device");

                r = d.command(1, READ_CAPACITY_16, buf, 32, true);
                assertEquals(0, r[1]);
                assertEquals((16L << 20) / 512 - 1, f.at(buf, 8).get(BE64, 0), "LUN 1's last LBA");

                f.at(buf, 64 << 10).fill((byte) 0xC3);
                r = d.command(1, rw16(0x8A, 2048, 128), buf, 64 << 10, false); // WRITE(16) 64 KiB at 1 MiB
                assertEquals(0, r[1]);
                assertEquals(0, r[2], "no residual");
                f.at(buf, 64 << 10).fill((byte) 0);
                r = d.command(1, rw16(0x88, 2048, 128), buf, 64 << 10, true); // READ(16)
                assertEquals(0, r[1]);
                assertEquals(RESP_LENGTH + (64 << 10), r[3], "used length = response + data in");
                assertEquals((byte) 0xC3, f.at(buf + 65535, 1).get(ValueLayout.JAVA_BYTE, 0));

                r = d.command(5, new byte[] {0x00, 0, 0, 0, 0, 0}, 0, 0, false); // TEST UNIT READY on a missing LUN
                assertEquals(S_OK, r[0]);
                assertEquals(2, r[1], "CHECK CONDITION");
                assertEquals(5, r[4], "ILLEGAL REQUEST (logical unit not supported)");

                r = ScsiTestDriver.command(f, q, 3, 0, new byte[] {0x00, 0, 0, 0, 0, 0}, 0, 0, false); // another target
                assertEquals(S_BAD_TARGET, r[0]);

                r = d.command(0, rw16(0x88, 1L << 40, 8), buf, 4096, true); // READ past the end
                assertEquals(2, r[1]);
                assertEquals(4096, r[2], "nothing transferred");

                long tmf = f.alloc(TMF_LENGTH, 8);
                long tresp = f.alloc(1, 8);
                f.at(tmf, TMF_LENGTH).fill((byte) 0);
                f.at(tmf, 8).set(LE32, 4, 5); // LOGICAL UNIT RESET
                f.at(tmf, TMF_LENGTH).set(ValueLayout.JAVA_BYTE, TMF_LUN_OFFSET, (byte) 1); // target 0, LUN 0
                f.at(tmf, TMF_LENGTH).set(ValueLayout.JAVA_BYTE, TMF_LUN_OFFSET + 2, (byte) 0x40);
                f.at(tresp, 1).set(ValueLayout.JAVA_BYTE, 0, (byte) 0x55);
                ctrl.add(new long[] {tmf, tresp}, new int[] {TMF_LENGTH, 1}, new boolean[] {false, true});
                ctrl.kick();
                assertNotNull(ctrl.awaitUsed(5_000));
                assertEquals(S_FUNCTION_COMPLETE, f.at(tresp, 1).get(ValueLayout.JAVA_BYTE, 0));

                long req = f.alloc(REQ_LENGTH, 8);
                long small = f.alloc(16, 8);
                int head = q.add(new long[] {req, small}, new int[] {REQ_LENGTH, 16}, new boolean[] {false, true});
                q.kick();
                int[] u = q.awaitUsed(5_000);
                assertEquals(head, u[0]);
                assertEquals(0, u[1], "no room for a response: returned untouched");
                assertEquals(null, e.lastError());
            }
        }
        String out = Proc.ok(60, "qemu-io", "-f", "raw", "-c", "read -P 0xc3 1M 64k", "-c", "read -P 0 0 1M", b.toString());
        assertFalse(out.contains("Pattern verification failed"), out);
        assertTrue(Proc.ok(60, "qemu-io", "-f", "raw", "-c", "read -P 0 0 1M", a.toString()).contains("read"));
    }
}
