package io.phost.core.ic;

import io.phost.core.vmbus.ChannelContext;
import io.phost.core.vmbus.ChannelHandler;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.core.vmbus.VirtualServiceProvider;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * Key-value pair exchange (host side). The host pushes pairs into the guest's "external" pool with
 * {@link #set}/{@link #delete}; the guest publishes its own pairs (hostname, OS, IP addresses), which
 * {@link #guestValues()} returns. Sizes are bounded (512-byte keys, 2048-byte values, 1024 entries).
 */
public final class KvpVsp implements VirtualServiceProvider {
    private final UUID instance;
    private final Map<String, String> hostValues = new ConcurrentHashMap<>();
    private final Map<String, String> guestValues = new ConcurrentHashMap<>();
    private final ConcurrentLinkedQueue<String[]> outbox = new ConcurrentLinkedQueue<>();
    private volatile ChannelContext ctx;

    public KvpVsp(String partition) {
        this.instance = IcMessage.instanceFor(partition, IcMessage.KVP_TYPE);
    }

    @Override
    public UUID interfaceType() {
        return IcMessage.KVP_TYPE;
    }

    @Override
    public UUID instance() {
        return instance;
    }

    @Override
    public String name() {
        return "ic-kvp";
    }

    /** Sets a pair in the guest's external pool (delivered now, or when the guest opens the service). */
    public void set(String key, String value) {
        check(key, value);
        hostValues.put(key, value);
        outbox.add(new String[] {key, value});
        ChannelContext c = ctx;
        if (c != null) {
            c.wakeup();
        }
    }

    public void delete(String key) {
        hostValues.remove(key);
        outbox.add(new String[] {key, null});
        ChannelContext c = ctx;
        if (c != null) {
            c.wakeup();
        }
    }

    /** Pairs the guest published (snapshot). */
    public Map<String, String> guestValues() {
        return Map.copyOf(guestValues);
    }

    private static void check(String key, String value) {
        if (key.getBytes(StandardCharsets.UTF_8).length > IcMessage.MAX_KEY
            || (value != null && value.getBytes(StandardCharsets.UTF_8).length > IcMessage.MAX_VALUE)) {
            throw new IllegalArgumentException("KVP key > 512 bytes or value > 2048 bytes");
        }
    }

    @Override
    public ChannelHandler open(ChannelContext context) {
        MemorySegment msg = Arena.ofAuto().allocate(IcMessage.MAX_MESSAGE, 8);
        outbox.clear();
        hostValues.forEach((k, v) -> outbox.add(new String[] {k, v}));
        ctx = context;
        return new ChannelHandler() {
            long seq;

            @Override
            public boolean onPacket(MemorySegment buf, long off, int len, int type, int flags, long transId) {
                long d = PacketDescriptor.dataOffset(buf, off);
                int n = PacketDescriptor.dataLength(buf, off, len);
                if (type != PacketDescriptor.TYPE_INBAND || n < IcMessage.KVP_KEY || buf.get(IcMessage.U16, d) != IcMessage.KVP) {
                    context.fault("kvp: unexpected packet type " + type + " of " + n + " bytes");
                    return true;
                }
                int op = buf.get(ValueLayout.JAVA_BYTE, d + IcMessage.KVP_OP);
                int kl = buf.get(IcMessage.U16, d + IcMessage.KVP_KEY_LEN) & 0xffff;
                int vl = buf.get(IcMessage.U16, d + IcMessage.KVP_VALUE_LEN) & 0xffff;
                if (kl == 0 || kl > IcMessage.MAX_KEY || vl > IcMessage.MAX_VALUE || IcMessage.KVP_KEY + kl + vl > n) {
                    context.fault("kvp: key_len " + kl + " value_len " + vl + " in a " + n + "-byte message");
                    return true;
                }
                byte[] k = new byte[kl];
                MemorySegment.copy(buf, ValueLayout.JAVA_BYTE, d + IcMessage.KVP_KEY, k, 0, kl);
                String key = new String(k, StandardCharsets.UTF_8);
                if (op == IcMessage.KVP_GUEST_SET) {
                    if (guestValues.size() >= IcMessage.MAX_ENTRIES && !guestValues.containsKey(key)) {
                        context.fault("kvp: guest pool over " + IcMessage.MAX_ENTRIES + " entries");
                        return true;
                    }
                    byte[] v = new byte[vl];
                    MemorySegment.copy(buf, ValueLayout.JAVA_BYTE, d + IcMessage.KVP_KEY + kl, v, 0, vl);
                    guestValues.put(key, new String(v, StandardCharsets.UTF_8));
                } else if (op == IcMessage.KVP_GUEST_DELETE) {
                    guestValues.remove(key);
                } else {
                    context.fault("kvp: op " + op + " not valid from a guest");
                }
                return true;
            }

            @Override
            public int doWork() {
                String[] e = outbox.peek();
                if (e == null) {
                    return 0;
                }
                byte[] k = e[0].getBytes(StandardCharsets.UTF_8);
                byte[] v = e[1] == null ? new byte[0] : e[1].getBytes(StandardCharsets.UTF_8);
                IcMessage.header(msg, IcMessage.KVP, IcMessage.KVP_KEY - IcMessage.PAYLOAD + k.length + v.length, ++seq);
                msg.set(ValueLayout.JAVA_BYTE, IcMessage.KVP_OP, (byte) (e[1] == null ? IcMessage.KVP_DELETE : IcMessage.KVP_SET));
                msg.set(ValueLayout.JAVA_BYTE, IcMessage.KVP_POOL, (byte) 0);
                msg.set(IcMessage.U16, IcMessage.KVP_KEY_LEN, (short) k.length);
                msg.set(IcMessage.U16, IcMessage.KVP_VALUE_LEN, (short) v.length);
                msg.set(IcMessage.U16, IcMessage.KVP_VALUE_LEN + 2, (short) 0);
                MemorySegment.copy(k, 0, msg, ValueLayout.JAVA_BYTE, IcMessage.KVP_KEY, k.length);
                MemorySegment.copy(v, 0, msg, ValueLayout.JAVA_BYTE, IcMessage.KVP_KEY + k.length, v.length);
                if (context.tryWrite(PacketDescriptor.TYPE_INBAND, 0, seq, msg, 0, IcMessage.KVP_KEY + k.length + v.length)) {
                    outbox.poll();
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
