package io.phost.core.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * An AF_PACKET socket bound to one named interface, receiving through a TPACKET_V3 mmap ring and sending with
 * {@code send(2)} on the same socket ({@code PACKET_QDISC_BYPASS}). Outgoing packets of the host are ignored
 * ({@code PACKET_IGNORE_OUTGOING}), so what the switch transmits never comes back to it (no loop), and the
 * interface is put in promiscuous mode for as long as the socket lives. With {@code PACKET_VNET_HDR} each
 * received frame is preceded by a 10-byte virtio_net_hdr carrying checksum/GSO state, and sends take one too.
 *
 * <pre>
 * Ring: blockCount blocks of blockSize bytes. Each block (tpacket_block_desc):
 *   0: u32 version   4: u32 offset_to_priv
 *   8: u32 block_status (TP_STATUS_KERNEL 0 / TP_STATUS_USER 1)   12: u32 num_pkts
 *  16: u32 offset_to_first_pkt   20: u32 blk_len   24: u64 seq_num   32..48: timestamps
 * Each packet (tpacket3_hdr), chained by tp_next_offset:
 *   0: u32 tp_next_offset  4: u32 tp_sec  8: u32 tp_nsec  12: u32 tp_snaplen  16: u32 tp_len
 *  20: u32 tp_status  24: u16 tp_mac  26: u16 tp_net  28: u32 tp_rxhash  32: u32 tp_vlan_tci
 *  36: u16 tp_vlan_tpid  (frame bytes at packet + tp_mac; vnet header, if on, right before them)
 * </pre>
 */
public final class PacketSocketV3 implements AutoCloseable {
    public static final int SOL_PACKET = 263;
    public static final int PACKET_ADD_MEMBERSHIP = 1;
    public static final int PACKET_MR_PROMISC = 1;
    public static final int PACKET_RX_RING = 5;
    public static final int PACKET_VERSION = 10;
    public static final int PACKET_VNET_HDR = 15;
    public static final int PACKET_QDISC_BYPASS = 20;
    public static final int PACKET_IGNORE_OUTGOING = 23;
    public static final int TPACKET_V3 = 2;
    public static final int ETH_P_ALL = 0x0003;
    public static final int TP_STATUS_USER = 1;
    public static final int TP_STATUS_VLAN_VALID = 1 << 4;
    public static final int TP_STATUS_VLAN_TPID_VALID = 1 << 6;
    public static final int VNET_HDR_LENGTH = 10;

    public static final int BLOCK_STATUS_OFFSET = 8;
    public static final int BLOCK_NUM_PKTS_OFFSET = 12;
    public static final int BLOCK_FIRST_PKT_OFFSET = 16;
    public static final int PKT_NEXT_OFFSET = 0;
    public static final int PKT_SNAPLEN_OFFSET = 12;
    public static final int PKT_LEN_OFFSET = 16;
    public static final int PKT_STATUS_OFFSET = 20;
    public static final int PKT_MAC_OFFSET = 24;
    public static final int PKT_VLAN_TCI_OFFSET = 32;
    public static final int PKT_VLAN_TPID_OFFSET = 36;

    private final String interfaceName;
    private final int ifindex;
    private final int fd;
    private final long ringAddress;
    private final long ringLength;
    private final int blockSize;
    private final int blockCount;
    private final boolean vnetHeader;
    private volatile boolean closed;

    private PacketSocketV3(String interfaceName, int ifindex, int fd, long ringAddress, long ringLength,
                           int blockSize, int blockCount, boolean vnetHeader) {
        this.interfaceName = interfaceName;
        this.ifindex = ifindex;
        this.fd = fd;
        this.ringAddress = ringAddress;
        this.ringLength = ringLength;
        this.blockSize = blockSize;
        this.blockCount = blockCount;
        this.vnetHeader = vnetHeader;
    }

    /**
     * Opens a non-blocking packet socket on {@code interfaceName} with an RX ring of {@code blockCount} blocks of
     * {@code blockSize} bytes (a power of two, multiple of the page size, at least one 64 KiB super-frame).
     */
    public static PacketSocketV3 open(String interfaceName, int blockSize, int blockCount, boolean vnetHeader) {
        int ifindex = NetSyscalls.ifNameToIndex(interfaceName);
        int protocol = Short.toUnsignedInt(Short.reverseBytes((short) ETH_P_ALL));
        int fd = NetSyscalls.socket(NetSyscalls.AF_PACKET,
            NetSyscalls.SOCK_RAW | NetSyscalls.SOCK_NONBLOCK | NetSyscalls.SOCK_CLOEXEC, protocol);
        long ring = 0;
        long ringLength = (long) blockSize * blockCount;
        try (Arena a = Arena.ofConfined()) {
            String what = "AF_PACKET " + interfaceName;
            NetSyscalls.setsockoptInt(fd, SOL_PACKET, PACKET_VERSION, TPACKET_V3, what + " PACKET_VERSION");
            if (vnetHeader) {
                NetSyscalls.setsockoptInt(fd, SOL_PACKET, PACKET_VNET_HDR, 1, what + " PACKET_VNET_HDR");
            }
            NetSyscalls.setsockoptInt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, 1, what + " PACKET_IGNORE_OUTGOING");
            NetSyscalls.setsockoptInt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, 1, what + " PACKET_QDISC_BYPASS");
            MemorySegment req = a.allocate(28);
            req.set(ValueLayout.JAVA_INT, 0, blockSize);          // tp_block_size
            req.set(ValueLayout.JAVA_INT, 4, blockCount);         // tp_block_nr
            req.set(ValueLayout.JAVA_INT, 8, 2048);               // tp_frame_size (V3 ignores it for layout)
            req.set(ValueLayout.JAVA_INT, 12, (int) (ringLength / 2048)); // tp_frame_nr
            req.set(ValueLayout.JAVA_INT, 16, 1);                 // tp_retire_blk_tov: retire a block after 1 ms
            req.set(ValueLayout.JAVA_INT, 20, 0);                 // tp_sizeof_priv
            req.set(ValueLayout.JAVA_INT, 24, 0);                 // tp_feature_req_word
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
            return new PacketSocketV3(interfaceName, ifindex, fd, ring, ringLength, blockSize, blockCount, vnetHeader);
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

    public int ifindex() {
        return ifindex;
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

    public int blockSize() {
        return blockSize;
    }

    public int blockCount() {
        return blockCount;
    }

    /** Sends one frame (preceded by a virtio_net_hdr when enabled); bytes sent or -errno. */
    public long send(long address, int length) {
        return NetSyscalls.send(fd, address, length, 0x40 /* MSG_DONTWAIT */);
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
