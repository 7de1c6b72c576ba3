package io.phost.vhdx.vhdx;

/**
 * File sizes of the VHDX images this engine writes ({@link VhdxImageWriter}), for {@code measure}: the
 * header section, log and metadata take the first 3 MiB, the BAT follows rounded up to 1 MiB, and payload
 * blocks are appended after it, one {@code blockSize} each (1 MiB aligned, as the BAT's FileOffsetMB needs).
 */
public final class VhdxLayout {
    private VhdxLayout() {}

    /** Bytes before the first payload block: what an empty dynamic image of this shape occupies. */
    public static long payloadStart(long size, int logicalSectorSize, long blockSize, boolean hasParent) {
        int b = Math.toIntExact(blockSize);
        int chunkRatio = BatDescriptor.chunkRatio(logicalSectorSize, b);
        long dataBlocks = (size + blockSize - 1) / blockSize;
        long entries = BatDescriptor.totalEntries(dataBlocks, chunkRatio, hasParent);
        return VhdxImageWriter.BAT_OFFSET + VhdxDisk.roundUp(entries * 8, 1 << 20);
    }

    /** File size of a non-differencing image holding {@code blocks} payload blocks. */
    public static long fileSize(long size, int logicalSectorSize, long blockSize, long blocks) {
        return Math.addExact(payloadStart(size, logicalSectorSize, blockSize, false), Math.multiplyExact(blocks, blockSize));
    }
}
