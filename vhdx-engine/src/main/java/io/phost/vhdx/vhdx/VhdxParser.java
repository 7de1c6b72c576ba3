package io.phost.vhdx.vhdx;

import io.phost.core.sys.PosixFile;

import static io.phost.vhdx.VhdxFormatException.Reason.*;

import io.phost.vhdx.Crc32c;
import io.phost.vhdx.VhdxFormatException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * Parses and validates every structure of a VHDX file before anything is used. Every number read from
 * the file is checked with exact 64-bit arithmetic against the file size and the format's limits; every
 * allocation is bounded by the file size or a fixed cap.
 */
final class VhdxParser {
    /** The current header and which slot holds it; {@code otherValid} says whether the other copy is good. */
    record Header(int slot, long sequence, UUID fileWriteGuid, UUID dataWriteGuid, UUID logGuid,
                  int logVersion, int version, long logLength, long logOffset, boolean otherValid,
                  String otherProblem) {}

    record Region(UUID guid, long fileOffset, long length, boolean required) {}

    /** Everything open() needs, validated. */
    static final class Parsed {
        long fileSize;
        Header header;
        Region bat;
        Region metadata;
        List<Region> regions = new ArrayList<>();
        boolean regionTable2Valid;
        String regionTableProblem;
        int blockSize;
        boolean leaveBlocksAllocated;
        boolean hasParent;
        long virtualSize;
        UUID virtualDiskId;
        int logicalSectorSize;
        int physicalSectorSize;
        Map<String, String> parentLocator;
        int chunkRatio;
        long dataBlocks;
        long totalBatEntries;
        long[] batEntries;
        VhdxLog.Plan logPlan;
        Overlay overlay;
        /** Set before parsing: a read-only open tolerates allocated blocks that overlap each other (with a warning). */
        boolean readOnly;
        /** Why the image may not be opened read-write (blocks overlap), or null. */
        String overlapWarning;
    }

    /** Anything that reads file bytes: the file itself, patched by an in-memory replay on read-only opens. */
    interface Source {
        void read(long fileOffset, byte[] dst, int off, int len) throws IOException;
    }

    private VhdxParser() {}

    static Header parseHeaders(byte[] section) throws VhdxFormatException {
        Header[] h = new Header[2];
        String[] problem = new String[2];
        for (int slot = 0; slot < 2; slot++) {
            int base = (int) VhdxHeaderDescriptor.headerFileOffset(slot);
            int sig = Le.i32(section, base);
            if (sig != VhdxHeaderDescriptor.SIGNATURE) {
                problem[slot] = "BAD_SIGNATURE at fileOffset=" + base;
                continue;
            }
            int want = Crc32c.compute(section, base, VhdxHeaderDescriptor.HEADER_LENGTH, VhdxHeaderDescriptor.CHECKSUM_OFFSET);
            int have = Le.i32(section, base + VhdxHeaderDescriptor.CHECKSUM_OFFSET);
            if (want != have) {
                problem[slot] = "BAD_CHECKSUM at fileOffset=" + (base + 4) + String.format(": expected=0x%08x actual=0x%08x", want, have);
                continue;
            }
            h[slot] = new Header(slot, Le.i64(section, base + VhdxHeaderDescriptor.SEQUENCE_NUMBER_OFFSET),
                Le.guid(section, base + VhdxHeaderDescriptor.FILE_WRITE_GUID_OFFSET),
                Le.guid(section, base + VhdxHeaderDescriptor.DATA_WRITE_GUID_OFFSET),
                Le.guid(section, base + VhdxHeaderDescriptor.LOG_GUID_OFFSET),
                Le.u16(section, base + VhdxHeaderDescriptor.LOG_VERSION_OFFSET),
                Le.u16(section, base + VhdxHeaderDescriptor.VERSION_OFFSET),
                Le.u32(section, base + VhdxHeaderDescriptor.LOG_LENGTH_OFFSET),
                Le.i64(section, base + VhdxHeaderDescriptor.LOG_OFFSET_OFFSET), false, null);
        }
        int cur;
        if (h[0] == null && h[1] == null) {
            throw new VhdxFormatException(NO_VALID_HEADER, VhdxHeaderDescriptor.HEADER_1_FILE_OFFSET,
                "header 1: " + problem[0] + "; header 2: " + problem[1]);
        } else if (h[0] == null) {
            cur = 1;
        } else if (h[1] == null) {
            cur = 0;
        } else {
            cur = Long.compareUnsigned(h[0].sequence(), h[1].sequence()) >= 0 ? 0 : 1;
        }
        Header c = h[cur];
        long at = VhdxHeaderDescriptor.headerFileOffset(cur);
        if (c.version() != VhdxHeaderDescriptor.VERSION) {
            throw new VhdxFormatException(UNSUPPORTED_VERSION, at + VhdxHeaderDescriptor.VERSION_OFFSET, "header version " + c.version());
        }
        if (c.logVersion() != VhdxHeaderDescriptor.LOG_VERSION) {
            throw new VhdxFormatException(UNSUPPORTED_VERSION, at + VhdxHeaderDescriptor.LOG_VERSION_OFFSET, "log version " + c.logVersion());
        }
        return new Header(c.slot(), c.sequence(), c.fileWriteGuid(), c.dataWriteGuid(), c.logGuid(), c.logVersion(),
            c.version(), c.logLength(), c.logOffset(), h[1 - cur] != null, problem[1 - cur]);
    }

