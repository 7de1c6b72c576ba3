package io.phost.vhdx.ops;

import io.phost.vhdx.AllocationMap;
import io.phost.vhdx.VirtualDisk;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * Extents of an open disk (a differencing chain as a whole), as {@code qemu-img map} lists them: runs that
 * may hold data and runs that read as zeros without being stored. "Data" is conservative (a stored run may
 * still read zeros); a zero run never holds data anywhere in the chain.
 */
public final class ImageMap {
    private ImageMap() {}

    /** One run of the virtual disk. */
    public record Extent(long start, long length, boolean data) {
        public String toJson() {
            return "{\"start\": " + start + ", \"length\": " + length + ", \"data\": " + data
                + ", \"zero\": " + !data + "}";
        }
    }

    /** Every extent, in order, covering [0, size) with adjacent runs of the same kind merged. */
    public static List<Extent> of(VirtualDisk d) throws IOException {
        AllocationMap map = Allocations.of(d);
        long size = d.size();
        List<Extent> out = new ArrayList<>();
        long off = 0;
        while (off < size) {
            long data = Math.min(map.nextAllocated(off), size);
            if (data > off) {
                add(out, off, data - off, false);
                off = data;
                continue;
            }
            long end = Math.min(map.nextUnallocated(off), size);
            if (end <= off) {
                end = Math.min(off + 512, size);
            }
            add(out, off, end - off, true);
            off = end;
        }
        return out;
    }

    private static void add(List<Extent> out, long start, long length, boolean data) {
        if (!out.isEmpty() && out.getLast().data() == data) {
            Extent last = out.removeLast();
            out.add(new Extent(last.start(), last.length() + length, data));
        } else {
            out.add(new Extent(start, length, data));
        }
    }

    /** The extents as a JSON array, one object a line (qemu-img map --output=json's shape). */
    public static String toJson(List<Extent> extents) {
        StringBuilder b = new StringBuilder("[");
        for (int i = 0; i < extents.size(); i++) {
            b.append(i == 0 ? "" : ",\n").append(extents.get(i).toJson());
        }
        return b.append("]").toString();
    }
}
