package io.phost.network;

import static io.phost.network.NvspDescriptor.*;

import io.phost.core.vmbus.ChannelOffer;
import io.phost.core.vmbus.ClientChannel;
import io.phost.core.vmbus.GuestRam;
import io.phost.core.vmbus.PacketDescriptor;
import io.phost.core.vmbus.PacketHandler;
import io.phost.core.vmbus.VmbusClient;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.List;

/**
 * The child side of a synthetic NIC (netvsc-style VSC): opens the channel, negotiates NVSP, learns MAC/MTU/
 * link, grants a receive and a send buffer through GPADLs, then moves frames. One thread uses an instance.
 * <pre>
 *  trySend(frame): free send section ──copy──▶ section ──SEND_RNDIS_PKT(section,len)──▶ host; completion frees it
 *  poll():         host SEND_RNDIS_PKT(section,len) ──▶ frame handed to the caller ──▶ completion 108 to host
 * </pre>
 * Opened {@link #openWithOffloads with offloads}, every frame both ways is a 12-byte virtio_net_hdr followed by
 * the Ethernet frame (a TAP opened with IFF_VNET_HDR reads and writes exactly that), and sections hold 64 KiB
 * GSO super-frames: a partition whose stack takes partial checksums and TSO gets its data unsegmented.
 */
public final class NetVsc implements AutoCloseable {
    private static final long SEND_TAG = 1L << 32;
    private static final long CONTROL_TAG = 1L << 40;
    /** RNDIS_PKT_COMPLETE: message type and status. */
    private static final int COMPLETION_LENGTH = 8;

    /** Receives frames from the host; the segment slice is valid during the call only. */
    @FunctionalInterface
    public interface FrameReceiver {
        void onFrame(MemorySegment memory, long offset, int length);
    }

    private final VmbusClient client;
    private final ClientChannel channel;
    private final GuestRam.Buffer recv;
    private final GuestRam.Buffer send;
    private final MemorySegment scratch = Arena.ofAuto().allocate(64, 8);
    private final MemorySegment packet = Arena.ofAuto().allocate(PKT_LENGTH, 8);
    private final MemorySegment completion = Arena.ofAuto().allocate(8, 8);
    private final int[] freeSend;
    private int freeSendCount;
    private final int recvSections;
    private long mac;
    private int mtu;
    private int recvSectionSize;
    private int sendSectionSize;
    /** Largest section a host may announce: a 64 KiB GSO super-frame with its per-frame header. */
    private static final int MAX_SECTION_SIZE = GSO_SECTION_SIZE;
    /** Buffer bytes each way with offloads: 63 sections of 64.5 KiB (without: 1 MiB of MTU-sized ones). */
    private static final int OFFLOAD_BUFFER_BYTES = 4 << 20;
    private final boolean vnetHdr;
    private volatile boolean linkUp;
    private int version;
    private FrameReceiver receiver;
    private long received;
    private long sent;
    private final PacketHandler handler = this::onPacket;
    /** Completions queued by {@link #poll} since its last publish (published every {@link #COMPLETION_BURST}). */
    private int queuedCompletions;
    /** True while pending_send_sz asks the host to signal us for space for a completion. */
    private boolean spaceRequested;
    /**
     * Completions for received frames published together (one write_index store and fence per burst, see
     * {@link ClientChannel#tryQueue}); at most this many, so the host gets its receive sections back while we
     * still hand later frames on (a 64-frame poll would otherwise hold them all until its end).
     */
    static final int COMPLETION_BURST = 8;
    // Control replies while initialising.
    private long awaitedTransId = -1;
    private final MemorySegment awaitedReply = Arena.ofAuto().allocate(64, 8);
    private int awaitedLength;

