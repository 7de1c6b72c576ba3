package io.phost.storage.vmbus;

import io.phost.core.vmbus.ChannelOffer;
import io.phost.core.vmbus.ClientChannel;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.core.vmbus.VmbusClient;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;

import static io.phost.storage.vmbus.StorvscDescriptor.*;

/**
 * The child-partition side of the storage device (a storvsc-style VSC): opens the SCSI controller's
 * channel, runs the initialization handshake (BEGIN_INITIALIZATION, QUERY_PROTOCOL_VERSION,
 * QUERY_PROPERTIES, END_INITIALIZATION), asks for sub-channels for multi-queue, and exposes one
 * {@link StorvscQueue} per channel: a block-device API with async submit/complete and a fixed depth.
 */
public final class StorvscClient implements AutoCloseable {
    private static final Duration TIMEOUT = Duration.ofSeconds(10);
    private static final ValueLayout.OfLong BE64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfInt BE32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    private final List<StorvscQueue> queues = new ArrayList<>();
    private final int maxTransfer;
    private final int hostChannels;

    private StorvscClient(int maxTransfer, int hostChannels) {
        this.maxTransfer = maxTransfer;
        this.hostChannels = hostChannels;
    }

    /**
     * Connects to the storage controller offered to this partition ({@code instance} null: the first one).
     *
     * @param queues    wanted queues (1 + sub-channels, capped by what the host offers)
     * @param depth     command slots per queue
     * @param slotBytes largest transfer per command (capped by the host's max_transfer_bytes)
     */
    public static StorvscClient connect(VmbusClient bus, UUID instance, int queues, int depth, int slotBytes) {
        ChannelOffer offer = instance == null ? bus.awaitOffer(SCSI_INTERFACE, 0, TIMEOUT) : awaitInstance(bus, instance);
        ClientChannel primary = bus.open(offer, 64, null);
        MemorySegment p = Arena.ofAuto().allocate(PACKET_SIZE, 8);
        int[] props = new int[2];
        try {
            control(primary, p, OP_BEGIN_INITIALIZATION, 0);
            control(primary, p, OP_QUERY_PROTOCOL_VERSION, VERSION_WIN10);
            MemorySegment reply = control(primary, p, OP_QUERY_PROPERTIES, 0);
            props[0] = reply.get(U16, PROP_MAX_CHANNEL_CNT) & 0xFFFF;
            props[1] = reply.get(U32, PROP_MAX_TRANSFER_BYTES);
            control(primary, p, OP_END_INITIALIZATION, 0);
        } catch (RuntimeException e) {
            primary.close();
            throw e;
        }
        int slot = Math.min(slotBytes, props[1]);
        StorvscClient c = new StorvscClient(props[1], props[0]);
        c.queues.add(new StorvscQueue(bus, primary, depth, slot));
        int subs = Math.min(queues - 1, props[0]);
        if (subs > 0) {
            p.fill((byte) 0);
            p.set(U16, SUB_CHANNEL_COUNT, (short) subs);
            control(primary, p, OP_CREATE_SUB_CHANNELS, -1);
            for (int i = 1; i <= subs; i++) {
                ChannelOffer so = bus.awaitOffer(SCSI_INTERFACE, i, TIMEOUT);
                c.queues.add(new StorvscQueue(bus, bus.open(so, 64, null), depth, slot));
            }
        }
        return c;
    }

    /** The primary-channel offer of the controller with {@code instance} (several controllers per partition). */
    private static ChannelOffer awaitInstance(VmbusClient bus, UUID instance) {
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (System.nanoTime() < deadline) {
            for (ChannelOffer o : bus.offers()) {
                if (o.interfaceType().equals(SCSI_INTERFACE) && o.subChannelIndex() == 0 && o.instance().equals(instance)) {
                    return o;
                }
            }
            try {
                Thread.sleep(2);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            }
        }
        throw new IllegalStateException("no storage controller " + instance + " offered within " + TIMEOUT);
    }

