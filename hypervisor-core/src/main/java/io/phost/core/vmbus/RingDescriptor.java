package io.phost.core.vmbus;

/**
 * Layout of one VMBus ring (Linux {@code struct hv_ring_buffer}, include/linux/hyperv.h). All fields are
 * little-endian; indices are byte offsets into the data area, always multiples of 8.
 * <pre>
 *  control page (4 KiB)                                  data area (dataSize bytes, a multiple of 4 KiB)
 *  +-----------------------------+ 0                     +-----------------------------------------+
 *  | write_index      u32        |   writer owns         | packet | packet | ... free ... | packet  |
 *  | read_index       u32        | 4 reader owns         +-----------------------------------------+
 *  | interrupt_mask   u32        | 8 reader: 1 = "I am     ^ read_index            ^ write_index
 *  |                             |   polling, don't signal"
 *  | pending_send_sz  u32        | 12 writer: "signal me when this many bytes are free"
 *  | reserved ...                |
 *  | feature_bits     u32        | 64 bit 0: pending_send_sz supported
 *  | reserved up to 4096         |
 *  +-----------------------------+ 4096
 *
 *  read_index == write_index  means empty; the writer never fills the ring completely (it keeps at least
 *  8 bytes free), so "full" and "empty" cannot be confused.
 *
 *  Double mapping (this project's default): the data area is mapped twice back to back,
 *    [control][data pages 0..n-1][data pages 0..n-1 again]
 *  so a packet that starts near the end continues seamlessly into the second copy: every packet is one
 *  contiguous MemorySegment range and can be handed to a handler without copying.
 * </pre>
 */
public final class RingDescriptor {
    public static final int WRITE_INDEX_OFFSET = 0;
    public static final int READ_INDEX_OFFSET = 4;
    public static final int INTERRUPT_MASK_OFFSET = 8;
    public static final int PENDING_SEND_SZ_OFFSET = 12;
    public static final int FEATURE_BITS_OFFSET = 64;
    public static final int FEATURE_PENDING_SEND_SZ = 1;
    public static final int CONTROL_LENGTH = 4096;
    public static final int PAGE_SIZE = 4096;
    /** Smallest useful data area (one page) and the largest we accept from a guest (len8 is 16 bits anyway). */
    public static final int MIN_DATA_SIZE = PAGE_SIZE;
    public static final int MAX_DATA_SIZE = 64 * 1024 * 1024;

    private RingDescriptor() {}
}
