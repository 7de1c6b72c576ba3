package io.phost.core;

import io.phost.core.vmbus.ChannelContext;
import io.phost.core.vmbus.ChannelHandler;
import io.phost.core.vmbus.GpaDirectRanges;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.core.vmbus.VirtualServiceProvider;
import io.phost.core.vmbus.VmbusRing;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Test device: echoes inband packets back as completions; for GPA-direct packets it sums the bytes of
 * every referenced guest page range (read in place through GuestMemory) and completes with the sum.
 */
public final class EchoVsp implements VirtualServiceProvider {
    public static final UUID TYPE = UUID.fromString("0c1e5a4e-1111-4a6b-9d7e-000000000001");
    private final UUID instance;
    public final AtomicLong packets = new AtomicLong();
    public final AtomicLong gpaDirect = new AtomicLong();
    public final AtomicLong opens = new AtomicLong();

    public EchoVsp(String id) {
        this.instance = UUID.nameUUIDFromBytes(id.getBytes());
    }

    @Override
    public UUID interfaceType() {
        return TYPE;
    }

    @Override
    public UUID instance() {
        return instance;
    }

    @Override
    public String name() {
        return "vsp-echo";
    }

    @Override
    public ChannelHandler open(ChannelContext ctx) {
        opens.incrementAndGet();
        MemorySegment sum = Arena.ofAuto().allocate(8, 8);
        GpaDirectRanges ranges = new GpaDirectRanges();
        return (buf, off, len, type, flags, transId) -> {
            long data = PacketDescriptor.dataOffset(buf, off);
            int n = PacketDescriptor.dataLength(buf, off, len);
            if (type == PacketDescriptor.TYPE_GPA_DIRECT) {
                ranges.wrap(buf, off, len);
                long total = 0;
                MemorySegment mem = ctx.guestMemory().segment();
                for (int r = 0; r < ranges.rangeCount(); r++) {
                    for (int p = 0; p < ranges.pageCount(r); p++) {
                        long at = ranges.resolve(ctx.guestMemory(), r, p);
                        int pl = ranges.pageLength(r, p);
                        for (int i = 0; i < pl; i++) {
                            total += mem.get(ValueLayout.JAVA_BYTE, at + i) & 0xff;
                        }
                    }
                }
                sum.set(ValueLayout.JAVA_LONG, 0, total);
                if (!ctx.tryComplete(transId, sum, 0, 8)) {
                    ctx.requestSpace(VmbusRing.spaceFor(0, 8));
                    return false;
                }
                gpaDirect.incrementAndGet();
                packets.incrementAndGet();
                return true;
            }
            if ((flags & PacketDescriptor.FLAG_COMPLETION_REQUESTED) != 0 && !ctx.tryComplete(transId, buf, data, n)) {
                ctx.requestSpace(VmbusRing.spaceFor(0, n));
                return false;
            }
            packets.incrementAndGet();
            return true;
        };
    }
}
