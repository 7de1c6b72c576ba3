package io.phost.vhdx.vhd;

import io.phost.core.sys.PosixFile;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static io.phost.vhdx.vhd.VhdFormatException.Reason;
import static io.phost.vhdx.vhd.VhdDisk.*;

/**
 * A {@link VhdDisk}'s data path: reads, writes, mapped-I/O lookups, block allocation (see "Block allocation"
 * in {@link VhdDisk}), the dirty BAT written at flush, zeroing and unmapping.
 */
final class VhdDataPath {
    private final VhdDisk d;

    VhdDataPath(VhdDisk d) {
        this.d = d;
    }

    public void read(long offset, MemorySegment dst) throws IOException {
        transfer(offset, dst, false);
    }

    public void write(long offset, MemorySegment src) throws IOException {
        d.checkWritable();
        transfer(offset, src, true);
    }

    /**
     * The per-request block loop of {@link #read} and {@link #write}: splits [offset, +length) at block
     * boundaries and hands each piece to {@link #readPart} or {@link #writePart}. A boolean, not a callback,
     * picks the direction so the loop allocates nothing and stays monomorphic.
     */
    private void transfer(long offset, MemorySegment buf, boolean write) throws IOException {
        long length = buf.byteSize();
        d.checkRange(offset, length);
        if (d.header == null) {
            if (write) {
                d.file.writeFully(buf, offset);
            } else {
                d.file.readFully(buf, offset);
            }
            return;
        }
        long mask = d.blockSize - 1;
        long pos = 0;
        while (pos < length) {
            long voff = offset + pos;
            int block = (int) (voff >>> d.blockShift);
            long inBlock = voff & mask;
            long n = Math.min(length - pos, d.blockSize - inBlock);
            // Whole-request fast path: no slice object when the request lies in one block.
            MemorySegment part = (pos == 0 && n == length) ? buf : buf.asSlice(pos, n);
            int entry = (int) BAT.getAcquire(d.bat, block);
            if (write) {
                writePart(block, entry, inBlock, part);
            } else {
                readPart(block, entry, inBlock, voff, part);
            }
            pos += n;
        }
    }

    /** Reads {@code part}, which lies in block {@code block} (BAT entry {@code entry}) from {@code inBlock} on. */
    private void readPart(int block, int entry, long inBlock, long voff, MemorySegment part) throws IOException {
        if (entry == -1) {
            readBelow(voff, part);
            return;
        }
        long data = Integer.toUnsignedLong(entry) * SECTOR + d.bitmapBytes + inBlock;
        if (d.bitmaps == null) {
            d.file.readFully(part, data);
        } else {
            readDifferencing(block, inBlock, data, voff, part);
        }
    }

    /** Writes {@code part} into block {@code block} from {@code inBlock} on, allocating the block if needed. */
    private void writePart(int block, int entry, long inBlock, MemorySegment part) throws IOException {
        long n = part.byteSize();
        if (entry == -1) {
            if (inBlock == 0 && d.firstWrite != null && n <= FIRST_WRITE_MAX && allocateWith(block, part)) {
                return;
            }
            entry = allocate(block);
        }
        long blockStart = Integer.toUnsignedLong(entry) * SECTOR;
        d.file.writeFully(part, blockStart + d.bitmapBytes + inBlock);
        if (d.bitmaps != null) {
            markPresent(block, blockStart, (int) (inBlock / SECTOR), (int) (n / SECTOR));
        }
    }

    /** File offset of [offset, +length) when one transfer of this file serves it, else -1. Lock-free. */
    long map(long offset, long length) {
        if (offset < 0 || length <= 0 || ((offset | length) & (SECTOR - 1)) != 0 || offset > d.size - length || d.closed) {
            return -1;
        }
        if (d.header == null) {
            return offset; // fixed: the data area starts at 0
        }
        int block = (int) (offset >>> d.blockShift);
        long inBlock = offset & (d.blockSize - 1);
        if (inBlock + length > d.blockSize) {
            return -1;
        }
        // Acquire: pairs with allocate()'s release, which comes after the bitmap and BAT are on disk.
        int entry = (int) BAT.getAcquire(d.bat, block);
        if (entry == -1) {
            return -1;
        }
        if (d.bitmaps != null) {
            long[] bits = (long[]) BITMAPS.getAcquire(d.bitmaps, block);
            if (bits == null) {
                return -1;
            }
            int first = (int) (inBlock / SECTOR);
            int last = first + (int) (length / SECTOR);
            for (int s = first; s < last; s++) {
                if (!bit(bits, s)) {
                    return -1; // some sectors come from the parent, or need their bit set by write()
                }
            }
        }
        return Integer.toUnsignedLong(entry) * SECTOR + d.bitmapBytes + inBlock;
    }

