package io.phost.vhdx.vhdx;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * A log replayed in memory for a read-only open: file reads are patched with the pages (and zero
 * ranges) the active log sequence would have written. Pages win over zero ranges because a page that
 * survives in the map was written after every zero range that covers it (a later zero range removes it).
 */
final class Overlay {
    private final TreeMap<Long, byte[]> pages = new TreeMap<>();
    private final List<long[]> zeros = new ArrayList<>();

    void apply(VhdxLog.Update u) {
        if (u.page() != null) {
            pages.put(u.fileOffset(), u.page());
        } else {
            long end = u.fileOffset() + u.zeroLength();
            pages.subMap(u.fileOffset(), true, end, false).clear();
            zeros.add(new long[] {u.fileOffset(), end});
        }
    }

    boolean isEmpty() {
        return pages.isEmpty() && zeros.isEmpty();
    }

    /** Patches {@code dst[dstOff, +len)}, which holds file bytes from {@code fileOff}. */
    void patch(long fileOff, MemorySegment dst, long dstOff, long len) {
        long end = fileOff + len;
        for (long[] z : zeros) {
            long s = Math.max(z[0], fileOff);
            long e = Math.min(z[1], end);
            if (s < e) {
                dst.asSlice(dstOff + (s - fileOff), e - s).fill((byte) 0);
            }
        }
        long first = fileOff - (fileOff % LogDescriptor.SECTOR);
        for (Map.Entry<Long, byte[]> p : pages.subMap(first, true, end, false).entrySet()) {
            long ps = p.getKey();
            long s = Math.max(ps, fileOff);
            long e = Math.min(ps + LogDescriptor.SECTOR, end);
            if (s < e) {
                MemorySegment.copy(MemorySegment.ofArray(p.getValue()), s - ps, dst, dstOff + (s - fileOff), e - s);
            }
        }
    }

    void patch(long fileOff, byte[] dst, int off, int len) {
        patch(fileOff, MemorySegment.ofArray(dst), off, len);
    }
}
