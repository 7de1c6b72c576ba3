package io.phost.vhdx.vhd;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.phost.vhdx.vhd.VhdFooter.U32;
import static io.phost.vhdx.vhd.VhdFooter.U64;

/**
 * VHD dynamic disk header (1024 bytes, big-endian), at the footer's DataOffset (512 in every image we
 * and qemu write). Dynamic and differencing disks only.
 * <pre>
 *  +---------------------------------------------------------------+
 *  |                 Cookie "cxsparse" (8)                         |    0
 *  |                 DataOffset (u64, unused: ~0)                  |    8
 *  |                 TableOffset (u64: absolute offset of the BAT) |   16
 *  |  HeaderVersion 0x00010000         | MaxTableEntries (u32)     |   24
 *  |  BlockSize (u32, default 2 MiB)   | Checksum (u32)            |   32
 *  |                 ParentUniqueId (16)                           |   40
 *  |  ParentTimeStamp (u32)            | Reserved (u32)            |   56
 *  |                 ParentUnicodeName (512, UTF-16BE, NUL padded) |   64
 *  |  ParentLocatorEntry[8] (24 each):                             |  576
 *  |    PlatformCode (u32: "W2ku" absolute, "W2ru" relative, ...)  |   +0
 *  |    PlatformDataSpace (u32: 512-byte sectors reserved)         |   +4
 *  |    PlatformDataLength (u32: bytes of path)                    |   +8
 *  |    Reserved (u32)                                             |  +12
 *  |    PlatformDataOffset (u64: absolute file offset of the path) |  +16
 *  |                 Reserved (256)                                |  768
 *  +---------------------------------------------------------------+
 * </pre>
 * BAT: MaxTableEntries big-endian u32 at TableOffset, each the 512-byte sector number of a block, or
 * 0xFFFFFFFF when the block is not allocated; padded with 0xFF to a 512-byte boundary.
 * A block: its sector bitmap (BlockSize/512 bits, MSB first, padded to 512 bytes), then BlockSize data.
 * Bit set: that sector's data is in this file; clear: zeros (dynamic) or the parent's (differencing).
 */
public final class VhdDynamicHeader {
    public static final int LENGTH = 1024;
    public static final int COOKIE_OFFSET = 0;
    public static final int DATA_OFFSET_OFFSET = 8;
    public static final int TABLE_OFFSET_OFFSET = 16;
    public static final int HEADER_VERSION_OFFSET = 24;
    public static final int MAX_TABLE_ENTRIES_OFFSET = 28;
    public static final int BLOCK_SIZE_OFFSET = 32;
    public static final int CHECKSUM_OFFSET = 36;
    public static final int PARENT_UNIQUE_ID_OFFSET = 40;
    public static final int PARENT_TIMESTAMP_OFFSET = 56;
    public static final int PARENT_NAME_OFFSET = 64;
    public static final int PARENT_NAME_LENGTH = 512;
    public static final int LOCATORS_OFFSET = 576;
    public static final int LOCATOR_LENGTH = 24;
    public static final int LOCATOR_COUNT = 8;
    public static final int LOC_CODE = 0;
    public static final int LOC_SPACE = 4;
    public static final int LOC_LENGTH = 8;
    public static final int LOC_DATA_OFFSET = 16;

    /** Platform codes of parent locators. */
    public static final int PLATFORM_W2KU = 0x57326b75; // "W2ku": absolute Windows path, UTF-16LE
    public static final int PLATFORM_W2RU = 0x57327275; // "W2ru": relative Windows path, UTF-16LE
    public static final int PLATFORM_WI2R = 0x57693272; // "Wi2r": deprecated relative, ANSI
    public static final int PLATFORM_WI2K = 0x5769326b; // "Wi2k": deprecated absolute, ANSI
    public static final int PLATFORM_MACX = 0x4d616358; // "MacX": file URL, UTF-8

    public static final long UNALLOCATED = 0xFFFFFFFFL;
    public static final long DEFAULT_BLOCK_SIZE = 2L << 20;
    public static final long MAX_BLOCK_SIZE = 256L << 20;

    private final MemorySegment seg;

    public VhdDynamicHeader(MemorySegment seg) {
        if (seg.byteSize() < LENGTH) {
            throw new IllegalArgumentException("header segment too small");
        }
        this.seg = seg;
    }

    public MemorySegment segment() {
        return seg;
    }

