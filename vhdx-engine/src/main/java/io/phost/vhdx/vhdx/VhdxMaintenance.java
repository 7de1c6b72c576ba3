package io.phost.vhdx.vhdx;

import io.phost.core.sys.PosixFile;
import io.phost.vhdx.VhdxFormatException;
import io.phost.vhdx.VhdxFormatException.Reason;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.function.ObjIntConsumer;

import static io.phost.vhdx.vhdx.BatDescriptor.*;
import static io.phost.vhdx.vhdx.VhdxDisk.*;

/**
 * Changes to a {@link VhdxDisk} beyond reads and writes: resize, identity and sector-size changes,
 * re-parenting, block moves for an in-place compact, header and region-table repair, and ending a running
 * leaf's session so a new child opens on it ({@link VhdxDisk#openChildOn}). Every metadata change goes
 * through {@link VhdxLogWriter}, as {@code vhd/VhdMaintenance} does for VHD.
 */
final class VhdxMaintenance {
    private final VhdxDisk d;

    VhdxMaintenance(VhdxDisk d) {
        this.d = d;
    }

    VhdxDisk demoteToParent() throws IOException {
        if (d.readOnly || d.closed) {
            throw new IllegalStateException((d.closed ? "closed: " : "read-only: ") + d.path + "; only an open read-write image becomes a parent");
        }
        IOException failure = null;
        VhdxDisk view = null;
        try {
            d.writer.endSession();
            if (!d.file.tryLock(false)) { // EX → SH: readers (a backup export, qemu-img) may open it from now on
                throw new IOException(d.path + ": could not lower its flock to shared");
            }
            d.commitLock.lock();
            try {
                view = new VhdxDisk(d);
            } finally {
                d.commitLock.unlock();
            }
        } catch (IOException e) {
            failure = e;
        } finally {
            d.closed = true;
            synchronized (d.mappedLock) {
                if (d.mappedFile != null) {
                    try {
                        d.mappedFile.close(); // the engine's rings keep their own reference; the view reads through file
                    } catch (IOException e) {
                        failure = failure == null ? e : failure;
                    }
                    d.mappedFile = null;
                }
            }
            if (failure != null) {
                try {
                    d.file.close();
                } catch (IOException e) {
                    failure.addSuppressed(e);
                }
                if (d.parent != null) {
                    try {
                        d.parent.close();
                    } catch (IOException e) {
                        failure.addSuppressed(e);
                    }
                }
            }
        }
        if (failure != null) {
            throw failure;
        }
        return view;
    }

