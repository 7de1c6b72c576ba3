package io.phost.vhdx.vhd;

import io.phost.core.sys.PosixFile;
import io.phost.vhdx.CreateOptions;
import io.phost.vhdx.DiskType;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.SecureRandom;

import static io.phost.vhdx.vhd.VhdFormatException.Reason;
import static io.phost.vhdx.vhd.VhdDisk.*;

/** Writes a new VHD (fixed, dynamic or differencing, with its parent locators) for {@link VhdDisk#create}. */
final class VhdCreate {
    private VhdCreate() {
    }

    public static VhdDisk create(Path path, CreateOptions o) throws IOException {
        if (o.logicalSectorSize() != SECTOR) {
            throw new VhdFormatException(Reason.UNSUPPORTED, 0, "VHD has 512-byte logical sectors only");
        }
        long blockSize = o.blockSize() == 0 ? VhdDynamicHeader.DEFAULT_BLOCK_SIZE : o.blockSize();
        if (o.type() != DiskType.FIXED
            && (blockSize < SECTOR || blockSize > VhdDynamicHeader.MAX_BLOCK_SIZE || Long.bitCount(blockSize) != 1)) {
            throw new IllegalArgumentException("VHD block size must be a power of two from 512 bytes to 256 MiB: " + blockSize);
        }
        long size = o.size();
        byte[] parentId = null;
        long parentTimestamp = 0;
        Path parentAbs = null;
        if (o.type() == DiskType.DIFFERENCING) {
            try (VhdDisk p = open(o.parent(), true)) {
                size = p.size();
                parentId = p.uniqueId();
                parentTimestamp = p.footer.timestamp();
                parentAbs = o.parent().toAbsolutePath().normalize();
            }
        }
        if (size <= 0 || size % SECTOR != 0) {
            throw new IllegalArgumentException("VHD size must be a positive multiple of 512: " + size);
        }
        if (size > VhdFooter.MAX_SIZE) {
            throw new VhdFormatException(Reason.TOO_LARGE, 0, "size " + size + " over the 2040 GiB VHD limit");
        }
        byte[] id = new byte[16];
        new SecureRandom().nextBytes(id);
        id[6] = (byte) ((id[6] & 0x0f) | 0x40); // a version-4 GUID, as Windows makes them
        id[8] = (byte) ((id[8] & 0x3f) | 0x80);
        long now = System.currentTimeMillis() / 1000 - VhdFooter.VHD_EPOCH;
        int diskType = switch (o.type()) {
            case FIXED -> VhdFooter.TYPE_FIXED;
            case DYNAMIC -> VhdFooter.TYPE_DYNAMIC;
            case DIFFERENCING -> VhdFooter.TYPE_DIFFERENCING;
        };
        PosixFile f = PosixFile.createNew(path);
        boolean ok = false;
        try (Arena tmp = Arena.ofConfined()) {
            VhdFooter footer = new VhdFooter(tmp.allocate(VhdFooter.LENGTH, 8));
            int[] chs = VhdFooter.geometryFor(size);
            footer.cookie().features(VhdFooter.FEATURES_RESERVED).version(VhdFooter.VERSION_1_0)
                .dataOffset(diskType == VhdFooter.TYPE_FIXED ? VhdFooter.NO_DATA_OFFSET : VhdFooter.LENGTH)
                .timestamp(now).creatorApp(CREATOR_APP).creatorVersion(CREATOR_VERSION).creatorOs(CREATOR_OS)
                .originalSize(size).currentSize(size).geometry(chs[0], chs[1], chs[2]).diskType(diskType)
                .uniqueId(id).sealChecksum();
            if (diskType == VhdFooter.TYPE_FIXED) {
                f.truncate(size + VhdFooter.LENGTH);
                f.fallocate(0, 0, size); // best effort: a fixed disk should not run out of space later
                f.writeFully(footer.segment(), size);
            } else {
                long entries = ceilDiv(size, blockSize);
                long batOffset = VhdFooter.LENGTH + VhdDynamicHeader.LENGTH;
                long batBytes = (entries * 4 + SECTOR - 1) & -SECTOR;
                long end = batOffset + batBytes;
                VhdDynamicHeader header = new VhdDynamicHeader(tmp.allocate(VhdDynamicHeader.LENGTH, 8));
                header.init(batOffset, entries, blockSize);
                if (diskType == VhdFooter.TYPE_DIFFERENCING) {
                    end = writeLocators(f, tmp, header, end, path, parentAbs, parentId, parentTimestamp);
                }
                header.sealChecksum();
                MemorySegment batBuf = tmp.allocate(batBytes, 8);
                batBuf.fill((byte) 0xFF);
                f.writeFully(batBuf, batOffset);
                f.writeFully(footer.segment(), 0);
                f.writeFully(header.segment(), VhdFooter.LENGTH);
                f.writeFully(footer.segment(), end);
            }
            // No fsync here: nothing refers to the new file yet; the caller's flush makes it durable.
            ok = true;
        } finally {
            f.close();
            if (!ok) {
                Files.deleteIfExists(path);
            }
        }
        try {
            return open(path, false);
        } catch (IOException | RuntimeException e) {
            // e.g. the new child makes the chain one image too long: do not leave a file nobody can open
            try {
                Files.deleteIfExists(path);
            } catch (IOException suppressed) {
                e.addSuppressed(suppressed);
            }
            throw e;
        }
    }

    /** Writes W2ku and W2ru locators after {@code end}; returns the new end. */
    static long writeLocators(PosixFile f, Arena tmp, VhdDynamicHeader header, long end, Path child,
                                      Path parentAbs, byte[] parentId, long parentTimestamp) throws IOException {
        header.parent(parentId, parentTimestamp, parentAbs.getFileName().toString());
        Path childDir = child.toAbsolutePath().normalize().getParent();
        String relative = childDir.relativize(parentAbs).toString();
        String[] paths = {
            parentAbs.toString().replace('/', '\\'),
            (relative.startsWith("..") ? relative : "./" + relative).replace('/', '\\'),
        };
        int[] codes = {VhdDynamicHeader.PLATFORM_W2KU, VhdDynamicHeader.PLATFORM_W2RU};
        for (int i = 0; i < paths.length; i++) {
            byte[] b = paths[i].getBytes(StandardCharsets.UTF_16LE);
            long space = (b.length + SECTOR - 1) & -SECTOR;
            MemorySegment buf = tmp.allocate(space, 8);
            buf.copyFrom(MemorySegment.ofArray(b));
            f.writeFully(buf, end);
            header.locator(i, codes[i], space / SECTOR, b.length, end);
            end += space;
        }
        return end;
    }

}
