package io.phost.core.sys;

/**
 * A doorbell eventfd armed as a one-shot {@code IORING_OP_POLL_ADD} on a device's io_uring, so a queue worker
 * sleeps on its device completions and its guest's doorbell in one {@code io_uring_enter}, which also submits
 * the requests it queued (at QD1: submit and wait in one system call).
 * <pre>
 *   await(doorbell): not armed? queue POLL_ADD(doorbell, POLLIN) ──▶ io_uring_enter(queued + poll, min_complete 1, timeout)
 *   the ring's reaper: cqe.user_data == USER_DATA ──▶ {@link #onCqe}: disarm, drain the eventfd (else the next
 *                      POLL_ADD would fire at once); every other CQE is a device completion
 * </pre>
 * The poll stays armed across wake-ups by device completions (one SQE per doorbell ring, not per sleep).
 * One per ring, owned by the ring's single submitting thread; allocates nothing after construction.
 */
public final class UringDoorbell {
    /** user_data of the poll's CQE; device requests use non-negative cookies. */
    public static final long USER_DATA = -0x0D00_BE11L;

    private final IoUring ring;
    private EventFd armedOn;
    private long rings;

    public UringDoorbell(IoUring ring) {
        this.ring = ring;
    }

    /**
     * Submits {@code queued} prepared SQEs (plus the poll, if it has to be armed) and sleeps until a CQE is
     * posted or {@code timeoutNanos} pass. Returns the number of device SQEs the kernel took, or -1 when the
     * SQ had no room for the poll (nothing submitted: the caller waits without the doorbell).
     */
    public int await(EventFd doorbell, int queued, long timeoutNanos) {
        int poll = 0;
        if (armedOn != doorbell) {
            if (!ring.tryPrepare(IoUring.OP_POLL_ADD, (byte) 0, doorbell.fd(), 0, 0, 0, IoUring.POLLIN, USER_DATA, 0)) {
                return -1;
            }
            armedOn = doorbell;
            poll = 1;
        }
        int n = ring.enter(queued + poll, 1, timeoutNanos);
        return Math.max(0, n - poll);
    }

    /** True (and the doorbell drained and disarmed) when {@code userData} is the poll's CQE. */
    public boolean onCqe(long userData) {
        if (userData != USER_DATA) {
            return false;
        }
        EventFd bell = armedOn;
        armedOn = null;
        rings++;
        if (bell != null) {
            bell.tryConsume();
        }
        return true;
    }

    /** True while the poll is in the kernel (its CQE not yet reaped). */
    public boolean armed() {
        return armedOn != null;
    }

    /** How many times the doorbell woke this ring (status and tests). */
    public long rings() {
        return rings;
    }
}
