package io.phost.vhdx.vhd;

import io.phost.core.sys.PosixFile;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;

import static io.phost.vhdx.vhd.VhdFormatException.Reason;
import static io.phost.vhdx.vhd.VhdDisk.*;

/**
 * Opening a VHD: reads and validates footer, dynamic header and BAT against the file size, and finds and
 * checks the parent chain of a differencing disk. {@link VhdDisk#open} comes here; {@link VhdMaintenance}
 * parses through {@link #parse} too.
 */
final class VhdOpen {
    private VhdOpen() {
    }

    static VhdDisk open(Path path, boolean readOnly, int depth, List<Path> seen) throws IOException {
        if (depth >= MAX_CHAIN_DEPTH) {
            // Same limit as VHDX: a chain holds at most MAX_CHAIN_DEPTH images, the child included.
            throw new VhdFormatException(Reason.CHAIN_TOO_DEEP, 0, "parent chain longer than " + MAX_CHAIN_DEPTH + " images");
        }
        Path real = path.toRealPath();
        if (seen.contains(real)) {
            throw new VhdFormatException(Reason.CHAIN_TOO_DEEP, 0, "parent chain loops back to " + real);
        }
        seen.add(real);
        PosixFile file = PosixFile.open(path, readOnly);
        Arena arena = Arena.ofAuto(); // GC-managed: closing a shared arena costs a handshake with every thread
        VhdDisk parent = null;
        try {
            Parsed p = parse(file, arena);
            Path parentPath = null;
            if (p.footer.diskType() == VhdFooter.TYPE_DIFFERENCING) {
                parentPath = locateParent(file, p.header, p.footer.dataOffset(), path);
                parent = open(parentPath, true, depth + 1, seen);
                byte[] expected = p.header.parentUniqueId();
                byte[] actual = parent.footer.uniqueId();
                if (!Arrays.equals(expected, actual)) {
                    throw new VhdFormatException(Reason.PARENT_MISMATCH,
                        p.footer.dataOffset() + VhdDynamicHeader.PARENT_UNIQUE_ID_OFFSET,
                        "parent " + parentPath + " has unique id " + HexFormat.of().formatHex(actual)
                            + ", the child expects " + HexFormat.of().formatHex(expected));
                }
            }
            return new VhdDisk(file, arena, p.footer, p.header, p.size, p.bat, parent, parentPath, p.footerOffset);
        } catch (IOException | RuntimeException | Error e) {
            if (parent != null) {
                parent.close();
            }
            file.close();
            throw e;
        }
    }

    /** What {@link #parse} learned: validated structures. */
    record Parsed(VhdFooter footer, VhdDynamicHeader header, long size, int[] bat, long footerOffset,
                  long fileSize, boolean footerFromCopy) {
    }

