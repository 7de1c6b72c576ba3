package io.phost.core.vmbus;

import static io.phost.core.vmbus.PacketDescriptor.U32;
import static io.phost.core.vmbus.PacketDescriptor.U64;

import java.lang.foreign.MemorySegment;

/**
 * Reads the page-range list of a GPA-direct packet (type 9; Linux {@code vmbus_packet_mpb_array}) and
 * resolves its pages through {@link GuestMemory}. A reusable flyweight: one per VSP queue, no allocation.
 * <pre>
 *  0       16                20                 24
 *  | desc  | reserved   u32  | range_count  u32 | gpa_range[0] | gpa_range[1] | ... | data (offset8*8)
 *
 *  gpa_range: | byte_count u32 | byte_offset u32 | pfn[0] u64 | ... pfn[n-1] u64 |
 *             n = ceil((byte_offset + byte_count) / 4096); byte_offset < 4096
 * </pre>
 * {@link #wrap} validates the structure and copies each range's count, offset and position into private
 * arrays, so a guest rewriting the packet afterwards cannot change the shape; each pfn is re-read and
 * checked against the partition's grants when it is resolved.
 */
public final class GpaDirectRanges {
    public static final int MAX_RANGES = 64;
    public static final int RANGE_HEADER = 8;
    private static final int LIST_OFFSET = PacketDescriptor.HEADER_LENGTH + 8;

    private final int[] byteCount = new int[MAX_RANGES];
    private final int[] byteOffset = new int[MAX_RANGES];
    private final int[] pageCount = new int[MAX_RANGES];
    private final long[] pfnAt = new long[MAX_RANGES];
    private MemorySegment buffer;
    private int ranges;
    private long dataOffset;
    private int dataLength;

    /** Parses the packet at {@code packet} (length without trailer). */
    public GpaDirectRanges wrap(MemorySegment buffer, long packet, int packetLength) {
        this.buffer = buffer;
        final int headerLength = 8 * PacketDescriptor.offset8(buffer, packet);
        if (headerLength < LIST_OFFSET || headerLength > packetLength) {
            throw new GuestMemoryException(GuestMemoryException.Reason.BAD_RANGE, 0, "GPA-direct descriptor of " + headerLength + " bytes");
        }
        final int count = buffer.get(U32, packet + PacketDescriptor.HEADER_LENGTH + 4);
        if (count < 0 || count > MAX_RANGES) {
            throw new GuestMemoryException(GuestMemoryException.Reason.TOO_MANY, 0, "range_count " + Integer.toUnsignedString(count));
        }
        long pos = packet + LIST_OFFSET;
        final long end = packet + headerLength;
        for (int i = 0; i < count; i++) {
            if (pos + RANGE_HEADER > end) {
                throw new GuestMemoryException(GuestMemoryException.Reason.BAD_RANGE, 0, "range " + i + " header past descriptor end");
            }
            int bc = buffer.get(U32, pos);
            int bo = buffer.get(U32, pos + 4);
            if (bc <= 0 || bo < 0 || bo >= GuestMemory.PAGE_SIZE) {
                throw new GuestMemoryException(GuestMemoryException.Reason.BAD_RANGE, 0,
                    "range " + i + ": byte_count=" + Integer.toUnsignedString(bc) + " byte_offset=" + Integer.toUnsignedString(bo));
            }
            long pages = ((long) bo + bc + GuestMemory.PAGE_SIZE - 1) / GuestMemory.PAGE_SIZE;
            if (pos + RANGE_HEADER + pages * 8 > end) {
                throw new GuestMemoryException(GuestMemoryException.Reason.BAD_RANGE, 0, "range " + i + " needs " + pages + " pfns past descriptor end");
            }
            byteCount[i] = bc;
            byteOffset[i] = bo;
            pageCount[i] = (int) pages;
            pfnAt[i] = pos + RANGE_HEADER;
            pos += RANGE_HEADER + pages * 8;
        }
        this.ranges = count;
        this.dataOffset = packet + headerLength;
        this.dataLength = packetLength - headerLength;
        return this;
    }

    public int rangeCount() {
        return ranges;
    }

    public int byteCount(int range) {
        return byteCount[check(range)];
    }

    public int byteOffset(int range) {
        return byteOffset[check(range)];
    }

    public int pageCount(int range) {
        return pageCount[check(range)];
    }

    /** The pfn of page {@code page} of range {@code range} as the guest wrote it (unvalidated). */
    public long pfn(int range, int page) {
        check(range);
        if (page < 0 || page >= pageCount[range]) {
            throw new IndexOutOfBoundsException("page " + page + " of " + pageCount[range]);
        }
        return buffer.get(U64, pfnAt[range] + 8L * page);
    }

    /** Bytes of range {@code range} that lie in its page {@code page}. */
    public int pageLength(int range, int page) {
        int start = page == 0 ? byteOffset(range) : 0;
        long rangeEnd = (long) byteOffset[range] + byteCount[range] - (long) page * GuestMemory.PAGE_SIZE;
        return (int) Math.min(GuestMemory.PAGE_SIZE, rangeEnd) - start;
    }

    /**
     * Offset in {@code memory.segment()} of the bytes of range {@code range} in page {@code page},
     * after checking that page is granted and not a ring page; {@link #pageLength} bytes are usable.
     */
    public long resolve(GuestMemory memory, int range, int page) {
        long pfn = pfn(range, page);
        int start = page == 0 ? byteOffset[range] : 0;
        return memory.resolvePage(pfn, start, pageLength(range, page));
    }

    /** Inline data after the range list (usually the VSP request, e.g. a vmscsi_request). */
    public long dataOffset() {
        return dataOffset;
    }

    public int dataLength() {
        return dataLength;
    }

    private int check(int range) {
        if (range < 0 || range >= ranges) {
            throw new IndexOutOfBoundsException("range " + range + " of " + ranges);
        }
        return range;
    }

    /**
     * Writer side (VSC): encodes a range list into {@code ext} at {@code offset} and returns its length
     * (a multiple of 8) for {@link VmbusRing#tryWrite(int, int, long, MemorySegment, long, int, MemorySegment, long, int)}.
     * {@code gpas[i]}/{@code lengths[i]} describe range i; pages are derived from the guest-physical address.
     */
    public static int encode(MemorySegment ext, long offset, int count, long[] gpas, int[] lengths) {
        ext.set(U32, offset, 0);
        ext.set(U32, offset + 4, count);
        long pos = offset + 8;
        for (int i = 0; i < count; i++) {
            int bo = (int) (gpas[i] % GuestMemory.PAGE_SIZE);
            long pages = ((long) bo + lengths[i] + GuestMemory.PAGE_SIZE - 1) / GuestMemory.PAGE_SIZE;
            ext.set(U32, pos, lengths[i]);
            ext.set(U32, pos + 4, bo);
            long pfn0 = gpas[i] / GuestMemory.PAGE_SIZE;
            for (long p = 0; p < pages; p++) {
                ext.set(U64, pos + 8 + 8 * p, pfn0 + p);
            }
            pos += 8 + 8 * pages;
        }
        return (int) (pos - offset);
    }
}
