package io.phost.vswitch;

import io.phost.core.sys.PacketSocket;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.agrona.DirectBuffer;
import org.agrona.concurrent.UnsafeBuffer;

/**
 * The external switch's uplink: an AF_PACKET socket on a named interface, receiving through its TPACKET_V2 ring
 * (frames up to a slot read in place; bigger ones with one recv(2) each into a staging buffer, in ring order) and
 * sending with writev(2) ({@link GatherWriter}: no copy in user space). See {@link PacketSocket} for the ring and
 * why V2.
 * <pre>
 *   slot[i].status: KERNEL ──(kernel fills)──▶ USER [| COPY: the frame waits on the socket] ──(we read it,
 *                   recv(2) it if COPY, store KERNEL)──▶ KERNEL
 * </pre>
 * A VLAN tag the kernel stripped into tp_vlan_tci is put back in place (MACs moved 4 bytes into the headroom)
 * so the switch sees the frame as it was on the wire. Frames lost before the switch saw them (no free slot, no
 * room on the socket's queue, longer than {@link #MAX_FRAME}) are counted in {@link #receiveDrops()}.
 */
public final class PacketSocketPort implements FrameSource, FrameSink {
    /** Longest frame taken (a 64 KiB GSO super-frame with headers, a jumbo frame): as the V3 blocks allowed. */
    static final int MAX_FRAME = 128 * 1024;
    /** Staging bytes before the vnet header: room to put a stripped VLAN tag back. */
    private static final int HEADROOM = 16;

    private final PacketSocket socket;
    private final UnsafeBuffer ring;
    private final int slotCount;
    private final int hdr;
    private final PacketMeta rxMeta = new PacketMeta();
    private final GatherWriter tx = new GatherWriter();
    private final UnsafeBuffer staging;
    private final long stagingAddress;
    private int slot;
    /** Frames taken from the socket's queue (bigger than a slot); switch thread only, read by tests. */
    long queuedFrames;
    /** Frames dropped here (cut by a full queue, too long, lost from the queue); written by the switch thread. */
    private volatile long localDrops;
    /** Ring-full drops the kernel reported so far (PACKET_STATISTICS resets on read, so they are summed here). */
    private long kernelDrops;
    /** errno of the last send(2) that failed, 0 if none has (for status: why a link refuses frames). */
    private volatile int lastSendErrno;

    public PacketSocketPort(PacketSocket socket) {
        this.socket = socket;
        // SAFETY: the ring stays mapped until close(); its length is what we asked the kernel for.
        this.ring = new UnsafeBuffer(socket.ringAddress(), (int) socket.ringLength());
        this.slotCount = socket.slotCount();
        this.hdr = socket.vnetHeader() ? PacketSocket.VNET_HDR_LENGTH : 0;
        ByteBuffer b = ByteBuffer.allocateDirect(HEADROOM + PacketSocket.VNET_HDR_LENGTH + MAX_FRAME);
        this.staging = new UnsafeBuffer(b);
        this.stagingAddress = staging.addressOffset();
    }

    /** Binds to {@code interfaceName} with a 4 MiB ring (2,048 slots) and virtio-net headers. */
    public static PacketSocketPort open(String interfaceName) {
        return new PacketSocketPort(PacketSocket.open(interfaceName, 1 << 17, 32, true));
    }

    public String interfaceName() {
        return socket.interfaceName();
    }

    @Override
    public int poll(FrameHandler handler, int limit) {
        int n = 0;
        // Bounded by slots, not by frames delivered: a run of lost frames (counted) cannot keep the switch here.
        for (int slots = 0; slots < limit; slots++) {
            int s = PacketSocket.slotOffset(slot);
            // Acquire: the slot's bytes the kernel wrote before it set TP_STATUS_USER are visible after this.
            int status = ring.getIntVolatile(s + PacketSocket.SLOT_STATUS_OFFSET);
            if ((status & PacketSocket.TP_STATUS_USER) == 0) {
                break;
            }
            if (take(handler, s, status)) {
                n++;
            }
            // Release: hand the slot back only after we are done reading it.
            ring.putIntOrdered(s + PacketSocket.SLOT_STATUS_OFFSET, 0);
            slot = slot + 1 == slotCount ? 0 : slot + 1;
        }
        return n;
    }

