package io.phost.core.ic;

import io.phost.core.vmbus.ChannelContext;
import io.phost.core.vmbus.ChannelHandler;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.core.vmbus.VirtualServiceProvider;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.time.Instant;
import java.util.UUID;

/** Time synchronisation integration service (host side): samples the host clock to the guest periodically. */
public final class TimeSyncVsp implements VirtualServiceProvider {
    private final UUID instance;
    private final long intervalNanos;
    private volatile ChannelContext ctx;
    private volatile boolean syncNow = true;

    public TimeSyncVsp(String partition, long intervalNanos) {
        this.instance = IcMessage.instanceFor(partition, IcMessage.TIMESYNC_TYPE);
        this.intervalNanos = intervalNanos;
    }

    @Override
    public UUID interfaceType() {
        return IcMessage.TIMESYNC_TYPE;
    }

    @Override
    public UUID instance() {
        return instance;
    }

    @Override
    public String name() {
        return "ic-timesync";
    }

    /** Sends a "sync now" sample soon (after resume: the guest's clock stood still while stopped). */
    public void syncNow() {
        syncNow = true;
        ChannelContext c = ctx;
        if (c != null) {
            c.wakeup();
        }
    }

    @Override
    public ChannelHandler open(ChannelContext context) {
        MemorySegment msg = Arena.ofAuto().allocate(IcMessage.PAYLOAD + 16, 8);
        syncNow = true;
        ctx = context;
        return new ChannelHandler() {
            long seq;
            long lastSent;

            @Override
            public boolean onPacket(MemorySegment buf, long off, int len, int type, int flags, long transId) {
                context.fault("timesync: the guest sends nothing on this channel (type " + type + ")");
                return true;
            }

            @Override
            public int doWork() {
                long now = System.nanoTime();
                boolean force = syncNow;
                if (!force && now - lastSent < intervalNanos) {
                    return 0;
                }
                Instant t = Instant.now();
                IcMessage.header(msg, IcMessage.TIMESYNC, 16, ++seq);
                msg.set(IcMessage.U64, IcMessage.PAYLOAD, t.getEpochSecond() * 1_000_000_000L + t.getNano());
                msg.set(IcMessage.U64, IcMessage.PAYLOAD + 8, force ? 1L : 0L);
                if (context.tryWrite(PacketDescriptor.TYPE_INBAND, 0, seq, msg, 0, IcMessage.PAYLOAD + 16)) {
                    lastSent = now;
                    syncNow = false;
                    return 1;
                }
                return 0;
            }

            @Override
            public void onClose() {
                ctx = null;
            }
        };
    }
}
