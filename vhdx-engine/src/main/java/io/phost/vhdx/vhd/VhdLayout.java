package io.phost.vhdx.vhd;

/**
 * File sizes of the VHD images this engine writes ({@link VhdDisk#create}), for {@code measure}.
 * <pre>
 *  fixed:    | data (size) | footer 512 |
 *  dynamic:  | footer copy 512 | dynamic header 1024 | BAT (4 B/block, 512-aligned) | block ... | footer 512 |
 *  block:    | gap to align | sector bitmap (512-aligned) | data (blockSize, 4 KiB aligned) |
 * </pre>
 * A block's data area starts on a 4 KiB boundary (O_DIRECT), so its bitmap ends there; the gap before it is
 * whatever the previous end leaves (the same arithmetic as {@code VhdDisk.allocate}).
 */
public final class VhdLayout {
    private VhdLayout() {}

    /** File size of a fixed image. */
    public static long fixedFileSize(long size) {
        return size + VhdFooter.LENGTH;
    }

    /** File size of a dynamic image holding {@code blocks} blocks. */
    public static long dynamicFileSize(long size, long blockSize, long blocks) {
        long entries = (size + blockSize - 1) / blockSize;
        long batBytes = (entries * 4 + VhdDisk.SECTOR - 1) & -VhdDisk.SECTOR;
        long end = VhdFooter.LENGTH + VhdDynamicHeader.LENGTH + batBytes; // where the footer sits
        long bitmap = VhdDisk.bitmapBytesFor(blockSize);
        for (long i = 0; i < blocks; i++) {
            long start = ((end + bitmap + 4095) & -4096L) - bitmap;
            if (start < end) {
                start += 4096;
            }
            end = start + bitmap + blockSize;
        }
        return end + VhdFooter.LENGTH;
    }
}
