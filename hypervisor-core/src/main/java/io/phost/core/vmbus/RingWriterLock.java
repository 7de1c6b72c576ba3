package io.phost.core.vmbus;

import java.util.concurrent.atomic.AtomicBoolean;

/**
 * Lets a second thread write a channel's host→guest ring (a switch delivering frames straight into a guest's
 * receive buffer) besides the channel's agent: the agent holds it for a whole duty cycle (its batched writes
 * share the ring's write index), the other thread only {@link #tryLock tries} and queues for the agent when it
 * fails, so it never waits for a guest. No allocation, even when contended.
 */
public final class RingWriterLock {
    private static final int SPINS = 100;
    private final AtomicBoolean held = new AtomicBoolean();

    /** Takes the lock if it is free; never waits. */
    public boolean tryLock() {
        return !held.get() && held.compareAndSet(false, true);
    }

    /** Takes the lock, spinning then yielding while the other writer holds it (a frame copy at most). */
    public void lock() {
        for (int spins = 0; !tryLock(); spins++) {
            if (spins < SPINS) {
                Thread.onSpinWait();
            } else {
                Thread.yield();
            }
        }
    }

    public void unlock() {
        held.set(false);
    }
}
