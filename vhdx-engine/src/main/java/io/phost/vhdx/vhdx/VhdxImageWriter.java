package io.phost.vhdx.vhdx;

import io.phost.vhdx.DiskType;

import io.phost.core.sys.PosixFile;

import io.phost.vhdx.Crc32c;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * Builds new images. Layout (all regions 1 MiB aligned, as qemu lays them out):
 * <pre>
 *   0 MiB  header section (identifier, 2 headers, 2 region tables)
 *   1 MiB  log (1 MiB, empty: LogGuid zero)
 *   2 MiB  metadata region (1 MiB): table at +0, items from +64 KiB
 *   3 MiB  BAT (entries * 8 rounded up to 1 MiB)
 *   ...    payload blocks (fixed: all allocated in order; dynamic/differencing: none yet)
 * </pre>
 */
final class VhdxImageWriter {
    static final long LOG_OFFSET = 1 << 20;
    static final long LOG_LENGTH = 1 << 20;
    static final long METADATA_OFFSET = 2 << 20;
    static final long METADATA_LENGTH = 1 << 20;
    static final long BAT_OFFSET = 3 << 20;

    private VhdxImageWriter() {}

    static byte[] header(long sequence, UUID fileWrite, UUID dataWrite, UUID log, long logLength, long logOffset) {
        byte[] h = new byte[VhdxHeaderDescriptor.HEADER_LENGTH];
        Le.put32(h, VhdxHeaderDescriptor.SIGNATURE_OFFSET, VhdxHeaderDescriptor.SIGNATURE);
        Le.put64(h, VhdxHeaderDescriptor.SEQUENCE_NUMBER_OFFSET, sequence);
        Le.putGuid(h, VhdxHeaderDescriptor.FILE_WRITE_GUID_OFFSET, fileWrite);
        Le.putGuid(h, VhdxHeaderDescriptor.DATA_WRITE_GUID_OFFSET, dataWrite);
        Le.putGuid(h, VhdxHeaderDescriptor.LOG_GUID_OFFSET, log);
        Le.put16(h, VhdxHeaderDescriptor.LOG_VERSION_OFFSET, VhdxHeaderDescriptor.LOG_VERSION);
        Le.put16(h, VhdxHeaderDescriptor.VERSION_OFFSET, VhdxHeaderDescriptor.VERSION);
        Le.put32(h, VhdxHeaderDescriptor.LOG_LENGTH_OFFSET, (int) logLength);
        Le.put64(h, VhdxHeaderDescriptor.LOG_OFFSET_OFFSET, logOffset);
        Le.put32(h, VhdxHeaderDescriptor.CHECKSUM_OFFSET,
            Crc32c.compute(h, 0, h.length, VhdxHeaderDescriptor.CHECKSUM_OFFSET));
        return h;
    }

    static void create(Path path, VhdxCreateOptions o) throws IOException {
        if (o.type() == DiskType.DIFFERENCING) {
            try (VhdxDisk parent = VhdxDisk.open(o.parent(), true)) {
                create(path, o, parent);
            }
        } else {
            create(path, o, null);
        }
    }

