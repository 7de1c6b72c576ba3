package io.phost.core.vhost;

/**
 * vhost-user wire layouts (QEMU {@code docs/interop/vhost-user.rst}); all little-endian.
 * <pre>
 *  header (12 bytes)           u32 request @0 | u32 flags @4 | u32 size @8 | payload[size] @12
 *    flags: bits 0-1 version (1), bit 2 REPLY, bit 3 NEED_REPLY
 *  u64 payload                 u64 value @0                        features, kick/call index | NOFD_MASK
 *  vring state (8)             u32 index @0 | u32 num @4
 *  vring address (40)          u32 index @0 | u32 flags @4 | u64 desc @8 | u64 used @16 | u64 avail @24 | u64 log @32
 *  memory table (8 + 32 n)     u32 nregions @0 | u32 padding @4 | region[n] @8
 *  memory region (32)          u64 guest_phys_addr @0 | u64 memory_size @8 | u64 userspace_addr @16 | u64 mmap_offset @24
 *  single region (40)          u64 padding @0 | region @8           ADD_MEM_REG / REM_MEM_REG
 *  config (12 + size)          u32 offset @0 | u32 size @4 | u32 flags @8 | u8 payload[size] @12
 * </pre>
 */
public final class VhostUserDescriptor {
    public static final int HEADER_LENGTH = 12;
    public static final int REQUEST_OFFSET = 0;
    public static final int FLAGS_OFFSET = 4;
    public static final int SIZE_OFFSET = 8;

    public static final int VERSION = 0x1;
    public static final int VERSION_MASK = 0x3;
    public static final int FLAG_REPLY = 0x4;
    public static final int FLAG_NEED_REPLY = 0x8;

    /** Largest payload accepted: a config access (12 + 256) or a memory table of 8 regions (264) fit. */
    public static final int MAX_PAYLOAD = 4096;
    /** Sentinel for a request's payload size or descriptor count that its handler checks. */
    public static final int VARIABLE = -1;

    /** Regions one SET_MEM_TABLE may carry (VHOST_MEMORY_BASELINE_NREGIONS; one fd each). */
    public static final int MAX_REGIONS = 8;
    /** Slots with CONFIGURE_MEM_SLOTS (ADD_MEM_REG); we advertise this many. */
    public static final int MAX_MEM_SLOTS = 32;
    public static final int MEM_TABLE_HEADER = 8;
    public static final int REGION_LENGTH = 32;
    public static final int REGION_GPA_OFFSET = 0;
    public static final int REGION_SIZE_OFFSET = 8;
    public static final int REGION_UADDR_OFFSET = 16;
    public static final int REGION_MMAP_OFFSET = 24;

    public static final int VRING_ADDR_LENGTH = 40;
    /** SET_VRING_ADDR flags bit 0 (VHOST_VRING_F_LOG): the log field holds the used ring's guest-physical address. */
    public static final int VRING_F_LOG = 0x1;
    public static final long VRING_NOFD_MASK = 1L << 8;
    public static final long VRING_INDEX_MASK = 0xFF;

    public static final int CONFIG_HEADER = 12;
    public static final int MAX_CONFIG_SIZE = 256;

    // Virtio feature bits (virtio 1.2 §6) that the transport itself implements.
    public static final int F_RING_INDIRECT_DESC = 28;
    public static final int F_RING_EVENT_IDX = 29;
    /** VHOST_USER_F_PROTOCOL_FEATURES. */
    public static final int F_PROTOCOL_FEATURES = 30;
    public static final int F_VERSION_1 = 32;
    /** VIRTIO_F_RING_PACKED: offered for devices that say so ({@link VhostUserDevice#packedRings}). */
    public static final int F_RING_PACKED = 34;
    /** VHOST_F_LOG_ALL: while negotiated, every write into guest memory is marked in the dirty log ({@link DirtyLog}). */
    public static final int F_LOG_ALL = 26;

    // Protocol feature bits.
    public static final int PF_MQ = 0;
    public static final int PF_LOG_SHMFD = 1;
    /** VHOST_USER_PROTOCOL_F_RARP: SEND_RARP after migration, offered by devices that announce ({@link VhostUserDevice#announces}). */
    public static final int PF_RARP = 2;
    public static final int PF_REPLY_ACK = 3;
    /** VHOST_USER_PROTOCOL_F_BACKEND_REQ (SLAVE_REQ in QEMU 7.2): the back-end channel (SET_BACKEND_REQ_FD). */
    public static final int PF_BACKEND_REQ = 5;
    public static final int PF_CONFIG = 9;
    public static final int PF_INFLIGHT_SHMFD = 12;
    public static final int PF_RESET_DEVICE = 13;
    public static final int PF_CONFIGURE_MEM_SLOTS = 15;
    public static final int PF_STATUS = 16;

    /** What this backend implements, offered in GET_PROTOCOL_FEATURES. */
    public static final long PROTOCOL_FEATURES = (1L << PF_MQ) | (1L << PF_LOG_SHMFD) | (1L << PF_REPLY_ACK) | (1L << PF_BACKEND_REQ) | (1L << PF_CONFIG)
        | (1L << PF_RESET_DEVICE) | (1L << PF_CONFIGURE_MEM_SLOTS) | (1L << PF_STATUS);

    /** Back-end → front-end request on the back-end channel: the config space changed (no payload; QEMU re-reads it). */
    public static final int BACKEND_CONFIG_CHANGE_MSG = 2;

    /** Transport features offered on top of the device's. */
    public static final long TRANSPORT_FEATURES = (1L << F_LOG_ALL) | (1L << F_RING_INDIRECT_DESC) | (1L << F_RING_EVENT_IDX)
        | (1L << F_PROTOCOL_FEATURES) | (1L << F_VERSION_1);

    private VhostUserDescriptor() {}
}
