package io.phost.vhdx.vhdx;

import java.io.IOException;
import java.lang.foreign.MemorySegment;

import static io.phost.vhdx.vhdx.BatDescriptor.*;
import static io.phost.vhdx.vhdx.VhdxDisk.*;

/**
 * A {@link VhdxDisk}'s data path: reads, writes, block allocation, sector bitmaps, zeroing and unmapping.
 *
 * <p>The whole BAT lives in memory ({@code long[]}, read with acquire, published with release). A read or a
 * write to an allocated block looks up one entry and issues one {@code pread}/{@code pwrite} per block it
 * touches: no lock and no allocation. A write to an unallocated block takes that block's stripe lock,
 * re-checks the entry, appends a new 1 MiB-aligned block at the end of the file, writes the data, then
 * publishes the entry; the BAT sector is marked dirty for {@link VhdxLogWriter#flush()} to log.
 */
final class VhdxDataPath {
    private final VhdxDisk d;

    VhdxDataPath(VhdxDisk d) {
        this.d = d;
    }

    /** File offset of [offset, +length) when it lies in one block whose sectors are all in this file, else -1. */
    long map(long offset, long length) {
        long mask = d.logicalSectorSize - 1L;
        if (offset < 0 || length <= 0 || ((offset | length) & mask) != 0 || offset > d.size - length || d.closed) {
            return -1;
        }
        long block = offset >>> d.blockShift;
        long inBlock = offset & d.blockMask;
        if (inBlock + length > d.blockSize) {
            return -1;
        }
        // Acquire: pairs with the release that publishes a new entry after its data is written.
        long e = (long) LONGS.getAcquire(d.bat, (int) payloadIndex(block, d.chunkRatio));
        int st = state(e);
        if (st == PAYLOAD_FULLY_PRESENT || (st == PAYLOAD_PARTIALLY_PRESENT && bitsAllSet(block, offset, length))) {
            return fileOffset(e) + inBlock;
        }
        return -1;
    }

    /**
     * Starts the session before a write that changes bytes the on-disk BAT already maps (a block older
     * than this open). Writes into blocks allocated in this open, and metadata changes (committed by
     * {@link VhdxDisk#flush()}, which starts the session itself), leave the session, and its header
     * fdatasync, to the first flush: a fresh image's first writes cost what a raw file's do.
     */
    void sessionBeforeWriteAt(long blockFileOffset) throws IOException {
        if (blockFileOffset < d.sessionFloor && !d.sessionStarted) {
            d.writer.startSession();
        }
    }

    void readRange(long off, MemorySegment dst, long dstOff, long len) throws IOException {
        while (len > 0) {
            long block = off >>> d.blockShift;
            long inBlock = off & d.blockMask;
            long n = Math.min(len, d.blockSize - inBlock);
            long e = (long) LONGS.getAcquire(d.bat, (int) payloadIndex(block, d.chunkRatio));
            switch (state(e)) {
                case PAYLOAD_FULLY_PRESENT -> readFile(fileOffset(e) + inBlock, dst, dstOff, n);
                case PAYLOAD_PARTIALLY_PRESENT -> readPartial(block, fileOffset(e), off, dst, dstOff, n);
                case PAYLOAD_ZERO, PAYLOAD_UNMAPPED -> zero(dst, dstOff, n);
                default -> {
                    if (d.parent != null) {
                        d.parent.data.readRange(off, dst, dstOff, n);
                    } else {
                        zero(dst, dstOff, n);
                    }
                }
            }
            off += n;
            dstOff += n;
            len -= n;
        }
    }

    void readFile(long fileOff, MemorySegment dst, long dstOff, long n) throws IOException {
        long got = d.file.read(fileOff, dst, dstOff, n);
        if (got < n) {
            zero(dst, dstOff + got, n - got);
        }
        if (d.overlay != null) {
            d.overlay.patch(fileOff, dst, dstOff, n);
        }
    }

    /** PARTIALLY_PRESENT: runs of sectors whose bitmap bit is 1 come from this file, the rest from the parent. */
    void readPartial(long block, long blockFileOff, long off, MemorySegment dst, long dstOff, long n) throws IOException {
        SectorBitmap bm = bitmap(block / d.chunkRatio, false);
        long sector = off >>> d.sectorShift;
        long sectors = n >>> d.sectorShift;
        long i = 0;
        while (i < sectors) {
            boolean present = bit(bm, sector + i);
            long j = i + 1;
            while (j < sectors && bit(bm, sector + j) == present) {
                j++;
            }
            long runOff = (sector + i) << d.sectorShift;
            long runLen = (j - i) << d.sectorShift;
            long runDst = dstOff + (i << d.sectorShift);
            if (present) {
                readFile(blockFileOff + (runOff & d.blockMask), dst, runDst, runLen);
            } else if (d.parent != null) {
                d.parent.data.readRange(runOff, dst, runDst, runLen);
            } else {
                zero(dst, runDst, runLen);
            }
            i = j;
        }
    }