    void resizeTo(long newSize) throws IOException {
        if (d.p.hasParent) {
            throw new IllegalArgumentException("a differencing image has its parent's size; resize the chain's base");
        }
        if (newSize <= 0 || newSize > MetadataDescriptor.MAX_VIRTUAL_DISK_SIZE || newSize % d.logicalSectorSize != 0) {
            throw new IllegalArgumentException("size must be a positive multiple of " + d.logicalSectorSize + " up to 64 TiB: " + newSize);
        }
        if (newSize == d.size) {
            return;
        }
        long newBlocks = (newSize + d.blockSize - 1) / d.blockSize;
        long oldBlocks = d.p.dataBlocks;
        if (newSize < d.size) {
            if (d.p.leaveBlocksAllocated) {
                throw new IllegalArgumentException("shrinking a fixed image is not supported");
            }
            for (long b = newBlocks; b < oldBlocks; b++) {
                int st = state((long) LONGS.getAcquire(d.bat, (int) payloadIndex(b, d.chunkRatio)));
                if (st == PAYLOAD_FULLY_PRESENT || st == PAYLOAD_PARTIALLY_PRESENT) {
                    throw new IllegalArgumentException("cannot shrink to " + newSize + ": block " + b + " beyond it holds data");
                }
            }
            requireZeroTailOfCutBlock(newSize);
        }
        d.checkWritable();
        d.commitLock.lock();
        try {
            d.flush();
            // Zero the part of the (new or old) last block that lies beyond the smaller size.
            long cut = Math.min(d.size, newSize);
            long lastBlock = cut / d.blockSize;
            if (cut % d.blockSize != 0 && lastBlock < oldBlocks) {
                long e = (long) LONGS.getAcquire(d.bat, (int) payloadIndex(lastBlock, d.chunkRatio));
                if (state(e) == PAYLOAD_FULLY_PRESENT) {
                    long from = cut % d.blockSize;
                    for (long o = from; o < d.blockSize; o += ZEROS.byteSize()) {
                        d.file.write(fileOffset(e) + o, ZEROS, 0, Math.min(ZEROS.byteSize(), d.blockSize - o));
                    }
                }
            }
            long oldTotal = d.bat.length;
            long newTotal = BatDescriptor.totalEntries(newBlocks, d.chunkRatio, false);
            long keep = Math.min(oldTotal, newTotal);
            long[] entries = new long[(int) newTotal];
            for (int i = 0; i < keep; i++) {
                entries[i] = (long) LONGS.getAcquire(d.bat, i);
            }
            if (d.p.leaveBlocksAllocated) {
                for (long b = oldBlocks; b < newBlocks; b++) {
                    entries[(int) payloadIndex(b, d.chunkRatio)] = entry(PAYLOAD_FULLY_PRESENT, d.data.allocate(d.blockSize));
                }
            }
            List<VhdxLog.Update> pages = new ArrayList<>();
            long batRegionOffset = d.p.bat.fileOffset();
            long batRegionLength = d.p.bat.length();
            long needed = newTotal * 8;
            // Entries past the new end (shrink) or past the old end (grow) must read as zero in the file.
            long clearTo = Math.max(oldTotal, newTotal) * 8;
            if (needed <= batRegionLength) {
                long firstPage = 0;
                long lastPage = (Math.min(clearTo, batRegionLength) + 4095) / 4096;
                long changedFrom = Math.min(oldTotal, newTotal) * 8 / 4096;
                firstPage = d.p.leaveBlocksAllocated ? changedFrom : Math.min(changedFrom, lastPage);
                for (long pg = firstPage; pg < lastPage; pg++) {
                    byte[] page = new byte[4096];
                    for (int k = 0; k < 512; k++) {
                        long i = pg * 512 + k;
                        if (i < newTotal) {
                            Le.put64(page, k * 8, entries[(int) i]);
                        }
                    }
                    pages.add(new VhdxLog.Update(batRegionOffset + pg * 4096, page, 0));
                }
            } else {
                // Relocate: write the new BAT into fresh space first (nothing references it yet) ...
                batRegionLength = roundUp(needed, 1 << 20);
                if (batRegionLength > 0xFFFF_FFFFL) {
                    throw new IllegalArgumentException("BAT for " + newSize + " bytes exceeds the region size limit");
                }
                batRegionOffset = d.data.allocate(batRegionLength);
                byte[] buf = new byte[1 << 20];
                for (long done = 0; done < needed; done += buf.length) {
                    int n = (int) Math.min(buf.length, needed - done);
                    java.util.Arrays.fill(buf, (byte) 0);
                    for (int k = 0; k < n; k += 8) {
                        Le.put64(buf, k, entries[(int) ((done + k) / 8)]);
                    }
                    d.file.write(batRegionOffset + done, buf, 0, n);
                }
                d.file.dataSync();
                // ... then switch both region tables to it through the log, together with the size.
                int len = (int) (RegionTableDescriptor.TABLE_2_FILE_OFFSET + RegionTableDescriptor.TABLE_LENGTH);
                byte[] section = new byte[len];
                d.file.read(0, section, 0, len);
                for (int copy = 0; copy < 2; copy++) {
                    int base = (int) RegionTableDescriptor.tableFileOffset(copy);
                    long count = Le.u32(section, base + RegionTableDescriptor.ENTRY_COUNT_OFFSET);
                    for (int i = 0; i < count && i < RegionTableDescriptor.MAX_ENTRIES; i++) {
                        int e = base + RegionTableDescriptor.ENTRIES_OFFSET + i * RegionTableDescriptor.ENTRY_LENGTH;
                        if (Le.guid(section, e).equals(RegionTableDescriptor.BAT_REGION)) {
                            Le.put64(section, e + RegionTableDescriptor.ENTRY_FILE_OFFSET_OFFSET, batRegionOffset);
                            Le.put32(section, e + RegionTableDescriptor.ENTRY_LENGTH_OFFSET, (int) batRegionLength);
                        }
                    }
                    Le.put32(section, base + RegionTableDescriptor.CHECKSUM_OFFSET,
                        io.phost.vhdx.Crc32c.compute(section, base, RegionTableDescriptor.TABLE_LENGTH, RegionTableDescriptor.CHECKSUM_OFFSET));
                    for (int pg = 0; pg < RegionTableDescriptor.TABLE_LENGTH / 4096; pg++) {
                        pages.add(new VhdxLog.Update(base + pg * 4096L,
                            java.util.Arrays.copyOfRange(section, base + pg * 4096, base + pg * 4096 + 4096), 0));
                    }
                }
            }
            pages.add(d.writer.metadataPage(MetadataDescriptor.VIRTUAL_DISK_SIZE, 0, newSize));
            d.writer.commitAll(pages);
        } finally {
            d.commitLock.unlock();
        }
    }

