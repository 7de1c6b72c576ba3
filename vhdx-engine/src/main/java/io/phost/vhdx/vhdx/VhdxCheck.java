package io.phost.vhdx.vhdx;

import io.phost.vhdx.DiskType;

import io.phost.core.sys.PosixFile;

import io.phost.vhdx.VhdxFormatException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Consistency check and repair for {@code phost vhd check}. {@link #check} never modifies the file;
 * {@link #repair} replays a dirty log, rewrites a damaged header or region table copy from the good one,
 * and leaves everything else alone (nothing else is safely fixable without guessing).
 */
public final class VhdxCheck {
    public enum Severity {
        /** The image cannot be opened, or data may be wrong. */
        ERROR,
        /** The image opens and reads correctly, but a redundant copy is bad or repair would change something. */
        WARNING,
        /** Worth reporting, harmless (e.g. space no BAT entry references). */
        INFO
    }

    /** One problem, located by file offset. {@code code} is a stable name (a Reason name for errors). */
    public record Finding(Severity severity, String code, long fileOffset, String message) {
        @Override
        public String toString() {
            return severity + " " + code + " at fileOffset=" + fileOffset + ": " + message;
        }
    }

    /** The findings; {@link #clean()} when none is an ERROR or WARNING. */
    public record Report(Path path, List<Finding> findings) {
        public boolean clean() {
            return findings.stream().noneMatch(f -> f.severity() != Severity.INFO);
        }

        public boolean hasErrors() {
            return findings.stream().anyMatch(f -> f.severity() == Severity.ERROR);
        }
    }

    private VhdxCheck() {}

    /** Checks without writing. I/O failures throw; format problems become findings. */
    public static Report check(Path path) throws IOException {
        List<Finding> out = new ArrayList<>();
        try (PosixFile f = PosixFile.open(path, true)) {
            long size = f.size();
            int sectionLength = (int) (RegionTableDescriptor.TABLE_2_FILE_OFFSET + RegionTableDescriptor.TABLE_LENGTH);
            if (size >= sectionLength) {
                byte[] section = new byte[sectionLength];
                f.read(0, section, 0, sectionLength);
                try {
                    VhdxParser.Header h = VhdxParser.parseHeaders(section);
                    if (!h.otherValid()) {
                        out.add(new Finding(Severity.WARNING, "HEADER_COPY_BAD",
                            VhdxHeaderDescriptor.headerFileOffset(1 - h.slot()), "header " + (2 - h.slot()) + ": " + h.otherProblem()));
                    }
                    for (int copy = 0; copy < 2; copy++) {
                        try {
                            VhdxParser.parseRegionTable(section, copy, size, h);
                        } catch (VhdxFormatException e) {
                            out.add(new Finding(Severity.WARNING, "REGION_TABLE_COPY_BAD", e.fileOffset(), e.getMessage()));
                        }
                    }
                } catch (VhdxFormatException e) {
                    // reported by the full open below
                }
            }
        }
        VhdxDisk d;
        try {
            d = VhdxDisk.open(path, true);
        } catch (VhdxFormatException e) {
            out.add(new Finding(Severity.ERROR, e.reason().name(), e.fileOffset(), e.getMessage()));
            return new Report(path, List.copyOf(out));
        }
        try (d) {
            if (d.logState() == VhdxDisk.LogState.REPLAYED_IN_MEMORY) {
                out.add(new Finding(Severity.WARNING, "DIRTY_LOG", d.logOffset(),
                    "the log holds " + d.replayedEntries() + " entries not yet applied (repair replays them; reads already see them)"));
            }
            scanBat(d, out);
        }
        return new Report(path, List.copyOf(out));
    }

    private static void scanBat(VhdxDisk d, List<Finding> out) throws IOException {
        long[] bat = d.batSnapshot();
        int cr = d.chunkRatio();
        long batOffset = d.batOffset();
        long fileSize = d.fileSize();
        long[] starts = new long[bat.length];
        long[] lens = new long[bat.length];
        int[] index = new int[bat.length];
        int n = 0;
        long maxEnd = 0;
        for (int i = 0; i < bat.length; i++) {
            long e = bat[i];
            boolean isBitmap = (i % (cr + 1)) == cr;
            if ((e & BatDescriptor.RESERVED_MASK) != 0) {
                out.add(new Finding(Severity.WARNING, "BAT_RESERVED_BITS", batOffset + i * 8L,
                    String.format("BAT entry %d has reserved bits set: 0x%016x", i, e)));
            }
            int st = BatDescriptor.state(e);
            long off = BatDescriptor.fileOffset(e);
            if (isBitmap && st == BatDescriptor.SB_PRESENT && d.type() != DiskType.DIFFERENCING) {
                out.add(new Finding(Severity.WARNING, "SECTOR_BITMAP_WITHOUT_PARENT", batOffset + i * 8L,
                    "sector bitmap entry " + i + " is PRESENT in an image without a parent"));
                continue;
            }
            boolean allocated = isBitmap ? st == BatDescriptor.SB_PRESENT
                : st == BatDescriptor.PAYLOAD_FULLY_PRESENT || st == BatDescriptor.PAYLOAD_PARTIALLY_PRESENT;
            if (!allocated) {
                continue;
            }
            long len = isBitmap ? BatDescriptor.SECTOR_BITMAP_BLOCK_LENGTH : d.blockSize();
            if (off < 0) {
                // FileOffsetMB >= 2^43 scales past 2^63: no such file offset exists (checked before any sum).
                out.add(new Finding(Severity.ERROR, "BAT_OFFSET_OVERFLOW", batOffset + i * 8L,
                    "BAT entry " + i + " FileOffsetMB " + (e >>> BatDescriptor.FILE_OFFSET_SHIFT)
                        + " overflows a 64-bit file offset"));
                continue;
            }
            if (off == 0) {
                out.add(new Finding(Severity.ERROR, "BAT_ENTRY_AT_ZERO", batOffset + i * 8L,
                    "BAT entry " + i + " is allocated at FileOffsetMB 0 (the header section)"));
                continue;
            }
            starts[n] = off;
            lens[n] = len;
            index[n] = i;
            maxEnd = Math.max(maxEnd, off > fileSize - len ? fileSize : off + len);
            if (off > fileSize - len) {
                out.add(new Finding(Severity.ERROR, "BAT_ENTRY_BEYOND_EOF", batOffset + i * 8L,
                    "block at " + off + " ends past the file size " + fileSize));
            }
            n++;
        }
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) {
            order[i] = i;
        }
        final long[] s = starts;
        Arrays.sort(order, (a, b) -> Long.compare(s[a], s[b]));
        for (int k = 1; k < n; k++) {
            int a = order[k - 1];
            int b = order[k];
            if (starts[b] < starts[a] + lens[a]) {
                out.add(new Finding(Severity.ERROR, "BLOCKS_OVERLAP", batOffset + index[b] * 8L,
                    "BAT entries " + index[a] + " and " + index[b] + " share file space at " + starts[b]));
            }
        }
        long metaEnd = d.metadataEnd();
        long referencedEnd = Math.max(maxEnd, metaEnd);
        if (fileSize > VhdxDisk.roundUp(referencedEnd, 1 << 20)) {
            out.add(new Finding(Severity.INFO, "UNREFERENCED_TAIL", referencedEnd,
                (fileSize - referencedEnd) + " bytes at the end of the file are referenced by no BAT entry (compact reclaims them)"));
        }
    }

    /**
     * Repairs what is safely repairable: replays a dirty log into the file, rewrites a bad header copy
     * (both headers are rewritten) and a bad region table copy from the good one. Returns the report of a
     * fresh check afterwards.
     */
    public static Report repair(Path path) throws IOException {
        Report before = check(path);
        if (before.hasErrors()) {
            return before;
        }
        try (VhdxDisk d = VhdxDisk.open(path, false)) {
            boolean headers = before.findings().stream().anyMatch(x -> x.code().equals("HEADER_COPY_BAD"));
            boolean table = before.findings().stream().anyMatch(x -> x.code().equals("REGION_TABLE_COPY_BAD"));
            if (headers) {
                d.maintenance.rewriteHeaders();
            }
            if (table) {
                d.maintenance.rewriteRegionTables();
            }
        }
        return check(path);
    }
}
