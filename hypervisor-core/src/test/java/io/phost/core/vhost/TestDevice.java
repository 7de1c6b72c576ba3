package io.phost.core.vhost;

import java.lang.foreign.MemorySegment;

/**
 * The part of a test {@link VhostUserDevice} that the vhost-user tests do not vary: no device features, no config
 * space, {@code queues} queues each served by {@link #work}, with or without an inflight region and packed rings.
 * A test device says only what its queues do with what the driver made available (and, when it holds chains, how
 * many and what happens to them when the queue stops).
 */
abstract class TestDevice implements VhostUserDevice {
    private final int queues;
    private final boolean tracksInflight;
    private final boolean packed;

    TestDevice(int queues, boolean tracksInflight, boolean packed) {
        this.queues = queues;
        this.tracksInflight = tracksInflight;
        this.packed = packed;
    }

    /** What {@link VirtqueueHandler#doWork} does on each queue; returns the work done. */
    abstract int work(Virtqueue q, DescriptorChain c);

    /** Chains popped and not yet completed ({@link VirtqueueHandler#inFlight}). */
    int held() {
        return 0;
    }

    /** {@link VirtqueueHandler#awaitCompletion}: nothing completes by itself unless a device says so. */
    void awaitCompletion(long timeoutNanos) {
    }

    /** When a queue stops ({@link VirtqueueHandler#close}): what the device still holds. */
    void stopped(Virtqueue q) {
    }

    @Override
    public long features() {
        return 0;
    }

    @Override
    public int maxQueues() {
        return queues;
    }

    @Override
    public int readConfig(MemorySegment dst) {
        return 0;
    }

    @Override
    public boolean tracksInflight() {
        return tracksInflight;
    }

    @Override
    public boolean packedRings() {
        return packed;
    }

    @Override
    public VirtqueueHandler openQueue(int index) {
        return new VirtqueueHandler() {
            @Override
            public int doWork(Virtqueue q, DescriptorChain c) {
                return work(q, c);
            }

            @Override
            public int inFlight() {
                return held();
            }

            @Override
            public void awaitCompletion(long timeoutNanos) {
                TestDevice.this.awaitCompletion(timeoutNanos);
            }

            @Override
            public void close(Virtqueue q) {
                stopped(q);
            }
        };
    }
}