    /** Validates the log region's placement (done whether or not the log is empty). */
    static void checkLogRegion(Header h, long fileSize) throws VhdxFormatException {
        long at = VhdxHeaderDescriptor.headerFileOffset(h.slot()) + VhdxHeaderDescriptor.LOG_OFFSET_OFFSET;
        long mb = RegionTableDescriptor.ALIGNMENT;
        if (h.logOffset() < VhdxHeaderDescriptor.HEADER_SECTION_LENGTH || h.logOffset() % mb != 0) {
            throw new VhdxFormatException(OUT_OF_BOUNDS, at, "LogOffset " + Long.toUnsignedString(h.logOffset()) + " not a 1 MiB multiple >= 1 MiB");
        }
        if (h.logLength() % mb != 0 || h.logLength() == 0) {
            throw new VhdxFormatException(OUT_OF_BOUNDS, at - 4, "LogLength " + h.logLength() + " not a non-zero 1 MiB multiple");
        }
        if (h.logOffset() > fileSize - h.logLength()) {
            throw new VhdxFormatException(OUT_OF_BOUNDS, at, "log [" + h.logOffset() + ", +" + h.logLength() + ") beyond file size " + fileSize);
        }
    }

    static List<Region> parseRegionTable(byte[] section, int copy, long fileSize, Header h) throws VhdxFormatException {
        int base = (int) RegionTableDescriptor.tableFileOffset(copy);
        if (Le.i32(section, base) != RegionTableDescriptor.SIGNATURE) {
            throw new VhdxFormatException(BAD_SIGNATURE, base, "region table " + (copy + 1));
        }
        int want = Crc32c.compute(section, base, RegionTableDescriptor.TABLE_LENGTH, RegionTableDescriptor.CHECKSUM_OFFSET);
        int have = Le.i32(section, base + RegionTableDescriptor.CHECKSUM_OFFSET);
        if (want != have) {
            throw new VhdxFormatException(BAD_CHECKSUM, base + 4,
                String.format("region table %d expected=0x%08x actual=0x%08x", copy + 1, want, have));
        }
        long count = Le.u32(section, base + RegionTableDescriptor.ENTRY_COUNT_OFFSET);
        if (count > RegionTableDescriptor.MAX_ENTRIES) {
            throw new VhdxFormatException(BAD_REGION_TABLE, base + RegionTableDescriptor.ENTRY_COUNT_OFFSET, "EntryCount " + count + " > 2047");
        }
        List<Region> out = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            int e = base + RegionTableDescriptor.ENTRIES_OFFSET + i * RegionTableDescriptor.ENTRY_LENGTH;
            UUID guid = Le.guid(section, e);
            long off = Le.i64(section, e + RegionTableDescriptor.ENTRY_FILE_OFFSET_OFFSET);
            long len = Le.u32(section, e + RegionTableDescriptor.ENTRY_LENGTH_OFFSET);
            boolean required = (Le.i32(section, e + RegionTableDescriptor.ENTRY_REQUIRED_OFFSET) & 1) != 0;
            boolean known = guid.equals(RegionTableDescriptor.BAT_REGION) || guid.equals(RegionTableDescriptor.METADATA_REGION);
            if (!known && required) {
                throw new VhdxFormatException(UNKNOWN_REQUIRED_REGION, e, "region " + guid + " is required and unknown");
            }
            long mb = RegionTableDescriptor.ALIGNMENT;
            if (off < VhdxHeaderDescriptor.HEADER_SECTION_LENGTH || off % mb != 0 || len == 0 || len % mb != 0) {
                throw new VhdxFormatException(BAD_REGION_TABLE, e + 16, "region " + guid + " at " + Long.toUnsignedString(off) + " length " + len + " not 1 MiB aligned");
            }
            if (off > fileSize - len) {
                throw new VhdxFormatException(OUT_OF_BOUNDS, e + 16, "region " + guid + " [" + off + ", +" + len + ") beyond file size " + fileSize);
            }
            for (Region r : out) {
                if (r.guid().equals(guid)) {
                    throw new VhdxFormatException(BAD_REGION_TABLE, e, "region " + guid + " listed twice");
                }
                if (off < r.fileOffset() + r.length() && r.fileOffset() < off + len) {
                    throw new VhdxFormatException(OVERLAP, e + 16, "region " + guid + " overlaps region " + r.guid());
                }
            }
            if (off < h.logOffset() + h.logLength() && h.logOffset() < off + len) {
                throw new VhdxFormatException(OVERLAP, e + 16, "region " + guid + " overlaps the log");
            }
            out.add(new Region(guid, off, len, required));
        }
        return out;
    }

    /** Parses everything after the log has been replayed (into the file, or into {@code src}'s overlay). */
    static void parseRegionsAndMetadata(Parsed p, byte[] section, Source src) throws IOException {
        List<Region> regions = null;
        VhdxFormatException first = null;
        for (int copy = 0; copy < 2; copy++) {
            try {
                List<Region> r = parseRegionTable(section, copy, p.fileSize, p.header);
                if (regions == null) {
                    regions = r;
                } else {
                    p.regionTable2Valid = true;
                }
            } catch (VhdxFormatException e) {
                if (first == null) {
                    first = e;
                    p.regionTableProblem = e.getMessage();
                } else if (regions != null) {
                    p.regionTableProblem = e.getMessage();
                }
            }
        }
        if (regions == null) {
            throw first;
        }
        p.regions = regions;
        for (Region r : regions) {
            if (r.guid().equals(RegionTableDescriptor.BAT_REGION)) {
                p.bat = r;
            } else if (r.guid().equals(RegionTableDescriptor.METADATA_REGION)) {
                p.metadata = r;
            }
        }
        if (p.bat == null || p.metadata == null) {
            throw new VhdxFormatException(MISSING_STRUCTURE, RegionTableDescriptor.TABLE_1_FILE_OFFSET,
                p.bat == null ? "no BAT region" : "no metadata region");
        }
        parseMetadata(p, src);
        loadBat(p, src);
    }

    private static void parseMetadata(Parsed p, Source src) throws IOException {
        long base = p.metadata.fileOffset();
        if (p.metadata.length() < MetadataDescriptor.TABLE_LENGTH) {
            throw new VhdxFormatException(BAD_METADATA, base, "metadata region shorter than its table");
        }
        byte[] table = new byte[MetadataDescriptor.TABLE_LENGTH];
        src.read(base, table, 0, table.length);
        if (Le.i64(table, 0) != MetadataDescriptor.SIGNATURE) {
            throw new VhdxFormatException(BAD_SIGNATURE, base, "metadata table signature");
        }
        int count = Le.u16(table, MetadataDescriptor.ENTRY_COUNT_OFFSET);
        if (count > MetadataDescriptor.MAX_ENTRIES) {
            throw new VhdxFormatException(BAD_METADATA, base + MetadataDescriptor.ENTRY_COUNT_OFFSET, "EntryCount " + count + " > 2047");
        }
        Map<UUID, byte[]> items = new LinkedHashMap<>();
        Map<UUID, Long> itemOffsets = new LinkedHashMap<>();
        for (int i = 0; i < count; i++) {
            int e = MetadataDescriptor.ENTRIES_OFFSET + i * MetadataDescriptor.ENTRY_LENGTH;
            UUID id = Le.guid(table, e);
            long off = Le.u32(table, e + MetadataDescriptor.ENTRY_OFFSET_OFFSET);
            long len = Le.u32(table, e + MetadataDescriptor.ENTRY_LENGTH_OFFSET);
            int flags = Le.i32(table, e + MetadataDescriptor.ENTRY_FLAGS_OFFSET);
            long at = base + e;
            boolean known = id.equals(MetadataDescriptor.FILE_PARAMETERS) || id.equals(MetadataDescriptor.VIRTUAL_DISK_SIZE)
                || id.equals(MetadataDescriptor.VIRTUAL_DISK_ID) || id.equals(MetadataDescriptor.LOGICAL_SECTOR_SIZE)
                || id.equals(MetadataDescriptor.PHYSICAL_SECTOR_SIZE) || id.equals(MetadataDescriptor.PARENT_LOCATOR);
            if (!known) {
                if ((flags & MetadataDescriptor.FLAG_IS_REQUIRED) != 0) {
                    throw new VhdxFormatException(UNKNOWN_REQUIRED_METADATA, at, "metadata item " + id + " is required and unknown");
                }
                continue;
            }
            if (len > MetadataDescriptor.MAX_ITEM_LENGTH) {
                throw new VhdxFormatException(BAD_METADATA, at + 20, "item " + id + " length " + len + " > 1 MiB");
            }
            if (len != 0 && (off < MetadataDescriptor.TABLE_LENGTH || off + len > p.metadata.length())) {
                throw new VhdxFormatException(OUT_OF_BOUNDS, at + 16, "item " + id + " [" + off + ", +" + len + ") outside the metadata region");
            }
            if (items.containsKey(id)) {
                throw new VhdxFormatException(BAD_METADATA, at, "item " + id + " listed twice");
            }
            byte[] data = new byte[(int) len];
            src.read(base + off, data, 0, data.length);
            items.put(id, data);
            itemOffsets.put(id, base + off);
        }
        byte[] fp = need(items, MetadataDescriptor.FILE_PARAMETERS, 8, base, "file parameters");
        long fpAt = itemOffsets.get(MetadataDescriptor.FILE_PARAMETERS);
        long bs = Le.u32(fp, 0);
        int fpFlags = Le.i32(fp, 4);
        if (bs < MetadataDescriptor.MIN_BLOCK_SIZE || bs > MetadataDescriptor.MAX_BLOCK_SIZE || Long.bitCount(bs) != 1) {
            throw new VhdxFormatException(BAD_BLOCK_SIZE, fpAt, "BlockSize " + bs);
        }
        p.blockSize = (int) bs;
        p.leaveBlocksAllocated = (fpFlags & MetadataDescriptor.FILE_PARAMETERS_LEAVE_BLOCKS_ALLOCATED) != 0;
        p.hasParent = (fpFlags & MetadataDescriptor.FILE_PARAMETERS_HAS_PARENT) != 0;

        byte[] ls = need(items, MetadataDescriptor.LOGICAL_SECTOR_SIZE, 4, base, "logical sector size");
        long lss = Le.u32(ls, 0);
        if (lss != 512 && lss != 4096) {
            throw new VhdxFormatException(BAD_SECTOR_SIZE, itemOffsets.get(MetadataDescriptor.LOGICAL_SECTOR_SIZE), "logical sector size " + lss);
        }
        p.logicalSectorSize = (int) lss;
        byte[] ps = need(items, MetadataDescriptor.PHYSICAL_SECTOR_SIZE, 4, base, "physical sector size");
        long pss = Le.u32(ps, 0);
        if (pss != 512 && pss != 4096) {
            throw new VhdxFormatException(BAD_SECTOR_SIZE, itemOffsets.get(MetadataDescriptor.PHYSICAL_SECTOR_SIZE), "physical sector size " + pss);
        }
        p.physicalSectorSize = (int) pss;
        byte[] vs = need(items, MetadataDescriptor.VIRTUAL_DISK_SIZE, 8, base, "virtual disk size");
        long size = Le.i64(vs, 0);
        if (size <= 0 || size > MetadataDescriptor.MAX_VIRTUAL_DISK_SIZE || size % p.logicalSectorSize != 0) {
            throw new VhdxFormatException(BAD_VIRTUAL_SIZE, itemOffsets.get(MetadataDescriptor.VIRTUAL_DISK_SIZE),
                "VirtualDiskSize " + Long.toUnsignedString(size) + " (limit 64 TiB, multiple of " + p.logicalSectorSize + ")");
        }
        p.virtualSize = size;
        byte[] id = need(items, MetadataDescriptor.VIRTUAL_DISK_ID, 16, base, "virtual disk id");
        p.virtualDiskId = Le.guid(id, 0);
        if (p.hasParent) {
            byte[] loc = items.get(MetadataDescriptor.PARENT_LOCATOR);
            if (loc == null) {
                throw new VhdxFormatException(MISSING_STRUCTURE, base, "HasParent set but no parent locator");
            }
            p.parentLocator = parseLocator(loc, itemOffsets.get(MetadataDescriptor.PARENT_LOCATOR));
        }
        p.chunkRatio = BatDescriptor.chunkRatio(p.logicalSectorSize, p.blockSize);
        p.dataBlocks = (p.virtualSize + p.blockSize - 1) / p.blockSize;
        p.totalBatEntries = BatDescriptor.totalEntries(p.dataBlocks, p.chunkRatio, p.hasParent);
    }

    private static byte[] need(Map<UUID, byte[]> items, UUID id, int minLength, long base, String what) throws VhdxFormatException {
        byte[] b = items.get(id);
        if (b == null) {
            throw new VhdxFormatException(MISSING_STRUCTURE, base, "required metadata item missing: " + what);
        }
        if (b.length < minLength) {
            throw new VhdxFormatException(BAD_METADATA, base, what + " item is " + b.length + " bytes, need " + minLength);
        }
        return b;
    }

    static Map<String, String> parseLocator(byte[] loc, long at) throws VhdxFormatException {
        if (loc.length < MetadataDescriptor.LOCATOR_HEADER_LENGTH) {
            throw new VhdxFormatException(BAD_PARENT_LOCATOR, at, "locator shorter than its header");
        }
        UUID type = Le.guid(loc, 0);
        if (!type.equals(MetadataDescriptor.VHDX_PARENT_LOCATOR_TYPE)) {
            throw new VhdxFormatException(BAD_PARENT_LOCATOR, at, "locator type " + type + " is not the VHDX locator");
        }
        int count = Le.u16(loc, 18);
        if ((long) MetadataDescriptor.LOCATOR_HEADER_LENGTH + (long) count * MetadataDescriptor.LOCATOR_ENTRY_LENGTH > loc.length) {
            throw new VhdxFormatException(BAD_PARENT_LOCATOR, at + 18, "KeyValueCount " + count + " does not fit");
        }
        Map<String, String> kv = new LinkedHashMap<>();
        for (int i = 0; i < count; i++) {
            int e = MetadataDescriptor.LOCATOR_HEADER_LENGTH + i * MetadataDescriptor.LOCATOR_ENTRY_LENGTH;
            long ko = Le.u32(loc, e);
            long vo = Le.u32(loc, e + 4);
            int kl = Le.u16(loc, e + 8);
            int vl = Le.u16(loc, e + 10);
            if (ko + kl > loc.length || vo + vl > loc.length || kl == 0 || (kl & 1) != 0 || (vl & 1) != 0) {
                throw new VhdxFormatException(BAD_PARENT_LOCATOR, at + e, "key/value " + i + " out of bounds or odd length");
            }
            String k = new String(loc, (int) ko, kl, StandardCharsets.UTF_16LE);
            String v = new String(loc, (int) vo, vl, StandardCharsets.UTF_16LE);
            if (kv.put(k, v) != null) {
                throw new VhdxFormatException(BAD_PARENT_LOCATOR, at + e, "key " + k + " appears twice");
            }
        }
        if (!kv.containsKey("parent_linkage")) {
            throw new VhdxFormatException(BAD_PARENT_LOCATOR, at, "no parent_linkage key");
        }
        return kv;
    }

    private static void loadBat(Parsed p, Source src) throws IOException {
        long need = Math.multiplyExact(p.totalBatEntries, BatDescriptor.ENTRY_LENGTH);
        if (need > p.bat.length()) {
            throw new VhdxFormatException(BAT_TOO_SMALL, p.bat.fileOffset(),
                "BAT region " + p.bat.length() + " bytes, need " + need + " for " + p.totalBatEntries + " entries");
        }
        // Bounded: need <= BAT region length <= file size (checked with the region table).
        long[] bat = new long[(int) p.totalBatEntries];
        byte[] buf = new byte[(int) Math.min(1 << 20, need)];
        long done = 0;
        long effectiveSize = Math.max(p.fileSize, p.logPlan == null ? 0 : p.logPlan.lastFileOffset());
        while (done < need) {
            int n = (int) Math.min(buf.length, need - done);
            src.read(p.bat.fileOffset() + done, buf, 0, n);
            for (int i = 0; i < n; i += 8) {
                bat[(int) ((done + i) >>> 3)] = Le.i64(buf, i);
            }
            done += n;
        }
        // Allocated blocks as sort keys: the file offset (1 MiB aligned) with bit 0 set for a sector bitmap.
        long[] allocated = new long[bat.length];
        int allocatedCount = 0;
        List<Region> forbidden = new ArrayList<>(p.regions);
        forbidden.add(new Region(null, p.header.logOffset(), p.header.logLength(), true));
        forbidden.add(new Region(null, 0, VhdxHeaderDescriptor.HEADER_SECTION_LENGTH, true));
        for (int i = 0; i < bat.length; i++) {
            long e = bat[i];
            int state = BatDescriptor.state(e);
            long off = BatDescriptor.fileOffset(e);
            boolean isBitmap = (i % (p.chunkRatio + 1)) == p.chunkRatio;
            long at = p.bat.fileOffset() + (long) i * 8;
            long len;
            if (isBitmap) {
                if (state != BatDescriptor.SB_NOT_PRESENT && state != BatDescriptor.SB_PRESENT) {
                    throw new VhdxFormatException(BAD_BAT_ENTRY, at, "sector bitmap entry state " + state);
                }
                if (state != BatDescriptor.SB_PRESENT) {
                    continue;
                }
                if (!p.hasParent) {
                    // A sector bitmap without a parent means nothing; MS-VHDX says it must be NOT_PRESENT. Ignore it.
                    continue;
                }
                len = BatDescriptor.SECTOR_BITMAP_BLOCK_LENGTH;
            } else {
                switch (state) {
                    case BatDescriptor.PAYLOAD_NOT_PRESENT, BatDescriptor.PAYLOAD_UNDEFINED,
                         BatDescriptor.PAYLOAD_ZERO, BatDescriptor.PAYLOAD_UNMAPPED -> {
                        continue;
                    }
                    case BatDescriptor.PAYLOAD_FULLY_PRESENT -> { }
                    case BatDescriptor.PAYLOAD_PARTIALLY_PRESENT -> {
                        if (!p.hasParent) {
                            throw new VhdxFormatException(BAD_BAT_ENTRY, at, "PARTIALLY_PRESENT block in an image without a parent");
                        }
                    }
                    default -> throw new VhdxFormatException(BAD_BAT_ENTRY, at, "payload entry state " + state);
                }
                len = p.blockSize;
            }
            long offsetMb = e >>> BatDescriptor.FILE_OFFSET_SHIFT;
            if (offsetMb > (Long.MAX_VALUE >>> 20)) {
                // FileOffsetMB >= 2^43: scaled to bytes it is past 2^63 (negative as a long), past every bound.
                throw new VhdxFormatException(BAD_BAT_ENTRY, at,
                    "FileOffsetMB " + offsetMb + " overflows a 64-bit file offset");
            }
            if (off == 0) {
                throw new VhdxFormatException(BAD_BAT_ENTRY, at,
                    "allocated block at FileOffsetMB 0 (the header section)");
            }
            if (off > effectiveSize - len) {
                throw new VhdxFormatException(BAD_BAT_ENTRY, at,
                    "block at " + off + " length " + len + " beyond end of file " + effectiveSize);
            }
            allocated[allocatedCount++] = off | (isBitmap ? 1 : 0);
            for (Region r : forbidden) {
                if (off < r.fileOffset() + r.length() && r.fileOffset() < off + len) {
                    throw new VhdxFormatException(BAD_BAT_ENTRY, at, "block at " + off + " overlaps a metadata structure at " + r.fileOffset());
                }
            }
        }
        p.batEntries = bat;
        checkBlocksDisjoint(p, bat, allocated, allocatedCount);
    }

    /**
     * Two allocated blocks sharing file space means a write to one changes the other's data. A read-write
     * open refuses that image ({@code OVERLAP}, at the second entry); a read-only open proceeds (the reader
     * sees what qemu sees) and records {@link Parsed#overlapWarning}. Sorting primitive keys: no boxing.
     */
    private static void checkBlocksDisjoint(Parsed p, long[] bat, long[] keys, int n) throws VhdxFormatException {
        Arrays.sort(keys, 0, n);
        long prevEnd = 0;
        long prevStart = -1;
        for (int k = 0; k < n; k++) {
            long start = keys[k] & ~1L;
            long len = (keys[k] & 1) != 0 ? BatDescriptor.SECTOR_BITMAP_BLOCK_LENGTH : p.blockSize;
            if (start < prevEnd) {
                int second = -1;
                for (int i = bat.length - 1; i >= 0 && second < 0; i--) {
                    if (isAllocated(p, bat, i) && BatDescriptor.fileOffset(bat[i]) == start) {
                        second = i;
                    }
                }
                long at = p.bat.fileOffset() + (long) second * 8;
                String msg = "block at " + start + " (BAT entry " + second + ") overlaps the block at " + prevStart;
                if (!p.readOnly) {
                    throw new VhdxFormatException(OVERLAP, at, msg + "; a write to one would change the other "
                        + "(open read-only to copy the data out; `vhd check` lists every overlap)");
                }
                p.overlapWarning = "OVERLAP at fileOffset=" + at + ": " + msg;
                return;
            }
            prevStart = start;
            prevEnd = start + len;
        }
    }

    private static boolean isAllocated(Parsed p, long[] bat, int i) {
        int state = BatDescriptor.state(bat[i]);
        if ((i % (p.chunkRatio + 1)) == p.chunkRatio) {
            return state == BatDescriptor.SB_PRESENT && p.hasParent;
        }
        return state == BatDescriptor.PAYLOAD_FULLY_PRESENT || state == BatDescriptor.PAYLOAD_PARTIALLY_PRESENT;
    }
}
