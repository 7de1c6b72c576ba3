package io.phost.vhdx.ops;

import io.phost.vhdx.AllocationMap;
import io.phost.vhdx.VirtualDisk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * The copy behind {@code convert -n}, {@code -B}, {@code -S} and {@code --target-is-zero}, and behind
 * {@code rebase}: makes {@code out} read what {@code in} reads over {@code [0, length)}, writing only where
 * {@code out} would otherwise read something else. What {@code out} reads before the copy is one of:
 * <pre>
 *   Baseline.ZEROS     a new image, or -n --target-is-zero     write granules that hold data
 *   Baseline.UNKNOWN   an existing image (-n)                  write data; zero runs become writeZeroes
 *   Baseline.DISK      a backing image (-B), a new parent      write granules that differ from it
 * </pre>
 * Granules are {@code granule} bytes, aligned (qemu-img's {@code -S}, default 4 KiB); {@code granule} 0
 * writes every granule it looks at as data (qemu's {@code -S 0}: no holes in a new image). Ranges that no
 * allocation map involved marks as possibly holding data are not read. Single-threaded, 1 MiB at a time.
 */
final class ImageCopy {
    enum Baseline { ZEROS, UNKNOWN, DISK }

    /** Granule for compact QUICK: allocated extents are written as they read, gaps stay holes. */
    static final long AS_IS = -1;

    private ImageCopy() {}

    static DiskOps.CopyResult copy(VirtualDisk in, VirtualDisk out, long length, Baseline baseline, VirtualDisk base,
                                   long granule, Progress progress) throws IOException {
        if (granule != AS_IS) {
            ImageConvert.checkGranule(granule);
        }
        long readable = length & -512L;
        AllocationMap src = Allocations.of(in);
        AllocationMap other = baseline == Baseline.DISK ? Allocations.of(base) : null;
        long written = 0;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(DiskOps.CHUNK, 4096);
            MemorySegment ref = arena.allocate(DiskOps.CHUNK, 4096); // zeros, or the baseline image's data
            for (long off = 0; off < readable; ) {
                long n = Math.min(DiskOps.CHUNK - off % DiskOps.CHUNK, readable - off);
                if (other == null) {
                    written += copyExtents(in, out, src, off, n, baseline, granule, buf, ref);
                    off += n;
                    progress.update(off, readable);
                    continue;
                }
                boolean srcData = mayHoldData(src, off, n);
                boolean baseData = mayHoldData(other, off, n);
                if (srcData || baseData) {
                    MemorySegment part = buf.asSlice(0, n);
                    if (srcData) {
                        in.read(off, part);
                    } else {
                        part.fill((byte) 0);
                    }
                    MemorySegment against = ref.asSlice(0, n);
                    if (baseData) {
                        base.read(off, against);
                    } else {
                        against.fill((byte) 0);
                    }
                    written += writeRuns(out, off, part, against, baseline, granule == 0 ? 512 : granule);
                }
                off += n;
                progress.update(off, readable);
            }
        }
        return new DiskOps.CopyResult(written, readable - written);
    }

    /**
     * One chunk against zeros (no baseline image): only the source's allocated extents are read and judged
     * (as qemu-img reads only what block status calls data), each in granules aligned to the disk offset; an
     * extent not aligned to the granule is judged whole. Gaps: UNKNOWN baseline writes zeroes, -S 0 writes
     * zeros as data, otherwise they stay holes.
     */
    private static long copyExtents(VirtualDisk in, VirtualDisk out, AllocationMap src, long off, long n, Baseline baseline,
                                    long granule, MemorySegment buf, MemorySegment zeros) throws IOException {
        long end = off + n;
        long written = 0;
        zeros.asSlice(0, n).fill((byte) 0);
        for (long pos = off; pos < end; ) {
            long e0 = Math.min(Math.max(src.nextAllocated(pos) & -512L, pos), end);
            if (e0 > pos) {
                written += gap(out, pos, e0 - pos, baseline, granule, zeros);
            }
            if (e0 >= end) {
                break;
            }
            long e1 = Math.min((src.nextUnallocated(e0) + 511) & -512L, end);
            e1 = e1 <= e0 ? Math.min(e0 + 512, end) : e1;
            MemorySegment part = buf.asSlice(0, e1 - e0);
            in.read(e0, part);
            written += writeRuns(out, e0, part, zeros.asSlice(0, e1 - e0), baseline, granule);
            pos = e1;
        }
        return written;
    }

    private static long gap(VirtualDisk out, long at, long len, Baseline baseline, long granule, MemorySegment zeros)
        throws IOException {
        if (baseline == Baseline.UNKNOWN) {
            out.writeZeroes(at, len); // nothing to read: the source reads zeros here
        } else if (granule == 0) {
            out.write(at, zeros.asSlice(0, len)); // -S 0: fully allocated
            return len;
        }
        return 0;
    }

    private static boolean mayHoldData(AllocationMap m, long off, long n) throws IOException {
        return m.nextAllocated(off) < off + n;
    }

    /**
     * Writes the granules of {@code part} that differ from {@code against} (the baseline's data, or zeros),
     * merged into runs; with an UNKNOWN baseline the zero granules are written too, as writeZeroes. {@code g}
     * 0 (-S 0): the whole chunk is written as data. A chunk not aligned to the granule is judged whole.
     */
    private static long writeRuns(VirtualDisk out, long at, MemorySegment part, MemorySegment against, Baseline baseline,
                                  long g) throws IOException {
        long n = part.byteSize();
        if (g == 0 || g == AS_IS) {
            out.write(at, part);
            return n;
        }
        if (at % g != 0 || n % g != 0) {
            g = n;
        }
        long written = 0;
        long runStart = -1;
        int runKind = 0;
        for (long p = 0; p <= n; p += g) {
            int kind; // 0 nothing to do, 1 data, 2 zeroes; -1 the end
            if (p == n) {
                kind = -1;
            } else if (MemorySegment.mismatch(part, p, p + g, against, p, p + g) == -1) {
                kind = baseline == Baseline.UNKNOWN ? 2 : 0; // reads as the target already does (UNKNOWN: zeros)
            } else {
                kind = 1;
            }
            if (runStart >= 0 && kind != runKind) {
                if (runKind == 1) {
                    out.write(at + runStart, part.asSlice(runStart, p - runStart));
                    written += p - runStart;
                } else {
                    out.writeZeroes(at + runStart, p - runStart);
                }
                runStart = -1;
            }
            if (runStart < 0 && kind > 0) {
                runStart = p;
                runKind = kind;
            }
        }
        return written;
    }
}
