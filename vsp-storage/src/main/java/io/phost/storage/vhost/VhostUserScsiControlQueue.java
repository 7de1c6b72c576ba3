package io.phost.storage.vhost;

import io.phost.core.vhost.DescriptorChain;
import io.phost.core.vhost.Virtqueue;
import io.phost.core.vhost.VirtqueueHandler;
import io.phost.storage.scsi.ScsiTarget;
import io.phost.storage.scsi.TaskFunction;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.phost.storage.vhost.VirtioScsiDescriptor.*;

/**
 * virtio-scsi queue 0 (task management and asynchronous-notification requests), on its own thread:
 * <pre>
 *   TMF abort task (set), clear task set, LUN reset, I_T nexus reset, query task (set) → the core's
 *       {@link ScsiTarget#manage}: commands not yet started complete with TASK ABORTED, started ones complete
 *       normally before the answer (FUNCTION_COMPLETE; a query that found its task(s): FUNCTION_SUCCEEDED)
 *   TMF clear ACA or unknown subtype → FUNCTION_REJECTED; no such LUN → INCORRECT_LUN; another target → BAD_TARGET
 *   AN_QUERY / AN_SUBSCRIBE → event_actual 0, OK (no asynchronous notifications are offered)
 *   anything else or too short → FUNCTION_REJECTED; no writable byte → returned untouched
 * </pre>
 */
final class VhostUserScsiControlQueue implements VirtqueueHandler {
    /** How long a TMF waits for commands already in the kernel before it answers FAILURE. */
    private static final long TMF_TIMEOUT_MILLIS = 30_000;
    private final ScsiTarget target;
    private final MemorySegment buf = Arena.ofAuto().allocate(TMF_LENGTH, 8);
    private final MemorySegment answer = Arena.ofAuto().allocate(8, 8);
    private final io.phost.storage.engine.IoVecs out = new io.phost.storage.engine.IoVecs(8);

    VhostUserScsiControlQueue(ScsiTarget target) {
        this.target = target;
    }

    @Override
    public int doWork(Virtqueue q, DescriptorChain c) {
        int n = 0;
        while (q.tryPop(c)) {
            n++;
            answer.fill((byte) 0);
            int reply;
            if (c.readableBytes() < 4) {
                answer.set(ValueLayout.JAVA_BYTE, 0, S_FUNCTION_REJECTED);
                reply = 1;
            } else {
                ScsiAdapterQueue.gatherReadable(c, 0, buf, Math.min(c.readableBytes(), TMF_LENGTH));
                int type = buf.get(LE32, CTRL_TYPE_OFFSET);
                if (type == T_TMF && c.readableBytes() >= TMF_LENGTH) {
                    answer.set(ValueLayout.JAVA_BYTE, 0, taskManagement());
                    reply = 1;
                } else if ((type == T_AN_QUERY || type == T_AN_SUBSCRIBE) && c.readableBytes() >= AN_LENGTH) {
                    answer.set(ValueLayout.JAVA_BYTE, 4, S_OK); // event_actual 0, response OK
                    reply = 5;
                } else {
                    answer.set(ValueLayout.JAVA_BYTE, 0, S_FUNCTION_REJECTED);
                    reply = 1;
                }
            }
            out.clear();
            if (c.writableBytes() >= reply && ScsiAdapterQueue.addRange(out, c, false, 0, reply)) {
                out.scatterFrom(answer, 0, reply);
                q.pushUsed(c.head(), reply);
            } else {
                q.pushUsed(c.head(), 0);
            }
        }
        if (n > 0) {
            q.notifyIfNeeded();
        }
        return n;
    }

    /** Runs the TMF in {@code buf} through the core; its virtio response code. */
    private byte taskManagement() {
        TaskFunction f = switch (buf.get(LE32, TMF_SUBTYPE_OFFSET)) {
            case TMF_ABORT_TASK -> TaskFunction.ABORT_TASK;
            case TMF_ABORT_TASK_SET -> TaskFunction.ABORT_TASK_SET;
            case TMF_CLEAR_TASK_SET -> TaskFunction.CLEAR_TASK_SET;
            case TMF_I_T_NEXUS_RESET -> TaskFunction.I_T_NEXUS_RESET;
            case TMF_LOGICAL_UNIT_RESET -> TaskFunction.LOGICAL_UNIT_RESET;
            case TMF_QUERY_TASK -> TaskFunction.QUERY_TASK;
            case TMF_QUERY_TASK_SET -> TaskFunction.QUERY_TASK_SET;
            default -> null; // CLEAR ACA (NACA is never set) and unknown subtypes
        };
        if (f == null) {
            return S_FUNCTION_REJECTED;
        }
        int b = TMF_LUN_OFFSET;
        int lun = VirtioScsiDescriptor.lun(u8(b), u8(b + 1), u8(b + 2), u8(b + 3));
        if (lun < 0) {
            return S_BAD_TARGET; // another target or LUN format (as QEMU answers)
        }
        return switch (target.manage(f, lun, buf.get(LE64, TMF_ID_OFFSET), TMF_TIMEOUT_MILLIS)) {
            case FUNCTION_COMPLETE -> S_FUNCTION_COMPLETE;
            case FUNCTION_SUCCEEDED -> S_FUNCTION_SUCCEEDED;
            case FUNCTION_REJECTED -> S_FUNCTION_REJECTED;
            case INCORRECT_LUN -> S_INCORRECT_LUN;
            case SERVICE_DELIVERY_FAILURE -> S_FAILURE;
        };
    }

    private int u8(int offset) {
        return buf.get(ValueLayout.JAVA_BYTE, offset) & 0xFF;
    }

    @Override
    public int inFlight() {
        return 0;
    }

    @Override
    public void awaitCompletion(long timeoutNanos) {
    }

    @Override
    public void close(Virtqueue q) {
    }
}
