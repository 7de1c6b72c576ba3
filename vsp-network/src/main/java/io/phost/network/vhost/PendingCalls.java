package io.phost.network.vhost;

/**
 * The receive queues of one switch agent that got frames since their last call: while a vhost-user-net
 * device switches a transmit burst ({@link #burst}), every destination receive queue on that agent's thread is
 * listed once and called when the burst ends, so a burst costs each destination guest at most one call.
 * Frames from other sources (TAP, uplink, synthetic NICs) are called at once: nothing else would drain the
 * list if every vhost-user-net port were skipped for bandwidth debt.
 * One list per switch agent ({@link #of}), which each device looks up once when its port is attached (it was a
 * ThreadLocal read twice per frame, ~4 % of the agent's samples); {@link #IMMEDIATE} is never in a burst, for
 * a sink that a VMQ worker calls instead of the agent.
 * Agent thread only; allocates nothing after it grew to the number of queues.
 */
final class PendingCalls {
    /** Never in a burst: every frame's call is made at once (nothing is ever listed). */
    static final PendingCalls IMMEDIATE = new PendingCalls();
    private static final java.util.Map<Object, PendingCalls> OF_AGENT =
        java.util.Collections.synchronizedMap(new java.util.WeakHashMap<>());

    private GuestRxPath[] queues = new GuestRxPath[16];
    private int count;
    /** True while a vhost-user-net transmit burst is being switched on this thread. */
    boolean burst;
    /**
     * Frames of the transmit burst still to be switched, the current one included (1 outside a burst): how many
     * receive buffers a destination takes from its ring at once ({@link GuestRxPath}).
     */
    int framesLeft = 1;

    /** The list of the switch agent {@code agent} (any object that stands for one agent thread). */
    static PendingCalls of(Object agent) {
        return OF_AGENT.computeIfAbsent(agent, a -> new PendingCalls());
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
        framesLeft = 1;
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
