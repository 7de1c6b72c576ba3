package io.phost.storage.vhost;

import io.phost.core.vhost.VhostUserFrontend;
import io.phost.qos.QosFlow;
import io.phost.storage.engine.IoEngines;
import io.phost.storage.scsi.ScsiLun;
import io.phost.storage.scsi.ScsiTarget;
import io.phost.vhdx.RawDisk;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static io.phost.storage.vhost.ScsiTestDriver.BE64;
import static io.phost.storage.vhost.ScsiTestDriver.INQUIRY;
import static io.phost.storage.vhost.ScsiTestDriver.READ_CAPACITY_16;
import static io.phost.storage.vhost.ScsiTestDriver.rw16;
import static io.phost.storage.vhost.VirtioScsiDescriptor.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * LUN hot-add and hot-remove on a running vhost-user-scsi controller, with the test front-end standing in for
 * QEMU: with VIRTIO_SCSI_F_HOTPLUG acked, {@code addLun} / {@code removeLun} raise VIRTIO_SCSI_T_TRANSPORT_RESET
 * (RESCAN / REMOVED, LUN address 1, 0, 0, lun) on the event queue; events wait, in order, while the driver has no
 * buffer posted; when more wait than the mailbox holds, the next buffer gets VIRTIO_SCSI_T_EVENTS_MISSED. The added
 * LUN answers INQUIRY, READ CAPACITY and I/O at once; the removed one CHECK CONDITION / ILLEGAL REQUEST /
 * LOGICAL UNIT NOT SUPPORTED (asc 0x25). Without HOTPLUG acked no transport reset is sent.
 */
@Timeout(60)
class VhostUserScsiHotplugTest {
    private static final int TRANSPORT_RESET = 1;
    private static final int RESCAN = 1;
    private static final int REMOVED = 2;
    private static final int EVENTS_MISSED = 0x8000_0000;
    private static final int HOTPLUG_BIT = 1;

    @TempDir
    Path dir;

    /** An event as the driver reads it; {@code lun} is its 8 LUN bytes, big-endian. */
    private record Event(int type, long lun, int reason) {
    }

    @Test
    void shouldRaiseTransportResetEventsWhenLunsAreAddedAndRemovedLive() throws Exception {
        Path a = dir.resolve("a.raw");
        Path b = dir.resolve("b.raw");
        RawDisk.createSparse(a, 8L << 20);
        RawDisk.createSparse(b, 12L << 20);
        try (RawDisk da = RawDisk.openFile(a, false, false); RawDisk db = RawDisk.openFile(b, false, false)) {
            ScsiTarget t = new ScsiTarget();
            t.add(0, new ScsiLun("a", da, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO));
            try (VhostUserScsiExport e = VhostUserScsiExport.start("hp", t, dir.resolve("hp.sock"), VhostUserScsiExport.Options.defaults().withRequestQueues(1));
                 ScsiTestDriver d = ScsiTestDriver.connect(e, 16 << 20, ~0L, 256, 64)) {
                assertTrue((d.features & 1L << HOTPLUG_BIT) != 0, "VIRTIO_SCSI_F_HOTPLUG offered and acked");
                VhostUserFrontend f = d.f;
                VhostUserFrontend.Queue events = d.events;
                long buf = f.alloc(64 << 10, 4096);

                // LUN 5 added live: RESCAN for it, then it serves commands.
                List<Long> posted = post(f, events, 2);
                e.addLun(5, new ScsiLun("b", db, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO));
                assertEquals(new Event(TRANSPORT_RESET, lun(5), RESCAN), awaitEvent(f, events, posted));
                int[] r = d.command(5, INQUIRY, buf, 96, true);
                assertEquals(0, r[1], "INQUIRY GOOD on the added LUN");
                assertEquals(0, f.at(buf, 1).get(ValueLayout.JAVA_BYTE, 0) & 0xE0, "peripheral qualifier 000b: connected");
                r = d.command(5, READ_CAPACITY_16, buf, 32, true);
                assertEquals(0, r[1], "READ CAPACITY(16) GOOD");
                assertEquals((12L << 20) / 512 - 1, f.at(buf, 8).get(BE64, 0), "the added LUN's last LBA");
                f.at(buf, 4096).fill((byte) 0x3C);
                assertEquals(0, d.command(5, rw16(0x8A, 100, 8), buf, 4096, false)[1], "WRITE(16) GOOD");
                f.at(buf, 4096).fill((byte) 0);
                assertEquals(0, d.command(5, rw16(0x88, 100, 8), buf, 4096, true)[1], "READ(16) GOOD");
                assertEquals((byte) 0x3C, f.at(buf + 4095, 1).get(ValueLayout.JAVA_BYTE, 0), "read back what was written");

                // LUN 5 removed live: REMOVED for it, then LOGICAL UNIT NOT SUPPORTED.
                ScsiLun removed = e.removeLun(5);
                assertNotNull(removed);
                assertEquals(new Event(TRANSPORT_RESET, lun(5), REMOVED), awaitEvent(f, events, posted));
                r = d.command(5, rw16(0x88, 100, 8), buf, 4096, true);
                assertEquals(2, r[1], "CHECK CONDITION on the removed LUN");
                assertEquals(5, r[4], "ILLEGAL REQUEST");
                assertEquals(0x25, r[5], "LOGICAL UNIT NOT SUPPORTED");
                assertTrue(ScsiTarget.awaitIdle(removed, 5_000));
                r = d.command(0, rw16(0x88, 0, 8), buf, 4096, true);
                assertArrayEquals(new int[] {2, 6, 0x3F}, new int[] {r[1], r[4], r[5]},
                    "LUN 0's next command: CHECK CONDITION / UNIT ATTENTION / REPORTED LUNS DATA HAS CHANGED");
                assertEquals(0, d.command(0, rw16(0x88, 0, 8), buf, 4096, true)[1], "then LUN 0 serves as before");

                // Events wait, in order, while no buffer is posted.
                e.addLun(6, new ScsiLun("b6", db, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO));
                e.removeLun(6);
                e.addLun(7, new ScsiLun("b7", db, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO));
                Thread.sleep(100);
                posted = post(f, events, 3);
                assertEquals(new Event(TRANSPORT_RESET, lun(6), RESCAN), awaitEvent(f, events, posted));
                assertEquals(new Event(TRANSPORT_RESET, lun(6), REMOVED), awaitEvent(f, events, posted));
                assertEquals(new Event(TRANSPORT_RESET, lun(7), RESCAN), awaitEvent(f, events, posted));

                // More events than the mailbox holds while no buffer is posted: the next buffer says EVENTS_MISSED,
                // and the ones still held follow in order.
                for (int i = 0; i < ScsiEventMailbox.CAPACITY + 10; i++) {
                    if (i % 2 == 0) {
                        e.removeLun(7);
                    } else {
                        e.addLun(7, new ScsiLun("b7", db, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO));
                    }
                }
                Thread.sleep(100);
                posted = post(f, events, 2);
                Event missed = awaitEvent(f, events, posted);
                assertEquals(EVENTS_MISSED, missed.type(), "VIRTIO_SCSI_T_NO_EVENT | VIRTIO_SCSI_T_EVENTS_MISSED: " + missed);
                assertEquals(new Event(TRANSPORT_RESET, lun(7), REMOVED), awaitEvent(f, events, posted), "the oldest held event next");
                assertNull(e.lastError());
            }
        }
    }

