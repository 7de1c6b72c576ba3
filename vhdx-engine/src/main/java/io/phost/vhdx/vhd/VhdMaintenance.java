package io.phost.vhdx.vhd;

import io.phost.core.sys.PosixFile;


import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;

import static io.phost.vhdx.vhd.VhdFormatException.Reason;

/**
 * Offline VHD maintenance: resize, compact, set-parent, check/repair. Each works on a closed image (no other
 * opener) and orders its writes so a crash leaves either the old or the new image readable:
 * <ul>
 *   <li>resize: the new footer is written past the new end before anything points there;</li>
 *   <li>compact: in place, each block copied and made durable before the BAT points at it ({@link VhdCompactInPlace});</li>
 *   <li>set-parent: new locator data is appended first, the dynamic header (one sector) is rewritten last.</li>
 * </ul>
 */
public final class VhdMaintenance {
    private static final ValueLayout.OfInt U32 = VhdFooter.U32;

    private VhdMaintenance() {}

    // ------------------------------------------------------------------------------------------ resize

    /**
     * Grows a VHD to at least {@code newSize} bytes and returns the size it now has. Images sized by CHS
     * geometry (creator "vpc " or "qemu") grow to the next size their geometry can express, as qemu does when
     * it creates one; others get exactly {@code newSize}. Shrinking is refused: VHD has no way to say which
     * tail sectors a guest still uses.
     */
    public static long resize(Path path, long newSize) throws IOException {
        if (newSize <= 0 || newSize % VhdDisk.SECTOR != 0) {
            throw new IllegalArgumentException("size must be a positive multiple of 512: " + newSize);
        }
        if (newSize > VhdFooter.MAX_SIZE) {
            throw new VhdFormatException(Reason.TOO_LARGE, 0, "size " + newSize + " over the 2040 GiB VHD limit");
        }
        try (PosixFile f = PosixFile.open(path, false); Arena arena = Arena.ofConfined()) {
            VhdOpen.Parsed p = VhdOpen.parse(f, arena);
            if (p.footerFromCopy()) {
                throw new VhdFormatException(Reason.BAD_FOOTER_CHECKSUM, p.footerOffset(),
                    "the footer is damaged; run check --repair first");
            }
            long oldSize = p.size();
            VhdFooter footer = p.footer();
            boolean chs = VhdDisk.virtualSize(footer) == footer.geometrySectors() * VhdDisk.SECTOR
                && !List.of("win ", "qem2", "d2v ", "CTXS", "tap\0").contains(footer.creatorApp());
            int[] geo;
            long actual = newSize;
            if (chs) {
                long sectors = newSize / VhdDisk.SECTOR;
                geo = VhdFooter.geometryFor(newSize);
                for (int i = 0; sectors > (long) geo[0] * geo[1] * geo[2]; i++) {
                    geo = VhdFooter.geometryFor((sectors + i) * VhdDisk.SECTOR);
                    if ((long) geo[0] * geo[1] * geo[2] == VhdFooter.MAX_GEOMETRY_SECTORS) {
                        break;
                    }
                }
                long g = (long) geo[0] * geo[1] * geo[2];
                actual = g == VhdFooter.MAX_GEOMETRY_SECTORS ? newSize : g * VhdDisk.SECTOR;
            } else {
                geo = VhdFooter.geometryFor(newSize);
            }
            if (actual < oldSize) {
                throw new VhdFormatException(Reason.UNSUPPORTED, p.footerOffset() + VhdFooter.CURRENT_SIZE_OFFSET,
                    "VHD images cannot shrink (" + oldSize + " -> " + newSize + ")");
            }
            if (actual == oldSize) {
                return oldSize;
            }
            MemorySegment oldFooter = arena.allocate(VhdFooter.LENGTH);
            MemorySegment.copy(footer.segment(), 0, oldFooter, 0, VhdFooter.LENGTH);
            // Original size follows too (as Hyper-V's Resize-VHD does): tools that trust it must see the new size.
            footer.currentSize(actual).originalSize(actual).geometry(geo[0], geo[1], geo[2]).sealChecksum();
            if (p.header() == null) {
                // Fixed: extend, new footer at the new end, then zero where the old footer was, then trim.
                f.truncate(actual + VhdFooter.LENGTH);
                f.fallocate(0, oldSize, actual - oldSize);
                f.writeFully(footer.segment(), actual);
                MemorySegment zeros = arena.allocate(VhdFooter.LENGTH);
                f.writeFully(zeros, p.footerOffset());
                f.dataSync();
                return actual;
            }
            VhdDynamicHeader h = p.header();
            long headerOffset = footer.dataOffset();
            long needed = VhdDisk.ceilDiv(actual, h.blockSize());
            long end = p.footerOffset();
            if (needed > h.maxTableEntries()) {
                // The BAT must grow: write a bigger one at the end of the file, then point the header at it.
                long batBytes = (needed * 4 + VhdDisk.SECTOR - 1) & -VhdDisk.SECTOR;
                long newBat = (end + VhdDisk.SECTOR - 1) & -VhdDisk.SECTOR;
                MemorySegment bat = arena.allocate(batBytes, 8);
                bat.fill((byte) 0xFF);
                for (int i = 0; i < p.bat().length; i++) {
                    bat.set(U32, 4L * i, p.bat()[i]);
                }
                long oldEntries = h.maxTableEntries();
                // Entries between the used count and the old table size are copied as they are (padding).
                if (oldEntries > p.bat().length) {
                    long extra = Math.min(oldEntries, needed) - p.bat().length;
                    MemorySegment tail = arena.allocate(extra * 4, 8);
                    f.readFully(tail, h.tableOffset() + 4L * p.bat().length);
                    MemorySegment.copy(tail, 0, bat, 4L * p.bat().length, extra * 4);
                }
                // Crash-safe order: (1) the new BAT and the *old* footer at the new end: still the old image;
                // (2) the header points at the bigger BAT: the old size over a table with spare entries;
                // (3) the new footer. A kill between any two steps leaves an image that opens (old or new size).
                long newEnd = newBat + batBytes;
                f.writeFully(oldFooter, newEnd);
                f.writeFully(bat, newBat);
                if (newBat > end) {
                    f.writeFully(arena.allocate(newBat - end), end);
                }
                f.dataSync();
                h.tableOffset(newBat).maxTableEntries(needed).sealChecksum();
                f.writeFully(h.segment(), headerOffset);
                f.dataSync();
                end = newEnd;
            }
            f.writeFully(footer.segment(), end);
            f.writeFully(footer.segment(), 0);
            f.dataSync();
            return actual;
        }
    }

