package io.phost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * An AF_PACKET socket bound to one named interface, receiving through a TPACKET_V2 mmap ring of fixed slots and
 * sending with {@code writev(2)}/{@code send(2)} on the same socket ({@code PACKET_QDISC_BYPASS}). Outgoing
 * packets of the host are ignored ({@code PACKET_IGNORE_OUTGOING}), so what the switch transmits never comes back
 * to it (no loop), and the interface is put in promiscuous mode for as long as the socket lives. With
 * {@code PACKET_VNET_HDR} each received frame is preceded by a 10-byte virtio_net_hdr carrying checksum/GSO state,
 * and sends take one too.
 *
 * <p><b>Why V2 and not V3.</b> A TPACKET_V3 ring hands user space whole blocks, and the kernel closes a block only
 * when the next frame does not fit or its timer (1 ms at least) fires: a lone frame (a ping, a SYN, the ACKs of a
 * flow going out) waited 0.1 / 0.88 / 8 ms (min / p50 / max, veth, load 10) before the switch could see it, and a
 * ring of 32 blocks of 128 KiB held only 32–64 GSO super-frames (345 drops in 143k frames of one loaded TCP run,
 * each a retransmission). A V2 slot is the user's as soon as the kernel has written it.
 *
 * <p><b>Big frames.</b> Slots are {@link #SLOT_SIZE} bytes, enough for a 1500-byte-MTU frame; a bigger one (a GSO
 * super-frame of up to 64 KiB, a jumbo frame) gets a slot holding its first bytes with {@code TP_STATUS_COPY}, and
 * the whole frame is queued on the socket ({@code PACKET_COPY_THRESH}), in slot order, for one {@code recv(2)}.
 * So the ring holds {@code slotCount} frames of any size (the queue is bounded by {@code SO_RCVBUF}, raised to
 * {@link #RECEIVE_BUFFER}); a slot with a partial frame and no COPY status means the queue was full: a drop.
 *
 * <pre>
 * Ring: blockCount blocks of blockSize bytes, each holding blockSize / SLOT_SIZE slots. Each slot (tpacket2_hdr):
 *   0: u32 tp_status (TP_STATUS_KERNEL 0; USER 1, COPY 2, VLAN_VALID 16, VLAN_TPID_VALID 64)
 *   4: u32 tp_len  8: u32 tp_snaplen  12: u16 tp_mac  14: u16 tp_net  16: u32 tp_sec  20: u32 tp_nsec
 *  24: u16 tp_vlan_tci  26: u16 tp_vlan_tpid  (frame bytes at slot + tp_mac; vnet header, if on, right before)
 *   slot[i].status: KERNEL ──(kernel writes it)──▶ USER ──(we read it, store KERNEL)──▶ KERNEL
 * </pre>
 */
public final class PacketSocket implements AutoCloseable {
    public static final int SOL_SOCKET = 1;
    public static final int SO_RCVBUF = 8;
    public static final int SO_RCVBUFFORCE = 33;
    public static final int SOL_PACKET = 263;
    public static final int PACKET_ADD_MEMBERSHIP = 1;
    public static final int PACKET_MR_PROMISC = 1;
    public static final int PACKET_RX_RING = 5;
    public static final int PACKET_STATISTICS = 6;
    public static final int PACKET_COPY_THRESH = 7;
    public static final int PACKET_VERSION = 10;
    public static final int PACKET_VNET_HDR = 15;
    public static final int PACKET_QDISC_BYPASS = 20;
    public static final int PACKET_IGNORE_OUTGOING = 23;
    public static final int TPACKET_V2 = 1;
    public static final int ETH_P_ALL = 0x0003;
    public static final int TP_STATUS_USER = 1;
    public static final int TP_STATUS_COPY = 1 << 1;
    public static final int TP_STATUS_VLAN_VALID = 1 << 4;
    public static final int TP_STATUS_VLAN_TPID_VALID = 1 << 6;
    public static final int VNET_HDR_LENGTH = 10;

    public static final int SLOT_STATUS_OFFSET = 0;
    public static final int SLOT_LEN_OFFSET = 4;
    public static final int SLOT_SNAPLEN_OFFSET = 8;
    public static final int SLOT_MAC_OFFSET = 12;
    public static final int SLOT_VLAN_TCI_OFFSET = 24;
    public static final int SLOT_VLAN_TPID_OFFSET = 26;

    /** Bytes per ring slot: header (76 with the vnet header) plus a 1,514-byte frame plus a VLAN tag fit. */
    public static final int SLOT_SIZE = 2048;
    /** SO_RCVBUF for the big frames' queue (the kernel doubles it): ~400 GSO super-frames waiting. */
    public static final int RECEIVE_BUFFER = 16 << 20;

    private final String interfaceName;
    private final int fd;
    private final long ringAddress;
    private final long ringLength;
    private final int slotCount;
    private final boolean vnetHeader;
    private volatile boolean closed;

    private PacketSocket(String interfaceName, int fd, long ringAddress, long ringLength, int slotCount,
                         boolean vnetHeader) {
        this.interfaceName = interfaceName;
        this.fd = fd;
        this.ringAddress = ringAddress;
        this.ringLength = ringLength;
        this.slotCount = slotCount;
        this.vnetHeader = vnetHeader;
    }

    /**
     * Opens a non-blocking packet socket on {@code interfaceName} with an RX ring of {@code blockCount} blocks of
     * {@code blockSize} bytes (a power of two, a multiple of the page size and of {@link #SLOT_SIZE}).
     */
    public static PacketSocket open(String interfaceName, int blockSize, int blockCount, boolean vnetHeader) {
        if (blockSize < SLOT_SIZE || blockSize % SLOT_SIZE != 0 || Integer.bitCount(blockSize) != 1 || blockCount < 1) {
            throw new IllegalArgumentException("AF_PACKET " + interfaceName + ": ring of " + blockCount + " blocks of "
                + blockSize + " bytes (a power of two, a multiple of " + SLOT_SIZE + ")");
        }
        int ifindex = NetSyscalls.ifNameToIndex(interfaceName);
        int protocol = Short.toUnsignedInt(Short.reverseBytes((short) ETH_P_ALL));
        int fd = NetSyscalls.socket(NetSyscalls.AF_PACKET,
            NetSyscalls.SOCK_RAW | NetSyscalls.SOCK_NONBLOCK | NetSyscalls.SOCK_CLOEXEC, protocol);
        long ring = 0;
        long ringLength = (long) blockSize * blockCount;
        int slots = (int) (ringLength / SLOT_SIZE);
        try (Arena a = Arena.ofConfined()) {
            String what = "AF_PACKET " + interfaceName;
            NetSyscalls.setsockoptInt(fd, SOL_PACKET, PACKET_VERSION, TPACKET_V2, what + " PACKET_VERSION");
            if (vnetHeader) {
                NetSyscalls.setsockoptInt(fd, SOL_PACKET, PACKET_VNET_HDR, 1, what + " PACKET_VNET_HDR");
            }
            NetSyscalls.setsockoptInt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1, what + " PACKET_IGNORE_OUTGOING");
            NetSyscalls.setsockoptInt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, 1, what + " PACKET_QDISC_BYPASS");
            NetSyscalls.setsockoptInt(fd, SOL_PACKET, PACKET_COPY_THRESH, 1, what + " PACKET_COPY_THRESH");
            try {
                NetSyscalls.setsockoptInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER, what + " SO_RCVBUFFORCE");
            } catch (NativeException e) {
                // without CAP_NET_ADMIN: as much as net.core.rmem_max allows
                NetSyscalls.setsockoptInt(fd, SOL_SOCKET, SO_RCVBUF, RECEIVE_BUFFER, what + " SO_RCVBUF");
            }
            MemorySegment req = a.allocate(16);
            req.set(ValueLayout.JAVA_INT, 0, blockSize);  // tp_block_size
            req.set(ValueLayout.JAVA_INT, 4, blockCount); // tp_block_nr
            req.set(ValueLayout.JAVA_INT, 8, SLOT_SIZE);  // tp_frame_size
            req.set(ValueLayout.JAVA_INT, 12, slots);     // tp_frame_nr
            NetSyscalls.setsockopt(fd, SOL_PACKET, PACKET_RX_RING, req, what + " PACKET_RX_RING");
            ring = NetSyscalls.mmapShared(fd, ringLength, what + " mmap ring");

            MemorySegment sll = a.allocate(20);
            sll.set(ValueLayout.JAVA_SHORT, 0, (short) NetSyscalls.AF_PACKET); // sll_family
            sll.set(ValueLayout.JAVA_SHORT, 2, (short) protocol);              // sll_protocol (network order)
            sll.set(ValueLayout.JAVA_INT, 4, ifindex);                         // sll_ifindex
            NetSyscalls.bind(fd, sll, what + " bind");

            MemorySegment mreq = a.allocate(16);
            mreq.set(ValueLayout.JAVA_INT, 0, ifindex);                    // mr_ifindex
            mreq.set(ValueLayout.JAVA_SHORT, 4, (short) PACKET_MR_PROMISC); // mr_type
            NetSyscalls.setsockopt(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq, what + " promiscuous");
            return new PacketSocket(interfaceName, fd, ring, ringLength, slots, vnetHeader);
        } catch (RuntimeException e) {
            if (ring != 0) {
                NetSyscalls.munmap(ring, ringLength);
            }
            NetSyscalls.close(fd);
            throw e;
        }
    }

    public String interfaceName() {
        return interfaceName;
    }

    public int fd() {
        return fd;
    }

    public boolean vnetHeader() {
        return vnetHeader;
    }

    /** Address of the mapped ring; SAFETY: valid until {@link #close()}, {@link #ringLength()} bytes. */
    public long ringAddress() {
        return ringAddress;
    }

    public long ringLength() {
        return ringLength;
    }

    public int slotCount() {
        return slotCount;
    }

    /** Offset of slot {@code i} in the ring: blocks are whole multiples of {@link #SLOT_SIZE}, so slots are contiguous. */
    public static int slotOffset(int i) {
        return i * SLOT_SIZE;
    }

    /**
     * Takes the next big frame (a slot with TP_STATUS_COPY) from the socket's queue into {@code address}: bytes
     * received (vnet header included when on), or -errno. MSG_TRUNC: a frame longer than {@code length} returns
     * its whole length, so the caller can tell it was cut.
     */
    public long receiveQueued(long address, int length) {
        return NetSyscalls.recv(fd, address, length, 0x40 | 0x20 /* MSG_DONTWAIT | MSG_TRUNC */);
    }

    /** Sends one frame (preceded by a virtio_net_hdr when enabled); bytes sent or -errno. */
    public long send(long address, int length) {
        return NetSyscalls.send(fd, address, length, 0x40 /* MSG_DONTWAIT */);
    }

    /**
     * The kernel's receive counters since the last call (PACKET_STATISTICS resets them on read):
     * {@code [packets, drops]}, drops being frames the ring had no free slot for. Not for the data path (it
     * allocates).
     */
    public long[] takeStatistics() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = a.allocate(12); // tpacket_stats {tp_packets, tp_drops} (V3 adds tp_freeze_q_cnt)
            NetSyscalls.getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, st, "AF_PACKET " + interfaceName + " PACKET_STATISTICS");
            return new long[] {Integer.toUnsignedLong(st.get(ValueLayout.JAVA_INT, 0)),
                Integer.toUnsignedLong(st.get(ValueLayout.JAVA_INT, 4))};
        }
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            NetSyscalls.munmap(ringAddress, ringLength);
            NetSyscalls.close(fd);
        }
    }
}