    /** Unallocated here: the parent's data, or zeros. */
    void readBelow(long voff, MemorySegment part) throws IOException {
        if (d.parent == null) {
            part.fill((byte) 0);
            return;
        }
        long psize = d.parent.size();
        long n = part.byteSize();
        if (voff >= psize) {
            part.fill((byte) 0);
        } else if (voff + n <= psize) {
            d.parent.read(voff, part);
        } else {
            d.parent.read(voff, part.asSlice(0, psize - voff));
            part.asSlice(psize - voff).fill((byte) 0);
        }
    }

    void readDifferencing(int block, long inBlock, long data, long voff, MemorySegment part) throws IOException {
        long[] bits = bitmap(block);
        int first = (int) (inBlock / SECTOR);
        int count = (int) (part.byteSize() / SECTOR);
        int i = 0;
        while (i < count) {
            boolean present = bit(bits, first + i);
            int j = i + 1;
            while (j < count && bit(bits, first + j) == present) {
                j++;
            }
            MemorySegment run = (i == 0 && j == count) ? part : part.asSlice((long) i * SECTOR, (long) (j - i) * SECTOR);
            if (present) {
                d.file.readFully(run, data + (long) i * SECTOR);
            } else {
                readBelow(voff + (long) i * SECTOR, run);
            }
            i = j;
        }
    }

    static boolean bit(long[] bits, int sector) {
        return ((long) BITS.getAcquire(bits, sector >>> 6) & (1L << (sector & 63))) != 0;
    }

    /** The cached sector bitmap of an allocated block of a differencing disk, loaded on first use. */
    long[] bitmap(int block) throws IOException {
        long[] bits = (long[]) BITMAPS.getAcquire(d.bitmaps, block);
        if (bits != null) {
            return bits;
        }
        synchronized (d.bitmapLocks[block & (d.bitmapLocks.length - 1)]) {
            bits = (long[]) BITMAPS.getAcquire(d.bitmaps, block);
            if (bits != null) {
                return bits;
            }
            int sectors = (int) (d.blockSize / SECTOR);
            bits = new long[(sectors + 63) >>> 6];
            long at = d.blockFileOffset(block);
            try (Arena tmp = Arena.ofConfined()) {
                MemorySegment buf = tmp.allocate(d.bitmapBytes, 8);
                d.file.readFully(buf, at);
                for (int s = 0; s < sectors; s++) {
                    // On disk: sector s is bit (7 - s%8) of byte s/8 (most significant bit first).
                    if ((buf.get(ValueLayout.JAVA_BYTE, s >>> 3) & (0x80 >>> (s & 7))) != 0) {
                        bits[s >>> 6] |= 1L << (s & 63);
                    }
                }
            }
            BITMAPS.setRelease(d.bitmaps, block, bits);
            return bits;
        }
    }

    /** Sets bitmap bits after the data is written (so a reader that sees the bit finds the data). */
    void markPresent(int block, long blockStart, int first, int count) throws IOException {
        long[] bits = bitmap(block);
        boolean all = true;
        for (int s = first; s < first + count; s++) {
            if (!bit(bits, s)) {
                all = false;
                break;
            }
        }
        if (all) {
            return;
        }
        synchronized (d.bitmapLocks[block & (d.bitmapLocks.length - 1)]) {
            for (int s = first; s < first + count; s++) {
                int w = s >>> 6;
                BITS.setRelease(bits, w, (long) BITS.getAcquire(bits, w) | (1L << (s & 63)));
            }
            // Write back the 512-byte bitmap sectors the change touched.
            int firstByteSector = (first >>> 3) / SECTOR;
            int lastByteSector = ((first + count - 1) >>> 3) / SECTOR;
            try (Arena tmp = Arena.ofConfined()) {
                long len = (long) (lastByteSector - firstByteSector + 1) * SECTOR;
                MemorySegment buf = tmp.allocate(len, 8);
                long base = (long) firstByteSector * SECTOR * 8; // first sector number covered
                int sectors = (int) (d.blockSize / SECTOR);
                for (long b = 0; b < len; b++) {
                    int v = 0;
                    for (int k = 0; k < 8; k++) {
                        long s = base + b * 8 + k;
                        if (s < sectors && bit(bits, (int) s)) {
                            v |= 0x80 >>> k;
                        }
                    }
                    buf.set(ValueLayout.JAVA_BYTE, b, (byte) v);
                }
                d.file.writeFully(buf, blockStart + (long) firstByteSector * SECTOR);
            }
        }
    }

