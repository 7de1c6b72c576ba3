package io.phost.vhdx.vhd;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;

/**
 * VHD hard disk footer (512 bytes, big-endian). The last 512 bytes of every VHD; dynamic and
 * differencing disks also keep a copy at offset 0 ("mirror", written first, checked second).
 * <pre>
 *   0                   1                   2                   3
 *  +---------------------------------------------------------------+
 *  |                 Cookie "conectix" (8)                         |   0
 *  |  Features (u32, bit 1 always set) | FormatVersion 0x00010000  |   8
 *  |                 DataOffset (u64: dynamic header, or ~0 fixed) |  16
 *  |  TimeStamp (u32, s since 2000-01-01 UTC) | CreatorApp (4)     |  24
 *  |  CreatorVersion (u32)             | CreatorHostOs (u32)       |  32
 *  |                 OriginalSize (u64)                            |  40
 *  |                 CurrentSize (u64)                             |  48
 *  |  Cylinders (u16) | Heads (u8) | SectorsPerTrack (u8)          |  56
 *  |  DiskType (u32: 2 fixed, 3 dynamic, 4 differencing)           |  60
 *  |  Checksum (u32: ~(sum of all bytes but these four))           |  64
 *  |                 UniqueId (16)                                 |  68
 *  |  SavedState (u8) | Reserved (427, zero)                       |  84
 *  +---------------------------------------------------------------+
 * </pre>
 * A flyweight: wrap a 512-byte segment, read and write fields in place.
 */
public final class VhdFooter {
    public static final int LENGTH = 512;
    public static final int COOKIE_OFFSET = 0;
    public static final int FEATURES_OFFSET = 8;
    public static final int VERSION_OFFSET = 12;
    public static final int DATA_OFFSET_OFFSET = 16;
    public static final int TIMESTAMP_OFFSET = 24;
    public static final int CREATOR_APP_OFFSET = 28;
    public static final int CREATOR_VERSION_OFFSET = 32;
    public static final int CREATOR_OS_OFFSET = 36;
    public static final int ORIGINAL_SIZE_OFFSET = 40;
    public static final int CURRENT_SIZE_OFFSET = 48;
    public static final int CYLINDERS_OFFSET = 56;
    public static final int HEADS_OFFSET = 58;
    public static final int SECTORS_OFFSET = 59;
    public static final int DISK_TYPE_OFFSET = 60;
    public static final int CHECKSUM_OFFSET = 64;
    public static final int UNIQUE_ID_OFFSET = 68;
    public static final int SAVED_STATE_OFFSET = 84;

    public static final int TYPE_FIXED = 2;
    public static final int TYPE_DYNAMIC = 3;
    public static final int TYPE_DIFFERENCING = 4;
    public static final int VERSION_1_0 = 0x00010000;
    public static final int FEATURES_RESERVED = 2;
    public static final long NO_DATA_OFFSET = -1L;
    /** 2040 GiB: the largest VHD (the spec's 32-bit sector BAT and Hyper-V's limit). */
    public static final long MAX_SIZE = 2040L << 30;
    /** Largest CHS geometry; images at it use the current size (qemu vpc.c, VHD_MAX_GEOMETRY). */
    public static final long MAX_GEOMETRY_SECTORS = 65535L * 16 * 255;
    /** Seconds from the Unix epoch to 2000-01-01T00:00:00Z, the VHD epoch. */
    public static final long VHD_EPOCH = 946684800L;