    // ------------------------------------------------------------------------------------------ compact

    /** Bytes of the file before and after {@link #compact}. */
    public record CompactResult(long fileBytesBefore, long fileBytesAfter, int blocksReleased) {
    }

    /**
     * Compacts a dynamic or differencing VHD in place (the same file: children stay linked, see
     * {@link VhdCompactInPlace}). Dynamic: blocks that read as zeros are released, differencing: blocks whose
     * bitmap is empty (zeros in a child hide the parent and are kept); the last blocks then move into the
     * space released, and the file is cut. A fixed VHD is refused: it has nothing to release (the image tools
     * leave it unchanged, as Optimize-VHD does).
     */
    public static CompactResult compact(Path path) throws IOException {
        long before = Files.size(path);
        int released = VhdCompactInPlace.compact(path);
        return new CompactResult(before, Files.size(path), released);
    }

    // ------------------------------------------------------------------------------------------ set-parent

    /**
     * Points differencing disk {@code child} at {@code parent}. The parent's unique id must equal the one the
     * child was made from (the linkage), unless {@code force}; the locators (W2ku, W2ru), parent name and
     * timestamp are rewritten.
     */
    public static void setParent(Path child, Path parent, boolean force) throws IOException {
        byte[] parentId;
        long parentTimestamp;
        try (VhdDisk p = VhdDisk.open(parent, true)) {
            parentId = p.uniqueId();
            parentTimestamp = p.footer().timestamp();
        }
        try (PosixFile f = PosixFile.open(child, false); Arena arena = Arena.ofConfined()) {
            VhdOpen.Parsed c = VhdOpen.parse(f, arena);
            if (c.footer().diskType() != VhdFooter.TYPE_DIFFERENCING) {
                throw new VhdFormatException(Reason.UNSUPPORTED, c.footerOffset() + VhdFooter.DISK_TYPE_OFFSET,
                    child + " is not a differencing disk");
            }
            VhdDynamicHeader h = c.header();
            long headerOffset = c.footer().dataOffset();
            if (!Arrays.equals(parentId, h.parentUniqueId()) && !force) {
                throw new VhdFormatException(Reason.PARENT_MISMATCH, headerOffset + VhdDynamicHeader.PARENT_UNIQUE_ID_OFFSET,
                    parent + " has unique id " + HexFormat.of().formatHex(parentId) + ", the child was made from "
                        + HexFormat.of().formatHex(h.parentUniqueId()));
            }
            Path parentAbs = parent.toAbsolutePath().normalize();
            Path childDir = child.toAbsolutePath().normalize().getParent();
            String relative = childDir.relativize(parentAbs).toString();
            String[] paths = {parentAbs.toString().replace('/', '\\'),
                (relative.startsWith("..") ? relative : "./" + relative).replace('/', '\\')};
            int[] codes = {VhdDynamicHeader.PLATFORM_W2KU, VhdDynamicHeader.PLATFORM_W2RU};
            long end = c.footerOffset();
            long start = end;
            List<long[]> placed = new ArrayList<>();
            MemorySegment all = arena.allocate(2L * 2 * 65536 + 1024, 8);
            long used = 0;
            for (String s : paths) {
                byte[] b = s.getBytes(StandardCharsets.UTF_16LE);
                long space = (b.length + VhdDisk.SECTOR - 1) & -VhdDisk.SECTOR;
                MemorySegment.copy(MemorySegment.ofArray(b), 0, all, used, b.length);
                placed.add(new long[] {end + used, b.length, space});
                used += space;
            }
            // 1. New footer past the new locator data; 2. the data; 3. the header that points at it.
            f.writeFully(c.footer().segment(), start + used);
            f.writeFully(all.asSlice(0, used), start);
            f.dataSync();
            h.parent(parentId, parentTimestamp, parentAbs.getFileName().toString());
            for (int i = 0; i < VhdDynamicHeader.LOCATOR_COUNT; i++) {
                h.locator(i, 0, 0, 0, 0);
            }
            for (int i = 0; i < placed.size(); i++) {
                long[] pl = placed.get(i);
                h.locator(i, codes[i], pl[2] / VhdDisk.SECTOR, pl[1], pl[0]);
            }
            h.sealChecksum();
            f.writeFully(h.segment(), headerOffset);
            f.dataSync();
        }
        // Prove the new linkage opens.
        try (VhdDisk d = VhdDisk.open(child, true)) {
            if (!d.parentPath().toRealPath().equals(parent.toRealPath())) {
                throw new VhdFormatException(Reason.PARENT_NOT_FOUND, 0,
                    "after set-parent the child resolves " + d.parentPath() + " instead of " + parent);
            }
        }
    }