    /** Hands the frame of the slot at {@code s} to {@code handler}; false when it was lost (counted). */
    private boolean take(FrameHandler handler, int s, int status) {
        int len = ring.getInt(s + PacketSocket.SLOT_LEN_OFFSET, ByteOrder.nativeOrder());
        if ((status & PacketSocket.TP_STATUS_COPY) != 0) {
            // The whole frame waits on the socket's queue, next in line (the kernel queues in slot order).
            long r = socket.receiveQueued(stagingAddress + HEADROOM, PacketSocket.VNET_HDR_LENGTH + MAX_FRAME);
            if (r != (long) hdr + len || len > MAX_FRAME) {
                localDrops++; // -errno (nothing queued), or longer than the staging buffer (cut): never forward part
                return false;
            }
            queuedFrames++;
            deliver(handler, staging, HEADROOM + hdr, len, status, s);
            return true;
        }
        int snap = ring.getInt(s + PacketSocket.SLOT_SNAPLEN_OFFSET, ByteOrder.nativeOrder());
        if (snap != len) {
            localDrops++; // cut to the slot and not queued: the socket's queue was full
            return false;
        }
        deliver(handler, ring, s + (ring.getShort(s + PacketSocket.SLOT_MAC_OFFSET, ByteOrder.nativeOrder()) & 0xffff),
            len, status, s);
        return true;
    }

    /** The frame at {@code mac} in {@code buf} (vnet header right before it), its VLAN state in slot {@code s}. */
    private void deliver(FrameHandler handler, UnsafeBuffer buf, int mac, int len, int status, int s) {
        PacketMeta meta = hdr == 0 ? PacketMeta.NONE : rxMeta.readFrom(buf, mac - hdr);
        if ((status & PacketSocket.TP_STATUS_VLAN_VALID) != 0) {
            int tci = ring.getShort(s + PacketSocket.SLOT_VLAN_TCI_OFFSET, ByteOrder.nativeOrder()) & 0xffff;
            int tpid = (status & PacketSocket.TP_STATUS_VLAN_TPID_VALID) != 0
                ? ring.getShort(s + PacketSocket.SLOT_VLAN_TPID_OFFSET, ByteOrder.nativeOrder()) & 0xffff
                : EthernetDescriptor.TPID_8021Q;
            buf.putBytes(mac - 4, buf, mac, 12);
            mac -= 4;
            buf.putShort(mac + 12, (short) tpid, ByteOrder.BIG_ENDIAN);
            buf.putShort(mac + 14, (short) tci, ByteOrder.BIG_ENDIAN);
            len += 4;
            if (meta != PacketMeta.NONE) {
                meta.copyShifted(meta, 4);
            }
        }
        handler.onFrame(buf, mac, len, meta);
    }

    /**
     * Frames that arrived on the interface but never reached the switch: no free ring slot (the kernel's count),
     * no room on the socket's queue for a big frame, or longer than {@link #MAX_FRAME}. Not for the data path.
     */
    public synchronized long receiveDrops() {
        kernelDrops += socket.takeStatistics()[1];
        return kernelDrops + localDrops;
    }

    @Override
    public boolean tryTransmit(DirectBuffer buffer, int offset, int length, PacketMeta meta) {
        if (hdr != 0) {
            meta.writeTo(tx.header(), 0, hdr);
        } else if (!meta.isPlain()) {
            return false;
        }
        long r = tx.write(socket.fd(), hdr, buffer, offset, length); // non-blocking socket: as send(MSG_DONTWAIT)
        if (r < 0) {
            lastSendErrno = (int) -r;
        }
        return r >= 0;
    }

    /** errno of the last failed send(2) (ENETDOWN, ENOBUFS, EAGAIN ...), 0 when none failed. */
    public int lastSendErrno() {
        return lastSendErrno;
    }

    @Override
    public boolean offloadCapable() {
        return hdr != 0;
    }

    @Override
    public int readinessFd() {
        return socket.fd();
    }

    @Override
    public void close() {
        socket.close();
    }
}