    /** {@code parent}: the differencing image's parent, already open (read-only or read-write), else null. */
    static void create(Path path, VhdxCreateOptions o, VhdxDisk parent) throws IOException {
        long size = o.size();
        int logical = o.logicalSectorSize();
        int physical = o.physicalSectorSize();
        int blockSize = o.blockSize();
        Map<String, String> locator = null;
        if (o.type() == DiskType.DIFFERENCING) {
            {
                size = parent.size();
                if (logical != 0 && logical != parent.logicalSectorSize()) {
                    throw new IllegalArgumentException("a differencing image must use the parent's logical sector size "
                        + parent.logicalSectorSize());
                }
                logical = parent.logicalSectorSize();
                physical = physical == 0 ? parent.physicalSectorSize() : physical;
                blockSize = blockSize == 0 ? parent.blockSize() : blockSize;
                locator = locator(path, o.parent(), parent.dataWriteGuid());
            }
        }
        logical = logical == 0 ? 512 : logical;
        physical = physical == 0 ? 4096 : physical;
        blockSize = blockSize == 0 ? VhdxCreateOptions.DEFAULT_BLOCK_SIZE : blockSize;
        if (logical != 512 && logical != 4096) {
            throw new IllegalArgumentException("logical sector size must be 512 or 4096: " + logical);
        }
        if (physical != 512 && physical != 4096) {
            throw new IllegalArgumentException("physical sector size must be 512 or 4096: " + physical);
        }
        if (blockSize < MetadataDescriptor.MIN_BLOCK_SIZE || blockSize > MetadataDescriptor.MAX_BLOCK_SIZE
            || Integer.bitCount(blockSize) != 1) {
            throw new IllegalArgumentException("block size must be a power of two in 1..256 MiB: " + blockSize);
        }
        if (size <= 0 || size > MetadataDescriptor.MAX_VIRTUAL_DISK_SIZE || size % logical != 0) {
            throw new IllegalArgumentException("size must be a positive multiple of " + logical + " up to 64 TiB: " + size);
        }
        boolean hasParent = locator != null;
        boolean fixed = o.type() == DiskType.FIXED;
        int chunkRatio = BatDescriptor.chunkRatio(logical, blockSize);
        long dataBlocks = (size + blockSize - 1) / blockSize;
        long entries = BatDescriptor.totalEntries(dataBlocks, chunkRatio, hasParent);
        long batLength = VhdxDisk.roundUp(entries * 8, 1 << 20);
        if (batLength > 0xFFFF_FFFFL) {
            throw new IllegalArgumentException("BAT too large");
        }
        long payloadStart = BAT_OFFSET + batLength;
        long fileLength = fixed ? payloadStart + dataBlocks * blockSize : payloadStart;

        byte[] section = new byte[(int) (RegionTableDescriptor.TABLE_2_FILE_OFFSET + RegionTableDescriptor.TABLE_LENGTH)];
        Le.put64(section, 0, VhdxHeaderDescriptor.FILE_IDENTIFIER_SIGNATURE);
        byte[] creator = "phost vhdx-engine".getBytes(StandardCharsets.UTF_16LE);
        System.arraycopy(creator, 0, section, VhdxHeaderDescriptor.CREATOR_OFFSET, creator.length);
        UUID fileWrite = UUID.randomUUID();
        UUID dataWrite = UUID.randomUUID();
        for (int slot = 0; slot < 2; slot++) {
            byte[] h = header(slot, fileWrite, dataWrite, Le.ZERO_GUID, LOG_LENGTH, LOG_OFFSET);
            System.arraycopy(h, 0, section, (int) VhdxHeaderDescriptor.headerFileOffset(slot), h.length);
        }
        byte[] rt = new byte[RegionTableDescriptor.TABLE_LENGTH];
        Le.put32(rt, 0, RegionTableDescriptor.SIGNATURE);
        Le.put32(rt, RegionTableDescriptor.ENTRY_COUNT_OFFSET, 2);
        regionEntry(rt, 0, RegionTableDescriptor.BAT_REGION, BAT_OFFSET, batLength);
        regionEntry(rt, 1, RegionTableDescriptor.METADATA_REGION, METADATA_OFFSET, METADATA_LENGTH);
        Le.put32(rt, RegionTableDescriptor.CHECKSUM_OFFSET, Crc32c.compute(rt, 0, rt.length, RegionTableDescriptor.CHECKSUM_OFFSET));
        System.arraycopy(rt, 0, section, (int) RegionTableDescriptor.TABLE_1_FILE_OFFSET, rt.length);
        System.arraycopy(rt, 0, section, (int) RegionTableDescriptor.TABLE_2_FILE_OFFSET, rt.length);

        byte[] meta = metadata(size, blockSize, logical, physical, fixed, locator);

        PosixFile created = PosixFile.createNew(path); // O_EXCL: an existing file is never replaced
        boolean ok = false;
        try (PosixFile f = created) {
            f.write(0, section, 0, section.length);
            f.write(METADATA_OFFSET, meta, 0, meta.length);
            if (fixed) {
                byte[] buf = new byte[1 << 20];
                long block = 0;
                for (long i = 0; i < entries; ) {
                    int n = (int) Math.min(buf.length / 8, entries - i);
                    for (int k = 0; k < n; k++) {
                        long idx = i + k;
                        boolean isBitmap = idx % (chunkRatio + 1) == chunkRatio;
                        long e = isBitmap ? 0 : BatDescriptor.entry(BatDescriptor.PAYLOAD_FULLY_PRESENT, payloadStart + (block++) * blockSize);
                        Le.put64(buf, k * 8, e);
                    }
                    f.write(BAT_OFFSET + i * 8, buf, 0, n * 8);
                    i += n;
                }
            }
            f.truncate(fileLength);
            f.dataSync();
            ok = true;
        } finally {
            if (!ok) {
                Files.deleteIfExists(path); // ours: created above with O_EXCL
            }
        }
    }

    private static void regionEntry(byte[] rt, int i, UUID guid, long offset, long length) {
        int e = RegionTableDescriptor.ENTRIES_OFFSET + i * RegionTableDescriptor.ENTRY_LENGTH;
        Le.putGuid(rt, e, guid);
        Le.put64(rt, e + RegionTableDescriptor.ENTRY_FILE_OFFSET_OFFSET, offset);
        Le.put32(rt, e + RegionTableDescriptor.ENTRY_LENGTH_OFFSET, (int) length);
        Le.put32(rt, e + RegionTableDescriptor.ENTRY_REQUIRED_OFFSET, 1);
    }

