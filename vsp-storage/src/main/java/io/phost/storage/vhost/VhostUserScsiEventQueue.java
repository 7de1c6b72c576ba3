package io.phost.storage.vhost;

import io.phost.core.vhost.DescriptorChain;
import io.phost.core.vhost.Virtqueue;
import io.phost.core.vhost.VirtqueueHandler;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.phost.storage.vhost.VirtioScsiDescriptor.*;

/**
 * virtio-scsi queue 1 (device → driver events). The buffers the driver posts (Linux: 8, because CHANGE is
 * negotiated) are held; a LUN whose capacity grew ({@link ScsiEventMailbox}) takes one, filled with
 * <pre>
 *   le32 event = PARAM_CHANGE (3)   u8 lun[8] = 1, 0, 0, lun   le32 reason = asc 0x2A | ascq 0x09 << 8
 * </pre>
 * (CAPACITY DATA HAS CHANGED; Linux's virtio_scsi rescans that device). A LUN with no buffer waits for the next
 * one. When the queue stops, held buffers are returned with NO_EVENT in their first 4 bytes and used length 0.
 * HOTPLUG is not offered.
 */
final class VhostUserScsiEventQueue implements VirtqueueHandler {
    // SAFETY: only at chain element addresses that the virtqueue translated and bounds-checked.
    private static final MemorySegment EVERYTHING = MemorySegment.NULL.reinterpret(Long.MAX_VALUE);
    static final int T_PARAM_CHANGE = 3;
    static final int REASON_CAPACITY_CHANGED = 0x2A | 0x09 << 8;

    private final ScsiEventMailbox mailbox;
    private int[] heads;
    private long[] first;
    private boolean[] roomy;
    private int held;

    VhostUserScsiEventQueue(ScsiEventMailbox mailbox) {
        this.mailbox = mailbox;
    }

    @Override
    public int doWork(Virtqueue q, DescriptorChain c) {
        if (heads == null) {
            heads = new int[q.size()];
            first = new long[q.size()];
            roomy = new boolean[q.size()];
        }
        int n = 0;
        while (held < heads.length && q.tryPop(c)) {
            int w = c.readableCount();
            heads[held] = c.head();
            first[held] = w < c.count() && c.length(w) >= 4 ? c.address(w) : 0;
            roomy[held] = w < c.count() && c.length(w) >= EVENT_LENGTH;
            held++;
            n++;
        }
        return n + raise(q);
    }

    /** Fills held buffers (newest first) with the mailbox's parameter changes; returns how many. */
    private int raise(Virtqueue q) {
        long luns = mailbox.takeParamChanged();
        int raised = 0;
        while (luns != 0 && held > 0) {
            held--;
            long at = first[held];
            if (!roomy[held]) { // a buffer too small for an event: returned empty
                q.pushUsed(heads[held], 0);
                continue;
            }
            int lun = Long.numberOfTrailingZeros(luns);
            luns &= luns - 1;
            EVERYTHING.set(ValueLayout.JAVA_INT_UNALIGNED, at, T_PARAM_CHANGE);
            EVERYTHING.set(ValueLayout.JAVA_LONG_UNALIGNED, at + 4, 0L);
            EVERYTHING.set(ValueLayout.JAVA_BYTE, at + 4, (byte) 1);
            EVERYTHING.set(ValueLayout.JAVA_BYTE, at + 6, (byte) (lun >= 256 ? 0x40 | lun >> 8 : 0)); // as QEMU: Linux reads lun[2] << 8 | lun[3] unmasked
            EVERYTHING.set(ValueLayout.JAVA_BYTE, at + 7, (byte) lun);
            EVERYTHING.set(ValueLayout.JAVA_INT_UNALIGNED, at + 12, REASON_CAPACITY_CHANGED);
            q.pushUsed(heads[held], EVENT_LENGTH);
            raised++;
        }
        mailbox.putBack(luns);
        if (raised > 0) {
            q.notifyIfNeeded();
        }
        return raised;
    }

    @Override
    public int wakeupFd() {
        return mailbox.wakeupFd();
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