    static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);

    private final MemorySegment seg;

    public VhdFooter(MemorySegment seg) {
        if (seg.byteSize() < LENGTH) {
            throw new IllegalArgumentException("footer segment too small");
        }
        this.seg = seg;
    }

    public MemorySegment segment() {
        return seg;
    }

    public boolean hasCookie() {
        return cookieIs(seg, COOKIE_OFFSET, "conectix");
    }

    static boolean cookieIs(MemorySegment s, long off, String cookie) {
        for (int i = 0; i < cookie.length(); i++) {
            if (s.get(ValueLayout.JAVA_BYTE, off + i) != (byte) cookie.charAt(i)) {
                return false;
            }
        }
        return true;
    }

    public int features() { return seg.get(U32, FEATURES_OFFSET); }
    public int version() { return seg.get(U32, VERSION_OFFSET); }
    public long dataOffset() { return seg.get(U64, DATA_OFFSET_OFFSET); }
    public long timestamp() { return Integer.toUnsignedLong(seg.get(U32, TIMESTAMP_OFFSET)); }
    public String creatorApp() { return ascii(CREATOR_APP_OFFSET, 4); }
    public int creatorVersion() { return seg.get(U32, CREATOR_VERSION_OFFSET); }
    public String creatorOs() { return ascii(CREATOR_OS_OFFSET, 4); }
    public long originalSize() { return seg.get(U64, ORIGINAL_SIZE_OFFSET); }
    public long currentSize() { return seg.get(U64, CURRENT_SIZE_OFFSET); }
    public int cylinders() { return Short.toUnsignedInt(seg.get(U16, CYLINDERS_OFFSET)); }
    public int heads() { return Byte.toUnsignedInt(seg.get(ValueLayout.JAVA_BYTE, HEADS_OFFSET)); }
    public int sectorsPerTrack() { return Byte.toUnsignedInt(seg.get(ValueLayout.JAVA_BYTE, SECTORS_OFFSET)); }
    public int diskType() { return seg.get(U32, DISK_TYPE_OFFSET); }
    public int checksum() { return seg.get(U32, CHECKSUM_OFFSET); }
    public byte savedState() { return seg.get(ValueLayout.JAVA_BYTE, SAVED_STATE_OFFSET); }

    public byte[] uniqueId() {
        return seg.asSlice(UNIQUE_ID_OFFSET, 16).toArray(ValueLayout.JAVA_BYTE);
    }

    /** CHS geometry in sectors: cylinders * heads * sectors per track. */
    public long geometrySectors() {
        return (long) cylinders() * heads() * sectorsPerTrack();
    }

    private String ascii(int off, int len) {
        return new String(seg.asSlice(off, len).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.ISO_8859_1);
    }

    public VhdFooter cookie() {
        seg.asSlice(COOKIE_OFFSET, 8).copyFrom(MemorySegment.ofArray("conectix".getBytes(StandardCharsets.US_ASCII)));
        return this;
    }

    public VhdFooter features(int v) { seg.set(U32, FEATURES_OFFSET, v); return this; }
    public VhdFooter version(int v) { seg.set(U32, VERSION_OFFSET, v); return this; }
    public VhdFooter dataOffset(long v) { seg.set(U64, DATA_OFFSET_OFFSET, v); return this; }
    public VhdFooter timestamp(long v) { seg.set(U32, TIMESTAMP_OFFSET, (int) v); return this; }

    public VhdFooter creatorApp(String v) {
        seg.asSlice(CREATOR_APP_OFFSET, 4).copyFrom(MemorySegment.ofArray(v.getBytes(StandardCharsets.ISO_8859_1)));
        return this;
    }

    public VhdFooter creatorVersion(int v) { seg.set(U32, CREATOR_VERSION_OFFSET, v); return this; }

    public VhdFooter creatorOs(String v) {
        seg.asSlice(CREATOR_OS_OFFSET, 4).copyFrom(MemorySegment.ofArray(v.getBytes(StandardCharsets.ISO_8859_1)));
        return this;
    }

    public VhdFooter originalSize(long v) { seg.set(U64, ORIGINAL_SIZE_OFFSET, v); return this; }
    public VhdFooter currentSize(long v) { seg.set(U64, CURRENT_SIZE_OFFSET, v); return this; }

    public VhdFooter geometry(int cylinders, int heads, int sectors) {
        seg.set(U16, CYLINDERS_OFFSET, (short) cylinders);
        seg.set(ValueLayout.JAVA_BYTE, HEADS_OFFSET, (byte) heads);
        seg.set(ValueLayout.JAVA_BYTE, SECTORS_OFFSET, (byte) sectors);
        return this;
    }

    public VhdFooter diskType(int v) { seg.set(U32, DISK_TYPE_OFFSET, v); return this; }

    public VhdFooter uniqueId(byte[] id) {
        seg.asSlice(UNIQUE_ID_OFFSET, 16).copyFrom(MemorySegment.ofArray(id));
        return this;
    }

    /** The footer checksum: one's complement of the byte sum with the checksum field taken as zero. */
    public int computeChecksum() {
        return checksum(seg, LENGTH, CHECKSUM_OFFSET);
    }

    /** Stores {@link #computeChecksum()}. */
    public VhdFooter sealChecksum() {
        seg.set(U32, CHECKSUM_OFFSET, computeChecksum());
        return this;
    }

    static int checksum(MemorySegment s, int length, int checksumOffset) {
        int sum = 0;
        for (int i = 0; i < length; i++) {
            if (i >= checksumOffset && i < checksumOffset + 4) {
                continue;
            }
            sum += Byte.toUnsignedInt(s.get(ValueLayout.JAVA_BYTE, i));
        }
        return ~sum;
    }

    /**
     * CHS geometry for {@code size} bytes, per the VHD specification's appendix (the same algorithm as qemu's
     * calculate_geometry): returns {cylinders, heads, sectorsPerTrack}. The product may be below the size.
     */
    public static int[] geometryFor(long size) {
        long totalSectors = size / 512;
        if (totalSectors > MAX_GEOMETRY_SECTORS) {
            totalSectors = MAX_GEOMETRY_SECTORS;
        }
        long spt;
        long heads;
        long cth;
        if (totalSectors >= 65535L * 16 * 63) {
            spt = 255;
            heads = 16;
            cth = totalSectors / spt;
        } else {
            spt = 17;
            cth = totalSectors / spt;
            heads = (cth + 1023) / 1024;
            if (heads < 4) {
                heads = 4;
            }
            if (cth >= heads * 1024 || heads > 16) {
                spt = 31;
                heads = 16;
                cth = totalSectors / spt;
            }
            if (cth >= heads * 1024) {
                spt = 63;
                heads = 16;
                cth = totalSectors / spt;
            }
        }
        return new int[] {(int) (cth / heads), (int) heads, (int) spt};
    }
}
