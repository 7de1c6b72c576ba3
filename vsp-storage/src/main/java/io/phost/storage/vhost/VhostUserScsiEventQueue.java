package io.phost.storage.vhost;

import io.phost.core.vhost.DescriptorChain;
import io.phost.core.vhost.Virtqueue;
import io.phost.core.vhost.VirtqueueHandler;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.phost.storage.vhost.VirtioScsiDescriptor.*;

/**
 * virtio-scsi queue 1 (device → driver events). HOTPLUG is not offered and no CHANGE event is ever raised; Linux still posts event
 * buffers (8, because CHANGE is negotiated): they are held and, when the queue stops, returned with NO_EVENT written
 * into their first 4 bytes (when the first writable buffer has room) and used length 0.
 */
final class VhostUserScsiEventQueue implements VirtqueueHandler {
    // SAFETY: only at chain element addresses that the virtqueue translated and bounds-checked.
    private static final MemorySegment EVERYTHING = MemorySegment.NULL.reinterpret(Long.MAX_VALUE);
    private int[] heads;
    private long[] first;
    private int held;

    @Override
    public int doWork(Virtqueue q, DescriptorChain c) {
        if (heads == null) {
            heads = new int[q.size()];
            first = new long[q.size()];
        }
        int n = 0;
        while (held < heads.length && q.tryPop(c)) {
            int w = c.readableCount();
            heads[held] = c.head();
            first[held] = w < c.count() && c.length(w) >= 4 ? c.address(w) : 0;
            held++;
            n++;
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
        for (int i = 0; i < held; i++) {
            if (first[i] != 0) {
                EVERYTHING.set(ValueLayout.JAVA_INT_UNALIGNED, first[i], T_NO_EVENT);
            }
            q.pushUsed(heads[i], 0);
        }
        if (held > 0) {
            q.notifyIfNeeded();
        }
        held = 0;
    }
}
