package io.phost.vhdx.ops;

import io.phost.vhdx.AllocationMap;
import io.phost.vhdx.VirtualDisk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Compares what two disks read ({@code qemu-img compare}): any formats, chains read as a whole. Ranges
 * neither disk's allocation map says may hold data are skipped unread. When the sizes differ, the larger
 * disk's extra area must read as zeros (unless {@code strict}, where differing sizes are a mismatch).
 */
public final class ImageCompare {
    private ImageCompare() {}

    /** The outcome: identical, or the first differing byte offset (or the smaller size when strict). */
    public record Result(boolean identical, long firstMismatch, String reason) {
    }

    public static Result compare(VirtualDisk a, VirtualDisk b, boolean strict, Progress progress) throws IOException {
        if (strict && a.size() != b.size()) {
            return new Result(false, Math.min(a.size(), b.size()), "image sizes differ: " + a.size() + " and " + b.size());
        }
        long size = Math.max(a.size(), b.size()) & -512L;
        AllocationMap ma = Allocations.of(a);
        AllocationMap mb = Allocations.of(b);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ba = arena.allocate(DiskOps.CHUNK, 4096);
            MemorySegment bb = arena.allocate(DiskOps.CHUNK, 4096);
            long off = 0;
            while (off < size) {
                long next = Math.min(next(ma, a, off), next(mb, b, off));
                if (next >= size) {
                    break;
                }
                long end = Math.min(Math.min(chunkEnd(next), size), Math.max(end(ma, a, next), end(mb, b, next)));
                if (end <= next) {
                    end = Math.min(next + 512, size);
                }
                long n = end - next;
                read(a, next, ba.asSlice(0, n));
                read(b, next, bb.asSlice(0, n));
                long m = MemorySegment.mismatch(ba, 0, n, bb, 0, n);
                if (m >= 0) {
                    return new Result(false, next + m, "content mismatch at offset " + (next + m));
                }
                off = end;
                progress.update(off, size);
            }
        }
        progress.update(size, size);
        return new Result(true, -1, "images are identical");
    }

    private static long chunkEnd(long off) {
        return (off / DiskOps.CHUNK + 1) * DiskOps.CHUNK;
    }

    private static long next(AllocationMap m, VirtualDisk d, long off) throws IOException {
        return off >= d.size() ? Long.MAX_VALUE : m.nextAllocated(off) >= d.size() ? Long.MAX_VALUE : m.nextAllocated(off);
    }

    private static long end(AllocationMap m, VirtualDisk d, long off) throws IOException {
        if (off >= d.size() || m.nextAllocated(off) > off) {
            return off;
        }
        return Math.min(m.nextUnallocated(off), d.size());
    }

    /** Reads {@code dst.byteSize()} bytes at {@code off}; bytes past the disk's end read as zeros. */
    private static void read(VirtualDisk d, long off, MemorySegment dst) throws IOException {
        long have = Math.max(0, Math.min(dst.byteSize(), (d.size() & -512L) - off));
        if (have > 0) {
            d.read(off, dst.asSlice(0, have));
        }
        if (have < dst.byteSize()) {
            dst.asSlice(have).fill((byte) 0);
        }
    }
}
