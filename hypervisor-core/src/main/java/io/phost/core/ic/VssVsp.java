package io.phost.core.ic;

import io.phost.core.vmbus.ChannelContext;
import io.phost.core.vmbus.ChannelHandler;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.core.vmbus.VirtualServiceProvider;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;

/**
 * Backup (volume shadow copy) integration service, host side: {@link #request} asks the guest to freeze its
 * writes (it flushes and holds them; it thaws by itself when {@code timeoutMillis} passes without a thaw) or to
 * thaw them, for application-consistent checkpoints. One request at a time; the guest's completion carries
 * its status ({@link IcMessage#VSS_OK}, or why it could not).
 */
public final class VssVsp implements VirtualServiceProvider {
    private final UUID instance;
    private volatile ChannelContext ctx;
    private volatile int pendingOp;
    private volatile int pendingTimeout;
    private volatile CompletableFuture<Integer> ack = new CompletableFuture<>();
    private volatile long ackSeq;
    private long lastSeq;

    public VssVsp(String partition) {
        this.instance = IcMessage.instanceFor(partition, IcMessage.VSS_TYPE);
    }

    @Override
    public UUID interfaceType() {
        return IcMessage.VSS_TYPE;
    }

    @Override
    public UUID instance() {
        return instance;
    }

    @Override
    public String name() {
        return "ic-vss";
    }

    public boolean isOpen() {
        return ctx != null;
    }

    /**
     * Sends {@link IcMessage#VSS_FREEZE} or {@link IcMessage#VSS_THAW}; the future completes with the guest's
     * status. A failed future when the guest has not opened the service.
     */
    public synchronized CompletableFuture<Integer> request(int op, int timeoutMillis) {
        ChannelContext c = ctx;
        if (c == null) {
            return CompletableFuture.failedFuture(new IllegalStateException("the guest has no backup (VSS) integration service open"));
        }
        ack = new CompletableFuture<>();
        ackSeq = ++lastSeq; // a late answer to an earlier request (its trans id) completes nothing
        pendingTimeout = timeoutMillis;
        pendingOp = op;
        c.wakeup();
        return ack;
    }

    @Override
    public ChannelHandler open(ChannelContext context) {
        MemorySegment msg = Arena.ofAuto().allocate(IcMessage.PAYLOAD + 8, 8);
        ChannelHandler h = new ChannelHandler() {
            @Override
            public boolean onPacket(MemorySegment buf, long off, int len, int type, int flags, long transId) {
                long data = PacketDescriptor.dataOffset(buf, off);
                int n = PacketDescriptor.dataLength(buf, off, len);
                if (type != PacketDescriptor.TYPE_COMPLETION || n < IcMessage.PAYLOAD) {
                    context.fault("vss: unexpected packet type " + type);
                    return true;
                }
                if (transId == ackSeq) {
                    ack.complete(buf.get(IcMessage.U16, data + IcMessage.STATUS) & 0xffff);
                }
                return true;
            }

            @Override
            public int doWork() {
                int op = pendingOp;
                if (op == 0) {
                    return 0;
                }
                long seq = ackSeq;
                IcMessage.header(msg, IcMessage.VSS, 8, seq);
                msg.set(IcMessage.U32, IcMessage.VSS_OP, op);
                msg.set(IcMessage.U32, IcMessage.VSS_TIMEOUT_MS, pendingTimeout);
                if (context.tryWrite(PacketDescriptor.TYPE_INBAND, PacketDescriptor.FLAG_COMPLETION_REQUESTED, seq, msg, 0,
                    IcMessage.PAYLOAD + 8)) {
                    pendingOp = 0;
                    return 1;
                }
                return 0;
            }

            @Override
            public void onClose() {
                ctx = null;
                ack.completeExceptionally(new IllegalStateException("the guest closed its backup (VSS) integration service"));
            }
        };
        ctx = context;
        return h;
    }
}
