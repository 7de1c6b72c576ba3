package io.phost.storage.vhost;

import io.phost.core.vhost.DescriptorChain;
import io.phost.core.vhost.Virtqueue;
import io.phost.core.vhost.VirtqueueHandler;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.phost.storage.vhost.VirtioScsiDescriptor.*;

/**
 * virtio-scsi queue 0 (task management and asynchronous-notification requests), answered at once:
 * <pre>
 *   TMF (any subtype: abort, LUN/target reset, query) → FUNCTION_COMPLETE: the storage core has no
 *       abortable state a guest could wait on (a command completes or fails on its own; storvsc does the same)
 *   AN_QUERY / AN_SUBSCRIBE → event_actual 0, OK (no asynchronous notifications are offered)
 *   anything else or too short → FUNCTION_REJECTED; no writable byte → returned untouched
 * </pre>
 */
final class VhostUserScsiControlQueue implements VirtqueueHandler {
    private final MemorySegment buf = Arena.ofAuto().allocate(TMF_LENGTH, 8);
    private final MemorySegment answer = Arena.ofAuto().allocate(8, 8);
    private final io.phost.storage.engine.IoVecs out = new io.phost.storage.engine.IoVecs(8);

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
                    answer.set(ValueLayout.JAVA_BYTE, 0, S_FUNCTION_COMPLETE);
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
