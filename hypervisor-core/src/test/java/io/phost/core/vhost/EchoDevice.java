package io.phost.core.vhost;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** A test device: each chain's device-readable bytes are copied into its device-writable bytes. */
class EchoDevice extends TestDevice {
    private static final MemorySegment EVERYTHING = MemorySegment.NULL.reinterpret(Long.MAX_VALUE);

    EchoDevice(int queues) {
        this(queues, false, false);
    }

    EchoDevice(int queues, boolean tracksInflight, boolean packed) {
        super(queues, tracksInflight, packed);
    }

    @Override
    public int readConfig(MemorySegment dst) {
        for (int i = 0; i < Math.min(16, dst.byteSize()); i++) {
            dst.set(ValueLayout.JAVA_BYTE, i, (byte) (0xC0 + i));
        }
        return 16;
    }

    @Override
    int work(Virtqueue q, DescriptorChain c) {
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
}