    private NetVsc(VmbusClient client, ClientChannel channel, int recvBytes, int sendBytes, long caps, Duration timeout) {
        this.client = client;
        this.channel = channel;
        this.vnetHdr = (caps & CAP_VNET_HDR) != 0;
        // INIT: offer the whole range we speak.
        u32(scratch, 0, MSG_INIT);
        u32(scratch, INIT_MIN_OFFSET, VERSION_5);
        u32(scratch, INIT_MAX_OFFSET, VERSION_61);
        MemorySegment r = request(scratch, INIT_LENGTH, timeout);
        if (u32(r, 8) != STATUS_SUCCESS) {
            throw new IllegalStateException("NVSP version negotiation refused by the host");
        }
        version = u32(r, 4);
        u32(scratch, 0, MSG_QUERY_CONFIG);
        r = request(scratch, 4, timeout);
        long m = 0;
        for (int i = 0; i < 6; i++) {
            m = (m << 8) | (r.get(ValueLayout.JAVA_BYTE, CONFIG_MAC_OFFSET + i) & 0xff);
        }
        mac = m;
        mtu = u32(r, CONFIG_MTU_OFFSET);
        linkUp = u32(r, CONFIG_LINK_OFFSET) == 1;
        u32(scratch, 0, MSG_NDIS_CONFIG);
        u32(scratch, NDIS_MTU_OFFSET, mtu);
        scratch.set(U64, NDIS_CAPS_OFFSET, caps);
        channel.write(PacketDescriptor.TYPE_INBAND, 0, 0, scratch, 0, NDIS_CONFIG_LENGTH, timeout);

        recv = client.ram().allocate(recvBytes);
        int recvGpadl = client.createGpadl(channel.relid(), recv);
        u32(scratch, 0, MSG_SEND_RECV_BUF);
        u32(scratch, BUF_GPADL_OFFSET, recvGpadl);
        u16(scratch, BUF_ID_OFFSET, 0xcafe);
        r = request(scratch, BUF_LENGTH, timeout);
        if (u32(r, STATUS_OFFSET) != STATUS_SUCCESS) {
            throw new IllegalStateException("host refused the receive buffer");
        }
        recvSections = u32(r, 20);
        recvSectionSize = u32(r, 16);
        if (recvSectionSize < SECTION_SIZE || recvSectionSize > MAX_SECTION_SIZE
            || (long) recvSections * recvSectionSize > recvBytes) {
            throw new IllegalStateException("host announced receive sections of " + recvSectionSize + " bytes x "
                + recvSections + " for a " + recvBytes + "-byte buffer");
        }

        send = client.ram().allocate(sendBytes);
        int sendGpadl = client.createGpadl(channel.relid(), send);
        u32(scratch, 0, MSG_SEND_SEND_BUF);
        u32(scratch, BUF_GPADL_OFFSET, sendGpadl);
        u16(scratch, BUF_ID_OFFSET, 0xbeef);
        r = request(scratch, BUF_LENGTH, timeout);
        if (u32(r, STATUS_OFFSET) != STATUS_SUCCESS) {
            throw new IllegalStateException("host refused the send buffer");
        }
        sendSectionSize = u32(r, 8);
        if (sendSectionSize < SECTION_SIZE || sendSectionSize > MAX_SECTION_SIZE) {
            throw new IllegalStateException("host announced send sections of " + sendSectionSize + " bytes");
        }
        int sections = sendBytes / sendSectionSize;
        freeSend = new int[sections];
        for (int i = 0; i < sections; i++) {
            freeSend[i] = sections - 1 - i;
        }
        freeSendCount = sections;
    }

    /** Finds the netvsc offer {@code index}, opens it and initialises (receive 1 MiB, send 1 MiB). */
    public static NetVsc open(VmbusClient client, int index, Duration timeout) {
        ChannelOffer offer = offer(client, index, timeout);
        ClientChannel ch = client.open(offer, 64, null);
        return new NetVsc(client, ch, 1 << 20, 1 << 20, 0, timeout);
    }

    /**
     * As {@link #open}, asking for the per-frame header: the host then sends frames with the unfinished work
     * {@code offloads} (FrameSink.OFFLOAD_* bits: what this side's stack finishes, e.g. a TAP with TUN_F_CSUM|
     * TSO4|TSO6|TSO_ECN) left undone, and takes unfinished frames from us. Buffers are 4 MiB each way.
     */
    public static NetVsc openWithOffloads(VmbusClient client, int index, int offloads, Duration timeout) {
        ChannelOffer offer = offer(client, index, timeout);
        ClientChannel ch = client.open(offer, 64, null);
        return new NetVsc(client, ch, OFFLOAD_BUFFER_BYTES, OFFLOAD_BUFFER_BYTES,
            CAP_VNET_HDR | (offloads & CAP_OFFLOAD_MASK), timeout);
    }

