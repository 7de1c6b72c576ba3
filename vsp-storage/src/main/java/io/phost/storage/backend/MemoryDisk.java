package io.phost.storage.backend;

import io.phost.vhdx.DiskCapabilities;
import io.phost.vhdx.VirtualDisk;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A RAM disk, or with {@code nullData} a null device (reads leave the buffer as it is, writes are dropped)
 * used to measure the cost of the path above the disk. Can be told to fail I/O to exercise error paths.
 */
public final class MemoryDisk implements VirtualDisk {
    private final Arena arena;
    private final MemorySegment data;
    private final long size;
    private final int sector;
    private final boolean readOnly;
    private final boolean nullData;
    private volatile long failFrom = Long.MAX_VALUE;

    private MemoryDisk(long size, int sector, boolean readOnly, boolean nullData) {
        this.size = size;
        this.sector = sector;
        this.readOnly = readOnly;
        this.nullData = nullData;
        this.arena = nullData ? null : Arena.ofShared();
        this.data = nullData ? MemorySegment.NULL : arena.allocate(size, 4096);
    }

    public static MemoryDisk ram(long size, int sector, boolean readOnly) {
        return new MemoryDisk(size, sector, readOnly, false);
    }

    public static MemoryDisk nullDisk(long size) {
        return new MemoryDisk(size, 512, false, true);
    }

    /** Makes every I/O touching bytes at or after {@code offset} fail with an IOException. */
    public void failFrom(long offset) {
        failFrom = offset;
    }

    public MemorySegment contents() {
        return data;
    }

    private void check(long offset, long length) throws IOException {
        if (offset < 0 || length < 0 || offset % sector != 0 || length % sector != 0 || offset > size - length) {
            throw new IllegalArgumentException("range offset=" + offset + " length=" + length + " size=" + size);
        }
        if (offset + length > failFrom) {
            throw new IOException("injected media error at offset " + Math.max(offset, failFrom));
        }
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public int logicalSectorSize() {
        return sector;
    }

    @Override
    public int physicalSectorSize() {
        return Math.max(sector, 4096);
    }

    @Override
    public boolean readOnly() {
        return readOnly;
    }

    @Override
    public void read(long offset, MemorySegment dst) throws IOException {
        check(offset, dst.byteSize());
        if (!nullData) {
            MemorySegment.copy(data, offset, dst, 0, dst.byteSize());
        }
    }

    @Override
    public void write(long offset, MemorySegment src) throws IOException {
        if (readOnly) {
            throw new IOException("read-only");
        }
        check(offset, src.byteSize());
        if (!nullData) {
            MemorySegment.copy(src, 0, data, offset, src.byteSize());
        }
    }

    @Override
    public void flush() throws IOException {
        if (failFrom == 0) {
            throw new IOException("injected flush failure");
        }
    }

    @Override
    public void writeZeroes(long offset, long length) throws IOException {
        if (readOnly) {
            throw new IOException("read-only");
        }
        check(offset, length);
        if (!nullData) {
            data.asSlice(offset, length).fill((byte) 0);
        }
    }

    /** A memory copy (or nothing): never blocks. */
    @Override
    public DiskCapabilities capabilities() {
        return DiskCapabilities.memory(-1);
    }

    @Override
    public String format() {
        return nullData ? "null" : "ram";
    }

    @Override
    public void close() {
        if (arena != null) {
            arena.close();
        }
    }
}