    /** Allocates block {@code block} (or returns the entry another thread just published). */
    int allocate(int block) throws IOException {
        d.allocLock.lock();
        try {
            int entry = (int) BAT.getAcquire(d.bat, block);
            if (entry != -1) {
                return entry;
            }
            long start = place();
            // The range below nextFree's old footer is a hole or zeroed: only the bitmap needs writing.
            d.file.writeFully(d.newBitmap, start);
            return publish(block, start);
        } finally {
            d.allocLock.unlock();
        }
    }

    /**
     * A dynamic disk's first write at the start of a new block: the bitmap and {@code data} are adjacent in
     * the file, so they go out as one pwrite (through {@link VhdDisk#firstWrite}), which is what a raw file
     * pays for its first write. False when another thread allocated the block first (nothing written).
     */
    boolean allocateWith(int block, MemorySegment data) throws IOException {
        d.allocLock.lock();
        try {
            if ((int) BAT.getAcquire(d.bat, block) != -1) {
                return false;
            }
            long start = place();
            long n = d.bitmapBytes + data.byteSize();
            MemorySegment.copy(data, 0, d.firstWrite, d.bitmapBytes, data.byteSize());
            d.file.writeFully(d.firstWrite.asSlice(0, n), start);
            publish(block, start);
            return true;
        } finally {
            d.allocLock.unlock();
        }
    }

    /** Where the next block starts, with the footer moved past it if needed. Under allocLock. */
    private long place() throws IOException {
        // Data area 4 KiB aligned (O_DIRECT, 4K-sector hosts): the bitmap sits just before a 4 KiB boundary.
        long start = ((d.nextFree + d.bitmapBytes + 4095) & -4096L) - d.bitmapBytes;
        if (start < d.nextFree) {
            start += 4096;
        }
        long end = start + d.bitmapBytes + d.blockSize;
        if (start / SECTOR >= VhdDynamicHeader.UNALLOCATED) {
            throw new VhdFormatException(Reason.TOO_LARGE, d.nextFree, "file too large for a 32-bit BAT entry");
        }
        if (end > d.footerAt) {
            growBefore(end);
        }
        return start;
    }

    /** Publishes the block whose bitmap is written at {@code start}; flush() writes its BAT sector. Under allocLock. */
    private int publish(int block, long start) {
        int entry = (int) (start / SECTOR);
        d.nextFree = start + d.bitmapBytes + d.blockSize;
        if (d.bitmaps != null) {
            BITMAPS.setRelease(d.bitmaps, block, new long[(int) ((d.blockSize / SECTOR + 63) >>> 6)]);
        }
        // Publish: readers that see the entry find the bitmap on disk.
        BAT.setRelease(d.bat, block, entry);
        d.batDirty.set(block / ENTRIES_PER_SECTOR, 1);
        return entry;
    }

    /**
     * Moves the footer past {@code end} and some room ahead: first the new footer (the file grows, its tail
     * is a valid footer at every moment), then zeros over the old one, now inside the hole. Under allocLock.
     */
    void growBefore(long end) throws IOException {
        long blockBytes = d.bitmapBytes + d.blockSize;
        long ahead = Math.min(Math.max(16 * blockBytes, end >>> 1), 1L << 30);
        long newFooter = (end + ahead + SECTOR - 1) & -(long) SECTOR;
        if (newFooter / SECTOR >= VhdDynamicHeader.UNALLOCATED) {
            newFooter = end; // near the 2 TiB limit of 32-bit sector numbers: no room ahead
        }
        d.file.writeFully(d.footer.segment(), newFooter);
        d.file.writeFully(d.zeroSector, d.footerAt);
        d.footerAt = newFooter;
    }

