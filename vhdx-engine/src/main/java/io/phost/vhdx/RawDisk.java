package io.phost.vhdx;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A raw image: the file (or block device) is the disk, byte for byte.
 *
 * <p>I/O is one {@code pread}/{@code pwrite} per request on the caller's segment (no copy, no allocation).
 * {@link #unmap} punches a hole ({@code FALLOC_FL_PUNCH_HOLE|KEEP_SIZE}); {@link #writeZeroes} uses
 * {@code FALLOC_FL_ZERO_RANGE}, then hole punching, then plain zero writes, whichever the file system
 * accepts first. {@link #flush} is {@code fdatasync}. The logical sector size is 512: a raw file carries
 * no sector size of its own (pass-through block devices with 4 KiB sectors are the storage VSP's business).
 */
public final class RawDisk implements VirtualDisk, AllocationMap {
    public static final int SECTOR = 512;
    /** 1 MiB of zeros for file systems without fallocate modes. */
    static final MemorySegment ZEROS = Arena.global().allocate(1 << 20, 4096);

    private final PosixFile file;
    private final long size;
    private final int physicalSectorSize;

    private RawDisk(PosixFile file, long size, int physicalSectorSize) {
        this.file = file;
        this.size = size;
        this.physicalSectorSize = physicalSectorSize;
    }

    /** Opens a raw file or block device; its size is the file's size. */
    public static RawDisk open(Path path, boolean readOnly) throws IOException {
        PosixFile f = PosixFile.open(path, readOnly);
        try {
            return new RawDisk(f, f.size(), SECTOR);
        } catch (IOException | RuntimeException e) {
            f.close();
            throw e;
        }
    }

    /**
     * Creates a raw image of {@code size} bytes: sparse ({@code preallocate == false}, the file is one hole)
     * or fully allocated with {@code fallocate} (zeros written where the file system cannot).
     */
    public static RawDisk create(Path path, long size, boolean preallocate) throws IOException {
        if (size <= 0 || size % SECTOR != 0) {
            throw new IllegalArgumentException("raw size must be a positive multiple of 512: " + size);
        }
        PosixFile f = PosixFile.createNew(path);
        try {
            f.truncate(size);
            if (preallocate && !f.fallocate(0, 0, size)) {
                for (long off = 0; off < size; off += ZEROS.byteSize()) {
                    f.writeFully(ZEROS.asSlice(0, Math.min(ZEROS.byteSize(), size - off)), off);
                }
            }
            return new RawDisk(f, size, SECTOR); // durable at the caller's first flush
        } catch (IOException | RuntimeException e) {
            f.close();
            Files.deleteIfExists(path);
            throw e;
        }
    }

    public Path path() {
        return file.path();
    }

    /** The underlying file, for tools that need SEEK_DATA or direct access (convert, compact). */
    public PosixFile file() {
        return file;
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public int logicalSectorSize() {
        return SECTOR;
    }

    @Override
    public int physicalSectorSize() {
        return physicalSectorSize;
    }

    @Override
    public boolean readOnly() {
        return file.readOnly();
    }

    @Override
    public void read(long offset, MemorySegment dst) throws IOException {
        checkRange(offset, dst.byteSize());
        file.readFully(dst, offset);
    }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        checkWritable();
        checkRange(offset, src.byteSize());
        file.writeFully(src, offset);
    }

    @Override
    public void flush() throws IOException {
        if (!readOnly()) {
            file.dataSync();
        }
    }

    @Override
    public void unmap(long offset, long length) throws IOException {
        checkWritable();
        checkRange(offset, length);
        if (length == 0) {
            return;
        }
        if (!file.fallocate(PosixFile.FALLOC_FL_PUNCH_HOLE | PosixFile.FALLOC_FL_KEEP_SIZE, offset, length)) {
            writeZeroesSlow(offset, length);
        }
    }

    @Override
    public void writeZeroes(long offset, long length) throws IOException {
        checkWritable();
        checkRange(offset, length);
        if (length == 0) {
            return;
        }
        if (file.fallocate(PosixFile.FALLOC_FL_ZERO_RANGE | PosixFile.FALLOC_FL_KEEP_SIZE, offset, length)) {
            return;
        }
        if (file.fallocate(PosixFile.FALLOC_FL_PUNCH_HOLE | PosixFile.FALLOC_FL_KEEP_SIZE, offset, length)) {
            return;
        }
        writeZeroesSlow(offset, length);
    }

    private void writeZeroesSlow(long offset, long length) throws IOException {
        for (long done = 0; done < length; ) {
            long n = Math.min(ZEROS.byteSize(), length - done);
            file.writeFully(ZEROS.asSlice(0, n), offset + done);
            done += n;
        }
    }

    @Override
    public String format() {
        return "raw";
    }

    @Override
    public long nextAllocated(long offset) throws IOException {
        if (offset >= size) {
            return size;
        }
        long d = file.seekData(offset);
        return d < 0 ? size : Math.min(d, size);
    }

    @Override
    public long nextUnallocated(long offset) throws IOException {
        if (offset >= size) {
            return size;
        }
        long h = file.seekHole(offset);
        return h < 0 ? size : Math.min(h, size);
    }

    @Override
    public long allocatedBytes() throws IOException {
        long total = 0;
        long off = 0;
        while (off < size) {
            long d = nextAllocated(off);
            if (d >= size) {
                break;
            }
            long h = nextUnallocated(d);
            total += h - d;
            off = h;
        }
        return total;
    }

    private void checkRange(long offset, long length) {
        if (offset < 0 || length < 0 || (offset & (SECTOR - 1)) != 0 || (length & (SECTOR - 1)) != 0
            || offset > size - length) {
            throw new IllegalArgumentException("bad range offset=" + offset + " length=" + length + " size=" + size);
        }
    }

    private void checkWritable() {
        if (readOnly()) {
            throw new IllegalStateException(file.path() + " is open read-only");
        }
    }

    @Override
    public void close() throws IOException {
        file.close();
    }
}
