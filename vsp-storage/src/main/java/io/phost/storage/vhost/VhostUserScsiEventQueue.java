package io.phost.storage.vhost;

import io.phost.core.vhost.DescriptorChain;
import io.phost.core.vhost.Virtqueue;
import io.phost.core.vhost.VirtqueueHandler;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.phost.storage.vhost.VirtioScsiDescriptor.*;

/**
 * virtio-scsi queue 1 (device → driver events). The buffers the driver posts (Linux: 8, with HOTPLUG or CHANGE
 * negotiated) are held and filled from the {@link ScsiEventMailbox}, in this order:
 * <pre>
 *   events lost (mailbox overflowed)  le32 event = NO_EVENT | EVENTS_MISSED (0x80000000)   (Linux: rescans the target)
 *   LUN hot-add / hot-remove          le32 event = TRANSPORT_RESET (1)  u8 lun[8] = 1, 0, 0, lun  le32 reason = RESCAN 1 / REMOVED 2
 *   LUN grew                          le32 event = PARAM_CHANGE (3)     u8 lun[8] = 1, 0, 0, lun  le32 reason = asc 0x2A | ascq 0x09 << 8
 * </pre>
 * (transport resets only while the driver acked VIRTIO_SCSI_F_HOTPLUG; CAPACITY DATA HAS CHANGED makes Linux's
 * virtio_scsi rescan that device). An event with no buffer waits for the next one. When the queue stops, held
 * buffers are returned with NO_EVENT in their first 4 bytes and used length 0.
 */
final class VhostUserScsiEventQueue implements VirtqueueHandler {
    // SAFETY: only at chain element addresses that the virtqueue translated and bounds-checked.
    private static final MemorySegment EVERYTHING = MemorySegment.NULL.reinterpret(Long.MAX_VALUE);
    static final int T_PARAM_CHANGE = 3;
    static final int REASON_CAPACITY_CHANGED = 0x2A | 0x09 << 8;
    static final int T_TRANSPORT_RESET = 1;
    static final int EVT_RESET_RESCAN = 1;
    static final int EVT_RESET_REMOVED = 2;
    static final int T_EVENTS_MISSED = 0x8000_0000;

    private final ScsiEventMailbox mailbox;
    private final java.util.function.BooleanSupplier hotplug;
    private int[] heads;
    private long[] first;
    private boolean[] roomy;
    private int held;

    /** @param hotplug whether the driver acked VIRTIO_SCSI_F_HOTPLUG (transport resets are dropped otherwise) */
    VhostUserScsiEventQueue(ScsiEventMailbox mailbox, java.util.function.BooleanSupplier hotplug) {
        this.mailbox = mailbox;
        this.hotplug = hotplug;
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

    /** Fills held buffers (newest first) with the mailbox's events; returns how many. */
    private int raise(Virtqueue q) {
        int raised = 0;
        mailbox.consumeWake();
        if (!hotplug.getAsBoolean()) {
            mailbox.clearResets();
        }
        if (held > 0 && mailbox.takeMissed()) {
            int at = nextRoomy(q);
            if (at < 0) {
                mailbox.putBackMissed();
            } else {
                fill(q, at, T_NO_EVENT | T_EVENTS_MISSED, 0, 0);
                raised++;
            }
        }
        for (int e; held > 0 && (e = mailbox.takeReset()) >= 0; ) {
            int at = nextRoomy(q);
            if (at < 0) {
                mailbox.putBackReset(e);
                break;
            }
            fill(q, at, T_TRANSPORT_RESET, e & 0xFF, e >>> 8);
            raised++;
        }
        long luns = mailbox.takeParamChanged();
        while (luns != 0 && held > 0) {
            int at = nextRoomy(q);
            if (at < 0) {
                break;
            }
            int lun = Long.numberOfTrailingZeros(luns);
            luns &= luns - 1;
            fill(q, at, T_PARAM_CHANGE, lun, REASON_CAPACITY_CHANGED);
            raised++;
        }
        mailbox.putBack(luns);
        if (raised > 0) {
            q.notifyIfNeeded();
        }
        return raised;
    }

    /** The newest held buffer with room for an event (those too small are returned empty on the way), or -1. */
    private int nextRoomy(Virtqueue q) {
        while (held > 0) {
            held--;
            if (roomy[held]) {
                return held;
            }
            q.pushUsed(heads[held], 0);
        }
        return -1;
    }

    /** Writes one event into held buffer {@code i} and returns it to the driver. */
    private void fill(Virtqueue q, int i, int event, int lun, int reason) {
        long at = first[i];
        EVERYTHING.set(ValueLayout.JAVA_INT_UNALIGNED, at, event);
        EVERYTHING.set(ValueLayout.JAVA_LONG_UNALIGNED, at + 4, 0L);
        if (event != (T_NO_EVENT | T_EVENTS_MISSED)) {
            EVERYTHING.set(ValueLayout.JAVA_BYTE, at + 4, (byte) 1);
            EVERYTHING.set(ValueLayout.JAVA_BYTE, at + 6, (byte) (lun >= 256 ? 0x40 | lun >> 8 : 0)); // as QEMU: Linux reads lun[2] << 8 | lun[3] unmasked
            EVERYTHING.set(ValueLayout.JAVA_BYTE, at + 7, (byte) lun);
        }
        EVERYTHING.set(ValueLayout.JAVA_INT_UNALIGNED, at + 12, reason);
        q.pushUsed(heads[i], EVENT_LENGTH);
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