    /** True when every sector of [off, off+n) is already marked present (no bitmap change needed). */
    boolean bitsAllSet(long block, long off, long n) {
        SectorBitmap bm = d.bitmaps.get((int) (block / d.chunkRatio));
        if (bm == null) {
            return false;
        }
        long first = off >>> d.sectorShift;
        long count = n >>> d.sectorShift;
        for (long s = first; s < first + count; s++) {
            if (!bit(bm, s)) {
                return false;
            }
        }
        return true;
    }

    static boolean bit(SectorBitmap bm, long diskSector) {
        int b = (int) (diskSector & ((1L << 23) - 1));
        return (((byte) BYTES.getAcquire(bm.bits, b >>> 3)) & (1 << (b & 7))) != 0;
    }

    static void zero(MemorySegment dst, long dstOff, long n) {
        while (n > 0) {
            long c = Math.min(n, ZEROS.byteSize());
            MemorySegment.copy(ZEROS, 0, dst, dstOff, c);
            dstOff += c;
            n -= c;
        }
    }

    void writeRange(long off, MemorySegment src, long srcOff, long len) throws IOException {
        while (len > 0) {
            long block = off >>> d.blockShift;
            long inBlock = off & d.blockMask;
            long n = Math.min(len, d.blockSize - inBlock);
            long e = (long) LONGS.getAcquire(d.bat, (int) payloadIndex(block, d.chunkRatio));
            int st = state(e);
            if (st == PAYLOAD_FULLY_PRESENT || (st == PAYLOAD_PARTIALLY_PRESENT && bitsAllSet(block, off, n))) {
                sessionBeforeWriteAt(fileOffset(e));
                d.file.write(fileOffset(e) + inBlock, src, srcOff, n);
            } else {
                if (st == PAYLOAD_PARTIALLY_PRESENT) {
                    sessionBeforeWriteAt(fileOffset(e)); // outside the stripe lock: startSession takes commitLock
                }
                writeSlow(block, off, src, srcOff, n);
            }
            off += n;
            srcOff += n;
            len -= n;
        }
    }

    /** Allocation and PARTIALLY_PRESENT writes, under the block's stripe lock. */
    void writeSlow(long block, long off, MemorySegment src, long srcOff, long n) throws IOException {
        int idx = (int) payloadIndex(block, d.chunkRatio);
        long inBlock = off & d.blockMask;
        synchronized (d.stripes[(int) (block & (LOCK_STRIPES - 1))]) {
            long e = (long) LONGS.getAcquire(d.bat, idx);
            int st = state(e);
            if (st == PAYLOAD_FULLY_PRESENT) {
                d.file.write(fileOffset(e) + inBlock, src, srcOff, n);
                return;
            }
            if (st == PAYLOAD_PARTIALLY_PRESENT) {
                d.file.write(fileOffset(e) + inBlock, src, srcOff, n);
                setBits(block, off, n);
                return;
            }
            boolean fromParent = d.parent != null && (st == PAYLOAD_NOT_PRESENT || st == PAYLOAD_UNDEFINED);
            boolean wholeBlock = inBlock == 0 && n == d.blockSize;
            long blockOff = allocate(d.blockSize);
            d.file.write(blockOff + inBlock, src, srcOff, n);
            if (fromParent && !wholeBlock) {
                setBits(block, off, n);
                LONGS.setRelease(d.bat, idx, entry(PAYLOAD_PARTIALLY_PRESENT, blockOff));
            } else {
                // No parent data to show through: the rest of the new block is already zero.
                LONGS.setRelease(d.bat, idx, entry(PAYLOAD_FULLY_PRESENT, blockOff));
            }
            d.batDirty.set(idx / BAT_ENTRIES_PER_SECTOR, 1);
        }
    }

    /** Appends {@code bytes} (a multiple of 1 MiB) at the end of the file and makes the file cover them. */
    long allocate(long bytes) throws IOException {
        long off = d.fileEnd.getAndAdd(bytes);
        if (!d.sessionStarted) {
            d.allocatedBeforeSession = true;
        }
        // Extend the file now so the BAT never points past EOF (qemu refuses such images). ftruncate, not a
        // byte written at the end: a sparse extension like a raw file's, with no data block to write back;
        // ahead by half the file (at least 16 allocations, at most 1 GiB) so most allocations make no call
        // at all (on tmpfs each call was a visible share of a fresh image's first writes). close() trims the unused sparse tail. Only ever grows, so a slower allocator of
        // a lower block cannot cut off a later one.
        long end = off + bytes;
        synchronized (d.extendedTo) {
            if (end > d.extendedTo[0]) {
                long ahead = Math.min(Math.max(16 * bytes, end >>> 1), 1L << 30);
                long target = roundUp(end + ahead, 1 << 20);
                d.file.truncate(target);
                d.extendedTo[0] = target;
            }
        }
        return off;
    }

