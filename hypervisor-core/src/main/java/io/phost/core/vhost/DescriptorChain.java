package io.phost.core.vhost;

/**
 * One popped descriptor chain, already translated to host addresses and bounds-checked: a reusable
 * flyweight (one per queue), filled by {@link SplitVirtqueue#tryPop} without allocating.
 * <pre>
 *   element:  0 .. readable-1  device-readable (driver → device), then readable .. count-1 device-writable
 *   a guest buffer that spans two adjacent memory regions becomes two elements; one of more than 1 GiB, one per GiB
 * </pre>
 */
public final class DescriptorChain {
    private long[] address;
    private int[] length;
    private final int capacity;
    private int count;
    private int readable;
    private int head;
    private long readableBytes;
    private long writableBytes;

    public DescriptorChain(int capacity) {
        this(capacity, capacity);
    }

    /**
     * A chain of up to {@code capacity} buffers whose storage starts at {@code initial} and doubles when a longer
     * chain comes (at most log2(capacity / initial) times in its life): for devices that keep many chains in
     * flight at once (a burst) of which nearly all are short.
     */
    public DescriptorChain(int capacity, int initial) {
        if (initial < 1 || initial > capacity) {
            throw new IllegalArgumentException("initial " + initial + " not in 1.." + capacity);
        }
        this.capacity = capacity;
        this.address = new long[initial];
        this.length = new int[initial];
    }

    void reset(int head) {
        this.head = head;
        count = 0;
        readable = 0;
        readableBytes = 0;
        writableBytes = 0;
    }

    /** False when the chain is full. Readable elements must all come before writable ones (checked by the caller). */
    /** Packed rings learn the buffer id from the chain's last descriptor. */
    void head(int head) {
        this.head = head;
    }

    boolean tryAppend(long hostAddress, int len, boolean writable) {
        if (count == address.length) {
            if (count == capacity) {
                return false;
            }
            int grown = Math.min(capacity, 2 * count); // once per doubling in the chain's life, not per pop
            address = java.util.Arrays.copyOf(address, grown);
            length = java.util.Arrays.copyOf(length, grown);
        }
        address[count] = hostAddress;
        length[count] = len;
        count++;
        if (writable) {
            writableBytes += len;
        } else {
            readable++;
            readableBytes += len;
        }
        return true;
    }

    /** Bytes one element holds at most (a larger guest buffer becomes several elements). */
    static final int MAX_ELEMENT = 1 << 30;

    static final int APPENDED = 0;
    static final int NOT_MAPPED = 1;
    static final int TOO_LONG = 2;

    /**
     * Appends guest range [gpa, gpa+len) region by region (a buffer may span adjacent regions): APPENDED, or
     * NOT_MAPPED / TOO_LONG for the ring to report with its own position. Shared by the split and packed rings.
     */
    int appendGuestRange(GuestMemory memory, long gpa, long len, boolean writable) {
        long left = len;
        while (left > 0) {
            int r = memory.regionOfGpa(gpa);
            if (r < 0) {
                return NOT_MAPPED;
            }
            // at most MAX_ELEMENT per element: a descriptor's le32 length of 2 GiB or more must not become a negative int
            long n = Math.min(Math.min(left, memory.bytesToEnd(r, gpa)), MAX_ELEMENT);
            if (!tryAppend(memory.hostOfGpa(r, gpa), (int) n, writable)) {
                return TOO_LONG;
            }
            gpa += n; // stays below the region's end, itself below 2^63
            left -= n;
        }
        return APPENDED;
    }

    /** The head descriptor index: the id the used ring reports back. */
    public int head() {
        return head;
    }

    public int count() {
        return count;
    }

    public int capacity() {
        return capacity;
    }

    /** Elements [0, readableCount) are device-readable; the rest device-writable. */
    public int readableCount() {
        return readable;
    }

    public long readableBytes() {
        return readableBytes;
    }

    public long writableBytes() {
        return writableBytes;
    }

    /** Host address of element {@code i} (inside a mapped region: checked at pop). */
    public long address(int i) {
        return address[i];
    }

    public int length(int i) {
        return length[i];
    }

    public boolean writable(int i) {
        return i >= readable;
    }
}
