package io.phost.core.vhost;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** A test device: each chain's device-readable bytes are copied into its device-writable bytes. */
class EchoDevice implements VhostUserDevice {
    private static final MemorySegment EVERYTHING = MemorySegment.NULL.reinterpret(Long.MAX_VALUE);
    private final int queues;
    private final boolean tracksInflight;

    EchoDevice(int queues) {
        this(queues, false);
    }

    EchoDevice(int queues, boolean tracksInflight) {
        this.queues = queues;
        this.tracksInflight = tracksInflight;
    }

    @Override
    public boolean tracksInflight() {
        return tracksInflight;
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
        for (int i = 0; i < Math.min(16, dst.byteSize()); i++) {
            dst.set(ValueLayout.JAVA_BYTE, i, (byte) (0xC0 + i));
        }
        return 16;
    }

    @Override
    public VirtqueueHandler openQueue(int index) {
        return new VirtqueueHandler() {
            @Override
            public int doWork(Virtqueue q, DescriptorChain c) {
                int n = 0;
                while (q.tryPop(c)) {
                    long copied = 0;
                    int w = c.readableCount();
                    long wOff = 0;
                    for (int i = 0; i < c.readableCount(); i++) {
                        long rOff = 0;
                        while (rOff < c.length(i) && w < c.count()) {
                            long k = Math.min(c.length(i) - rOff, c.length(w) - wOff);
                            MemorySegment.copy(EVERYTHING, c.address(i) + rOff, EVERYTHING, c.address(w) + wOff, k);
                            rOff += k;
                            wOff += k;
                            copied += k;
                            if (wOff == c.length(w)) {
                                w++;
                                wOff = 0;
                            }
                        }
                    }
                    q.pushUsed(c.head(), (int) copied);
                    n++;
                }
                if (n > 0) {
                    q.notifyIfNeeded();
                }
                return n;
            }

            @Override
            public int inFlight() {
                return 0;
            }

            @Override
            public void awaitCompletion(long timeoutNanos) {
            }

            @Override
            public void close(Virtqueue q) {
            }
        };
    }
}