    /**
     * Reads and validates footer, dynamic header and BAT. Every number from the file is checked with 64-bit
     * arithmetic against the file size before use; nothing is allocated by a size the file claims beyond
     * what the file itself holds.
     */
    static Parsed parse(PosixFile file, Arena arena) throws IOException {
        long fileSize = file.size();
        if (fileSize < VhdFooter.LENGTH) {
            throw new VhdFormatException(Reason.TRUNCATED, 0, "file of " + fileSize + " bytes cannot hold a footer");
        }
        long footerOffset = fileSize - VhdFooter.LENGTH;
        VhdFooter footer = new VhdFooter(arena.allocate(VhdFooter.LENGTH, 8));
        file.readFully(footer.segment(), footerOffset);
        boolean fromCopy = false;
        VhdFormatException footerProblem = footerProblem(footer, footerOffset);
        if (footerProblem != null) {
            // The copy at offset 0 (dynamic/differencing disks) stands in for a damaged footer, as in qemu.
            VhdFooter copy = new VhdFooter(arena.allocate(VhdFooter.LENGTH, 8));
            file.readFully(copy.segment(), 0);
            if (footerProblem(copy, 0) != null || copy.diskType() == VhdFooter.TYPE_FIXED) {
                throw footerProblem;
            }
            footer = copy;
            fromCopy = true;
        }
        int type = footer.diskType();
        if (type != VhdFooter.TYPE_FIXED && type != VhdFooter.TYPE_DYNAMIC && type != VhdFooter.TYPE_DIFFERENCING) {
            throw new VhdFormatException(Reason.BAD_DISK_TYPE, footerOffset + VhdFooter.DISK_TYPE_OFFSET,
                "disk type " + type);
        }
        long size = virtualSize(footer);
        long sizeFieldOffset = footerOffset + VhdFooter.CURRENT_SIZE_OFFSET;
        if (size <= 0) {
            throw new VhdFormatException(Reason.BAD_SIZE, sizeFieldOffset, "virtual size " + size);
        }
        if (size > VhdFooter.MAX_SIZE) {
            // virtualSize() caps what it returns; name the field's own (unsigned) value, not the cap
            throw new VhdFormatException(Reason.TOO_LARGE, sizeFieldOffset,
                "virtual size " + Long.toUnsignedString(footer.currentSize()) + " over the 2040 GiB VHD limit");
        }
        if (type == VhdFooter.TYPE_FIXED) {
            if (size > footerOffset) {
                throw new VhdFormatException(Reason.TRUNCATED, sizeFieldOffset,
                    "fixed disk of " + size + " bytes in a file of " + fileSize);
            }
            return new Parsed(footer, null, size, null, footerOffset, fileSize, fromCopy);
        }
        long headerOffset = footer.dataOffset();
        long dataOffsetField = footerOffset + VhdFooter.DATA_OFFSET_OFFSET;
        if (headerOffset < VhdFooter.LENGTH || headerOffset > footerOffset - VhdDynamicHeader.LENGTH
            || (headerOffset & (SECTOR - 1)) != 0) {
            throw new VhdFormatException(Reason.BAD_DATA_OFFSET, dataOffsetField, "dynamic header offset " + headerOffset);
        }
        VhdDynamicHeader header = new VhdDynamicHeader(arena.allocate(VhdDynamicHeader.LENGTH, 8));
        file.readFully(header.segment(), headerOffset);
        if (!header.hasCookie()) {
            throw new VhdFormatException(Reason.BAD_HEADER_COOKIE, headerOffset, "no cxsparse cookie");
        }
        if (header.checksum() != header.computeChecksum()) {
            throw new VhdFormatException(Reason.BAD_HEADER_CHECKSUM, headerOffset + VhdDynamicHeader.CHECKSUM_OFFSET,
                String.format("stored=0x%08x computed=0x%08x", header.checksum(), header.computeChecksum()));
        }
        if ((header.headerVersion() >>> 16) != 1) {
            throw new VhdFormatException(Reason.BAD_HEADER_VERSION, headerOffset + VhdDynamicHeader.HEADER_VERSION_OFFSET,
                String.format("version 0x%08x", header.headerVersion()));
        }
        long blockSize = header.blockSize();
        if (blockSize < SECTOR || blockSize > VhdDynamicHeader.MAX_BLOCK_SIZE || Long.bitCount(blockSize) != 1) {
            throw new VhdFormatException(Reason.BAD_BLOCK_SIZE, headerOffset + VhdDynamicHeader.BLOCK_SIZE_OFFSET,
                "block size " + blockSize);
        }
        long entries = header.maxTableEntries();
        long needed = ceilDiv(size, blockSize);
        if (entries < needed) {
            throw new VhdFormatException(Reason.BAT_TOO_SMALL, headerOffset + VhdDynamicHeader.MAX_TABLE_ENTRIES_OFFSET,
                entries + " BAT entries for " + needed + " blocks");
        }
        long tableOffset = header.tableOffset();
        long tableField = headerOffset + VhdDynamicHeader.TABLE_OFFSET_OFFSET;
        // entries <= 2^32 and tableOffset is checked first, so the products below cannot overflow.
        if (tableOffset < VhdFooter.LENGTH || tableOffset > footerOffset
            || entries * 4 > footerOffset - tableOffset) {
            throw new VhdFormatException(Reason.BAT_OUT_OF_FILE, tableField,
                "BAT of " + entries + " entries at " + tableOffset + " in a file of " + fileSize);
        }
        if (overlaps(tableOffset, entries * 4, headerOffset, VhdDynamicHeader.LENGTH)) {
            throw new VhdFormatException(Reason.BAT_OUT_OF_FILE, tableField, "BAT overlaps the dynamic header");
        }
        // We only keep the entries the virtual size uses; the rest are padding (and are still in the file).
        int[] bat = new int[(int) needed];
        readBat(file, arena, tableOffset, bat);
        long bitmapBytes = bitmapBytesFor(blockSize);
        long blockBytes = bitmapBytes + blockSize;
        long[] starts = new long[bat.length];
        int allocated = 0;
        for (int i = 0; i < bat.length; i++) {
            long sector = Integer.toUnsignedLong(bat[i]);
            if (sector == VhdDynamicHeader.UNALLOCATED) {
                continue;
            }
            long start = sector * SECTOR;
            long entryOffset = tableOffset + 4L * i;
            if (start < VhdFooter.LENGTH || start > footerOffset - blockBytes) {
                throw new VhdFormatException(Reason.BLOCK_OUT_OF_FILE, entryOffset,
                    "block " + i + " at " + start + " (+" + blockBytes + ") outside the data area ending at " + footerOffset);
            }
            if (overlaps(start, blockBytes, headerOffset, VhdDynamicHeader.LENGTH)
                || overlaps(start, blockBytes, tableOffset, entries * 4)) {
                throw new VhdFormatException(Reason.BLOCK_OVERLAP, entryOffset,
                    "block " + i + " at " + start + " overlaps the header or BAT");
            }
            starts[allocated++] = start;
        }
        Arrays.sort(starts, 0, allocated);
        for (int i = 1; i < allocated; i++) {
            if (starts[i] - starts[i - 1] < blockBytes) {
                throw new VhdFormatException(Reason.BLOCK_OVERLAP, tableOffset,
                    "blocks at " + starts[i - 1] + " and " + starts[i] + " overlap");
            }
        }
        return new Parsed(footer, header, size, bat, footerOffset, fileSize, fromCopy);
    }

