package io.phost.vhdx.vhdx;

import io.phost.vhdx.DiskType;

import java.nio.file.Path;
import java.util.Objects;

/**
 * What {@link VhdxDisk#create} builds. Defaults follow Hyper-V: 32 MiB blocks, 512-byte logical and
 * 4096-byte physical sectors. A differencing image takes its size and logical sector size from the
 * parent ({@code size} is ignored and may be 0); its block size defaults to the parent's.
 *
 * @param size               virtual size in bytes, a multiple of the logical sector size, at most 64 TiB
 * @param type               fixed, dynamic or differencing
 * @param blockSize          payload block size: a power of two in 1..256 MiB (0 = default)
 * @param logicalSectorSize  512 or 4096 (0 = default, or the parent's)
 * @param physicalSectorSize 512 or 4096 (0 = default, or the parent's)
 * @param parent             the parent image for DIFFERENCING, else null
 */
public record VhdxCreateOptions(long size, DiskType type, int blockSize, int logicalSectorSize,
                                int physicalSectorSize, Path parent) {
    public static final int DEFAULT_BLOCK_SIZE = 32 << 20;

    public VhdxCreateOptions {
        Objects.requireNonNull(type, "type");
        if ((type == DiskType.DIFFERENCING) != (parent != null)) {
            throw new IllegalArgumentException("a parent is required for, and only for, DIFFERENCING");
        }
    }

    public static VhdxCreateOptions dynamic(long size) {
        return new VhdxCreateOptions(size, DiskType.DYNAMIC, 0, 0, 0, null);
    }

    public static VhdxCreateOptions fixed(long size) {
        return new VhdxCreateOptions(size, DiskType.FIXED, 0, 0, 0, null);
    }

    public static VhdxCreateOptions differencing(Path parent) {
        return new VhdxCreateOptions(0, DiskType.DIFFERENCING, 0, 0, 0, parent);
    }

    public VhdxCreateOptions withBlockSize(int bytes) {
        return new VhdxCreateOptions(size, type, bytes, logicalSectorSize, physicalSectorSize, parent);
    }

    public VhdxCreateOptions withLogicalSectorSize(int bytes) {
        return new VhdxCreateOptions(size, type, blockSize, bytes, physicalSectorSize, parent);
    }

    public VhdxCreateOptions withPhysicalSectorSize(int bytes) {
        return new VhdxCreateOptions(size, type, blockSize, logicalSectorSize, bytes, parent);
    }
}
