package io.phost.storage.vhost;

import io.phost.core.vhost.VhostUserFrontend;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

import static io.phost.storage.vhost.VirtioScsiDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/**
 * The test front-end ({@link VhostUserFrontend}) set up as a virtio-scsi driver of one controller, as the
 * vhost-user-scsi tests need it: features negotiated, the control, event and first request queues started, and
 * SCSI commands sent the way Linux's virtio_scsi sends them ({@link #command}).
 */
final class ScsiTestDriver implements AutoCloseable {
    static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    /** INQUIRY, 96 bytes of standard data. */
    static final byte[] INQUIRY = {0x12, 0, 0, 0, 96, 0};
    /** READ CAPACITY(16), 32 bytes. */
    static final byte[] READ_CAPACITY_16 = {(byte) 0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0};

    final VhostUserFrontend f;
    /** The features the driver acked. */
    final long features;
    final VhostUserFrontend.Queue control;
    final VhostUserFrontend.Queue events;
    final VhostUserFrontend.Queue requests;

    private ScsiTestDriver(VhostUserFrontend f, long features, int eventSlots, int requestSlots) {
        this.f = f;
        this.features = features;
        this.control = f.startQueue(CONTROL_QUEUE, 16);
        this.events = f.startQueue(EVENT_QUEUE, eventSlots);
        this.requests = f.startQueue(FIRST_REQUEST_QUEUE, requestSlots);
    }

    /**
     * Connects to {@code e} with {@code memory} bytes of guest memory, negotiates {@code wanted} (what the back-end
     * offers of it is acked) and starts the queues: the event queue of {@code eventSlots}, the request queue of
     * {@code requestSlots}.
     */
    static ScsiTestDriver connect(VhostUserScsiExport e, long memory, long wanted, int eventSlots, int requestSlots) {
        VhostUserFrontend f = VhostUserFrontend.connect(e.socketPath(), memory);
        try {
            return new ScsiTestDriver(f, f.negotiate(wanted), eventSlots, requestSlots);
        } catch (RuntimeException ex) {
            f.close();
            throw ex;
        }
    }

    /** {@link #command(VhostUserFrontend, VhostUserFrontend.Queue, int, int, byte[], long, int, boolean)} to target 0 on the request queue. */
    int[] command(int lun, byte[] cdb, long data, int dataLen, boolean in) {
        return command(f, requests, 0, lun, cdb, data, dataLen, in);
    }

    /** Sends one command on {@code q}; returns {response, status, residual, usedLen, senseKey, asc} (-1: no sense). */
    static int[] command(VhostUserFrontend f, VhostUserFrontend.Queue q, int target, int lun, byte[] cdb, long data, int dataLen, boolean in) {
        long req = f.alloc(REQ_LENGTH, 8);
        long resp = f.alloc(RESP_LENGTH, 8);
        MemorySegment r = f.at(req, REQ_LENGTH);
        r.fill((byte) 0);
        r.set(ValueLayout.JAVA_BYTE, 0, (byte) 1);
        r.set(ValueLayout.JAVA_BYTE, 1, (byte) target);
        r.set(ValueLayout.JAVA_BYTE, 2, (byte) (0x40 | (lun >> 8)));
        r.set(ValueLayout.JAVA_BYTE, 3, (byte) lun);
        MemorySegment.copy(MemorySegment.ofArray(cdb), 0, r, REQ_CDB_OFFSET, cdb.length);
        f.at(resp, RESP_LENGTH).fill((byte) 0x77);
        int head;
        if (dataLen == 0) {
            head = q.add(new long[] {req, resp}, new int[] {REQ_LENGTH, RESP_LENGTH}, new boolean[] {false, true});
        } else if (in) {
            head = q.add(new long[] {req, resp, data}, new int[] {REQ_LENGTH, RESP_LENGTH, dataLen}, new boolean[] {false, true, true});
        } else {
            head = q.add(new long[] {req, data, resp}, new int[] {REQ_LENGTH, dataLen, RESP_LENGTH}, new boolean[] {false, false, true});
        }
        q.kick();
        int[] u = q.awaitUsed(10_000);
        assertNotNull(u, "command completed");
        assertEquals(head, u[0]);
        MemorySegment s = f.at(resp, RESP_LENGTH);
        boolean sense = s.get(LE32, RESP_SENSE_LEN_OFFSET) > 0;
        int senseKey = sense ? s.get(ValueLayout.JAVA_BYTE, RESP_SENSE_OFFSET + 2) & 0x0F : -1;
        int asc = sense ? s.get(ValueLayout.JAVA_BYTE, RESP_SENSE_OFFSET + 12) & 0xFF : -1;
        return new int[] {s.get(ValueLayout.JAVA_BYTE, RESP_RESPONSE_OFFSET), s.get(ValueLayout.JAVA_BYTE, RESP_STATUS_OFFSET) & 0xFF,
            s.get(LE32, RESP_RESIDUAL_OFFSET), u[1], senseKey, asc};
    }

    /** READ(16) (0x88) or WRITE(16) (0x8A) of {@code blocks} at {@code lba}. */
    static byte[] rw16(int op, long lba, int blocks) {
        MemorySegment c = MemorySegment.ofArray(new byte[16]);
        c.set(ValueLayout.JAVA_BYTE, 0, (byte) op);
        c.set(BE64, 2, lba);
        c.set(BE32, 10, blocks);
        return c.toArray(ValueLayout.JAVA_BYTE);
    }

    @Override
    public void close() {
        f.close();
    }
}