    static boolean overlaps(long a, long aLen, long b, long bLen) {
        return a < b + bLen && b < a + aLen;
    }

    static void readBat(PosixFile file, Arena arena, long tableOffset, int[] bat) throws IOException {
        int chunk = 64 * 1024;
        try (Arena tmp = Arena.ofConfined()) {
            MemorySegment buf = tmp.allocate(chunk, 8);
            for (int i = 0; i < bat.length; ) {
                int n = Math.min(chunk / 4, bat.length - i);
                MemorySegment part = buf.asSlice(0, n * 4L);
                file.readFully(part, tableOffset + 4L * i);
                for (int j = 0; j < n; j++) {
                    bat[i + j] = part.get(U32, 4L * j);
                }
                i += n;
            }
        }
    }

    /** Null when the footer is usable, else why not. */
    static VhdFormatException footerProblem(VhdFooter f, long at) {
        if (!f.hasCookie()) {
            return new VhdFormatException(Reason.BAD_FOOTER_COOKIE, at, "no conectix cookie");
        }
        if (f.checksum() != f.computeChecksum()) {
            return new VhdFormatException(Reason.BAD_FOOTER_CHECKSUM, at + VhdFooter.CHECKSUM_OFFSET,
                String.format("stored=0x%08x computed=0x%08x", f.checksum(), f.computeChecksum()));
        }
        if ((f.version() >>> 16) != 1) {
            return new VhdFormatException(Reason.BAD_VERSION, at + VhdFooter.VERSION_OFFSET,
                String.format("file format version 0x%08x", f.version()));
        }
        return null;
    }

    /**
     * Finds the parent: W2ru (relative to the child's directory), then W2ku (absolute), then MacX, then the
     * parent's name beside the child. Windows separators become '/', and a drive prefix ("C:") is dropped.
     */
    static Path locateParent(PosixFile file, VhdDynamicHeader h, long headerOffset, Path child) throws IOException {
        long fileSize = file.size();
        List<String> tried = new ArrayList<>();
        int[] order = {VhdDynamicHeader.PLATFORM_W2RU, VhdDynamicHeader.PLATFORM_W2KU, VhdDynamicHeader.PLATFORM_MACX};
        Path dir = child.toAbsolutePath().getParent();
        for (int code : order) {
            for (int i = 0; i < VhdDynamicHeader.LOCATOR_COUNT; i++) {
                if (h.locatorCode(i) != code) {
                    continue;
                }
                long len = h.locatorLength(i);
                long off = h.locatorDataOffset(i);
                if (len == 0) {
                    continue;
                }
                if (len > MAX_LOCATOR_LENGTH || off < 0 || off > fileSize || len > fileSize - off) {
                    throw new VhdFormatException(Reason.BAD_LOCATOR, headerOffset + VhdDynamicHeader.locator(i),
                        "locator " + i + " of " + len + " bytes at " + off + " in a file of " + fileSize);
                }
                byte[] raw = new byte[(int) len];
                file.readFully(MemorySegment.ofArray(raw), off);
                String s = code == VhdDynamicHeader.PLATFORM_MACX
                    ? new String(raw, StandardCharsets.UTF_8)
                    : new String(raw, StandardCharsets.UTF_16LE);
                Path candidate = toLocalPath(s, dir, code);
                if (candidate == null) {
                    continue;
                }
                tried.add(candidate.toString());
                if (Files.isRegularFile(candidate)) { // follows links; never a FIFO or device (a hostile locator could hang us)
                    return candidate;
                }
            }
        }
        String name = h.parentName();
        if (!name.isEmpty()) {
            String leaf = name.replace('\\', '/');
            leaf = leaf.substring(leaf.lastIndexOf('/') + 1);
            if (!leaf.isEmpty() && !leaf.equals("..") && !leaf.equals(".")) {
                Path candidate = dir.resolve(leaf);
                tried.add(candidate.toString());
                if (Files.isRegularFile(candidate)) {
                    return candidate;
                }
            }
        }
        throw new VhdFormatException(Reason.PARENT_NOT_FOUND, headerOffset + VhdDynamicHeader.LOCATORS_OFFSET,
            "parent \"" + name + "\" not found; tried " + tried);
    }

    static Path toLocalPath(String s, Path dir, int code) {
        int nul = s.indexOf('\0');
        if (nul >= 0) {
            s = s.substring(0, nul);
        }
        if (s.isEmpty()) {
            return null;
        }
        try {
            if (code == VhdDynamicHeader.PLATFORM_MACX) {
                if (s.startsWith("file://")) {
                    s = s.substring("file://".length());
                }
                return Path.of(s);
            }
            s = s.replace('\\', '/');
            if (s.length() >= 2 && Character.isLetter(s.charAt(0)) && s.charAt(1) == ':') {
                s = s.substring(2);
            }
            if (code == VhdDynamicHeader.PLATFORM_W2RU) {
                return dir.resolve(s).normalize();
            }
            return Path.of(s);
        } catch (java.nio.file.InvalidPathException e) {
            return null;
        }
    }

}
