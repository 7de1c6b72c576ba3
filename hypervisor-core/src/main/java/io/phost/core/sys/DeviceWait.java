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
