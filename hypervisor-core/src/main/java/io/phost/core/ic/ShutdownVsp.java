package io.phost.core.ic;

import io.phost.core.vmbus.ChannelContext;
import io.phost.core.vmbus.ChannelHandler;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.core.vmbus.VirtualServiceProvider;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;

/** Guest shutdown integration service (host side): {@link #request} asks the guest to shut down. */
public final class ShutdownVsp implements VirtualServiceProvider {
    private final UUID instance;
    private volatile ChannelContext ctx;
    private volatile String pendingReason;
    private volatile CompletableFuture<Integer> ack = new CompletableFuture<>();

    public ShutdownVsp(String partition) {
        this.instance = IcMessage.instanceFor(partition, IcMessage.SHUTDOWN_TYPE);
    }

    @Override
    public UUID interfaceType() {
        return IcMessage.SHUTDOWN_TYPE;
    }

    @Override
    public UUID instance() {
        return instance;
    }

    @Override
    public String name() {
        return "ic-shutdown";
    }

    public boolean isOpen() {
        return ctx != null;
    }

    /**
     * Sends a shutdown request; the future completes with the guest's status when it acknowledges.
     * Returns a failed future if the guest has not opened the service.
     */
    public CompletableFuture<Integer> request(String reason) {
        ChannelContext c = ctx;
        if (c == null) {
            return CompletableFuture.failedFuture(new IllegalStateException("guest has no shutdown service open"));
        }
        ack = new CompletableFuture<>();
        pendingReason = reason;
        c.wakeup();
        return ack;
    }

    @Override
    public ChannelHandler open(ChannelContext context) {
        MemorySegment msg = Arena.ofAuto().allocate(IcMessage.PAYLOAD + 4 + 256, 8);
        ChannelHandler h = new ChannelHandler() {
            long seq;

            @Override
            public boolean onPacket(MemorySegment buf, long off, int len, int type, int flags, long transId) {
                long data = PacketDescriptor.dataOffset(buf, off);
                int n = PacketDescriptor.dataLength(buf, off, len);
                if (type != PacketDescriptor.TYPE_COMPLETION || n < IcMessage.PAYLOAD) {
                    context.fault("shutdown: unexpected packet type " + type);
                    return true;
                }
                ack.complete(buf.get(IcMessage.U16, data + IcMessage.STATUS) & 0xffff);
                return true;
            }

            @Override
            public int doWork() {
                String r = pendingReason;
                if (r == null) {
                    return 0;
                }
                byte[] text = r.getBytes(StandardCharsets.UTF_8);
                int tl = Math.min(text.length, 256);
                IcMessage.header(msg, IcMessage.SHUTDOWN, 4 + tl, ++seq);
                msg.set(IcMessage.U32, IcMessage.PAYLOAD, 0);
                MemorySegment.copy(text, 0, msg, ValueLayout.JAVA_BYTE, IcMessage.PAYLOAD + 4, tl);
                if (context.tryWrite(PacketDescriptor.TYPE_INBAND, PacketDescriptor.FLAG_COMPLETION_REQUESTED, seq, msg, 0, IcMessage.PAYLOAD + 4 + tl)) {
                    pendingReason = null;
                    return 1;
                }
                return 0;
            }

            @Override
            public void onClose() {
                ctx = null;
            }
        };
        ctx = context;
        return h;
    }
}
