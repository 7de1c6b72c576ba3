package io.phost.vhdx.ops;

import io.phost.vhdx.AllocationMap;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.DiskType;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.vhd.VhdDynamicHeader;
import io.phost.vhdx.vhd.VhdLayout;
import io.phost.vhdx.vhdx.VhdxCreateOptions;
import io.phost.vhdx.vhdx.VhdxLayout;

import java.io.IOException;

/**
 * {@code phost vhd measure}: the file size a {@code convert} of an image (or a new image of a given size)
 * needs, as {@code qemu-img measure}. {@code required} is the size of a dynamic image holding every block
 * the source's allocation map says may hold data (metadata only, nothing is read: an allocated block that
 * reads zeros is counted although convert skips it, so required is an upper bound and exact when every
 * allocated block holds data); {@code fullyAllocated} is the size with every block present (a fixed image).
 * Raw is the virtual size for both, as qemu reports it.
 */
public final class ImageMeasure {
    /** Sizes in bytes. */
    public record Result(long required, long fullyAllocated) {
        /** As {@code qemu-img measure --output=json}. */
        public String toJson() {
            return "{\n    \"required\": " + required + ",\n    \"fully-allocated\": " + fullyAllocated + "\n}";
        }
    }

    private ImageMeasure() {}

    /** Sizes for converting {@code in} (a chain is flattened) to {@code format}/{@code type}. */
    public static Result of(VirtualDisk in, DiskFormat format, DiskType type, long blockSize) throws IOException {
        long size = (in.size() + 511) & -512L;
        int logical = format == DiskFormat.VHDX ? in.logicalSectorSize() : 512;
        long b = blockSize(format, blockSize);
        long blocks = format == DiskFormat.RAW ? 0 : blocksTouched(Allocations.of(in), in.size(), b);
        return sizes(format, type, size, logical, b, blocks);
    }

    /** Sizes for a new, empty image of {@code size} bytes ({@code qemu-img measure --size}). */
    public static Result ofSize(long size, DiskFormat format, DiskType type, long blockSize, int logicalSectorSize) {
        return sizes(format, type, size, logicalSectorSize, blockSize(format, blockSize), 0);
    }

    private static IllegalArgumentException notAnImageFile(DiskFormat format) {
        return new IllegalArgumentException("measure sizes image files (vhdx, vhd or raw), not " + format.id());
    }

    private static long blockSize(DiskFormat format, long blockSize) {
        if (blockSize != 0) {
            return blockSize;
        }
        return switch (format) {
            case VHDX -> VhdxCreateOptions.DEFAULT_BLOCK_SIZE;
            case VHD -> VhdDynamicHeader.DEFAULT_BLOCK_SIZE;
            case RAW -> 0;
            case PASSTHROUGH, RBD -> throw notAnImageFile(format);
        };
    }

    private static Result sizes(DiskFormat format, DiskType type, long size, int logical, long blockSize, long blocks) {
        if (type == DiskType.DIFFERENCING) {
            throw new IllegalArgumentException("measure sizes fixed or dynamic images");
        }
        return switch (format) {
            case RAW -> new Result(size, size);
            case VHDX -> {
                long all = (size + blockSize - 1) / blockSize;
                long full = VhdxLayout.fileSize(size, logical, blockSize, all);
                yield new Result(type == DiskType.FIXED ? full : VhdxLayout.fileSize(size, logical, blockSize, blocks), full);
            }
            case VHD -> {
                long full = VhdLayout.fixedFileSize(size);
                long dynamicFull = VhdLayout.dynamicFileSize(size, blockSize, (size + blockSize - 1) / blockSize);
                yield type == DiskType.FIXED ? new Result(full, full)
                    : new Result(VhdLayout.dynamicFileSize(size, blockSize, blocks), dynamicFull);
            }
            case PASSTHROUGH, RBD -> throw notAnImageFile(format);
        };
    }

    /** Number of {@code blockSize} blocks that an allocated range touches. */
    static long blocksTouched(AllocationMap map, long size, long blockSize) throws IOException {
        long count = 0;
        long last = -1; // the last block counted
        for (long o = map.nextAllocated(0); o < size; ) {
            long e = Math.min(map.nextUnallocated(o), size);
            long first = Math.max(o / blockSize, last + 1);
            long end = (e - 1) / blockSize;
            if (end >= first) {
                count += end - first + 1;
                last = end;
            }
            o = e >= size ? size : map.nextAllocated(e);
        }
        return count;
    }
}