    @Test
    void shouldSendNoTransportResetWithoutHotplugButStillServeTheAddedLun() throws Exception {
        Path a = dir.resolve("a.raw");
        RawDisk.createSparse(a, 8L << 20);
        try (RawDisk da = RawDisk.openFile(a, false, false)) {
            try (VhostUserScsiExport e = VhostUserScsiExport.start("nohp", new ScsiTarget(), dir.resolve("nohp.sock"),
                     VhostUserScsiExport.Options.defaults().withRequestQueues(1));
                 ScsiTestDriver d = ScsiTestDriver.connect(e, 8 << 20, ~(1L << HOTPLUG_BIT), 16, 16)) {
                assertEquals(0, d.features & 1L << HOTPLUG_BIT);
                VhostUserFrontend f = d.f;
                VhostUserFrontend.Queue events = d.events;
                post(f, events, 1);
                e.addLun(2, new ScsiLun("a", da, QosFlow.UNLIMITED, false, IoEngines.Kind.AUTO));
                Thread.sleep(300);
                assertEquals(0, events.usedIndex(), "no event without HOTPLUG");
                long buf = f.alloc(4096, 4096);
                assertEquals(0, d.command(2, INQUIRY, buf, 96, true)[1], "the LUN serves anyway");
                e.capacityChanged(2);
                assertNotNull(events.awaitUsed(5_000), "PARAM_CHANGE still goes out (CHANGE is acked)");
                assertNull(e.lastError());
            }
        }
    }

    /** LUN bytes 1, 0, 0, lun, 0, 0, 0, 0 (no 0x40 in byte 2 below LUN 256, as QEMU sends events). */
    private static long lun(int lun) {
        return 0x0100_0000_0000_0000L | (long) lun << 32;
    }

    /** Posts {@code n} event buffers (filled with 0x77) and kicks; returns their addresses by buffer id. */
    private static List<Long> post(VhostUserFrontend f, VhostUserFrontend.Queue events, int n) {
        List<Long> byId = new ArrayList<>();
        for (int i = 0; i < events.size; i++) {
            byId.add(0L);
        }
        for (int i = 0; i < n; i++) {
            long ev = f.alloc(EVENT_LENGTH, 8);
            f.at(ev, EVENT_LENGTH).fill((byte) 0x77);
            int id = events.add(new long[] {ev}, new int[] {EVENT_LENGTH}, new boolean[] {true});
            byId.set(id, ev);
        }
        events.kick();
        return byId;
    }

    private static Event awaitEvent(VhostUserFrontend f, VhostUserFrontend.Queue events, List<Long> posted) {
        int[] u = events.awaitUsed(5_000);
        assertNotNull(u, "an event buffer came back within 5 s");
        assertEquals(EVENT_LENGTH, u[1], "an event was written");
        MemorySegment m = f.at(posted.get(u[0]), EVENT_LENGTH);
        return new Event(m.get(LE32, 0), m.get(BE64, 4), m.get(LE32, 12));
    }
}