    /**
     * A shrink to {@code newSize} inside a block drops that block's tail: refuse unless every sector of
     * [newSize, min(size, end of the block)) reads zero (sector granularity; blocks wholly past the new end
     * are checked through the BAT by the caller).
     */
    void requireZeroTailOfCutBlock(long newSize) throws IOException {
        long blockEnd = Math.min(d.size, (newSize + d.blockSize - 1) / d.blockSize * d.blockSize);
        if (blockEnd <= newSize) {
            return;
        }
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(Math.min(ZEROS.byteSize(), blockEnd - newSize), 4096);
            for (long o = newSize; o < blockEnd; o += buf.byteSize()) {
                long n = Math.min(buf.byteSize(), blockEnd - o);
                d.data.readRange(o, buf, 0, n);
                long at = MemorySegment.mismatch(buf, 0, n, ZEROS, 0, n);
                if (at >= 0) {
                    long sector = (o + at) / d.logicalSectorSize * d.logicalSectorSize;
                    throw new IllegalArgumentException("cannot shrink to " + newSize + ": the sector at virtual offset "
                        + sector + " beyond it holds data");
                }
            }
        }
    }

    /** See {@link VhdxDisk#setPhysicalSectorSize}. */
    void setPhysicalSectorSize(int bytes) throws IOException {
        if (bytes != 512 && bytes != 4096 || bytes < d.logicalSectorSize) {
            throw new IllegalArgumentException("physical sector size must be 512 or 4096 and not below the logical "
                + d.logicalSectorSize + ": " + bytes);
        }
        if (bytes == d.p.physicalSectorSize) {
            return;
        }
        d.commitLock.lock();
        try {
            rewriteMetadataItem(MetadataDescriptor.PHYSICAL_SECTOR_SIZE, 4, "physical sector size item",
                    (page, off) -> Le.put32(page, off, bytes));
        } finally {
            d.commitLock.unlock();
        }
    }

    /**
     * Rewrites one metadata item in place through the log, in a write session; the caller holds the commit
     * lock. The item must lie within one 4 KiB page.
     */
    private void rewriteMetadataItem(UUID item, int size, String what, ObjIntConsumer<byte[]> put)
            throws IOException {
        d.writer.startSession(false);
        long at = d.writer.metadataItemFileOffset(item);
        long pageOff = at & ~4095L;
        if (at + size > pageOff + 4096) {
            throw new VhdxFormatException(Reason.OUT_OF_BOUNDS, at, what + " crosses a page");
        }
        byte[] page = new byte[4096];
        d.file.read(pageOff, page, 0, 4096);
        put.accept(page, (int) (at - pageOff));
        d.writer.commitAll(List.of(new VhdxLog.Update(pageOff, page, 0)));
    }

    void adopt(UUID virtualDiskId, UUID newDataWriteGuid) throws IOException {
        d.commitLock.lock();
        try {
            if (d.sessionStarted) {
                throw new IllegalStateException("adopt an identity before any write: " + d.path);
            }
            d.dataWriteGuid = newDataWriteGuid;
            rewriteMetadataItem(MetadataDescriptor.VIRTUAL_DISK_ID, 16, "virtual disk id",
                    (page, off) -> Le.putGuid(page, off, virtualDiskId));
        } finally {
            d.commitLock.unlock();
        }
    }

    void reparent(VhdxDisk parent, boolean ignoreIdMismatch, boolean dataUnchanged) throws IOException {
        long locAt = d.p.metadata.fileOffset();
        if (!d.p.hasParent) {
            throw new IllegalArgumentException(d.path + " is not a differencing image");
        }
        java.util.UUID linkage = Le.parseBraced(d.p.parentLocator.get("parent_linkage"));
        String l2 = d.p.parentLocator.get("parent_linkage2");
        java.util.UUID linkage2 = l2 == null ? null : Le.parseBraced(l2);
        java.util.UUID actual = parent.dataWriteGuid();
        if (!ignoreIdMismatch && !actual.equals(linkage) && !actual.equals(linkage2)) {
            throw new VhdxFormatException(Reason.PARENT_LINKAGE_MISMATCH, locAt, "new parent " + parent.path()
                + " has DataWriteGuid " + Le.braced(actual) + " but the child expects " + d.p.parentLocator.get("parent_linkage"));
        }
        if (parent.size() != d.size || parent.logicalSectorSize() != d.logicalSectorSize) {
            throw new VhdxFormatException(Reason.BAD_PARENT_CHAIN, locAt, "new parent's size or sector size differs");
        }
        Map<String, String> kv = VhdxImageWriter.locator(d.path, parent.path(), actual);
        byte[] loc = VhdxImageWriter.locatorBytes(kv);
        if (d.readOnly) {
            throw new IOException("read-only: " + d.path);
        }
        // The same parent (linkage matches) means the same data: keep the DataWriteGuid so this image's own
        // children stay linked. A forced switch to another parent changes what the sectors read: new guid.
        boolean sameData = dataUnchanged || actual.equals(linkage) || actual.equals(linkage2);
        d.commitLock.lock();
        try {
            d.writer.startSession(!sameData);
            d.flush();
            byte[] region = new byte[(int) Math.min(d.p.metadata.length(), 1 << 20)];
            d.file.read(d.p.metadata.fileOffset(), region, 0, region.length);
            int count = Le.u16(region, MetadataDescriptor.ENTRY_COUNT_OFFSET);
            int entry = -1;
            long end = MetadataDescriptor.TABLE_LENGTH;
            for (int i = 0; i < count; i++) {
                int e = MetadataDescriptor.ENTRIES_OFFSET + i * MetadataDescriptor.ENTRY_LENGTH;
                long off = Le.u32(region, e + MetadataDescriptor.ENTRY_OFFSET_OFFSET);
                long len = Le.u32(region, e + MetadataDescriptor.ENTRY_LENGTH_OFFSET);
                end = Math.max(end, off + len);
                if (Le.guid(region, e).equals(MetadataDescriptor.PARENT_LOCATOR)) {
                    entry = e;
                }
            }
            if (entry < 0) {
                throw new VhdxFormatException(Reason.MISSING_STRUCTURE, locAt, "no parent locator item");
            }
            long oldOff = Le.u32(region, entry + MetadataDescriptor.ENTRY_OFFSET_OFFSET);
            long oldLen = Le.u32(region, entry + MetadataDescriptor.ENTRY_LENGTH_OFFSET);
            long newOff = loc.length <= oldLen ? oldOff : roundUp(end, 8);
            if (newOff + loc.length > region.length) {
                throw new VhdxFormatException(Reason.OUT_OF_BOUNDS, locAt, "no room in the metadata region for the new locator");
            }
            System.arraycopy(loc, 0, region, (int) newOff, loc.length);
            Le.put32(region, entry + MetadataDescriptor.ENTRY_OFFSET_OFFSET, (int) newOff);
            Le.put32(region, entry + MetadataDescriptor.ENTRY_LENGTH_OFFSET, loc.length);
            List<VhdxLog.Update> pages = new ArrayList<>();
            long tablePage = entry / 4096;
            pages.add(new VhdxLog.Update(d.p.metadata.fileOffset() + tablePage * 4096,
                java.util.Arrays.copyOfRange(region, (int) tablePage * 4096, (int) tablePage * 4096 + 4096), 0));
            for (long pg = newOff / 4096; pg * 4096 < newOff + loc.length; pg++) {
                pages.add(new VhdxLog.Update(d.p.metadata.fileOffset() + pg * 4096,
                    java.util.Arrays.copyOfRange(region, (int) pg * 4096, (int) pg * 4096 + 4096), 0));
            }
            d.writer.commitAll(pages);
        } finally {
            d.commitLock.unlock();
        }
    }

    public void moveBlock(long block, long to) throws IOException {
        d.checkWritable();
        if (!d.sessionStarted) {
            d.writer.startSession(false);
        }
        int idx = (int) payloadIndex(block, d.chunkRatio);
        long e = (long) LONGS.getAcquire(d.bat, idx);
        int st = state(e);
        if ((st != PAYLOAD_FULLY_PRESENT && st != PAYLOAD_PARTIALLY_PRESENT) || (to & ((1 << 20) - 1)) != 0
            || to < VhdxHeaderDescriptor.HEADER_SECTION_LENGTH || to + d.blockSize > d.file.size()) {
            throw new IllegalArgumentException("cannot move block " + block + " (state " + st + ") to " + to);
        }
        long from = fileOffset(e);
        d.file.fallocate(PosixFile.FALLOC_FL_PUNCH_HOLE | PosixFile.FALLOC_FL_KEEP_SIZE, to, d.blockSize);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(1 << 20, 4096);
            for (long o = 0; o < d.blockSize; ) {
                long data = d.file.seekData(from + o);
                if (data < 0 || data >= from + d.blockSize) {
                    break;
                }
                o = (data - from) & -4096L;
                long n = Math.min(buf.byteSize(), d.blockSize - o);
                long got = d.file.read(from + o, buf, 0, n);
                d.file.write(to + o, buf, 0, got);
                o += n;
            }
        }
        LONGS.setRelease(d.bat, idx, entry(st, to));
        d.batDirty.set(idx / BAT_ENTRIES_PER_SECTOR, 1);
    }

    public void cutAfterLastUsedOnClose() throws IOException {
        long end = 0;
        for (long[] r : d.fileRangesInUse()) {
            end = Math.max(end, r[1]);
        }
        d.fileEnd.set(roundUp(end, 1 << 20));
        synchronized (d.extendedTo) {
            d.extendedTo[0] = Math.max(d.extendedTo[0], d.file.size());
        }
    }

    /** Rewrites both header copies (new FileWriteGuid: this is a write to the file). */
    void rewriteHeaders() throws IOException {
        d.commitLock.lock();
        try {
            d.fileWriteGuid = UUID.randomUUID();
            d.writer.writeHeaders();
        } finally {
            d.commitLock.unlock();
        }
    }

    /** Copies the valid region table over a damaged copy. */
    void rewriteRegionTables() throws IOException {
        d.commitLock.lock();
        try {
            int len = (int) (RegionTableDescriptor.TABLE_2_FILE_OFFSET + RegionTableDescriptor.TABLE_LENGTH);
            byte[] section = new byte[len];
            d.file.read(0, section, 0, len);
            int good = -1;
            for (int copy = 0; copy < 2 && good < 0; copy++) {
                try {
                    VhdxParser.parseRegionTable(section, copy, d.file.size(), d.header);
                    good = copy;
                } catch (VhdxFormatException e) {
                    // try the other copy
                }
            }
            if (good < 0) {
                return;
            }
            if (!d.sessionStarted) {
                d.fileWriteGuid = UUID.randomUUID();
                d.writer.writeHeaders();
            }
            int from = (int) RegionTableDescriptor.tableFileOffset(good);
            d.file.write(RegionTableDescriptor.tableFileOffset(1 - good), section, from, RegionTableDescriptor.TABLE_LENGTH);
            d.file.dataSync();
        } finally {
            d.commitLock.unlock();
        }
    }

}
