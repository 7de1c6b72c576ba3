package io.phost.perf.vmbus;

import io.phost.core.sys.EventFd;
import io.phost.core.vmbus.ChannelContext;
import io.phost.core.vmbus.ChannelHandler;
import io.phost.core.vmbus.DoorbellIdleStrategy;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.core.vmbus.VirtualServiceProvider;
import io.phost.core.vmbus.VmbusRing;
import java.util.UUID;
import org.agrona.concurrent.IdleStrategy;

/**
 * The benchmark device: packets without FLAG_COMPLETION_REQUESTED are counted (one-way throughput);
 * packets with it are echoed back as completions in place (round trip). {@code busy} selects pure busy
 * polling for the agent, otherwise pure interrupt mode (arm, sleep on the eventfd at once). {@code lazy}: the
 * agent publishes read_index lazily ({@link VirtualServiceProvider#lazyReadIndex}), the same agent otherwise (the
 * guest cannot tell: same interface type).
 */
public final class BenchVsp implements VirtualServiceProvider {
    public static final UUID BUSY_TYPE = UUID.fromString("7a0e2c1f-5b0b-4c39-9d43-0000000000b1");
    public static final UUID IRQ_TYPE = UUID.fromString("7a0e2c1f-5b0b-4c39-9d43-0000000000b2");
    private final boolean busy;
    private final boolean lazy;
    volatile long packets;
    volatile Thread agentThread;

    public BenchVsp(boolean busy) {
        this(busy, false);
    }

    public BenchVsp(boolean busy, boolean lazy) {
        this.busy = busy;
        this.lazy = lazy;
    }

    @Override
    public UUID interfaceType() {
        return busy ? BUSY_TYPE : IRQ_TYPE;
    }

    @Override
    public boolean lazyReadIndex() {
        return lazy;
    }

    @Override
    public UUID instance() {
        return UUID.nameUUIDFromBytes(interfaceType().toString().getBytes());
    }

    @Override
    public String name() {
        return lazy ? "bench-busy-lazy" : busy ? "bench-busy" : "bench-irq";
    }

    @Override
    public IdleStrategy idleStrategy(VmbusRing rx, EventFd doorbell) {
        return busy ? DoorbellIdleStrategy.busySpin(rx, doorbell) : DoorbellIdleStrategy.interruptOnly(rx, doorbell);
    }

    @Override
    public ChannelHandler open(ChannelContext ctx) {
        return new ChannelHandler() {
            long count;

            @Override
            public boolean onPacket(java.lang.foreign.MemorySegment buf, long off, int len, int type, int flags, long transId) {
                if ((flags & PacketDescriptor.FLAG_COMPLETION_REQUESTED) != 0) {
                    long data = PacketDescriptor.dataOffset(buf, off);
                    if (!ctx.tryComplete(transId, buf, data, len - (int) (data - off))) {
                        return false; // the guest drains its inbound ring: retry on the next duty cycle
                    }
                }
                if ((++count & 1023) == 0) {
                    packets = count; // publish rarely: a volatile store per packet would distort the number
                }
                return true;
            }

            @Override
            public int doWork() {
                if (agentThread == null) {
                    agentThread = Thread.currentThread();
                }
                return 0;
            }
        };
    }
}
