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

    /** Gives back the last {@code chains} popped chains unchanged: the next pops return them again. */
    void discard(int chains);

    /** Returns chain {@code head} (packed: the buffer id) to the driver with {@code written} bytes written into it. */
    void pushUsed(int head, int written);

    /** Signals the call eventfd if the driver wants to hear about the chains pushed since the last signal. */
    void notifyIfNeeded();

    /** Requests found in flight when the queue started (INFLIGHT_SHMFD), popped again before new ones. */
    int resubmitted();

    /** The GET_VRING_BASE answer: where the next start continues (split: the next avail index). */
    int vringBase();
}
