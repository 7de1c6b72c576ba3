package io.phost.core.sys;

/**
 * Device work whose completions raise no doorbell (io_uring), seen by the queue worker that sleeps on it
 * together with its doorbell: a VMBus channel agent ({@code DoorbellIdleStrategy}) or a vhost-user queue
 * worker ({@code Vring}). Called on the worker's thread only; nothing may allocate.
 * <pre>
 *   worker idle, busy() ──▶ await(doorbell, t): submit what is queued + sleep until a completion, the doorbell
 *                           or t, in one io_uring_enter (the doorbell is a POLL_ADD on the device's ring)
 *   worker about to spin ──▶ submit(): the device works while the worker polls
 * </pre>
 */
public interface DeviceWait {
    /** True while requests are queued for or in the device and every one of them can wake {@link #await}. */
    boolean busy();

    /**
     * True while {@link #busy} and the request in flight takes far longer than a worker's spin (a network round
     * trip: librbd's ~250 µs QD1 read against a spin of ~20 µs): the worker sleeps through the device at once, and
     * its spin governor does not judge that wait. Only the wait for the guest's next request, which a spin can
     * catch, is spun and judged (issue 20: judged over the whole cycle, every QD1 request counted as a miss and the
     * governor turned spinning off). False by default: a local device's completion may well come within a spin.
     */
    default boolean outlastsSpin() {
        return false;
    }

    /** True while requests are prepared but not yet handed to the device. */
    boolean unsubmitted();

    /** Hands prepared requests to the device without waiting. */
    void submit();

    /**
     * Submits prepared requests and sleeps until a device completion is ready, {@code doorbell} is signalled or
     * {@code timeoutNanos} pass. Completions are left for the worker's next duty cycle to reap.
     */
    void await(EventFd doorbell, long timeoutNanos);
}
