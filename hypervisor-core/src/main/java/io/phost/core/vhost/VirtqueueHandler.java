package io.phost.core.vhost;

/**
 * Serves one started virtqueue on its worker thread (one thread per queue, so single-threaded). The
 * worker calls {@link #doWork} after each kick and while requests are in flight; the handler pops chains,
 * starts them, completes finished ones with {@link Virtqueue#pushUsed} and calls
 * {@link Virtqueue#notifyIfNeeded} once per batch. Must not allocate per request.
 */
public interface VirtqueueHandler {
    /**
     * The queue is about to be served (control thread, before the worker starts): a handler whose queue another
     * thread serves (vhost-user-net's switch agent) hands it over here, so it runs as soon as the front-end's
     * message that started it is answered.
     */
    default void started(Virtqueue queue) {
    }

    /** Pops, starts and completes what it can without blocking; returns the amount of work done. */
    int doWork(Virtqueue queue, DescriptorChain chain);

    /**
     * Whether the worker may poll the avail ring (kicks disabled) instead of sleeping right away when nothing is in
     * flight, as the host's polling mode says ({@link VringPoller}): true for request queues whose driver waits for
     * each answer (storage), false where a poll would only burn a CPU (event and control queues, or a queue another
     * thread serves).
     */
    default boolean pollsWhileIdle() {
        return false;
    }

    /**
     * Chains returned to the used ring so far (any count that moves when some are): a polling worker spins for the
     * driver's refill after it moves ({@link VringPoller#spinWhileInFlight}). Handlers that do not poll keep 0.
     */
    default long chainsReturned() {
        return 0;
    }

    /** Requests started and not yet pushed to the used ring. */
    int inFlight();

    /**
     * An extra fd the idle worker also sleeps on (poll(2), readable = there is work that is not a kick, e.g.
     * frames from a switch waiting for a vhost-user-net RX queue), or -1. The handler drains it in doWork.
     */
    default int wakeupFd() {
        return -1;
    }

    /** Blocks up to {@code timeoutNanos} for a completion of in-flight work (then {@link #doWork} runs again). */
    void awaitCompletion(long timeoutNanos);

    /**
     * As {@link #awaitCompletion(long)}, but a kick also ends the wait where the device allows it (io_uring: the
     * kick eventfd armed as a POLL_ADD on the device's ring, {@link io.phost.core.sys.DeviceWait}), so a
     * request arriving while others are in flight does not wait for their completion or the timeout.
     */
    default void awaitCompletion(io.phost.core.sys.EventFd kick, long timeoutNanos) {
        awaitCompletion(timeoutNanos);
    }

    /**
     * Completes every in-flight request (pushing each to the used ring) and releases the handler's
     * resources; called when the queue stops (GET_VRING_BASE, disconnect, reset) or breaks.
     */
    void close(Virtqueue queue);
}
