package io.phost.core.vhost;

/**
 * The device side of one virtqueue as a queue's handler uses it, split ({@link SplitVirtqueue}) or packed
 * ({@link PackedVirtqueue}): pop available chains, return them used, notify the driver. Single-threaded
 * (the queue's worker).
 */
public interface Virtqueue {
    int index();

    int size();

    /** Pops the next available chain into {@code chain} (its {@code head()} is what {@link #pushUsed} takes); false when none. */
    boolean tryPop(DescriptorChain chain);

    /**
     * As {@link #tryPop}, but an empty ring leaves the driver's kicks as they are (EVENT_IDX: avail_event is not
     * moved up), for a device that busy-polls while frames flow and calls {@link #enableKicks} before it sleeps.
     * A ring without such suppression pops as {@link #tryPop}.
     */
    default boolean tryPopQuiet(DescriptorChain chain) {
        return tryPop(chain);
    }

    /**
     * Asks the driver to kick on its next request (EVENT_IDX: avail_event = the next index), then looks again:
     * true when a request is already available (the caller must not sleep). A ring without suppression answers
     * false: its {@link #tryPop} already asked for kicks when it found the ring empty.
     */
    default boolean enableKicks() {
        return false;
    }

    /** Gives back the last {@code chains} popped chains unchanged: the next pops return them again. */
    void discard(int chains);

    /** Returns chain {@code head} (packed: the buffer id) to the driver with {@code written} bytes written into it. */
    void pushUsed(int head, int written);

    /**
     * As {@link #pushUsed}, but the driver may see the chain only at the next {@link #publishUsed} or
     * {@link #notifyIfNeeded}: a burst stores the shared used index once, not per chain. Rings with inflight
     * tracking or a dirty log, and packed rings, push at once.
     */
    default void pushUsedLater(int head, int written) {
        pushUsed(head, written);
    }

    /** Makes every chain pushed with {@link #pushUsedLater} visible to the driver (no signal). */
    default void publishUsed() {
    }

    /** Signals the call eventfd if the driver wants to hear about the chains pushed since the last signal. */
    void notifyIfNeeded();

    /** Requests found in flight when the queue started (INFLIGHT_SHMFD), popped again before new ones. */
    int resubmitted();

    /** The GET_VRING_BASE answer: where the next start continues (split: the next avail index). */
    int vringBase();
}
