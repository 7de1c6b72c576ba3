package io.phost.vswitch;

import io.phost.core.sys.PacketSocketV3;
import java.nio.ByteOrder;
import org.agrona.DirectBuffer;
import org.agrona.concurrent.UnsafeBuffer;

/**
 * The external switch's uplink: an AF_PACKET socket on a named interface, receiving through its TPACKET_V3
 * ring (read in place, no copy) and sending with writev(2) ({@link GatherWriter}: no copy in user space).
 * See {@link PacketSocketV3} for the ring layout.
 * <pre>
 *   block[i].status: KERNEL ──(kernel fills, retires)──▶ USER ──(we walk its packets, store KERNEL)──▶ KERNEL
 * </pre>
 * A VLAN tag the kernel stripped into tp_vlan_tci is put back in place (MACs moved 4 bytes into the headroom)
 * so the switch sees the frame as it was on the wire.
 */
public final class PacketSocketPort implements FrameSource, FrameSink {
    private final PacketSocketV3 socket;
    private final UnsafeBuffer ring;
    private final int blockSize;
    private final int blockCount;
    private final int hdr;
    private final PacketMeta rxMeta = new PacketMeta();
    private final GatherWriter tx = new GatherWriter();
    private int block;
    private int packetInBlock;
    private int packetOffset;
    /** errno of the last send(2) that failed, 0 if none has (for status: why a link refuses frames). */
    private volatile int lastSendErrno;

    public PacketSocketPort(PacketSocketV3 socket) {
        this.socket = socket;
        // SAFETY: the ring stays mapped until close(); its length is what we asked the kernel for.
        this.ring = new UnsafeBuffer(socket.ringAddress(), (int) socket.ringLength());
        this.blockSize = socket.blockSize();
        this.blockCount = socket.blockCount();
        this.hdr = socket.vnetHeader() ? PacketSocketV3.VNET_HDR_LENGTH : 0;
    }

    /** Binds to {@code interfaceName} with a 4 MiB ring (32 blocks of 128 KiB) and virtio-net headers. */
    public static PacketSocketPort open(String interfaceName) {
        return new PacketSocketPort(PacketSocketV3.open(interfaceName, 1 << 17, 32, true));
    }

    public String interfaceName() {
        return socket.interfaceName();
    }

    @Override
    public int poll(FrameHandler handler, int limit) {
        int n = 0;
        while (n < limit) {
            int base = block * blockSize;
            // Acquire: the packet bytes the kernel wrote before it set TP_STATUS_USER are visible after this.
            int status = ring.getIntVolatile(base + PacketSocketV3.BLOCK_STATUS_OFFSET);
            if ((status & PacketSocketV3.TP_STATUS_USER) == 0) {
                break;
            }
            int count = ring.getInt(base + PacketSocketV3.BLOCK_NUM_PKTS_OFFSET, ByteOrder.nativeOrder());
            if (packetInBlock == 0) {
                packetOffset = base + ring.getInt(base + PacketSocketV3.BLOCK_FIRST_PKT_OFFSET, ByteOrder.nativeOrder());
            }
            while (packetInBlock < count && n < limit) {
                int p = packetOffset;
                deliver(handler, p);
                n++;
                packetInBlock++;
                packetOffset = p + ring.getInt(p + PacketSocketV3.PKT_NEXT_OFFSET, ByteOrder.nativeOrder());
            }
            if (packetInBlock >= count) {
                // Release: hand the block back only after we are done reading it.
                ring.putIntOrdered(base + PacketSocketV3.BLOCK_STATUS_OFFSET, 0);
                packetInBlock = 0;
                block = (block + 1) % blockCount;
            }
        }
        return n;
    }

    private void deliver(FrameHandler handler, int p) {
        int snap = ring.getInt(p + PacketSocketV3.PKT_SNAPLEN_OFFSET, ByteOrder.nativeOrder());
        int wire = ring.getInt(p + PacketSocketV3.PKT_LEN_OFFSET, ByteOrder.nativeOrder());
        int status = ring.getInt(p + PacketSocketV3.PKT_STATUS_OFFSET, ByteOrder.nativeOrder());
        int mac = p + (ring.getShort(p + PacketSocketV3.PKT_MAC_OFFSET, ByteOrder.nativeOrder()) & 0xffff);
        if (snap != wire) {
            return; // truncated by the ring's frame space: never forward a partial frame
        }
        PacketMeta meta = hdr == 0 ? PacketMeta.NONE : rxMeta.readFrom(ring, mac - hdr);
        int len = snap;
        if ((status & PacketSocketV3.TP_STATUS_VLAN_VALID) != 0) {
            int tci = ring.getInt(p + PacketSocketV3.PKT_VLAN_TCI_OFFSET, ByteOrder.nativeOrder()) & 0xffff;
            int tpid = (status & PacketSocketV3.TP_STATUS_VLAN_TPID_VALID) != 0
                ? ring.getShort(p + PacketSocketV3.PKT_VLAN_TPID_OFFSET, ByteOrder.nativeOrder()) & 0xffff
                : EthernetDescriptor.TPID_8021Q;
            ring.putBytes(mac - 4, ring, mac, 12);
            mac -= 4;
            ring.putShort(mac + 12, (short) tpid, ByteOrder.BIG_ENDIAN);
            ring.putShort(mac + 14, (short) tci, ByteOrder.BIG_ENDIAN);
            len += 4;
            if (meta != PacketMeta.NONE) {
                meta.copyShifted(meta, 4);
            }
        }
        handler.onFrame(ring, mac, len, meta);
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
