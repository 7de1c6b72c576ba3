package io.phost.network.vhost;

/**
 * virtio-net layouts (virtio 1.2 §5.1), little-endian.
 * <pre>
 *  per-frame header (VERSION_1 or MRG_RXBUF: 12 bytes; legacy without MRG_RXBUF: 10)
 *   0: u8 flags   1: u8 gso_type   2: le16 hdr_len   4: le16 gso_size   6: le16 csum_start
 *   8: le16 csum_offset   10: le16 num_buffers (RX: chains this frame uses; TX: ignored)
 *
 *  config space (12 bytes served)
 *   0: u8 mac[6]   6: le16 status (1 = LINK_UP)   8: le16 max_virtqueue_pairs   10: le16 mtu
 * </pre>
 * Queues: 2k = receiveq k (device → driver, device-writable chains), 2k + 1 = transmitq k (driver → device);
 * the control queue (with MQ) is QEMU's own, never the back-end's.
 */
final class VirtioNetDescriptor {
    static final int F_CSUM = 0;
    static final int F_GUEST_CSUM = 1;
    static final int F_MTU = 3;
    static final int F_MAC = 5;
    static final int F_GUEST_TSO4 = 7;
    static final int F_GUEST_TSO6 = 8;
    static final int F_HOST_TSO4 = 11;
    static final int F_HOST_TSO6 = 12;
    static final int F_MRG_RXBUF = 15;
    static final int F_STATUS = 16;
    static final int F_MQ = 22;
    static final int F_VERSION_1 = 32;

    static final int HDR_LENGTH = 12;
    static final int LEGACY_HDR_LENGTH = 10;
    static final int NUM_BUFFERS_OFFSET = 10;

    static final int CONFIG_LENGTH = 12;
    static final int MAC_OFFSET = 0;
    static final int STATUS_OFFSET = 6;
    static final int MAX_VIRTQUEUE_PAIRS_OFFSET = 8;
    static final int MTU_OFFSET = 10;
    static final int STATUS_LINK_UP = 1;

    /** Queue index modulo 2 of a receive and a transmit queue. */
    static final int RX_QUEUE = 0;
    static final int TX_QUEUE = 1;

    /** Ethernet header: the shortest frame a guest may send. */
    static final int MIN_FRAME = 14;

    private VirtioNetDescriptor() {
    }
}
