package io.phost.core.vhost;

/**
 * The device side of one virtqueue as a queue's handler uses it, split ({@link SplitVirtqueue}) or packed
 * ({@link PackedVirtqueue}): pop available chains, return them used, notify the driver. Single-threaded
 * (the queue's worker).
 */
public interface Virtqueue {
    int index();

    int size();

    /**
     * Pops the next available chain into {@code chain} (its {@code head()} is what {@link #pushUsed} takes); false
     * when none. Finding the ring empty asks the driver for kicks again (split rings with EVENT_IDX), unless
     * {@link #disableKicks} is in force.
     */
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
     * Asks the driver to kick on its next request, then looks again (after a full fence): true when a request is
     * already available (the caller must not sleep; closes the race with a request made just before). Split
     * rings: with EVENT_IDX avail_event = the next index, else VRING_USED_F_NO_NOTIFY is cleared if
     * {@link #disableKicks} set it; packed rings: the device area's flags back to ENABLE. Ends what
     * {@link #disableKicks} started.
     */
    boolean enableKicks();

    /**
     * The device polls the ring from now on until {@link #enableKicks}: the driver is asked not to kick (split
     * rings: VRING_USED_F_NO_NOTIFY in used.flags, or with EVENT_IDX avail_event simply left where it is; packed
     * rings: the device area's flags DISABLE), and {@link #tryPop} no longer asks for kicks when it finds the ring
     * empty. A hint the driver may ignore: a kick that still comes is harmless. Cheap when already disabled.
     */
    void disableKicks();

    /**
     * Whether a chain is available to pop (or a resubmitted one waits), without popping it or changing what the
     * driver is asked: the read a polling device spins on.
     */
    boolean available();

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
