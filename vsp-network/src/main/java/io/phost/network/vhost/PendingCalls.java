package io.phost.network.vhost;

/**
 * The receive queues of one switch agent that got frames since their last call: while a vhost-user-net
 * device switches a transmit burst ({@link #burst}), every destination receive queue on that agent's thread is
 * listed once and called when the burst ends, so a burst costs each destination guest at most one call.
 * Frames from other sources (TAP, uplink, synthetic NICs) are called at once: nothing else would drain the
 * list if every vhost-user-net port were skipped for bandwidth debt.
 * Agent thread only (one list per thread); allocates nothing after it grew to the number of queues.
 */
final class PendingCalls {
    private static final ThreadLocal<PendingCalls> OF_THREAD = ThreadLocal.withInitial(PendingCalls::new);

    private GuestRxPath[] queues = new GuestRxPath[16];
    private int count;
    /** True while a vhost-user-net transmit burst is being switched on this thread. */
    boolean burst;

    /** The list of the calling (switch agent) thread. */
    static PendingCalls ofThisThread() {
        return OF_THREAD.get();
    }

    void add(GuestRxPath q) {
        if (count == queues.length) {
            queues = java.util.Arrays.copyOf(queues, 2 * count); // a queue is listed once: grows only with the number of queues
        }
        queues[count++] = q;
    }

    /** A transmit burst starts: calls wait for {@link #endBurst}. */
    void startBurst() {
        burst = true;
    }

    /** The burst ends: every listed queue gets its one call. */
    void endBurst() {
        burst = false;
        drain();
    }

    /** Makes every pending call; a queue detached meanwhile ({@code queue == null}) is skipped. */
    void drain() {
        for (int i = 0; i < count; i++) {
            queues[i].listed = false;
            queues[i].call();
            queues[i] = null;
        }
        count = 0;
    }
}