    /**
     * The {@code index}-th synthetic NIC in offer order (relid), waiting up to {@code timeout} for it to be offered
     * (a NIC hot-added to a running partition comes later). Before, an index not offered yet fell back to NIC 0.
     */
    private static ChannelOffer offer(VmbusClient client, int index, Duration timeout) {
        if (index == 0) {
            return client.awaitOffer(NETVSC_TYPE, 0, timeout);
        }
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            List<ChannelOffer> nics = client.offers().stream()
                .filter(o -> o.interfaceType().equals(NETVSC_TYPE) && o.subChannelIndex() == 0)
                .sorted(java.util.Comparator.comparingInt(ChannelOffer::relid)).toList();
            if (nics.size() > index) {
                return nics.get(index);
            }
            if (System.nanoTime() - deadline > 0) {
                throw new IllegalStateException("no synthetic NIC " + index + " offered within " + timeout + " ("
                    + nics.size() + " offered)");
            }
            try {
                Thread.sleep(5);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            }
        }
    }

    /** True when every frame both ways starts with the 12-byte virtio_net_hdr ({@link #openWithOffloads}). */
    public boolean offloadHeader() {
        return vnetHdr;
    }

    /** Bytes a frame (with its header, if any) may have: the host's send section size. */
    public int maxSendLength() {
        return sendSectionSize;
    }

    private MemorySegment request(MemorySegment msg, int length, Duration timeout) {
        long tid = CONTROL_TAG + u32(msg, 0);
        awaitedTransId = tid;
        awaitedLength = -1;
        channel.write(PacketDescriptor.TYPE_INBAND, PacketDescriptor.FLAG_COMPLETION_REQUESTED, tid, msg, 0, length, timeout);
        long deadline = System.nanoTime() + timeout.toNanos();
        while (awaitedLength < 0) {
            channel.read(handler, 16, Duration.ofMillis(50));
            publishCompletions();
            if (System.nanoTime() > deadline) {
                throw new IllegalStateException("no answer to NVSP message " + u32(msg, 0) + " in " + timeout);
            }
        }
        awaitedTransId = -1;
        return awaitedReply;
    }

    public long mac() {
        return mac;
    }

    public int mtu() {
        return mtu;
    }

    public boolean linkUp() {
        return linkUp;
    }

    public int version() {
        return version;
    }

    public ClientChannel channel() {
        return channel;
    }

    public long framesReceived() {
        return received;
    }

    public long framesSent() {
        return sent;
    }

    /**
     * True when a send section is free (so a caller can hold a frame back instead of dropping it). Reads the
     * host's read_index only when the cached one says the ring is full.
     */
    public boolean canSend() {
        return freeSendCount > 0 && channel.outbound().hasSpaceFor(0, PKT_LENGTH);
    }

    /**
     * Sends one frame from {@code src} (with {@link #offloadHeader}: header and frame), published at once with
     * any frames {@linkplain #queueSend queued} before it; false when no send section is free or the ring is full.
     */
    public boolean trySend(MemorySegment src, long offset, int length) {
        boolean queued = queueSend(src, offset, length);
        channel.flush();
        return queued;
    }

    /**
     * As {@link #trySend}, but the host does not see the frame until {@link #flush} (or the next publishing
     * send): a sender with several frames ready queues them and flushes once (one write_index store, fence and
     * at most one signal per burst, {@link ClientChannel#tryQueue}).
     */
    public boolean queueSend(MemorySegment src, long offset, int length) {
        if (length > sendSectionSize || length < (vnetHdr ? FRAME_HDR_LENGTH : 0) + 14 || freeSendCount == 0) {
            return false;
        }
        MemorySegment.copy(src, offset, send.segment(), (long) freeSend[freeSendCount - 1] * sendSectionSize, length);
        return queueSendInPlace(length);
    }

    /** Publishes the frames queued by {@link #queueSend} / {@link #queueSendInPlace}; false when none were. */
    public boolean flush() {
        return channel.flush();
    }

    /**
     * The native address of the send section the next frame goes into, for a caller that reads the frame
     * straight into it (a TAP read: one copy fewer than {@link #trySend}), then calls {@link #trySendInPlace};
     * 0 when no section is free or the buffer is not native memory.
     */
    public long nextSendAddress() {
        MemorySegment m = send.segment();
        return freeSendCount == 0 || !m.isNative() ? 0 : m.address() + (long) freeSend[freeSendCount - 1] * sendSectionSize;
    }

    /** Bytes one send section holds (the most a frame written at {@link #nextSendAddress} may have). */
    public int sendSectionSize() {
        return sendSectionSize;
    }

    /**
     * Sends the frame of {@code length} bytes already written at {@link #nextSendAddress}, published at once with
     * any frames queued before it; false when it is too short or long, no section is free or the ring is full
     * (the section stays free; the frame is not sent).
     */
    public boolean trySendInPlace(int length) {
        boolean queued = queueSendInPlace(length);
        channel.flush();
        return queued;
    }

    /** As {@link #trySendInPlace}, queued until {@link #flush} (see {@link #queueSend}). */
    public boolean queueSendInPlace(int length) {
        if (length > sendSectionSize || length < (vnetHdr ? FRAME_HDR_LENGTH : 0) + 14 || freeSendCount == 0) {
            return false;
        }
        int section = freeSend[freeSendCount - 1];
        u32(packet, 0, MSG_SEND_RNDIS_PKT);
        u32(packet, PKT_CHANNEL_TYPE_OFFSET, 0);
        u32(packet, PKT_SECTION_OFFSET, section);
        u32(packet, PKT_LENGTH_OFFSET, length);
        if (!channel.tryQueue(PacketDescriptor.TYPE_INBAND, PacketDescriptor.FLAG_COMPLETION_REQUESTED,
            SEND_TAG + section, packet, 0, PKT_LENGTH)) {
            return false;
        }
        freeSendCount--;
        sent++;
        return true;
    }

    /** Tells the host which data path carries traffic (SWITCH_DATA_PATH): true = the SR-IOV VF. */
    public void switchDataPath(boolean vf, Duration timeout) {
        u32(scratch, 0, MSG_SWITCH_DATA_PATH);
        u32(scratch, DATA_PATH_OFFSET, vf ? 1 : 0);
        channel.write(PacketDescriptor.TYPE_INBAND, 0, 0, scratch, 0, DATA_PATH_LENGTH, timeout);
    }

    /** Asks for {@code count} sub-channels; returns how many the host offered. */
    public int requestSubChannels(int count, Duration timeout) {
        u32(scratch, 0, MSG_SUBCHANNEL);
        u32(scratch, SUBCHANNEL_OP_OFFSET, 1);
        u32(scratch, SUBCHANNEL_COUNT_OFFSET, count);
        MemorySegment r = request(scratch, SUBCHANNEL_LENGTH, timeout);
        return u32(r, STATUS_OFFSET) == STATUS_SUCCESS ? u32(r, 8) : 0;
    }

    /**
     * Handles up to {@code limit} packets from the host: frames go to {@code rx}; completions free sections. The
     * completions we owe the host for its frames are published in bursts of up to {@link #COMPLETION_BURST} and
     * before this returns (a publish also publishes frames {@linkplain #queueSend queued} before it; a sender
     * still calls {@link #flush} itself).
     */
    public int poll(FrameReceiver rx, int limit) {
        receiver = rx;
        try {
            return channel.tryRead(handler, limit);
        } finally {
            publishCompletions();
        }
    }

    private void publishCompletions() {
        if (queuedCompletions > 0) {
            queuedCompletions = 0;
            channel.flush();
        }
    }

    private boolean onPacket(MemorySegment buf, long off, int len, int type, int flags, long transId) {
        long data = PacketDescriptor.dataOffset(buf, off);
        int n = PacketDescriptor.dataLength(buf, off, len);
        if (type == PacketDescriptor.TYPE_COMPLETION) {
            if (transId == awaitedTransId && awaitedTransId != -1) {
                int copy = Math.min(n, 64);
                awaitedReply.fill((byte) 0);
                MemorySegment.copy(buf, data, awaitedReply, 0, copy);
                awaitedLength = copy;
            } else if (transId >= SEND_TAG && transId < SEND_TAG + freeSend.length) {
                freeSend[freeSendCount++] = (int) (transId - SEND_TAG);
            }
            return true;
        }
        if (n < 8) {
            return true;
        }
        int msg = u32(buf, data);
        if (msg == MSG_LINK_STATE) {
            // RNDIS_INDICATE_STATUS_MSG: only the media states change the link; other statuses are ignored.
            if (n >= LINK_STATE_LENGTH && u32(buf, data + 4) == RNDIS_INDICATE_STATUS_MSG) {
                int status = u32(buf, data + 12);
                if (status == RNDIS_STATUS_MEDIA_CONNECT || status == RNDIS_STATUS_MEDIA_DISCONNECT) {
                    linkUp = status == RNDIS_STATUS_MEDIA_CONNECT;
                }
            }
            return true;
        }
        if (msg == MSG_SEND_RNDIS_PKT && n >= PKT_LENGTH) {
            // The host is as untrusted to us as we are to it: check the section before touching memory.
            int section = u32(buf, data + PKT_SECTION_OFFSET);
            int length = u32(buf, data + PKT_LENGTH_OFFSET);
            // Room for our completion? From the cached read_index first: requestSpace (pending_send_sz, a
            // StoreLoad and a store to the control line the host reads) only when the ring looks full.
            if (!channel.outbound().hasSpaceFor(0, COMPLETION_LENGTH)) {
                spaceRequested = true;
                if (!channel.outbound().requestSpace(io.phost.core.vmbus.VmbusRing.spaceFor(0, COMPLETION_LENGTH))) {
                    return false; // cannot complete yet: leave it; the host signals once it has read enough
                }
            }
            if (spaceRequested) {
                spaceRequested = false;
                channel.outbound().clearPendingSend();
            }
            if (section >= 0 && section < recvSections && length > 0 && length <= recvSectionSize) {
                if (receiver != null) {
                    receiver.onFrame(recv.segment(), (long) section * recvSectionSize, length);
                }
                received++;
            }
            u32(completion, 0, MSG_SEND_RNDIS_PKT_COMPLETE);
            u32(completion, 4, STATUS_SUCCESS);
            if (channel.tryQueue(PacketDescriptor.TYPE_COMPLETION, 0, transId, completion, 0, COMPLETION_LENGTH)
                && ++queuedCompletions >= COMPLETION_BURST) {
                publishCompletions();
            }
        }
        return true;
    }

    @Override
    public void close() {
        channel.close();
    }
}
