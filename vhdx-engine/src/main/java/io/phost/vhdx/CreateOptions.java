package io.phost.vhdx;

import java.nio.file.Path;
import java.util.Objects;

/**
 * What {@link VirtualDisks#create} makes.
 *
 * @param format             vhdx, vhd or raw
 * @param type               fixed, dynamic or differencing (differencing needs {@code parent}; raw has none)
 * @param size               virtual size in bytes; ignored for differencing (the parent's size is used)
 * @param parent             the parent image of a differencing disk, else null
 * @param blockSize          bytes per block; 0 picks the format's default (VHD 2 MiB, VHDX 32 MiB)
 * @param logicalSectorSize  512 or 4096 (VHD supports 512 only)
 * @param physicalSectorSize 512 or 4096
 */
public record CreateOptions(DiskFormat format, DiskType type, long size, Path parent, long blockSize,
                            int logicalSectorSize, int physicalSectorSize) {
    public CreateOptions {
        Objects.requireNonNull(format, "format");
        Objects.requireNonNull(type, "type");
        if (type == DiskType.DIFFERENCING && parent == null) {
            throw new IllegalArgumentException("a differencing disk needs a parent");
        }
        if (type != DiskType.DIFFERENCING && parent != null) {
            throw new IllegalArgumentException("only a differencing disk has a parent");
        }
        if (format == DiskFormat.RAW && type == DiskType.DIFFERENCING) {
            throw new IllegalArgumentException("raw images cannot be differencing");
        }
        if (type != DiskType.DIFFERENCING && size <= 0) {
            throw new IllegalArgumentException("size must be positive: " + size);
        }
        if (logicalSectorSize != 512 && logicalSectorSize != 4096) {
            throw new IllegalArgumentException("logical sector size must be 512 or 4096: " + logicalSectorSize);
        }
        if (physicalSectorSize != 512 && physicalSectorSize != 4096) {
            throw new IllegalArgumentException("physical sector size must be 512 or 4096: " + physicalSectorSize);
        }
        if (physicalSectorSize < logicalSectorSize) {
            throw new IllegalArgumentException("physical sector size is smaller than the logical one");
        }
        if (blockSize < 0) {
            throw new IllegalArgumentException("block size must not be negative: " + blockSize);
        }
    }

    public static CreateOptions of(DiskFormat format, DiskType type, long size) {
        return new CreateOptions(format, type, size, null, 0, 512, format == DiskFormat.VHDX ? 4096 : 512);
    }

    public static CreateOptions differencing(DiskFormat format, Path parent) {
        return new CreateOptions(format, DiskType.DIFFERENCING, 0, parent, 0, 512,
            format == DiskFormat.VHDX ? 4096 : 512);
    }

    public CreateOptions withBlockSize(long b) {
        return new CreateOptions(format, type, size, parent, b, logicalSectorSize, physicalSectorSize);
    }

    public CreateOptions withSectors(int logical, int physical) {
        return new CreateOptions(format, type, size, parent, blockSize, logical, physical);
    }
}
