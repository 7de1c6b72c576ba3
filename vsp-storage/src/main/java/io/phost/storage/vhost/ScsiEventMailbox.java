package io.phost.storage.vhost;

import io.phost.core.sys.EventFd;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Parameter-change events waiting for the virtio-scsi event queue's worker: any thread (a disk resize) posts a
 * LUN, the worker takes them when it has a driver buffer. One bit per LUN (max_lun is 63), so a LUN grown twice
 * before the guest looked is one event, and posting allocates nothing; the eventfd wakes the idle worker.
 */
final class ScsiEventMailbox implements AutoCloseable {
    private final AtomicLong paramChanged = new AtomicLong();
    private final EventFd wake = EventFd.create();

    /** Any thread: LUN {@code lun}'s capacity (a parameter) changed. */
    void paramChanged(int lun) {
        if (lun < 0 || lun >= Long.SIZE) {
            throw new IllegalArgumentException("LUN " + lun + " outside 0..63");
        }
        paramChanged.getAndUpdate(v -> v | 1L << lun);
        wake.signal();
    }

    /** Worker: the LUNs posted since the last call (one bit each), now taken. */
    long takeParamChanged() {
        wake.tryConsume();
        return paramChanged.getAndSet(0);
    }

    /** Worker: puts back LUNs it had no buffer for (the next buffer the driver posts gets them). */
    void putBack(long luns) {
        if (luns != 0) {
            paramChanged.getAndUpdate(v -> v | luns);
        }
    }

    int wakeupFd() {
        return wake.fd();
    }

    @Override
    public void close() {
        wake.close();
    }
}
