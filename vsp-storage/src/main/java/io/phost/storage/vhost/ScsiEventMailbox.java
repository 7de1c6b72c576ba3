package io.phost.storage.vhost;

import io.phost.core.sys.EventFd;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Events waiting for the virtio-scsi event queue's worker: any thread (a disk resize, a LUN added or removed)
 * posts, the worker takes them when it has a driver buffer; the eventfd wakes the idle worker.
 * <ul>
 *   <li>parameter changes: one bit per LUN (max_lun is 63), so a LUN grown twice before the guest looked is one
 *       event, and posting allocates nothing;</li>
 *   <li>transport resets (LUN hot-add RESCAN, hot-remove REMOVED): a FIFO of {@value #CAPACITY}, in posting order
 *       (a LUN removed then added again must be seen in that order). When it is full the event is dropped and
 *       {@link #takeMissed} tells the worker to send VIRTIO_SCSI_T_EVENTS_MISSED, after which the driver rescans
 *       the whole target.</li>
 * </ul>
 */
final class ScsiEventMailbox implements AutoCloseable {
    /** Transport resets held while the driver posts no buffer: two per LUN (a remove and an add). */
    static final int CAPACITY = 128;
    private final AtomicLong paramChanged = new AtomicLong();
    private final EventFd wake = EventFd.create();
    /** Transport resets as {@code reason << 8 | lun}, a ring guarded by {@code this}. */
    private final int[] resets = new int[CAPACITY];
    private int first;
    private int count;
    private boolean missed;

    /** Any thread: LUN {@code lun}'s capacity (a parameter) changed. */
    void paramChanged(int lun) {
        checkLun(lun);
        paramChanged.getAndUpdate(v -> v | 1L << lun);
        wake.signal();
    }

    /** Any thread: a VIRTIO_SCSI_T_TRANSPORT_RESET with {@code reason} (RESCAN, REMOVED) for LUN {@code lun}. */
    void transportReset(int lun, int reason) {
        checkLun(lun);
        synchronized (this) {
            if (count == CAPACITY) {
                missed = true;
            } else {
                resets[(first + count) % CAPACITY] = reason << 8 | lun;
                count++;
            }
        }
        wake.signal();
    }

    /** Worker: the LUNs posted since the last call (one bit each), now taken. */
    long takeParamChanged() {
        return paramChanged.getAndSet(0);
    }

    /** Worker: puts back LUNs it had no buffer for (the next buffer the driver posts gets them). */
    void putBack(long luns) {
        if (luns != 0) {
            paramChanged.getAndUpdate(v -> v | luns);
        }
    }

    /** Worker: whether events were dropped since the last call (now cleared). */
    synchronized boolean takeMissed() {
        boolean m = missed;
        missed = false;
        return m;
    }

    /** Worker: puts back a missed flag it had no buffer for. */
    synchronized void putBackMissed() {
        missed = true;
    }

    /** Worker: the oldest transport reset ({@code reason << 8 | lun}), now taken, or -1. */
    synchronized int takeReset() {
        if (count == 0) {
            return -1;
        }
        int e = resets[first];
        first = (first + 1) % CAPACITY;
        count--;
        return e;
    }

    /** Worker: returns the reset {@link #takeReset} just gave, to be the next again. */
    synchronized void putBackReset(int e) {
        if (count == CAPACITY) { // filled meanwhile: this one is dropped, the driver will rescan
            missed = true;
            return;
        }
        first = (first + CAPACITY - 1) % CAPACITY;
        resets[first] = e;
        count++;
    }

    /** Forgets queued transport resets (a driver that did not ack HOTPLUG never hears of them). */
    synchronized void clearResets() {
        count = 0;
        missed = false;
    }

    /** Worker, before taking events: clears the wake-up (events posted after this signal it again). */
    void consumeWake() {
        wake.tryConsume();
    }

    int wakeupFd() {
        return wake.fd();
    }

    private static void checkLun(int lun) {
        if (lun < 0 || lun >= Long.SIZE) {
            throw new IllegalArgumentException("LUN " + lun + " outside 0..63");
        }
    }

    @Override
    public void close() {
        wake.close();
    }
}
