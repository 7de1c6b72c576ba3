package io.phost.vhdx.ops;

import io.phost.vhdx.AllocationMap;
import io.phost.core.sys.PosixFile;
import io.phost.vhdx.VirtualDisk;
import io.phost.vhdx.vhd.VhdDisk;
import io.phost.vhdx.vhdx.VhdxDisk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

/**
 * The facts Hyper-V's {@code Get-VHD} reports beside the ones {@code info} always had: MinimumSize,
 * FragmentationPercentage and Attached.
 */
public final class ImageFacts {
    private ImageFacts() {}

    /** Whether another open holds the image: the flock a running phost (or a merge) takes. */
    public enum Attached {
        NO, READ_ONLY, READ_WRITE;

        public String describe() {
            return switch (this) {
                case NO -> "no";
                case READ_ONLY -> "yes (open read-only, or the parent of an open image)";
                case READ_WRITE -> "yes (open read-write)";
            };
        }
    }

    /**
     * Probes the flock without keeping it: an exclusive lock that cannot be taken means someone has the
     * image open; a shared one that cannot be taken means someone writes it. Call before opening it.
     */
    public static Attached attached(Path path) throws IOException {
        try (PosixFile f = PosixFile.open(path, true)) {
            if (f.tryLock(true)) {
                return Attached.NO;
            }
        }
        try (PosixFile f = PosixFile.open(path, true)) {
            return f.tryLock(false) ? Attached.READ_ONLY : Attached.READ_WRITE;
        }
    }

    /**
     * The smallest virtual size the image can be shrunk to without losing data (Get-VHD's MinimumSize,
     * which Hyper-V takes from the last partition; here from the data): the end of the last logical sector
     * that does not read as zeros, at least one sector. Reads only the last allocated extents, backwards,
     * at most {@code budget} bytes: -1 when that was not enough (a fixed image with a long zero tail).
     */
    public static long minimumSize(VirtualDisk d, long budget) throws IOException {
        AllocationMap map = Allocations.of(d);
        int sector = d.logicalSectorSize();
        long size = d.size();
        if (size % sector != 0) {
            return size; // a raw file with a partial last sector: nothing smaller is a valid size
        }
        // the allocated extents, walked forward (the map only answers "next"); kept as a list of starts/ends
        java.util.ArrayList<long[]> extents = new java.util.ArrayList<>();
        for (long o = map.nextAllocated(0); o < size; ) {
            long e = Math.min(map.nextUnallocated(o), size);
            extents.add(new long[] {o, e});
            o = e >= size ? size : map.nextAllocated(e);
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(DiskOps.CHUNK, 4096);
            for (int i = extents.size() - 1; i >= 0; i--) {
                long start = extents.get(i)[0] / sector * sector;
                long end = (extents.get(i)[1] + sector - 1) / sector * sector;
                end = Math.min(end, size);
                for (long hi = end; hi > start; ) {
                    long lo = Math.max(start, hi - DiskOps.CHUNK);
                    MemorySegment part = buf.asSlice(0, hi - lo);
                    budget -= hi - lo;
                    if (budget < 0) {
                        return -1;
                    }
                    d.read(lo, part);
                    for (long s = hi - lo - sector; s >= 0; s -= sector) {
                        if (!isZero(part, s, sector)) {
                            return lo + s + sector;
                        }
                    }
                    hi = lo;
                }
            }
        }
        return sector;
    }

    /**
     * Resize-VHD {@code -ToMinimumSize}: shrinks the image to its {@link #minimumSize} rounded up to 1 MiB
     * (never grows it) and returns the new size. A VHDX that still stores zero-filled blocks past that point
     * (which its shrink refuses: they are allocated) is compacted first (full mode: zero blocks dropped,
     * identity kept), then shrunk. VHD images never shrink: refused, as for {@code resize --shrink}.
     */
    public static long shrinkToMinimum(Path path, Progress progress) throws IOException {
        long min;
        long current;
        try (VirtualDisk d = io.phost.vhdx.VirtualDisks.open(path, true)) {
            min = minimumSize(d, Long.MAX_VALUE);
            current = d.size();
        }
        long target = Math.min(current, (min + (1 << 20) - 1) & -(1L << 20));
        if (target == current) {
            return current;
        }
        try {
            return DiskOps.resize(path, target, true, progress);
        } catch (IllegalArgumentException refused) {
            if (io.phost.vhdx.VirtualDisks.detect(path) != io.phost.vhdx.DiskFormat.VHDX) {
                throw refused;
            }
            DiskOps.compact(path, CompactMode.FULL, progress); // drops the zero blocks the shrink tripped on
            return DiskOps.resize(path, target, true, progress);
        }
    }

    private static boolean isZero(MemorySegment seg, long off, int len) {
        for (long i = 0; i < len; i += 8) {
            if (seg.get(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED, off + i) != 0) {
                return false;
            }
        }
        return true;
    }

    /**
     * Get-VHD's FragmentationPercentage: of the blocks this file stores, taken in virtual order, the share
     * whose data does not follow the previous stored block's in the file (0 for fixed and raw images, whose
     * data is laid out in order, and for images with fewer than two blocks).
     */
    public static int fragmentationPercentage(VirtualDisk d) {
        long blockSize;
        long prev = -1;
        long pairs = 0;
        long breaks = 0;
        switch (d) {
            case VhdxDisk x -> {
                blockSize = x.blockSize();
                for (long b = 0; b < x.blockCount(); b++) {
                    long at = x.blockFileOffset(b);
                    if (at <= 0) {
                        continue;
                    }
                    if (prev > 0) {
                        pairs++;
                        breaks += at == prev + blockSize ? 0 : 1;
                    }
                    prev = at;
                }
            }
            case VhdDisk v -> {
                blockSize = v.blockSize();
                for (int b = 0; b < v.blockCount(); b++) {
                    long at = v.blockFileOffset(b);
                    if (at < 0) {
                        continue;
                    }
                    if (prev >= 0) {
                        pairs++;
                        long step = at - prev;
                        // in order: the next block follows after the data, its bitmap (at most 64 KiB) and the
                        // gap to 4 KiB alignment
                        breaks += step > blockSize && step <= blockSize + 65536 + 4096 ? 0 : 1;
                    }
                    prev = at;
                }
            }
            default -> {
                return 0;
            }
        }
        return pairs == 0 ? 0 : (int) Math.round(100.0 * breaks / pairs);
    }
}