    /** Writes the BAT sectors changed since the last call (SIGKILL-safe: see the class comment). */
    void writeDirtyBat() throws IOException {
        d.allocLock.lock();
        try {
            for (int s = 0; s < d.batDirty.length(); s++) {
                if (d.batDirty.get(s) == 0 || d.batDirty.getAndSet(s, 0) == 0) {
                    continue;
                }
                int first = s * ENTRIES_PER_SECTOR;
                int n = Math.min(ENTRIES_PER_SECTOR, d.bat.length - first);
                for (int i = 0; i < n; i++) {
                    d.batSector.set(U32, 4L * i, (int) BAT.getAcquire(d.bat, first + i));
                }
                try {
                    d.file.writeFully(d.batSector.asSlice(0, 4L * n), d.batOffset + 4L * first);
                } catch (IOException | RuntimeException e) {
                    d.batDirty.set(s, 1); // the next flush retries it
                    throw e;
                }
            }
        } finally {
            d.allocLock.unlock();
        }
    }

    /**
     * Gives the room allocated ahead back: the footer is written at the end of the last block, then the
     * file cut after it (a kill in between leaves the old footer last, still valid). Under allocLock.
     */
    void trimToLastBlock() throws IOException {
        if (d.footerAt > d.nextFree) {
            d.file.writeFully(d.footer.segment(), d.nextFree);
            d.file.truncate(d.nextFree + VhdFooter.LENGTH);
            d.footerAt = d.nextFree;
        }
    }

    /**
     * Zeroing. Fixed disks punch or zero the file range. Dynamic disks drop whole blocks from the BAT when
     * {@code release} (the file range becomes a hole; {@code compact} reclaims it), zero partial ranges of
     * allocated blocks in place and leave unallocated ones alone. Differencing disks must hide the parent,
     * so they write zeros (allocating as needed).
     */
    void zero(long offset, long length, boolean release) throws IOException {
        d.checkWritable();
        d.checkRange(offset, length);
        if (d.header == null) {
            zeroFileRange(offset, length, release);
            return;
        }
        long mask = d.blockSize - 1;
        long pos = 0;
        try (Arena tmp = Arena.ofConfined()) {
            MemorySegment zeros = null;
            while (pos < length) {
                long voff = offset + pos;
                int block = (int) (voff >>> d.blockShift);
                long inBlock = voff & mask;
                long n = Math.min(length - pos, d.blockSize - inBlock);
                int entry = (int) BAT.getAcquire(d.bat, block);
                if (d.bitmaps != null) {
                    if (zeros == null) {
                        zeros = tmp.allocate(Math.min(d.blockSize, 1 << 20), 4096);
                    }
                    for (long done = 0; done < n; done += zeros.byteSize()) {
                        long k = Math.min(zeros.byteSize(), n - done);
                        write(voff + done, zeros.asSlice(0, k));
                    }
                } else if (entry != -1) {
                    long start = Integer.toUnsignedLong(entry) * SECTOR;
                    if (n == d.blockSize && release) {
                        releaseBlock(block, entry, start);
                    } else {
                        zeroFileRange(start + d.bitmapBytes + inBlock, n, false);
                    }
                }
                pos += n;
            }
        }
    }

    void releaseBlock(int block, int entry, long start) throws IOException {
        d.allocLock.lock();
        try {
            if ((int) BAT.getAcquire(d.bat, block) != entry) {
                return;
            }
            try (Arena tmp = Arena.ofConfined()) {
                MemorySegment e = tmp.allocate(4, 4);
                e.set(U32, 0, -1);
                d.file.writeFully(e, d.batOffset + 4L * block);
            }
            BAT.setRelease(d.bat, block, -1);
            d.file.fallocate(PosixFile.FALLOC_FL_PUNCH_HOLE | PosixFile.FALLOC_FL_KEEP_SIZE, start, d.bitmapBytes + d.blockSize);
        } finally {
            d.allocLock.unlock();
        }
    }

    void zeroFileRange(long at, long length, boolean punch) throws IOException {
        if (punch && d.file.fallocate(PosixFile.FALLOC_FL_PUNCH_HOLE | PosixFile.FALLOC_FL_KEEP_SIZE, at, length)) {
            return;
        }
        if (d.file.fallocate(PosixFile.FALLOC_FL_ZERO_RANGE | PosixFile.FALLOC_FL_KEEP_SIZE, at, length)) {
            return;
        }
        if (d.file.fallocate(PosixFile.FALLOC_FL_PUNCH_HOLE | PosixFile.FALLOC_FL_KEEP_SIZE, at, length)) {
            return;
        }
        try (Arena tmp = Arena.ofConfined()) {
            MemorySegment zeros = tmp.allocate(Math.min(length, 1 << 20), 4096);
            for (long done = 0; done < length; done += zeros.byteSize()) {
                d.file.writeFully(zeros.asSlice(0, Math.min(zeros.byteSize(), length - done)), at + done);
            }
        }
    }

}
