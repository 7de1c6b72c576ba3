package io.phost.network.vhost;

/**
 * The receive queues of one switch agent that got frames since their last call: every vhost-user-net device
 * on that agent's thread adds to the same list and drains it after each transmit burst it switched and
 * before the agent sleeps, so a burst costs each destination guest at most one call.
 * Agent thread only (one list per thread); allocates nothing after it grew to the number of queues.
 */
final class PendingCalls {
    private static final ThreadLocal<PendingCalls> OF_THREAD = ThreadLocal.withInitial(PendingCalls::new);

    private GuestRxPath[] queues = new GuestRxPath[16];
    private int count;

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
