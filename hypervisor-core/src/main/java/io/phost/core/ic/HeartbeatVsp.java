package io.phost.core.ic;

import io.phost.core.vmbus.ChannelContext;
import io.phost.core.vmbus.ChannelHandler;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.core.vmbus.VirtualServiceProvider;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.UUID;

/**
 * Heartbeat integration service (host side): sends a numbered request every interval; the guest answers
 * with the number plus one. The partition's watchdog reads {@link #lastResponseNanos()}.
 */
public final class HeartbeatVsp implements VirtualServiceProvider {
    private final UUID instance;
    private final long intervalNanos;
    private volatile long lastResponseNanos = System.nanoTime();
    private volatile boolean open;
    private volatile long responses;

    public HeartbeatVsp(String partition, long intervalNanos) {
        this.instance = IcMessage.instanceFor(partition, IcMessage.HEARTBEAT_TYPE);
        this.intervalNanos = intervalNanos;
    }

    @Override
    public UUID interfaceType() {
        return IcMessage.HEARTBEAT_TYPE;
    }

    @Override
    public UUID instance() {
        return instance;
    }

    @Override
    public String name() {
        return "ic-heartbeat";
    }

    /** When the guest last answered (System.nanoTime); reset on open and on resume. */
    public long lastResponseNanos() {
        return lastResponseNanos;
    }

    public boolean isOpen() {
        return open;
    }

    public long responses() {
        return responses;
    }

    /** Restarts the timeout (after resume: a paused guest could not answer). */
    public void touch() {
        lastResponseNanos = System.nanoTime();
    }

    @Override
    public ChannelHandler open(ChannelContext ctx) {
        touch();
        open = true;
        MemorySegment msg = Arena.ofAuto().allocate(IcMessage.PAYLOAD + 8, 8);
        return new ChannelHandler() {
            long seq;
            long lastSent;
            long awaiting = -1;

            @Override
            public boolean onPacket(MemorySegment buf, long off, int len, int type, int flags, long transId) {
                long data = PacketDescriptor.dataOffset(buf, off);
                int n = PacketDescriptor.dataLength(buf, off, len);
                if (type != PacketDescriptor.TYPE_COMPLETION || n < IcMessage.PAYLOAD + 8
                    || buf.get(IcMessage.U16, data) != IcMessage.HEARTBEAT) {
                    ctx.fault("heartbeat: unexpected packet type " + type + " of " + n + " bytes");
                    return true;
                }
                long answer = buf.get(IcMessage.U64, data + IcMessage.PAYLOAD);
                if (transId == awaiting && answer == awaiting + 1) {
                    lastResponseNanos = System.nanoTime();
                    responses++;
                    awaiting = -1;
                }
                return true;
            }

            @Override
            public int doWork() {
                long now = System.nanoTime();
                if (now - lastSent < intervalNanos) {
                    return 0;
                }
                seq++;
                IcMessage.header(msg, IcMessage.HEARTBEAT, 8, seq);
                msg.set(IcMessage.U64, IcMessage.PAYLOAD, seq);
                if (ctx.tryWrite(PacketDescriptor.TYPE_INBAND, PacketDescriptor.FLAG_COMPLETION_REQUESTED, seq, msg, 0, IcMessage.PAYLOAD + 8)) {
                    awaiting = seq;
                    lastSent = now;
                    return 1;
                }
                return 0;
            }

            @Override
            public void onClose() {
                open = false;
            }
        };
    }
}