    /** Sends one control operation and waits for its COMPLETE_IO; throws unless status is success. */
    private static MemorySegment control(ClientChannel ch, MemorySegment p, int op, int version) {
        if (version >= 0) {
            p.fill((byte) 0);
            if (op == OP_QUERY_PROTOCOL_VERSION) {
                p.set(U16, VERSION_MAJOR_MINOR, (short) version);
            }
        }
        p.set(U32, OPERATION_OFFSET, op);
        p.set(U32, FLAGS_OFFSET, REQUEST_COMPLETION_FLAG);
        ch.write(PacketDescriptor.TYPE_INBAND, PacketDescriptor.FLAG_COMPLETION_REQUESTED, 0x1000 + op, p, 0, PACKET_SIZE, TIMEOUT);
        MemorySegment reply = Arena.ofAuto().allocate(PACKET_SIZE, 8);
        int[] status = {Integer.MIN_VALUE};
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (status[0] == Integer.MIN_VALUE) {
            ch.read((buf, off, len, type, flags, tid) -> {
                if (type == PacketDescriptor.TYPE_COMPLETION && tid == 0x1000 + op) {
                    long d = PacketDescriptor.dataOffset(buf, off);
                    int n = Math.min(PACKET_SIZE, PacketDescriptor.dataLength(buf, off, len));
                    MemorySegment.copy(buf, d, reply, 0, n);
                    status[0] = reply.get(U32, STATUS_OFFSET);
                }
                return true;
            }, 16, Duration.ofMillis(100));
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("storvsc: no answer to operation " + op);
            }
        }
        if (status[0] != STATUS_SUCCESS || reply.get(U32, OPERATION_OFFSET) != OP_COMPLETE_IO) {
            throw new IllegalStateException("storvsc: operation " + op + " failed: status 0x" + Integer.toHexString(status[0]));
        }
        return reply;
    }

    public int queueCount() {
        return queues.size();
    }

    public StorvscQueue queue(int i) {
        return queues.get(i);
    }

    public int maxTransferBytes() {
        return maxTransfer;
    }

    /** Sub-channels the host offers at most. */
    public int hostSubChannels() {
        return hostChannels;
    }

    /** Capacity of {@code lun}: {blocks, blockSize}, via READ CAPACITY(16) on queue 0 (slot 0 must be free). */
    public long[] readCapacity(int lun) {
        StorvscQueue q = queues.get(0);
        MemorySegment cdb = Arena.ofAuto().allocate(16);
        cdb.set(ValueLayout.JAVA_BYTE, 0, (byte) 0x9E);
        cdb.set(ValueLayout.JAVA_BYTE, 1, (byte) 0x10);
        cdb.set(BE32, 10, 32);
        int[] res = runSync(q, lun, cdb, 16, DATA_READ, 32);
        if (res[0] != 0) {
            throw new IllegalStateException("READ CAPACITY(16) on LUN " + lun + ": scsi status " + res[0] + " srb " + res[1]);
        }
        MemorySegment b = q.buffer(0);
        return new long[] {b.get(BE64, 0) + 1, b.get(BE32, 8)};
    }

    /** LUNs the controller reports (REPORT LUNS on queue 0). */
    public List<Integer> reportLuns() {
        StorvscQueue q = queues.get(0);
        MemorySegment cdb = Arena.ofAuto().allocate(12);
        cdb.set(ValueLayout.JAVA_BYTE, 0, (byte) 0xA0);
        cdb.set(BE32, 6, 8 + 8 * 64);
        int[] res = runSync(q, 0, cdb, 12, DATA_READ, 8 + 8 * 64);
        List<Integer> luns = new ArrayList<>();
        if (res[0] == 0) {
            MemorySegment b = q.buffer(0);
            int n = b.get(BE32, 0) / 8;
            for (int i = 0; i < n; i++) {
                luns.add(b.get(ValueLayout.JAVA_BYTE, 8 + 8L * i + 1) & 0xFF);
            }
        }
        return luns;
    }

    /** Runs one command on slot 0 and waits: {scsiStatus, srbStatus, transferred, senseKey, ascq}. */
    public static int[] runSync(StorvscQueue q, int lun, MemorySegment cdb, int cdbLength, int dataIn, int length) {
        int[] res = new int[5];
        boolean[] done = {false};
        long deadline = System.nanoTime() + TIMEOUT.toNanos();
        while (!q.trySubmit(0, lun, cdb, cdbLength, dataIn, length)) {
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("ring full");
            }
            Thread.onSpinWait();
        }
        while (!done[0]) {
            q.await((slot, scsi, srb, transferred, key, ascq) -> {
                if (slot == 0) {
                    res[0] = scsi;
                    res[1] = srb;
                    res[2] = (int) transferred;
                    res[3] = key;
                    res[4] = ascq;
                    done[0] = true;
                }
            }, 100_000_000L);
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("no completion for LUN " + lun);
            }
        }
        return res;
    }

    @Override
    public void close() {
        for (int i = queues.size() - 1; i >= 0; i--) {
            queues.get(i).close();
        }
    }
}
