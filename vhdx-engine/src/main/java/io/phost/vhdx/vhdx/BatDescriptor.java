package io.phost.vhdx.vhdx;

/**
 * Block allocation table: an array of u64 entries. Payload block entries and sector bitmap entries are
 * interleaved: after every {@code chunkRatio} payload entries comes one sector bitmap entry.
 * <pre>
 *  entry (u64, little-endian)
 *   63                                   20 19              3 2    0
 *  +---------------------------------------+-----------------+------+
 *  |        FileOffsetMB (44 bits)         |  reserved (0)   |State |
 *  +---------------------------------------+-----------------+------+
 *
 *  chunkRatio = 2^23 * logicalSectorSize / blockSize     (sectors covered by one 1 MiB bitmap / per block)
 *  BAT index of payload block b       = b + b / chunkRatio
 *  BAT index of sector bitmap chunk c = c * (chunkRatio + 1) + chunkRatio
 *
 *  | P0 | P1 | ... | P(cr-1) | SB0 | P(cr) | ... | P(2cr-1) | SB1 | ...
 * </pre>
 * Payload block states and what a read returns (no parent / with a parent):
 * <pre>
 *  NOT_PRESENT (0)        zeros / parent's data          file offset 0
 *  UNDEFINED (1)          zeros / parent's data          (we never write it)
 *  ZERO (2)               zeros / zeros
 *  UNMAPPED (3)           zeros / zeros
 *  FULLY_PRESENT (6)      the block at FileOffsetMB
 *  PARTIALLY_PRESENT (7)  per sector: bitmap bit 1 = this file, 0 = parent   (differencing only)
 *
 *  transitions we make:  NOT_PRESENT|UNDEFINED|ZERO|UNMAPPED --write--> FULLY_PRESENT (no parent)
 *                        NOT_PRESENT|UNDEFINED --write--> PARTIALLY_PRESENT (parent; bitmap bits set)
 *                        ZERO|UNMAPPED --write--> FULLY_PRESENT (parent; rest of block already zero)
 *                        any --unmap whole block--> ZERO (offset released; compact reclaims space)
 * </pre>
 * Sector bitmap entry states: NOT_PRESENT (0) and PRESENT (6).
 */
final class BatDescriptor {
    static final int ENTRY_LENGTH = 8;
    static final long STATE_MASK = 7;
    static final long RESERVED_MASK = 0xFFFF8L;
    static final int FILE_OFFSET_SHIFT = 20;

    static final int PAYLOAD_NOT_PRESENT = 0;
    static final int PAYLOAD_UNDEFINED = 1;
    static final int PAYLOAD_ZERO = 2;
    static final int PAYLOAD_UNMAPPED = 3;
    static final int PAYLOAD_FULLY_PRESENT = 6;
    static final int PAYLOAD_PARTIALLY_PRESENT = 7;
    static final int SB_NOT_PRESENT = 0;
    static final int SB_PRESENT = 6;

    static final int SECTOR_BITMAP_BLOCK_LENGTH = 1024 * 1024;

    private BatDescriptor() {}

    static int state(long entry) {
        return (int) (entry & STATE_MASK);
    }

    static long fileOffset(long entry) {
        return (entry >>> FILE_OFFSET_SHIFT) << 20;
    }

    static long entry(int state, long fileOffset) {
        return ((fileOffset >>> 20) << FILE_OFFSET_SHIFT) | state;
    }

    static int chunkRatio(int logicalSectorSize, int blockSize) {
        return (int) (((1L << 23) * logicalSectorSize) / blockSize);
    }

    static long payloadIndex(long block, int chunkRatio) {
        return block + block / chunkRatio;
    }

    static long bitmapIndex(long chunk, int chunkRatio) {
        return chunk * (chunkRatio + 1L) + chunkRatio;
    }

    /** Total BAT entries (MS-VHDX 2.5.1): with a parent every chunk has its bitmap entry. */
    static long totalEntries(long dataBlocks, int chunkRatio, boolean hasParent) {
        if (hasParent) {
            long chunks = (dataBlocks + chunkRatio - 1) / chunkRatio;
            return chunks * (chunkRatio + 1L);
        }
        return dataBlocks + (dataBlocks - 1) / chunkRatio;
    }
}