    void setBits(long block, long off, long n) throws IOException {
        SectorBitmap bm = bitmap(block / d.chunkRatio, true);
        long first = (off >>> d.sectorShift) & ((1L << 23) - 1);
        long count = n >>> d.sectorShift;
        for (long s = first; s < first + count; s++) {
            int byteIdx = (int) (s >>> 3);
            byte old = (byte) BYTES.getAcquire(bm.bits, byteIdx);
            byte nw = (byte) (old | (1 << (s & 7)));
            if (nw != old) {
                // Bits of one block live in bytes no other block uses, and the block's stripe lock is held.
                BYTES.setRelease(bm.bits, byteIdx, nw);
                bm.dirty.set(byteIdx >>> 12, 1);
            }
        }
    }

    /** The chunk's sector bitmap, loaded on first use (allocating its 1 MiB block when a write needs it). */
    SectorBitmap bitmap(long chunk, boolean forWrite) throws IOException {
        SectorBitmap bm = d.bitmaps.get((int) chunk);
        if (bm != null && (!forWrite || state((long) LONGS.getAcquire(d.bat, (int) bitmapIndex(chunk, d.chunkRatio))) == SB_PRESENT)) {
            return bm;
        }
        synchronized (d.bitmaps) {
            int idx = (int) bitmapIndex(chunk, d.chunkRatio);
            long e = (long) LONGS.getAcquire(d.bat, idx);
            bm = d.bitmaps.get((int) chunk);
            if (bm != null) {
                if (forWrite && state(e) != SB_PRESENT) {
                    // Loaded by a read (all zero, in memory only); the first write gives it a block.
                    long off = allocate(SECTOR_BITMAP_BLOCK_LENGTH);
                    LONGS.setRelease(d.bat, idx, entry(SB_PRESENT, off));
                    d.batDirty.set(idx / BAT_ENTRIES_PER_SECTOR, 1);
                }
                return bm;
            }
            bm = new SectorBitmap();
            if (state(e) == SB_PRESENT) {
                MemorySegment seg = MemorySegment.ofArray(bm.bits);
                readFile(fileOffset(e), seg, 0, SECTOR_BITMAP_BLOCK_LENGTH);
            } else if (forWrite) {
                long off = allocate(SECTOR_BITMAP_BLOCK_LENGTH);
                LONGS.setRelease(d.bat, idx, entry(SB_PRESENT, off));
                d.batDirty.set(idx / BAT_ENTRIES_PER_SECTOR, 1);
            }
            d.bitmaps.set((int) chunk, bm);
            return bm;
        }
    }

    void release(long off, long len, int wholeBlockState) throws IOException {
        d.checkRange(off, len);
        d.checkWritable();
        while (len > 0) {
            long block = off >>> d.blockShift;
            long inBlock = off & d.blockMask;
            long n = Math.min(len, d.blockSize - inBlock);
            int idx = (int) payloadIndex(block, d.chunkRatio);
            if (inBlock == 0 && n == d.blockSize && !d.p.leaveBlocksAllocated) {
                synchronized (d.stripes[(int) (block & (LOCK_STRIPES - 1))]) {
                    long e = (long) LONGS.getAcquire(d.bat, idx);
                    if (state(e) != wholeBlockState || fileOffset(e) != 0) {
                        LONGS.setRelease(d.bat, idx, entry(wholeBlockState, 0));
                        d.batDirty.set(idx / BAT_ENTRIES_PER_SECTOR, 1);
                    }
                }
            } else {
                long e = (long) LONGS.getAcquire(d.bat, idx);
                int st = state(e);
                boolean alreadyZero = st == PAYLOAD_ZERO || st == PAYLOAD_UNMAPPED
                    || (d.parent == null && (st == PAYLOAD_NOT_PRESENT || st == PAYLOAD_UNDEFINED));
                if (!alreadyZero) {
                    for (long o = 0; o < n; o += ZEROS.byteSize()) {
                        long c = Math.min(ZEROS.byteSize(), n - o);
                        writeRange(off + o, ZEROS, 0, c);
                    }
                }
            }
            off += n;
            len -= n;
        }
    }

}