    // ------------------------------------------------------------------------------------------ check

    /** What {@link #check} found: problems (errors), notes (harmless), what it repaired, and if it could open. */
    public record CheckResult(List<String> problems, List<String> notes, List<String> repaired, boolean readable) {
    }

    /**
     * Checks a VHD: footer and its copy (checksums, agreement), dynamic header, BAT bounds and overlaps (what
     * {@link VhdDisk#open} enforces), parent linkage, unreferenced space. With {@code repair}: a damaged footer
     * is rewritten from its copy and a damaged or stale copy from the footer; nothing else is safe to guess.
     */
    public static CheckResult check(Path path, boolean repair) throws IOException {
        List<String> problems = new ArrayList<>();
        List<String> notes = new ArrayList<>();
        List<String> repaired = new ArrayList<>();
        try (PosixFile f = PosixFile.open(path, !repair); Arena arena = Arena.ofConfined()) {
            VhdOpen.Parsed p;
            try {
                p = VhdOpen.parse(f, arena);
            } catch (VhdFormatException e) {
                problems.add(e.getMessage());
                return new CheckResult(problems, notes, repaired, false);
            }
            VhdFooter footer = p.footer();
            if (p.footerFromCopy()) {
                problems.add("footer at " + p.footerOffset() + " is damaged; the copy at offset 0 is intact");
                if (repair) {
                    f.writeFully(footer.segment(), p.footerOffset());
                    f.dataSync();
                    repaired.add("footer rewritten from the copy at offset 0");
                }
            } else if (p.header() != null) {
                VhdFooter copy = new VhdFooter(arena.allocate(VhdFooter.LENGTH, 8));
                f.readFully(copy.segment(), 0);
                if (copy.segment().mismatch(footer.segment()) != -1) {
                    VhdFormatException bad = VhdOpen.footerProblem(copy, 0);
                    problems.add("footer copy at offset 0 " + (bad != null ? "is damaged: " + bad.getMessage()
                        : "differs from the footer"));
                    if (repair) {
                        f.writeFully(footer.segment(), 0);
                        f.dataSync();
                        repaired.add("footer copy at offset 0 rewritten from the footer");
                    }
                }
            }
            long geo = footer.geometrySectors() * VhdDisk.SECTOR;
            if (geo != footer.currentSize()) {
                notes.add("CHS geometry gives " + geo + " bytes, current size is " + footer.currentSize()
                    + "; creator \"" + footer.creatorApp() + "\" means we (and qemu) use " + p.size());
            }
            if (p.header() != null) {
                long blockBytes = VhdDisk.bitmapBytesFor(p.header().blockSize()) + p.header().blockSize();
                long used = 0;
                for (int e : p.bat()) {
                    if (e != -1) {
                        used += blockBytes;
                    }
                }
                long overhead = VhdFooter.LENGTH * 2L + VhdDynamicHeader.LENGTH + p.header().maxTableEntries() * 4;
                long unreferenced = p.fileSize() - used - overhead;
                if (unreferenced > 64L * 1024 + blockBytes / 8) {
                    notes.add(unreferenced + " bytes of the file are not referenced by the BAT (compact reclaims them)");
                }
            } else if (p.fileSize() != p.size() + VhdFooter.LENGTH) {
                notes.add("fixed disk file is " + p.fileSize() + " bytes for a " + p.size() + "-byte disk");
            }
        }
        try (VhdDisk d = VhdDisk.open(path, true)) {
            if (d.parent() != null) {
                long expected = d.header().parentTimestamp();
                long actual = d.parent().footer().timestamp();
                if (expected != actual) {
                    notes.add("parent timestamp " + actual + " differs from the " + expected
                        + " recorded in the child (the unique id matches)");
                }
                if (d.parent().size() != d.size()) {
                    notes.add("parent is " + d.parent().size() + " bytes, child " + d.size());
                }
            }
        } catch (VhdFormatException e) {
            problems.add(e.getMessage());
            return new CheckResult(problems, notes, repaired, false);
        }
        return new CheckResult(problems, notes, repaired, true);
    }
}
