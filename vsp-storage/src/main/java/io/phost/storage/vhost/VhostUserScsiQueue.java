package io.phost.storage.vhost;

import io.phost.core.vhost.DescriptorChain;
import io.phost.storage.engine.IoVecs;
import io.phost.storage.scsi.Scsi;
import io.phost.storage.scsi.ScsiQueue;
import io.phost.storage.scsi.ScsiRequest;
import io.phost.storage.scsi.ScsiTarget;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.phost.storage.vhost.VirtioScsiDescriptor.*;

/**
 * One virtio-scsi request queue: each chain carries a whole SCSI command (LUN, CDB, data), handed to the
 * storage core's {@link ScsiQueue} over the controller's {@link ScsiTarget} as the VMBus storvsc transport
 * does; data iovecs point straight into guest memory. On completion the response header (status, sense,
 * residual) is scattered over the chain's first writable bytes. Preallocated per queue: nothing per I/O.
 * <pre>
 *   readable:  [ req 51 B ][ data-out ]        writable: [ resp 108 B ][ data-in ]
 *   direction: data-out present → OUT, data-in present → IN, neither → NONE, both → response FAILURE
 *   lun[8] naming another target or address format → response BAD_TARGET; a missing LUN → the target's
 *   SPC answer (INQUIRY qualifier 011b, REPORT LUNS, else LOGICAL UNIT NOT SUPPORTED)
 * </pre>
 */
final class VhostUserScsiQueue extends ScsiAdapterQueue {
    /** Buffers the 108-byte response header may be spread over. */
    private static final int RESP_VECS = 8;

    private final MemorySegment req;
    private final MemorySegment resp;
    private final int[] heads;
    private final IoVecs[] respVecs;
    private final long[] expected;
    private final boolean[] dataIn;

    VhostUserScsiQueue(ScsiTarget target, int depth) {
        super(target, depth, VhostUserScsiDevice.SEG_MAX + 2);
        Arena arena = Arena.ofAuto();
        this.req = arena.allocate(REQ_LENGTH, 8);
        this.resp = arena.allocate(RESP_LENGTH, 8);
        this.heads = new int[depth];
        this.respVecs = new IoVecs[depth];
        for (int i = 0; i < depth; i++) {
            respVecs[i] = new IoVecs(RESP_VECS);
        }
        this.expected = new long[depth];
        this.dataIn = new boolean[depth];
    }

    @Override
    void start(ScsiRequest r, DescriptorChain c) {
        int slot = r.slot();
        heads[slot] = c.head();
        expected[slot] = 0;
        dataIn[slot] = false;
        IoVecs rv = respVecs[slot];
        rv.clear();
        if (c.writableBytes() < RESP_LENGTH || !addRange(rv, c, false, 0, RESP_LENGTH)) {
            // No room for a response: nothing can be reported; return the chain untouched.
            scsi.release(r);
            push(c.head(), 0);
            return;
        }
        if (c.readableBytes() < REQ_LENGTH) {
            respond(r, S_FAILURE, 0);
            return;
        }
        gatherReadable(c, 0, req, REQ_LENGTH);
        int lun = VirtioScsiDescriptor.lun(u8(REQ_LUN_OFFSET), u8(REQ_LUN_OFFSET + 1), u8(REQ_LUN_OFFSET + 2), u8(REQ_LUN_OFFSET + 3));
        if (lun < 0) {
            respond(r, S_BAD_TARGET, 0);
            return;
        }
        long out = c.readableBytes() - REQ_LENGTH;
        long in = c.writableBytes() - RESP_LENGTH;
        if (out > 0 && in > 0) {
            respond(r, S_FAILURE, 0); // bidirectional commands are not offered (no VIRTIO_SCSI_F_INOUT)
            return;
        }
        int opcode = u8(REQ_CDB_OFFSET);
        int cdbLength = Scsi.cdbLength(opcode);
        if (cdbLength == 0) {
            cdbLength = ScsiRequest.MAX_CDB; // reserved/vendor groups: the core answers INVALID COMMAND OPERATION CODE
        }
        int direction = out > 0 ? ScsiRequest.DIR_OUT : in > 0 ? ScsiRequest.DIR_IN : ScsiRequest.DIR_NONE;
        r.reset(lun, req, REQ_CDB_OFFSET, cdbLength, direction, req.get(LE64, REQ_ID_OFFSET)); // the id a TMF names
        expected[slot] = out > 0 ? out : in;
        dataIn[slot] = in > 0;
        if (!addRange(r.data(), c, out > 0, out > 0 ? REQ_LENGTH : RESP_LENGTH, expected[slot])) {
            respond(r, S_OVERRUN, 0); // more buffers than the command can take
            return;
        }
        scsi.submit(r);
    }

    private int u8(int offset) {
        return req.get(ValueLayout.JAVA_BYTE, offset) & 0xFF;
    }

    @Override
    public void onScsiComplete(ScsiRequest r) {
        int slot = r.slot();
        long transferred = r.transferred();
        resp.fill((byte) 0);
        int senseLength = Math.min(r.senseLength(), SENSE_SIZE);
        resp.set(LE32, RESP_SENSE_LEN_OFFSET, senseLength);
        resp.set(LE32, RESP_RESIDUAL_OFFSET, (int) Math.max(0, expected[slot] - transferred));
        resp.set(ValueLayout.JAVA_BYTE, RESP_STATUS_OFFSET, r.status());
        resp.set(ValueLayout.JAVA_BYTE, RESP_RESPONSE_OFFSET, r.status() == Scsi.STATUS_TASK_ABORTED ? S_ABORTED : S_OK);
        if (senseLength > 0) {
            MemorySegment.copy(r.sense(), 0, resp, RESP_SENSE_OFFSET, senseLength);
        }
        respVecs[slot].scatterFrom(resp, 0, RESP_LENGTH);
        scsi.release(r);
        push(heads[slot], RESP_LENGTH + (dataIn[slot] ? (int) transferred : 0));
    }

    /** Completes a command that never reached the core with a transport-level {@code response}. */
    private void respond(ScsiRequest r, byte response, int written) {
        int slot = r.slot();
        resp.fill((byte) 0);
        resp.set(ValueLayout.JAVA_BYTE, RESP_RESPONSE_OFFSET, response);
        resp.set(LE32, RESP_RESIDUAL_OFFSET, (int) Math.min(Integer.MAX_VALUE, expected[slot]));
        respVecs[slot].scatterFrom(resp, 0, RESP_LENGTH);
        scsi.release(r);
        push(heads[slot], RESP_LENGTH + written);
    }
}