    public boolean hasCookie() { return VhdFooter.cookieIs(seg, COOKIE_OFFSET, "cxsparse"); }
    public long tableOffset() { return seg.get(U64, TABLE_OFFSET_OFFSET); }
    public int headerVersion() { return seg.get(U32, HEADER_VERSION_OFFSET); }
    public long maxTableEntries() { return Integer.toUnsignedLong(seg.get(U32, MAX_TABLE_ENTRIES_OFFSET)); }
    public long blockSize() { return Integer.toUnsignedLong(seg.get(U32, BLOCK_SIZE_OFFSET)); }
    public int checksum() { return seg.get(U32, CHECKSUM_OFFSET); }
    public long parentTimestamp() { return Integer.toUnsignedLong(seg.get(U32, PARENT_TIMESTAMP_OFFSET)); }

    public byte[] parentUniqueId() {
        return seg.asSlice(PARENT_UNIQUE_ID_OFFSET, 16).toArray(ValueLayout.JAVA_BYTE);
    }

    /** Parent file name (UTF-16BE up to the first NUL). */
    public String parentName() {
        byte[] b = seg.asSlice(PARENT_NAME_OFFSET, PARENT_NAME_LENGTH).toArray(ValueLayout.JAVA_BYTE);
        int n = 0;
        while (n + 1 < b.length && (b[n] != 0 || b[n + 1] != 0)) {
            n += 2;
        }
        return new String(b, 0, n, java.nio.charset.StandardCharsets.UTF_16BE);
    }

    public int locatorCode(int i) { return seg.get(U32, locator(i) + LOC_CODE); }
    public long locatorSpace(int i) { return Integer.toUnsignedLong(seg.get(U32, locator(i) + LOC_SPACE)); }
    public long locatorLength(int i) { return Integer.toUnsignedLong(seg.get(U32, locator(i) + LOC_LENGTH)); }
    public long locatorDataOffset(int i) { return seg.get(U64, locator(i) + LOC_DATA_OFFSET); }

    public static long locator(int i) {
        return LOCATORS_OFFSET + (long) i * LOCATOR_LENGTH;
    }

    public VhdDynamicHeader init(long tableOffset, long maxTableEntries, long blockSize) {
        seg.asSlice(0, LENGTH).fill((byte) 0);
        seg.asSlice(COOKIE_OFFSET, 8).copyFrom(MemorySegment.ofArray("cxsparse".getBytes(java.nio.charset.StandardCharsets.US_ASCII)));
        seg.set(U64, DATA_OFFSET_OFFSET, -1L);
        seg.set(U64, TABLE_OFFSET_OFFSET, tableOffset);
        seg.set(U32, HEADER_VERSION_OFFSET, VhdFooter.VERSION_1_0);
        seg.set(U32, MAX_TABLE_ENTRIES_OFFSET, (int) maxTableEntries);
        seg.set(U32, BLOCK_SIZE_OFFSET, (int) blockSize);
        return this;
    }

    public VhdDynamicHeader tableOffset(long v) { seg.set(U64, TABLE_OFFSET_OFFSET, v); return this; }
    public VhdDynamicHeader maxTableEntries(long v) { seg.set(U32, MAX_TABLE_ENTRIES_OFFSET, (int) v); return this; }

    public VhdDynamicHeader parent(byte[] uniqueId, long timestamp, String name) {
        seg.asSlice(PARENT_UNIQUE_ID_OFFSET, 16).copyFrom(MemorySegment.ofArray(uniqueId));
        seg.set(U32, PARENT_TIMESTAMP_OFFSET, (int) timestamp);
        MemorySegment nameSeg = seg.asSlice(PARENT_NAME_OFFSET, PARENT_NAME_LENGTH);
        nameSeg.fill((byte) 0);
        byte[] b = name.getBytes(java.nio.charset.StandardCharsets.UTF_16BE);
        nameSeg.copyFrom(MemorySegment.ofArray(b).asSlice(0, Math.min(b.length, PARENT_NAME_LENGTH - 2)));
        return this;
    }

    public VhdDynamicHeader locator(int i, int code, long space, long length, long dataOffset) {
        long l = locator(i);
        seg.set(U32, l + LOC_CODE, code);
        seg.set(U32, l + LOC_SPACE, (int) space);
        seg.set(U32, l + LOC_LENGTH, (int) length);
        seg.set(U32, l + 12, 0);
        seg.set(U64, l + LOC_DATA_OFFSET, dataOffset);
        return this;
    }

    public int computeChecksum() {
        return VhdFooter.checksum(seg, LENGTH, CHECKSUM_OFFSET);
    }

    public VhdDynamicHeader sealChecksum() {
        seg.set(U32, CHECKSUM_OFFSET, computeChecksum());
        return this;
    }
}
