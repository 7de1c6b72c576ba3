package io.phost.vhdx.ops;

import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskFormat;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.VirtualDisks;
import io.phost.vhdx.vhd.VhdDisk;
import io.phost.vhdx.vhdx.VhdxDisk;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The {@code convert} variants qemu-img users reach for, beside {@link DiskOps#convert}:
 * <ul>
 *   <li>{@code -n}: into an existing image, in place (it must be at least as large; not part of the
 *       source's chain); zero ranges are written as write-zeroes unless {@code --target-is-zero};</li>
 *   <li>{@code -B BACKING}: a new differencing image of BACKING that stores only what differs from it;</li>
 *   <li>{@code -S}: the zero-run granularity below which zeros are written as data (0: no holes).</li>
 * </ul>
 */
public final class ImageConvert {
    private ImageConvert() {}

    /**
     * Writes {@code src} into the existing image {@code dst} ({@code qemu-img convert -n}). Refused, with
     * {@code dst} untouched, when it is smaller than the source or part of the source's chain.
     */
    public static DiskOps.CopyResult into(Path src, DiskFormat srcFormat, Path dst, DiskFormat dstFormat,
                                          boolean targetIsZero, long granule, Progress progress) throws IOException {
        checkGranule(granule);
        try (VirtualDisk in = open(src, srcFormat)) {
            List<Path> chain = DiskOps.chainPaths(src, in);
            if (!Files.exists(dst)) {
                throw new java.nio.file.NoSuchFileException(dst.toString(), null, "-n writes into an existing image");
            }
            for (Path p : chain) {
                if (Files.isSameFile(p, dst)) {
                    throw new IllegalArgumentException(dst + " is " + (p.equals(src) ? "the source" : "part of the source's chain ("
                        + p + ")") + "; writing it would destroy the input");
                }
            }
            try (VirtualDisk out = dstFormat == null ? VirtualDisks.open(dst, false) : VirtualDisks.open(dst, dstFormat, false)) {
                if (out.size() < in.size()) {
                    throw new IllegalArgumentException(dst + " (" + out.size() + " bytes) is smaller than " + src + " ("
                        + in.size() + " bytes); resize it first");
                }
                DiskOps.CopyResult r = ImageCopy.copy(in, out, in.size(),
                    targetIsZero ? ImageCopy.Baseline.ZEROS : ImageCopy.Baseline.UNKNOWN, null, granule, progress);
                out.flush();
                return r;
            }
        }
    }

    /**
     * Converts {@code src} into a new image {@code dst} with holes at {@code granule} bytes ({@code -S}) and,
     * when {@code backing} is not null, as a differencing image of it that stores only the sectors where the
     * source reads differently ({@code -B}). Built in a temporary file and published atomically
     * ({@link NewImage}), as {@link DiskOps#convert}.
     */
    public static DiskOps.CopyResult toNew(Path src, DiskFormat srcFormat, Path dst, DiskFormat format,
                                           io.phost.vhdx.DiskType type, long blockSize, Path backing, long granule,
                                           boolean force, Progress progress) throws IOException {
        return toNew(src, srcFormat, dst, format, type, blockSize, 0, 0, backing, granule, force, progress);
    }

    /**
     * As above, with Convert-VHD's sector sizes for a VHDX destination ({@code logical}/{@code physical}, 0
     * for the defaults: a VHDX source's own, else 512/4096). A logical size the source's size is not a
     * multiple of is refused before anything is written.
     */
    public static DiskOps.CopyResult toNew(Path src, DiskFormat srcFormat, Path dst, DiskFormat format,
                                           io.phost.vhdx.DiskType type, long blockSize, int logicalSector,
                                           int physicalSector, Path backing, long granule, boolean force,
                                           Progress progress) throws IOException {
        checkGranule(granule);
        if (format != DiskFormat.VHDX && (logicalSector > 512 || physicalSector > 512)) {
            throw new IllegalArgumentException(format.id() + " images have 512-byte sectors; 4096 needs a vhdx destination");
        }
        try (VirtualDisk in = open(src, srcFormat)) {
            List<Path> inputs = new ArrayList<>(DiskOps.chainPaths(src, in));
            CreateOptions o;
            VirtualDisk base = null;
            try {
                if (backing != null) {
                    if (format == DiskFormat.RAW) {
                        throw new IllegalArgumentException("-B needs a vhdx or vhd destination (raw images have no parent)");
                    }
                    base = VirtualDisks.open(backing, true);
                    DiskFormat bf = DiskFormat.parse(base.format());
                    if (bf != format) {
                        throw new IllegalArgumentException("the backing image " + backing + " is " + bf.id() + "; a " + format.id()
                            + " image can only have a " + format.id() + " parent");
                    }
                    if (base.size() != in.size()) {
                        throw new IllegalArgumentException("the backing image " + backing + " has " + base.size()
                            + " bytes, the source " + in.size() + "; they must be the same size");
                    }
                    inputs.addAll(DiskOps.chainPaths(backing, base));
                    o = new CreateOptions(format, io.phost.vhdx.DiskType.DIFFERENCING, 0, backing.toAbsolutePath(), blockSize,
                        base.logicalSectorSize(), format == DiskFormat.VHDX ? Math.max(base.logicalSectorSize(), base.physicalSectorSize()) : 512);
                } else {
                    long size = (in.size() + 511) & -512L;
                    int logical = logicalSector != 0 ? logicalSector : format == DiskFormat.VHDX ? in.logicalSectorSize() : 512;
                    int physical = physicalSector != 0 ? physicalSector : format != DiskFormat.VHDX ? 512
                        : in instanceof VhdxDisk ? Math.max(logical, in.physicalSectorSize()) : 4096;
                    physical = Math.max(physical, logical);
                    if (size % logical != 0) {
                        throw new IllegalArgumentException(src + " has " + in.size() + " bytes, not a multiple of the "
                            + logical + "-byte logical sector");
                    }
                    o = new CreateOptions(format, type, size, null, blockSize, logical, physical);
                }
                NewImage target = NewImage.prepare(dst, force, inputs);
                try {
                    DiskOps.CopyResult r;
                    try (VirtualDisk out = VirtualDisks.create(target.tmp(), o)) {
                        r = ImageCopy.copy(in, out, Math.min(in.size(), out.size()),
                            base != null ? ImageCopy.Baseline.DISK : ImageCopy.Baseline.ZEROS, base, granule, progress);
                        out.flush();
                    }
                    target.publish();
                    return r;
                } catch (IOException | RuntimeException | Error e) {
                    target.abandon(e);
                    throw e;
                }
            } finally {
                if (base != null) {
                    base.close();
                }
            }
        }
    }

    static void checkGranule(long granule) {
        if (granule < 0 || granule % 512 != 0 || granule > DiskOps.CHUNK || (granule != 0 && DiskOps.CHUNK % granule != 0)) {
            throw new IllegalArgumentException("-S must be 0 or a multiple of 512 bytes that divides 1 MiB: " + granule);
        }
    }

    static VirtualDisk open(Path p, DiskFormat f) throws IOException {
        return f == null ? VirtualDisks.open(p, true) : VirtualDisks.open(p, f, true);
    }

    static boolean isDifferencing(VirtualDisk d) {
        return switch (d) {
            case VhdDisk v -> v.parent() != null;
            case VhdxDisk x -> x.parent() != null;
            default -> false;
        };
    }
}