    private static byte[] metadata(long size, int blockSize, int logical, int physical, boolean fixed,
                                   Map<String, String> locator) {
        byte[] m = new byte[(int) METADATA_LENGTH];
        Le.put64(m, 0, MetadataDescriptor.SIGNATURE);
        List<Object[]> items = new ArrayList<>();
        byte[] fp = new byte[8];
        Le.put32(fp, 0, blockSize);
        Le.put32(fp, 4, (fixed ? MetadataDescriptor.FILE_PARAMETERS_LEAVE_BLOCKS_ALLOCATED : 0)
            | (locator != null ? MetadataDescriptor.FILE_PARAMETERS_HAS_PARENT : 0));
        items.add(new Object[] {MetadataDescriptor.FILE_PARAMETERS, fp, MetadataDescriptor.FLAG_IS_REQUIRED});
        byte[] vs = new byte[8];
        Le.put64(vs, 0, size);
        int vd = MetadataDescriptor.FLAG_IS_REQUIRED | MetadataDescriptor.FLAG_IS_VIRTUAL_DISK;
        items.add(new Object[] {MetadataDescriptor.VIRTUAL_DISK_SIZE, vs, vd});
        byte[] id = new byte[16];
        Le.putGuid(id, 0, UUID.randomUUID());
        items.add(new Object[] {MetadataDescriptor.VIRTUAL_DISK_ID, id, vd});
        byte[] ls = new byte[4];
        Le.put32(ls, 0, logical);
        items.add(new Object[] {MetadataDescriptor.LOGICAL_SECTOR_SIZE, ls, vd});
        byte[] ps = new byte[4];
        Le.put32(ps, 0, physical);
        items.add(new Object[] {MetadataDescriptor.PHYSICAL_SECTOR_SIZE, ps, vd});
        if (locator != null) {
            items.add(new Object[] {MetadataDescriptor.PARENT_LOCATOR, locatorBytes(locator), MetadataDescriptor.FLAG_IS_REQUIRED});
        }
        Le.put16(m, MetadataDescriptor.ENTRY_COUNT_OFFSET, items.size());
        int dataOff = MetadataDescriptor.TABLE_LENGTH;
        for (int i = 0; i < items.size(); i++) {
            Object[] it = items.get(i);
            byte[] data = (byte[]) it[1];
            int e = MetadataDescriptor.ENTRIES_OFFSET + i * MetadataDescriptor.ENTRY_LENGTH;
            Le.putGuid(m, e, (UUID) it[0]);
            Le.put32(m, e + MetadataDescriptor.ENTRY_OFFSET_OFFSET, dataOff);
            Le.put32(m, e + MetadataDescriptor.ENTRY_LENGTH_OFFSET, data.length);
            Le.put32(m, e + MetadataDescriptor.ENTRY_FLAGS_OFFSET, (Integer) it[2]);
            System.arraycopy(data, 0, m, dataOff, data.length);
            dataOff += (data.length + 7) & ~7;
        }
        return m;
    }

    /** parent_linkage, relative_path (Windows separators, ".\" form) and absolute_win32_path. */
    static Map<String, String> locator(Path child, Path parent, UUID parentDataWriteGuid) {
        Map<String, String> kv = new LinkedHashMap<>();
        kv.put("parent_linkage", Le.braced(parentDataWriteGuid));
        Path childDir = child.toAbsolutePath().normalize().getParent();
        Path abs = parent.toAbsolutePath().normalize();
        String rel = childDir.relativize(abs).toString().replace('/', '\\');
        kv.put("relative_path", rel.startsWith("..") ? rel : ".\\" + rel);
        kv.put("absolute_win32_path", abs.toString());
        return kv;
    }

    static byte[] locatorBytes(Map<String, String> kv) {
        int count = kv.size();
        int strings = 0;
        for (Map.Entry<String, String> e : kv.entrySet()) {
            strings += e.getKey().length() * 2 + e.getValue().length() * 2;
        }
        byte[] b = new byte[MetadataDescriptor.LOCATOR_HEADER_LENGTH + count * MetadataDescriptor.LOCATOR_ENTRY_LENGTH + strings];
        Le.putGuid(b, 0, MetadataDescriptor.VHDX_PARENT_LOCATOR_TYPE);
        Le.put16(b, 18, count);
        int at = MetadataDescriptor.LOCATOR_HEADER_LENGTH + count * MetadataDescriptor.LOCATOR_ENTRY_LENGTH;
        int i = 0;
        for (Map.Entry<String, String> e : kv.entrySet()) {
            byte[] k = e.getKey().getBytes(StandardCharsets.UTF_16LE);
            byte[] v = e.getValue().getBytes(StandardCharsets.UTF_16LE);
            int ent = MetadataDescriptor.LOCATOR_HEADER_LENGTH + i * MetadataDescriptor.LOCATOR_ENTRY_LENGTH;
            Le.put32(b, ent, at);
            System.arraycopy(k, 0, b, at, k.length);
            at += k.length;
            Le.put32(b, ent + 4, at);
            System.arraycopy(v, 0, b, at, v.length);
            at += v.length;
            Le.put16(b, ent + 8, k.length);
            Le.put16(b, ent + 10, v.length);
            i++;
        }
        return b;
    }
}
